"""Configuration options and how a crawl is started (argv, environment, folders)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile

import pytest
from conftest import (
    ALL_SPIDERS,
    NODE_NAME,
    PASSWORD,
    SITE_TITLES,
    USERNAME,
    Daemon,
    cancel,
    free_port,
    read_items,
    start_slow,
    wait_log_contains,
)


def process_argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [arg.decode() for arg in f.read().split(b"\0")[:-1]]


def process_env(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.decode().split("=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return dict(pairs)


def options_of(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_crawl_command_line_and_environment(daemon_factory, egg_file, site, tmp_path):
    jobs_dir = tmp_path / "jobs"
    daemon = daemon_factory(jobs_dir=jobs_dir)
    daemon.upload("testproject", "1.0", egg_file)
    daemon.upload("testproject", "2.0", egg_file)
    jobid = daemon.schedule(
        "testproject", "slow", _version="1.0", base_url=site.url, setting=["CONCURRENT_REQUESTS=3", "MY_SETTING=x"],
    )
    daemon.wait_state(jobid, "running")
    wait_log_contains(daemon, "testproject", "slow", jobid, "slow page")
    pid = daemon.job(jobid)[1]["pid"]
    argv = process_argv(pid)
    env = process_env(pid)
    cancel(daemon, "testproject", jobid)

    assert argv[1:5] == ["-m", "scrapy", "crawl", "slow"], argv
    logs, items = daemon.dirs["logs"], daemon.dirs["items"]
    assert options_of(argv, "-s") == [
        "CONCURRENT_REQUESTS=3",
        "MY_SETTING=x",
        f"LOG_FILE={logs}/testproject/slow/{jobid}.log",
        f'FEEDS={{"file://{items}/testproject/slow/{jobid}.jl": {{"format": "jsonlines"}}}}',
        f"JOBDIR={jobs_dir}/testproject/slow/{jobid}",
    ]
    assert options_of(argv, "-a") == [f"_job={jobid}", f"base_url={site.url}", "_version=1.0"]
    assert env["SCRAPY_PROJECT"] == "testproject"
    assert env["SCRAPYD_EGG_VERSION"] == "1.0"
    assert env["SCRAPY_SETTINGS_MODULE"] == "testproject.settings"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(daemon.dirs["eggs"] / "testproject" / "1.0")
    # its own process group, so it can outlive the daemon
    assert os.getpgid(pid) == pid
    daemon.wait_finished(jobid)
    assert (jobs_dir / "testproject" / "slow" / jobid).is_dir()


def test_version_named_by_its_scrapyd_name_runs_as_stored(daemon_factory, egg_file, small_egg_file, site):
    """`_version=1_0` (Scrapyd's name of 1.0) queues, lists and runs 1.0,
    named exactly: in listjobs, in `-a _version` and in SCRAPYD_EGG_VERSION."""
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    daemon.upload("testproject", "2.0", small_egg_file)
    occupier = start_slow(daemon, site)
    jobid = daemon.schedule("testproject", "stubborn", _version="1_0", base_url=site.url)
    state, pending = daemon.job(jobid)
    assert (state, pending["version"]) == ("pending", "1.0")
    cancel(daemon, "testproject", occupier)
    daemon.wait_state(jobid, "running")
    wait_log_contains(daemon, "testproject", "stubborn", jobid, "slow page")
    pid = daemon.job(jobid)[1]["pid"]
    argv, env = process_argv(pid), process_env(pid)
    cancel(daemon, "testproject", jobid, signal="KILL")
    assert options_of(argv, "-a") == [f"_job={jobid}", f"base_url={site.url}", "_version=1.0"]
    assert env["SCRAPYD_EGG_VERSION"] == "1.0"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(daemon.dirs["eggs"] / "testproject" / "1.0")
    daemon.wait_finished(jobid)


def test_default_version_is_not_named(daemon_factory, egg_file, site):
    daemon = daemon_factory()
    daemon.upload("testproject", "1.0", egg_file)
    jobid = start_slow(daemon, site)
    pid = daemon.job(jobid)[1]["pid"]
    argv, env = process_argv(pid), process_env(pid)
    cancel(daemon, "testproject", jobid)
    assert options_of(argv, "-a") == [f"_job={jobid}", f"base_url={site.url}"]
    assert "SCRAPYD_EGG_VERSION" not in env
    assert not any(arg.startswith("JOBDIR=") for arg in argv)  # no jobs_dir configured
    daemon.wait_finished(jobid)


def test_stray_scrapy_cfg_is_not_picked_up(daemon_factory, egg_file, site):
    daemon = daemon_factory()
    # a scrapy.cfg in the daemon's working directory naming a settings module
    # that does not exist must not leak into crawls or listings
    (daemon.root / "scrapy.cfg").write_text("[settings]\ndefault = nowhere.settings\n")
    daemon.upload("testproject", "1.0", egg_file)
    assert daemon.ok("GET", "listspiders.json", {"project": "testproject"})["spiders"] == ALL_SPIDERS
    jobid = daemon.schedule("testproject", "pages", base_url=site.url)
    daemon.wait_finished(jobid)
    assert len(read_items(daemon.items_path("testproject", "pages", jobid))) == len(SITE_TITLES)


def test_without_items_dir(daemon_factory, egg_file, site):
    daemon = daemon_factory(items_dir=None)
    daemon.upload("testproject", "1.0", egg_file)
    jobid = daemon.schedule("testproject", "pages", base_url=site.url)
    entry = daemon.wait_finished(jobid)
    assert entry["items_url"] is None
    assert entry["log_url"] == f"/logs/testproject/pages/{jobid}.log"
    assert not (daemon.root / "items").exists()
    page = daemon.request("GET", "/").text
    assert 'href="/items/"' not in page
    assert "Spider closed (finished)" in daemon.log_path("testproject", "pages", jobid).read_text()


def test_max_proc(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=2)
    daemon.upload("testproject", "1.0", egg_file)
    first = start_slow(daemon, site)
    second = start_slow(daemon, site)
    third = daemon.schedule("testproject", "slow", base_url=site.url)
    jobs = daemon.listjobs()
    assert {job["id"] for job in jobs["running"]} == {first, second}
    assert [job["id"] for job in jobs["pending"]] == [third]
    assert cancel(daemon, "testproject", first) == "running"
    daemon.wait_state(third, "running")
    # cancel only once Scrapy is crawling: a SIGINT that arrives while Scrapy
    # is still starting up can be lost (Scrapy's behaviour, not the daemon's)
    wait_log_contains(daemon, "testproject", "slow", third, "slow page")
    for jobid in (second, third):
        assert cancel(daemon, "testproject", jobid) == "running"
    for jobid in (first, second, third):
        daemon.wait_finished(jobid)


def test_node_name_defaults_to_host_name(daemon_factory):
    daemon = daemon_factory(node_name=None)
    answer = daemon.get("daemonstatus.json")
    assert answer["node_name"] == socket.gethostname()


def test_services_section_disables_an_endpoint(daemon_factory):
    daemon = daemon_factory(sections={"services": {"schedule.json": ""}})
    assert daemon.request("POST", "/schedule.json", data={"project": "p", "spider": "s"}).status_code == 404
    assert daemon.get("listprojects.json")["status"] == "ok"


def test_python_per_project(daemon_factory, egg_file):
    daemon = daemon_factory(sections={"python": {"jailed": "/bin/false"}})
    daemon.upload("free", "1", egg_file)
    answer = daemon.upload("jailed", "1", egg_file, expect_ok=False)
    assert answer["status"] == "error"
    assert sorted(daemon.get("listprojects.json")["projects"]) == ["free"]


def test_environment_overrides(tmp_path, egg_file):
    file_port, env_port = free_port(), free_port()
    root = tmp_path / "envd"
    root.mkdir()
    daemon = Daemon(
        root,
        {"http_port": file_port, "python": "/bin/false"},
        env={"SCRAPYD_HTTP_PORT": str(env_port), "SCRAPYD_USERNAME": USERNAME, "SCRAPYD_PASSWORD": PASSWORD,
             "SCRAPYD_PYTHON": sys.executable, "SCRAPYD_BIND_ADDRESS": ""},
    )
    daemon.port, daemon.url, daemon.auth = env_port, f"http://127.0.0.1:{env_port}", (USERNAME, PASSWORD)
    try:
        daemon.start()
        assert daemon.request("GET", "/daemonstatus.json", auth=None).status_code == 401
        assert daemon.get("daemonstatus.json")["node_name"] == NODE_NAME
        # SCRAPYD_PYTHON wins over python = /bin/false: listing spiders works
        assert daemon.upload("p", "1", egg_file)["spiders"] == 3
    finally:
        daemon.cleanup()


def test_unix_socket_and_tcp_together(daemon_factory):
    folder = tempfile.mkdtemp(prefix="srs")
    path = os.path.join(folder, "d.sock")
    try:
        daemon = daemon_factory(unix_socket_path=path)
        assert daemon.get("daemonstatus.json")["status"] == "ok"  # TCP
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(path)
            s.sendall(b"GET /listprojects.json HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1."), head
        assert b" 200 " in head.split(b"\r\n")[0]
        assert body == b'{"projects": [], "status": "ok", "node_name": "' + NODE_NAME.encode() + b'"}\n'
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("signal_value", ["KILL", "9"])
def test_cancel_with_kill_signal(deployed, site, signal_value):
    daemon = deployed
    jobid = start_slow(daemon, site, spider="stubborn")
    assert cancel(daemon, "testproject", jobid, signal=signal_value) == "running"
    daemon.wait_finished(jobid, timeout=30)
    assert "Spider closed" not in daemon.log_path("testproject", "stubborn", jobid).read_text()


def test_times_are_local_time(daemon_factory, egg_file, site):
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    zone = "Asia/Tokyo"  # UTC+9 all year, so it differs from UTC
    daemon = daemon_factory(env={"TZ": zone})
    daemon.upload("testproject", "1.0", egg_file)
    jobid = daemon.schedule("testproject", "pages", base_url=site.url)
    entry = daemon.wait_finished(jobid)
    now = datetime.now(ZoneInfo(zone)).replace(tzinfo=None)
    for key in ("start_time", "end_time"):
        shown = datetime.strptime(entry[key], "%Y-%m-%d %H:%M:%S.%f")
        assert abs(now - shown) < timedelta(minutes=10), (key, entry[key], now)
