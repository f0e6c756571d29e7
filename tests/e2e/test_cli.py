"""The command itself: --help, --version, and Scrapyd's configuration search
path when no --config is given (./scrapyd.conf, then ~/.scrapyd.conf, later
files winning)."""

from __future__ import annotations

import os
import subprocess

import requests

from conftest import _binary, free_port, wait_for


def test_help_and_version():
    helped = subprocess.run([_binary(), "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0
    assert "--config <FILE>" in helped.stdout
    assert "--version" in helped.stdout

    version = subprocess.run([_binary(), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0
    assert version.stdout.startswith("scrapyd-rs ")


def test_missing_config_file_is_an_error(tmp_path):
    result = subprocess.run(
        [_binary(), "--config", str(tmp_path / "nope.conf")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "nope.conf" in result.stderr


def test_search_path_later_files_win(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    port = free_port()
    (work / "scrapyd.conf").write_text(
        f"[scrapyd]\nbind_address = 127.0.0.1\nhttp_port = {port}\nnode_name = from-cwd\n"
    )
    (home / ".scrapyd.conf").write_text("[scrapyd]\nnode_name = from-home\n")
    env = {**os.environ, "HOME": str(home)}
    for name in ("SCRAPYD_HTTP_PORT", "SCRAPYD_BIND_ADDRESS"):
        env.pop(name, None)
    process = subprocess.Popen(
        [_binary()], cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:

        def answer():
            try:
                return requests.get(f"http://127.0.0.1:{port}/daemonstatus.json", timeout=2).json()
            except requests.ConnectionError:
                assert process.poll() is None, process.stderr.read().decode(errors="replace")
                return None

        status = wait_for(answer, timeout=10, interval=0.05, message="the daemon to answer")
        # The port came from ./scrapyd.conf, the node name from ~/.scrapyd.conf.
        assert status["node_name"] == "from-home"
        # The default folders are relative to the working directory.
        assert (work / "eggs").is_dir() and (work / "logs").is_dir() and (work / "dbs").is_dir()
    finally:
        process.terminate()
        process.wait(timeout=20)
