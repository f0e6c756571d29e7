"""Fixtures of the black-box suite.

Every test talks to the real `scrapyd-rs` binary (env `SCRAPYD_RS_BIN`) over
HTTP. The daemon runs in a temporary folder with a config written here,
projects are deployed with the real `scrapyd-deploy` (or uploaded as eggs it
built), and crawls are real Scrapy runs of `tests/testproject` against a small
web site served by this process on 127.0.0.1.
"""

from __future__ import annotations

import collections
import configparser
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
TESTPROJECT = ROOT / "tests" / "testproject"
VENV_BIN = Path(sys.executable).parent
SCRAPYD_DEPLOY = VENV_BIN / "scrapyd-deploy"

NODE_NAME = "e2e-node"
USERNAME = "alice"
PASSWORD = "s3cret"

# Generous: a crawl is a fresh Python process importing Scrapy.
TIMEOUT = 60

# Local time with exactly six fraction digits, as every listjobs time must be.
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
JOBID_RE = re.compile(r"^[0-9a-f]{32}$")

# The pages spider yields one item for `/` and one for each /page/N.
PAGE_COUNT = 5
SITE_TITLES = ["Index"] + [f"Title {n}" for n in range(1, PAGE_COUNT + 1)]
ALL_SPIDERS = ["pages", "slow", "stubborn"]


# --------------------------------------------------------------------------
# The test web site
# --------------------------------------------------------------------------


class _SiteHandler(BaseHTTPRequestHandler):
    """`/` links to /page/1..5; /page/N has `<h1>Title N</h1>`; `/slow` never ends."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        page = re.fullmatch(r"/page/(\d+)", url.path)
        if url.path == "/":
            links = "".join(f'<li><a href="/page/{n}">Page {n}</a></li>' for n in range(1, PAGE_COUNT + 1))
            body = f"<html><head><title>Index</title></head><body><h1>Index</h1><ul>{links}</ul></body></html>"
        elif page:
            n = page.group(1)
            body = f'<html><head><title>Page {n}</title></head><body><h1>Title {n}</h1><a href="/">Home</a></body></html>'
        elif url.path == "/slow":
            n = int(parse_qs(url.query).get("n", ["0"])[0])
            time.sleep(0.5)
            body = f'<html><body><h1>Slow {n}</h1><a href="/slow?n={n + 1}">next</a></body></html>'
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a cancelled crawl hung up

    def log_message(self, format, *args):  # noqa: A002 (quiet)
        pass


class _SiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # crawls killed mid-request are expected here


class Site:
    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def site():
    server = _SiteServer(("127.0.0.1", 0), _SiteHandler)
    thread = threading.Thread(target=server.serve_forever, name="test-site", daemon=True)
    thread.start()
    try:
        yield Site(server)
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------


def wait_for(predicate, timeout=TIMEOUT, interval=0.2, message="condition"):
    """Call `predicate` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------


def _binary() -> str:
    path = os.environ.get("SCRAPYD_RS_BIN")
    if not path:
        pytest.fail("set SCRAPYD_RS_BIN to the scrapyd-rs binary (bash tests/run.sh does)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"SCRAPYD_RS_BIN={path} is not an executable file")
    return path


def started_in(stderr_path: Path) -> list[str]:
    """The job ids one start of a daemon launched, as its stderr says."""
    return [re.search(r"job=(\w+)", line).group(1)
            for line in stderr_path.read_text(errors="replace").splitlines() if "crawl started" in line]


class Daemon:
    """One scrapyd-rs process on a free port, with its folders in `root`."""

    def __init__(self, root: Path, options: dict, env: dict | None = None, sections: dict | None = None):
        self.root = root
        # extra environment of the daemon (e.g. SCRAPYD_HTTP_PORT) and extra
        # config sections (e.g. [services], [python])
        self.env = dict(env or {})
        self.sections = dict(sections or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dirs = {name: root / name for name in ("eggs", "logs", "items", "dbs")}
        self.config_path = root / "scrapyd.conf"
        self.options = {
            "bind_address": "127.0.0.1",
            "http_port": str(self.port),
            "max_proc": "2",
            "eggs_dir": str(self.dirs["eggs"]),
            "logs_dir": str(self.dirs["logs"]),
            "items_dir": str(self.dirs["items"]),
            "dbs_dir": str(self.dirs["dbs"]),
            "node_name": NODE_NAME,
            "python": sys.executable,
            "cancel_kill_grace": "1",
        }
        self.set_options(options)
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.session = requests.Session()

    # -- configuration ---------------------------------------------------

    def set_options(self, options: dict):
        for key, value in options.items():
            if value is None:
                self.options.pop(key, None)
            else:
                self.options[key] = str(value)
        if "username" in self.options and "password" in self.options:
            self.auth = (self.options["username"], self.options["password"])
        else:
            self.auth = None

    def write_config(self):
        config = configparser.ConfigParser(interpolation=None)
        config["scrapyd"] = self.options
        for name, values in self.sections.items():
            config[name] = values
        with open(self.config_path, "w") as f:
            config.write(f)

    # -- process ---------------------------------------------------------

    def start(self):
        self.write_config()
        self.starts += 1
        self.stderr_path = self.root / f"daemon-{self.starts}.stderr"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPYD_") or k == "SCRAPYD_RS_BIN"}
        env.update(self.env)
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [_binary(), "--config", str(self.config_path)],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"scrapyd-rs exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                requests.get(self.url + "/daemonstatus.json", auth=self.auth, timeout=2)
                return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"scrapyd-rs did not answer within 10s:\n{self.stderr()}")
            time.sleep(0.05)

    def stop(self, timeout=20):
        """SIGTERM and wait (crawls are left running, as with systemd's KillMode=process)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"scrapyd-rs did not exit within {timeout}s of SIGTERM")

    def kill9(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, **options):
        self.stop()
        self.set_options(options)
        return self.start()

    def data_value(self, sql: str):
        """The first column of the first row `sql` answers from the job data
        database, read as any reader of the file sees it."""
        path = self.dirs["dbs"] / "scrapyd-rs-data.sqlite"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            return connection.execute(sql).fetchone()[0]

    def started_now(self) -> list[str]:
        """The job ids this start of the daemon launched, in order."""
        return started_in(self.stderr_path)

    def launches(self) -> collections.Counter:
        """How many times each job id was launched, over every start of this daemon."""
        return collections.Counter(job for path in self.root.glob("daemon-*.stderr") for job in started_in(path))

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def cleanup(self):
        self.kill9()
        kill_processes_mentioning(str(self.root) + os.sep)
        self.session.close()

    # -- HTTP ------------------------------------------------------------

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("auth", self.auth)
        return self.session.request(method, self.url + path, **kwargs)

    def get(self, endpoint, params=None, **kwargs):
        """GET /<endpoint>; asserts HTTP 200 and Python's JSON style; returns the decoded JSON."""
        response = self.request("GET", "/" + endpoint, params=params, **kwargs)
        assert response.status_code == 200, (endpoint, response.status_code, response.text)
        return python_style_json(response)

    def post(self, endpoint, data=None, **kwargs):
        """POST /<endpoint>; asserts HTTP 200 and Python's JSON style; returns the decoded JSON."""
        response = self.request("POST", "/" + endpoint, data=data, **kwargs)
        assert response.status_code == 200, (endpoint, response.status_code, response.text)
        return python_style_json(response)

    def ok(self, method, endpoint, data=None, **kwargs):
        """Call an endpoint that must succeed; returns the JSON."""
        if method == "GET":
            answer = self.get(endpoint, params=data, **kwargs)
        else:
            answer = self.post(endpoint, data=data, **kwargs)
        assert answer.get("status") == "ok", (endpoint, data, answer, self.stderr())
        assert answer.get("node_name") == NODE_NAME, answer
        return answer

    # -- API shortcuts ---------------------------------------------------

    def upload(self, project, version, egg_path, expect_ok=True):
        with open(egg_path, "rb") as f:
            answer = self.post(
                "addversion.json",
                data={"project": project, "version": version},
                files={"egg": ("project.egg", f)},
            )
        if expect_ok:
            assert answer["status"] == "ok", (answer, self.stderr())
        return answer

    def schedule(self, project, spider, **params):
        data = {"project": project, "spider": spider, **params}
        return self.ok("POST", "schedule.json", data)["jobid"]

    def listjobs(self, project=None):
        return self.ok("GET", "listjobs.json", {"project": project} if project else None)

    def job(self, jobid):
        """(state, entry) of a job in listjobs, or (None, None)."""
        jobs = self.listjobs()
        for state in ("pending", "running", "finished"):
            for entry in jobs[state]:
                if entry["id"] == jobid:
                    return state, entry
        return None, None

    def wait_state(self, jobid, state, timeout=TIMEOUT):
        def check():
            current, entry = self.job(jobid)
            return entry if current == state else None

        return wait_for(check, timeout, message=f"job {jobid} to be {state} (daemon log:\n{self.stderr()})")

    def wait_finished(self, jobid, timeout=TIMEOUT):
        return self.wait_state(jobid, "finished", timeout)

    def log_path(self, project, spider, jobid) -> Path:
        return self.dirs["logs"] / project / spider / f"{jobid}.log"

    def items_path(self, project, spider, jobid) -> Path:
        return self.dirs["items"] / project / spider / f"{jobid}.jl"


def python_style_json(response):
    """Decode a JSON answer, checking it is byte for byte what Scrapyd's encoder makes of it.

    Scrapyd encodes with Python's `json` defaults (", " and ": " separators,
    non-ASCII escaped, floats as Python prints them) and adds a newline.
    Decoding keeps the key order, so re-encoding must give the same bytes.
    """
    assert response.headers.get("Content-Type") == "application/json", response.headers
    data = response.json()
    assert response.content == json.dumps(data).encode() + b"\n", response.content[:500]
    return data


def kill_processes_mentioning(marker: str):
    """KILL the process groups of crawls whose command line mentions `marker`.

    Crawls run in their own process group and outlive the daemon on purpose,
    so a failed test could leave them behind; their command line names the
    test's own log folder, which is unique to it.
    """
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pid = int(entry.name)
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def daemon_factory(tmp_path):
    """Start daemons: `daemon_factory(max_proc=1, username=...)`; all are killed at the end."""
    daemons = []

    def start(env=None, sections=None, **options) -> Daemon:
        root = tmp_path / f"daemon{len(daemons)}"
        root.mkdir()
        daemon = Daemon(root, options, env=env, sections=sections)
        daemons.append(daemon)
        return daemon.start()

    yield start
    for daemon in daemons:
        daemon.cleanup()


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


# --------------------------------------------------------------------------
# Eggs and deploys
# --------------------------------------------------------------------------


def copy_project(destination: Path, source: Path = TESTPROJECT) -> Path:
    shutil.copytree(
        source,
        destination,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "*.egg", "dist"),
    )
    return destination


def write_scrapy_cfg(project_dir: Path, url: str = "http://127.0.0.1:6800/", project: str = "testproject", auth=None):
    lines = [
        "[settings]",
        "default = testproject.settings",
        "",
        "[deploy]",
        f"url = {url}",
        f"project = {project}",
    ]
    if auth:
        lines += [f"username = {auth[0]}", f"password = {auth[1]}"]
    (project_dir / "scrapy.cfg").write_text("\n".join(lines) + "\n")


def _deploy_env():
    env = os.environ.copy()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SCRAPY_SETTINGS_MODULE", None)
    env.pop("SCRAPY_PROJECT", None)
    return env


def build_egg(project_dir: Path, egg_file: Path) -> Path:
    """`scrapyd-deploy --build-egg=FILE` in a copy of a project."""
    result = subprocess.run(
        [str(SCRAPYD_DEPLOY), f"--build-egg={egg_file}"],
        cwd=project_dir,
        env=_deploy_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert egg_file.is_file()
    return egg_file


@pytest.fixture(scope="session")
def egg_file(tmp_path_factory) -> Path:
    """The egg of tests/testproject, built once by scrapyd-deploy."""
    work = tmp_path_factory.mktemp("egg")
    project_dir = copy_project(work / "testproject")
    write_scrapy_cfg(project_dir)
    return build_egg(project_dir, work / "testproject.egg")


def _variant_egg(tmp_path_factory, name: str, change) -> Path:
    work = tmp_path_factory.mktemp(name)
    project_dir = copy_project(work / "testproject")
    write_scrapy_cfg(project_dir)
    change(project_dir / "testproject")
    return build_egg(project_dir, work / f"{name}.egg")


@pytest.fixture(scope="session")
def small_egg_file(tmp_path_factory) -> Path:
    """tests/testproject without its `stubborn` spider: 2 spiders, `pages` and `slow`."""
    return _variant_egg(tmp_path_factory, "small", lambda pkg: (pkg / "spiders" / "stubborn.py").unlink())


@pytest.fixture(scope="session")
def broken_settings_egg_file(tmp_path_factory) -> Path:
    """A well-formed egg whose settings module raises on import."""

    def break_settings(pkg: Path):
        with open(pkg / "settings.py", "a") as f:
            f.write('\nraise RuntimeError("settings are broken on purpose")\n')

    return _variant_egg(tmp_path_factory, "broken", break_settings)


@pytest.fixture
def deploy(tmp_path_factory):
    """`deploy(daemon, project, version, egg=None)`: the real `scrapyd-deploy`.

    Builds the egg from a copy of tests/testproject, or uploads `egg` as is
    (`--egg FILE`). Returns the daemon's JSON answer as printed by the tool.
    """

    def run(daemon: Daemon, project: str, version: str, egg: Path | None = None, expect_ok: bool = True):
        project_dir = copy_project(tmp_path_factory.mktemp("deploy") / "testproject")
        write_scrapy_cfg(project_dir, url=daemon.url + "/", project=project, auth=daemon.auth)
        command = [str(SCRAPYD_DEPLOY), "-p", project, "--version", version]
        if egg is not None:
            command += ["--egg", str(egg)]
        result = subprocess.run(
            command, cwd=project_dir, env=_deploy_env(), capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, (result.stdout, result.stderr, daemon.stderr())
        answer = json.loads(result.stdout)
        if expect_ok:
            assert answer["status"] == "ok", (answer, daemon.stderr())
        return answer

    return run


@pytest.fixture
def deployed(daemon, egg_file):
    """The daemon with tests/testproject uploaded as project `testproject`, version `1.0`."""
    daemon.upload("testproject", "1.0", egg_file)
    daemon.egg_file = egg_file
    return daemon


# --------------------------------------------------------------------------
# Crawl helpers
# --------------------------------------------------------------------------


def read_items(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_log_contains(daemon, project, spider, jobid, text):
    path = daemon.log_path(project, spider, jobid)
    wait_for(
        lambda: path.is_file() and text in path.read_text(errors="replace"),
        message=f"{text!r} in {path}",
    )


def process_gone(pid: int) -> bool:
    """Whether a process has ended: no longer in /proc, or a zombie waiting
    to be reaped by whichever process adopted it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def start_slow(daemon, site, project="testproject", spider="slow", jobid=None):
    """Schedule a never-ending crawl and wait until it is running and crawling."""
    params = {"base_url": site.url}
    if jobid:
        params["jobid"] = jobid
    jobid = daemon.schedule(project, spider, **params)
    daemon.wait_state(jobid, "running")
    wait_log_contains(daemon, project, spider, jobid, "slow page")
    return jobid


def daemon_with_slow_crawl(daemon_factory, egg_file, site):
    """A one-slot daemon with tests/testproject deployed and its slot held by
    a never-ending crawl: `(daemon, jobid, pid)`."""
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    jobid = start_slow(daemon, site)
    return daemon, jobid, daemon.job(jobid)[1]["pid"]


def cancel(daemon, project, jobid, **extra):
    return daemon.ok("POST", "cancel.json", {"project": project, "job": jobid, **extra})["prevstate"]


def expected_json(**fields) -> bytes:
    """The body Scrapyd sends: fields in order (then status, node_name), json.dumps style, newline."""
    return json.dumps(fields).encode() + b"\n"
