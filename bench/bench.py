#!/usr/bin/env python3
"""Side-by-side benchmark of Scrapyd 1.6.0 and scrapyd-rs.

Run it through `bash bench/run.sh`, which prepares the venv (Scrapyd 1.6.0
from PyPI, Scrapy, scrapyd-client), the load generator and both release
builds, then calls this script with their paths.

Both daemons run on this machine, one after the other or side by side, each
in its own folder under --work and on its own loopback port, with the same
scrapyd.conf, the same eggs (built from tests/testproject with
`scrapyd-deploy --build-egg`) and the same Python (this venv's) for crawls.
Every figure is the median of repeated trials after a warm-up; the trials of
the two daemons are interleaved so that background load hits both alike.
Nothing here is a pass/fail test: the table says which targets of the issue
were met on this run, on this machine.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import (
    MB,
    cpu_model,
    free_port,
    kill_processes_in,
    log,
    median,
    print_report,
    rss_kib,
    run_in_threads,
    stop_process,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TEST_PROJECT = REPO / "tests" / "testproject"
VENV_BIN = Path(sys.executable).parent

# The phases, in the order they run; `--only` picks some.
PHASES = ["startup", "api", "schedule", "memory", "latency", "listjobs", "pending", "slowloris", "bigbody", "slowreader"]

SD = "scrapyd"  # Scrapyd 1.6.0
RS = "scrapyd-rs"
KINDS = (SD, RS)
# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive connection to a daemon; reconnects when needed."""

    def __init__(self, port: int, timeout: float = 600):
        self.port = port
        self.timeout = timeout
        self.connection = None

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        """Answers (status, body bytes, seconds from sending to the last byte)."""
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            headers = {}
            if content_type:
                headers["Content-Type"] = content_type
            try:
                start = time.perf_counter()
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                elapsed = time.perf_counter() - start
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, data, elapsed
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt == 2:
                    raise

    def get_json(self, path: str):
        status, data, elapsed = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {data[:300]!r}")
        return json.loads(data), elapsed, len(data)

    def post_form(self, path: str, form):
        from urllib.parse import urlencode

        status, data, elapsed = self.request(
            "POST", path, urlencode(form).encode(), "application/x-www-form-urlencoded"
        )
        if status != 200:
            raise RuntimeError(f"POST {path}: HTTP {status}: {data[:300]!r}")
        return json.loads(data), elapsed

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def first_200(port: int, process: subprocess.Popen, started: float, deadline: float = 120) -> float:
    """Polls GET /daemonstatus.json every millisecond until an HTTP 200;
    answers the seconds since `started`."""
    request = b"GET /daemonstatus.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                head = b""
                while b"\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                if head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"):
                    return time.perf_counter() - started
        except (ConnectionRefusedError, ConnectionResetError, socket.timeout, OSError):
            pass
        if time.perf_counter() - started > deadline:
            raise RuntimeError(f"no answer on port {port} within {deadline} s")
        time.sleep(0.001)


# --------------------------------------------------------------------------
# Local web servers the crawls talk to
# --------------------------------------------------------------------------


class _SiteHandler(BaseHTTPRequestHandler):
    body = b"<html><head><title>bench</title></head><body><h1>bench</h1></body></html>"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


class Site:
    """A one-page site without links: a `pages` crawl of it fetches one page
    and ends, so a crawl is as short as Scrapy allows."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _SiteHandler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Tarpit:
    """Accepts connections and never answers: a `slow` crawl pointed here
    holds its process slot, idle, until it is killed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.held = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self):
        self.closed = True
        self.sock.close()
        for connection in self.held:
            connection.close()


# --------------------------------------------------------------------------
# Daemons
# --------------------------------------------------------------------------

CONFIG = """\
# Written by bench/bench.py: the same file for Scrapyd 1.6.0 and scrapyd-rs.
[scrapyd]
bind_address     = 127.0.0.1
http_port        = {port}
max_proc         = {max_proc}
max_proc_per_cpu = 4
poll_interval    = 5.0
eggs_dir         = eggs
logs_dir         = logs
items_dir        =
jobs_dir         =
dbs_dir          = dbs
jobs_to_keep     = 5
finished_to_keep = 100
node_name        = bench
# scrapyd-rs: the interpreter of crawls. Scrapyd runs them with its own
# interpreter (sys.executable), which is this same venv's python.
python           = {python}
{extra}
"""


class Daemon:
    """One Scrapyd or scrapyd-rs in its own folder and on its own port."""

    def __init__(self, bench: "Bench", kind: str, name: str, extra_config: str = ""):
        self.bench = bench
        self.kind = kind
        self.root = bench.work / name / kind
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.port = free_port()
        self.config = CONFIG.format(
            port=self.port, max_proc=bench.args.max_proc, python=sys.executable, extra=extra_config
        )
        (self.root / "scrapyd.conf").write_text(self.config)
        self.process: subprocess.Popen | None = None
        self.client = Client(self.port)

    def command(self) -> list[str]:
        if self.kind == SD:
            # The `scrapyd` script runs twistd inside this Python process
            # (no fork): its pid is the daemon's. It reads ./scrapyd.conf.
            return [str(VENV_BIN / "scrapyd")]
        return [str(self.bench.args.scrapyd_rs), "--config", str(self.root / "scrapyd.conf")]

    def environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SCRAPYD_", "SCRAPY_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONDONTWRITEBYTECODE"] = "0"
        return env

    def start(self) -> float:
        """Starts the daemon; answers the seconds from exec to the first
        HTTP 200 of daemonstatus.json."""
        assert self.process is None
        output = open(self.root / "daemon.log", "ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self.command(), cwd=self.root, stdout=output, stderr=subprocess.STDOUT, env=self.environment()
        )
        output.close()
        try:
            return first_200(self.port, self.process, started)
        except RuntimeError as error:
            raise RuntimeError(f"{self.kind}: {error}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "daemon.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss(self) -> dict[str, int]:
        return rss_kib(self.pid)

    def stop(self) -> None:
        """Stops the daemon (TERM, then KILL) and kills every crawl it left:
        the processes whose working folder is inside this daemon's folder
        (Scrapyd's crawls run in its folder, scrapyd-rs's in the unpacked
        egg below it)."""
        self.client.close()
        if self.process is not None:
            stop_process(self.process, 20)
            self.process = None
        kill_processes_in(self.root)

    # --- API helpers ---------------------------------------------------------

    def add_version(self, project: str, version: str, egg: bytes) -> tuple[dict, float]:
        body, content_type = multipart({"project": project, "version": version}, {"egg": ("project.egg", egg)})
        status, data, elapsed = self.client.request("POST", "/addversion.json", body, content_type)
        answer = json.loads(data) if status == 200 else {"status": f"HTTP {status}"}
        if answer.get("status") != "ok":
            raise RuntimeError(f"{self.kind}: addversion failed: {data[:2000]!r}")
        return answer, elapsed

    def schedule(self, *pairs: tuple[str, str], **form: str) -> str:
        """Schedules a crawl; `pairs` are extra (name, value) fields, for a
        repeated `setting`."""
        answer, _ = self.client.post_form("/schedule.json", list(form.items()) + list(pairs))
        if answer.get("status") != "ok":
            raise RuntimeError(f"{self.kind}: schedule failed: {answer}")
        return answer["jobid"]

    def status_counts(self) -> dict:
        answer, _, _ = self.client.get_json("/daemonstatus.json")
        return answer

    def wait_for(self, predicate, what: str, timeout: float = 120, interval: float = 0.1) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.status_counts()
            if predicate(counts):
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: timed out waiting for {what}; last {counts}\n{self.log_tail()}")
            time.sleep(interval)


# --------------------------------------------------------------------------
# Load generators
# --------------------------------------------------------------------------


def parse_duration_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


class LoadGenerator:
    def __init__(self, tool: str, threads: int, connections: int):
        self.tool = tool
        self.threads = threads
        self.connections = connections
        if shutil.which(tool) is None:
            raise SystemExit(f"load generator {tool!r} not found on PATH")
        version = subprocess.run([tool, "--version"], capture_output=True, text=True)
        self.version = (version.stdout + version.stderr).strip().splitlines()[0] if version.returncode in (0, 1) else tool

    def run(
        self,
        url: str,
        duration: float,
        post_body: str | None = None,
        limit: int = 0,
        stop_when=None,
        connections: int | None = None,
    ) -> dict:
        """Loads `url` for `duration` seconds with GET, or POST of a form
        body, over `connections` connections (default: --connections).
        With `limit`, stops after about that many answers; with
        `stop_when`, a function polled every 0.2 s, stops when it says so."""
        connections = connections or self.connections
        if self.tool == "wrk":
            return self._wrk(url, duration, post_body, limit, stop_when, connections)
        return self._oha(url, duration, post_body, limit, connections)

    def _wrk(self, url, duration, post_body, limit, stop_when, connections):
        # wrk needs at least one connection per thread.
        threads = min(self.threads, connections)
        command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
        env = dict(os.environ)
        if post_body is not None:
            command += ["-s", str(BENCH / "schedule.lua")]
            env["BENCH_BODY"] = post_body
            env["BENCH_LIMIT_PER_THREAD"] = str(math.ceil(limit / threads) if limit else 0)
        command.append(url)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        if stop_when is not None:
            while process.poll() is None:
                if stop_when():
                    process.send_signal(signal.SIGINT)  # wrk prints its summary and exits
                    break
                time.sleep(0.2)
        output, _ = process.communicate()
        result = {"tool_output": output}
        match = re.search(r"Requests/sec:\s+([\d.]+)", output)
        if not match:
            raise RuntimeError(f"cannot read wrk's output:\n{output}")
        result["rps"] = float(match.group(1))
        match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
        result["requests"] = int(match.group(1))
        match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        result["non_2xx"] = int(match.group(1)) if match else 0
        match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
        result["socket_errors"] = sum(map(int, match.groups())) if match else 0
        match = re.search(r"^\s+50%\s+(\S+)", output, re.M)
        result["p50_ms"] = parse_duration_ms(match.group(1)) if match else None
        match = re.search(r"^\s+99%\s+(\S+)", output, re.M)
        result["p99_ms"] = parse_duration_ms(match.group(1)) if match else None
        match = re.search(r"BENCH ok=(\d+) bad=(\d+)", output)
        if match:
            result["ok"], result["bad"] = int(match.group(1)), int(match.group(2))
        return result

    def _oha(self, url, duration, post_body, limit, connections):
        command = ["oha", "--no-tui", "-c", str(connections)]
        command += ["-n", str(limit)] if limit else ["-z", f"{max(1, round(duration))}s"]
        if post_body is not None:
            command += ["-m", "POST", "-d", post_body, "-T", "application/x-www-form-urlencoded"]
        command.append(url)
        output = None
        for json_flag in (["--output-format", "json"], ["-j"]):
            done = subprocess.run(command[:1] + json_flag + command[1:], capture_output=True, text=True)
            if done.returncode == 0:
                output = done.stdout
                break
        if output is None:
            raise RuntimeError(f"oha failed: {done.stderr}")
        report = json.loads(output)
        summary = report["summary"]
        codes = report.get("statusCodeDistribution", {})
        percentiles = report.get("latencyPercentiles", {})
        total = sum(int(n) for n in codes.values())
        return {
            "tool_output": output[-4000:],
            "rps": float(summary["requestsPerSec"]),
            "requests": total,
            "non_2xx": sum(int(n) for code, n in codes.items() if not str(code).startswith("2")),
            "socket_errors": sum(int(n) for n in report.get("errorDistribution", {}).values()),
            "p50_ms": percentiles.get("p50", 0) * 1000 if percentiles.get("p50") is not None else None,
            "p99_ms": percentiles.get("p99", 0) * 1000 if percentiles.get("p99") is not None else None,
        }


# --------------------------------------------------------------------------
# Eggs
# --------------------------------------------------------------------------


def build_egg(work: Path, name: str, blob_bytes: int = 0) -> Path:
    """Builds an egg of a copy of tests/testproject with scrapyd-deploy;
    with `blob_bytes`, adds an incompressible data file of that size to the
    package (and to the egg, through package_data)."""
    source = work / "eggs-src" / name
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(TEST_PROJECT, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    if blob_bytes:
        (source / "testproject" / "bench_blob.bin").write_bytes(os.urandom(blob_bytes))
        setup = source / "setup.py"
        text = setup.read_text()
        patched = text.replace(
            "packages=find_packages(),",
            'packages=find_packages(), package_data={"testproject": ["bench_blob.bin"]},',
        )
        if patched == text:
            raise RuntimeError("cannot add package_data to tests/testproject/setup.py")
        setup.write_text(patched)
    egg = work / "eggs-src" / f"{name}.egg"
    subprocess.run(
        [str(VENV_BIN / "scrapyd-deploy"), f"--build-egg={egg}"],
        cwd=source,
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    if blob_bytes and egg.stat().st_size < blob_bytes:
        raise RuntimeError(f"{egg} is smaller than its data file: package_data was not packed")
    return egg


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def fmt(value, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "ms":
        if abs(value) >= 100:
            return f"{value:.0f} ms"
        if abs(value) >= 10:
            return f"{value:.1f} ms"
        return f"{value:.2f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "µs":
        return f"{value:.3g} µs"
    return f"{value} {unit}"


class Figures:
    def __init__(self):
        self.rows: list[dict] = []

    def add(
        self,
        key: str,
        label: str,
        unit: str,
        scrapyd,
        rs,
        target: str,
        met,
        better: str = "lower",
        ratio=None,
        ratio_text: str | None = None,
        note: str = "",
        trials: dict | None = None,
        scrapyd_text: str | None = None,
        rs_text: str | None = None,
    ):
        if ratio is None and scrapyd not in (None, 0) and rs is not None:
            ratio = rs / scrapyd
        if ratio_text is None:
            ratio_text = ratio_words(ratio, better)
        row = {
            "key": key,
            "figure": label,
            "unit": unit,
            "scrapyd": scrapyd,
            "scrapyd_rs": rs,
            "ratio_rs_over_scrapyd": ratio,
            "ratio_text": ratio_text,
            "target": target,
            "met": met,
            "note": note,
            "trials": trials or {},
            "scrapyd_text": scrapyd_text if scrapyd_text is not None else fmt(scrapyd, unit),
            "rs_text": rs_text if rs_text is not None else fmt(rs, unit),
        }
        self.rows.append(row)
        log(f"{label}: Scrapyd {row['scrapyd_text']}, scrapyd-rs {row['rs_text']}, {ratio_text}, met: {met}")
        return row

    def markdown(self) -> str:
        lines = [
            "| figure | Scrapyd 1.6 | scrapyd-rs | ratio | target | met? |",
            "|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            met = {True: "yes", False: "**no**", None: "–"}[row["met"]]
            lines.append(
                f"| {row['figure']} | {row['scrapyd_text']} | {row['rs_text']} | {row['ratio_text']} "
                f"| {row['target']} | {met} |"
            )
        return "\n".join(lines)


def ratio_words(ratio, better: str) -> str:
    """rs/Scrapyd, and in words how many times better or worse."""
    if ratio is None:
        return "–"
    if ratio <= 0:
        return f"{ratio:.3g}"
    text = f"{ratio:.3g}" if ratio >= 0.01 else f"1/{1 / ratio:,.0f}"
    if better == "lower":
        factor = 1 / ratio
        words = f"{factor:,.1f}× less" if factor >= 1 else f"{1 / factor:,.2f}× more"
    else:
        words = f"{ratio:,.1f}× more" if ratio >= 1 else f"{1 / ratio:,.2f}× less"
    return f"{text} ({words})"


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


def parse_time(text: str) -> datetime.datetime:
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(text, pattern)
        except ValueError:
            pass
    raise ValueError(f"unknown time format: {text!r}")


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.figures = Figures()
        self.notes: list[str] = []
        self.details: dict = {}
        self.loadgen = LoadGenerator(args.loadgen, args.threads, args.connections)
        self.daemons: list[Daemon] = []

    def daemon(self, kind: str, name: str, extra_config: str = "") -> Daemon:
        daemon = Daemon(self, kind, name, extra_config)
        self.daemons.append(daemon)
        return daemon

    def pair(self, name: str, extra_config: str = "") -> dict[str, Daemon]:
        return {kind: self.daemon(kind, name, extra_config) for kind in KINDS}

    def stop_all(self):
        for daemon in self.daemons:
            try:
                daemon.stop()
            except Exception as error:  # noqa: BLE001 - best effort at exit
                log(f"stopping {daemon.kind}: {error}")

    def trial_order(self, trial: int) -> tuple[str, ...]:
        """Alternates which daemon goes first, so drifts in background load
        don't always favour the same one."""
        return KINDS if trial % 2 == 0 else KINDS[::-1]

    # ---------------------------------------------------------------------

    def run(self):
        args = self.args
        started = time.time()
        self.details["load_before"] = os.getloadavg()
        log("building the eggs with scrapyd-deploy --build-egg")
        self.egg = build_egg(self.work, "testproject").read_bytes()
        self.big_egg = build_egg(self.work, "testproject-20mb", blob_bytes=20 * MB).read_bytes()
        self.details["egg_bytes"] = len(self.egg)
        self.details["big_egg_bytes"] = len(self.big_egg)
        phases = [(name, getattr(self, f"phase_{name}")) for name in PHASES]
        try:
            for name, phase in phases:
                if args.only and name not in args.only:
                    continue
                log(f"== phase {name}")
                phase()
        finally:
            self.stop_all()
        self.details["load_after"] = os.getloadavg()
        self.details["seconds"] = round(time.time() - started, 1)

    # --- start-up time and idle memory -----------------------------------

    def phase_startup(self):
        args = self.args
        daemons = self.pair("startup")
        startup = {kind: [] for kind in KINDS}
        rss = {kind: [] for kind in KINDS}
        for trial in range(args.trials + 1):  # trial 0 warms the caches
            for kind in self.trial_order(trial):
                daemon = daemons[kind]
                seconds = daemon.start()
                time.sleep(0.5)
                for _ in range(3):
                    daemon.status_counts()
                daemon.client.close()
                time.sleep(1.0)
                memory = daemon.rss()["VmRSS"] / 1024
                daemon.stop()
                if trial > 0:
                    startup[kind].append(seconds * 1000)
                    rss[kind].append(memory)
        sd, rs = median(rss[SD]), median(rss[RS])
        self.figures.add(
            "idle_rss",
            "idle resident memory after start (VmRSS)",
            "MiB",
            sd,
            rs,
            "≤ 1/8",
            rs / sd <= 1 / 8,
            trials=rss,
            note="Scrapyd: the python process running twistd; 1.5 s after the first answer, no project.",
        )
        sd, rs = median(startup[SD]), median(startup[RS])
        self.figures.add(
            "startup_ms",
            "start-up: exec → first HTTP 200",
            "ms",
            sd,
            rs,
            "≤ 20 ms",
            rs <= 20,
            trials=startup,
            note="Polling daemonstatus.json every 1 ms; restart in an existing folder (first start discarded).",
        )

    # --- API figures on one pair of daemons ------------------------------

    def phase_api(self):
        daemons = self.pair("api")
        for daemon in daemons.values():
            daemon.start()
            daemon.add_version("bench", "1", self.egg)
        self.listspiders(daemons)
        self.addversion(daemons)
        self.daemonstatus_rps(daemons)
        for daemon in daemons.values():
            daemon.stop()

    def listspiders(self, daemons):
        args = self.args
        first = {kind: [] for kind in KINDS}
        later = {kind: [] for kind in KINDS}
        for trial in range(args.trials + 1):
            for kind in self.trial_order(trial):
                daemon = daemons[kind]
                daemon.stop()
                daemon.start()
                answer, seconds, _ = daemon.client.get_json("/listspiders.json?project=bench")
                if answer.get("spiders") != ["pages", "slow", "stubborn"]:
                    raise RuntimeError(f"{kind}: unexpected listspiders answer {answer}")
                times = [daemon.client.get_json("/listspiders.json?project=bench")[1] for _ in range(30)]
                if trial > 0:
                    first[kind].append(seconds * 1000)
                    later[kind].append(median(times[5:]) * 1000)
        sd, rs = median(first[SD]), median(first[RS])
        self.figures.add(
            "listspiders_first_ms",
            "listspiders.json, first call after a restart",
            "ms",
            sd,
            rs,
            "≤ 2 ms",
            rs <= 2,
            trials=first,
            note="Scrapyd runs `python -m scrapyd.runner list` on a cache miss; scrapyd-rs reads SQLite.",
        )
        sd, rs = median(later[SD]), median(later[RS])
        self.figures.add(
            "listspiders_later_ms",
            "listspiders.json, later calls",
            "ms",
            sd,
            rs,
            "≤ 2 ms",
            rs <= 2,
            trials=later,
        )

    def addversion(self, daemons):
        args = self.args
        times = {kind: [] for kind in KINDS}
        for trial in range(args.upload_trials + 1):
            for kind in self.trial_order(trial):
                answer, seconds = daemons[kind].add_version("big", f"v{trial}", self.big_egg)
                if answer.get("spiders") != 3:
                    raise RuntimeError(f"{kind}: addversion of the big egg answered {answer}")
                if trial > 0:
                    times[kind].append(seconds * 1000)
        sd, rs = median(times[SD]), median(times[RS])
        self.figures.add(
            "addversion_20mb_ms",
            f"addversion.json of a {len(self.big_egg) / MB:.1f} MiB egg",
            "ms",
            sd,
            rs,
            "no slower than Scrapyd",
            rs <= sd,
            trials=times,
            note="Multipart upload on loopback; both list the spiders with the venv's Python before answering.",
        )

    def daemonstatus_rps(self, daemons):
        args = self.args
        hyper_port = free_port()
        hyper_log = open(self.work / "hyper-baseline.log", "wb")
        hyper = subprocess.Popen(
            [str(args.hyper), f"127.0.0.1:{hyper_port}"], stdout=hyper_log, stderr=subprocess.STDOUT
        )
        hyper_log.close()
        try:
            first_200_any(hyper_port, hyper)
            urls = {
                SD: f"http://127.0.0.1:{daemons[SD].port}/daemonstatus.json",
                RS: f"http://127.0.0.1:{daemons[RS].port}/daemonstatus.json",
                "hyper": f"http://127.0.0.1:{hyper_port}/",
            }
            for url in urls.values():  # warm-up
                self.loadgen.run(url, 1)
            rps = {name: [] for name in urls}
            runs = {name: [] for name in urls}
            for trial in range(args.rps_trials):
                names = list(urls)
                if trial % 2:
                    names.reverse()
                for name in names:
                    result = self.loadgen.run(urls[name], args.duration)
                    if result["non_2xx"] or result["socket_errors"]:
                        self.notes.append(
                            f"daemonstatus load on {name}: {result['non_2xx']} non-2xx, "
                            f"{result['socket_errors']} socket errors"
                        )
                    rps[name].append(result["rps"])
                    runs[name].append({k: v for k, v in result.items() if k != "tool_output"})
        finally:
            hyper.terminate()
            hyper.wait()
        self.details["daemonstatus_runs"] = runs
        sd, rs, bare = median(rps[SD]), median(rps[RS]), median(rps["hyper"])
        conditions = f"{self.loadgen.tool}, {args.connections} connections, {args.threads} threads, {args.duration:g} s"
        self.figures.add(
            "daemonstatus_rps",
            f"daemonstatus.json throughput ({conditions})",
            "req/s",
            sd,
            rs,
            "≥ 10×",
            rs / sd >= 10,
            better="higher",
            trials=rps,
        )
        self.figures.add(
            "daemonstatus_vs_hyper",
            "daemonstatus.json vs a bare hyper server (fixed body)",
            "req/s",
            None,
            rs,
            "≥ 80% of bare hyper",
            rs / bare >= 0.8,
            better="higher",
            ratio=rs / bare,
            ratio_text=f"{rs / bare:.0%} of bare hyper",
            scrapyd_text=f"bare hyper: {fmt(bare, 'req/s')}",
            trials={"hyper": rps["hyper"], RS: rps[RS]},
            note="The load generator shares the 2 cores with the server under test.",
        )

    def occupy_slots(self, daemons, tarpit: Tarpit):
        """Fills every process slot with an idle crawl (a `slow` spider
        waiting on a server that never answers), so that the jobs scheduled
        next stay pending and no crawl competes for the CPU."""
        for daemon in daemons.values():
            for _ in range(self.args.max_proc):
                daemon.schedule(
                    ("setting", "CLOSESPIDER_TIMEOUT=0"),
                    ("setting", "DOWNLOAD_TIMEOUT=86400"),
                    project="bench",
                    spider="slow",
                    base_url=tarpit.url,
                )
        for daemon in daemons.values():
            daemon.wait_for(
                lambda c: c["running"] == self.args.max_proc and c["pending"] == 0,
                "every slot to hold an idle crawl",
                timeout=60,
            )

    # --- schedule.json by concurrency, next to the disk's commit latency ---

    def disk_probe(self, count: int = 100) -> dict:
        """How expensive a durable commit is on the work folder's disk right
        now (it varies a lot on a shared VM, and schedule.json throughput
        with it). Medians of `count` tries of:

        - `fsync_ms`: a 4 KiB write + fsync inside a file that already has
          its blocks (as a running daemon's WAL does: it is rewritten in
          place after each checkpoint, not grown);
        - `wal_commit_ms`: SQLite's own commit of a one-row insert, WAL
          mode, synchronous=FULL, the WAL already grown and restarted (a
          running scrapyd-rs's steady state; one WAL flush a commit);
        - `rollback_commit_ms`: the same with the default rollback journal
          (Scrapyd's queue: a journal file created, flushed and deleted, the
          database flushed, every commit)."""
        result = {}
        path = self.work / "disk-probe"
        times = []
        with open(path, "wb") as probe:
            probe.write(bytes(64 * 4096))
            probe.flush()
            os.fsync(probe.fileno())
            for attempt in range(count):
                started = time.perf_counter()
                probe.seek((attempt % 64) * 4096)
                probe.write(os.urandom(4096))
                probe.flush()
                os.fsync(probe.fileno())
                times.append((time.perf_counter() - started) * 1000)
        path.unlink()
        result["fsync_ms"] = median(times)
        for key, mode, tries in (("wal_commit_ms", "WAL", count), ("rollback_commit_ms", "DELETE", count // 2)):
            database = self.work / "disk-probe.sqlite"
            connection = sqlite3.connect(database, isolation_level=None)
            connection.execute(f"PRAGMA journal_mode = {mode}")
            connection.execute("CREATE TABLE IF NOT EXISTS probe (value BLOB)")
            if mode == "WAL":
                # Grow the WAL past what the probe writes, then restart it:
                # the timed commits rewrite it in place.
                connection.execute("PRAGMA synchronous = OFF")
                for _ in range(2 * tries):
                    connection.execute("INSERT INTO probe VALUES (?)", (os.urandom(100),))
                connection.execute("PRAGMA wal_checkpoint(RESTART)")
            connection.execute("PRAGMA synchronous = FULL")
            times = []
            for attempt in range(tries + 5):  # 5 warm-up commits
                started = time.perf_counter()
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("INSERT INTO probe VALUES (?)", (os.urandom(100),))
                connection.execute("COMMIT")
                if attempt >= 5:
                    times.append((time.perf_counter() - started) * 1000)
            connection.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            result[key] = median(times)
        return result

    def phase_schedule(self):
        """schedule.json at 1, 8 and 32 concurrent clients on both daemons,
        every slot held by an idle crawl so the jobs stay pending; the disk
        probed before every run. scrapyd-rs's figure is also given as a
        share of what its clients could reach if every answer waited for
        exactly one commit: clients ÷ (commit latency + request cost)."""
        args = self.args
        daemons = self.pair("schedule")
        tarpit = Tarpit()
        body = self.SCHEDULE_BODY
        urls = {kind: f"http://127.0.0.1:{daemons[kind].port}/schedule.json" for kind in KINDS}
        status_url = f"http://127.0.0.1:{daemons[RS].port}/daemonstatus.json"
        runs = {}
        try:
            for daemon in daemons.values():
                daemon.start()
                daemon.add_version("bench", "1", self.egg)
            self.occupy_slots(daemons, tarpit)
            for kind in KINDS:  # warm-up
                self.loadgen.run(urls[kind], 1, post_body=body)
            for clients in args.schedule_clients:
                runs[clients] = {kind: [] for kind in KINDS}
                for trial in range(args.rps_trials):
                    for kind in self.trial_order(trial):
                        disk_before = self.disk_probe()
                        result = self.loadgen.run(urls[kind], args.duration, post_body=body, connections=clients)
                        if result.get("bad") or result["non_2xx"] or result["socket_errors"]:
                            self.notes.append(
                                f"schedule load on {kind} ({clients} clients): {result.get('bad', 0)} answers "
                                f"not ok, {result['non_2xx']} non-2xx, {result['socket_errors']} socket errors"
                            )
                        run = {k: v for k, v in result.items() if k != "tool_output"}
                        if kind == RS:
                            # The request's own cost at this concurrency: the
                            # mean round trip of a request that waits for
                            # nothing (Little's law: clients ÷ throughput).
                            status = self.loadgen.run(status_url, 2, connections=clients)
                            run["request_cost_ms"] = clients / status["rps"] * 1000
                        # The disk drifts: the run gets the mean of the probes
                        # taken just before and just after it.
                        disk_after = self.disk_probe()
                        disk = {key: (disk_before[key] + disk_after[key]) / 2 for key in disk_before}
                        run.update(disk, disk_before=disk_before, disk_after=disk_after)
                        if kind == RS:
                            limit = clients / ((disk["wal_commit_ms"] + run["request_cost_ms"]) / 1000)
                            run.update(limit_rps=limit, share_of_limit=result["rps"] / limit)
                        runs[clients][kind].append(run)
                        log(
                            f"{kind}, {clients} clients: {result['rps']:,.0f} req/s; WAL commit "
                            f"{disk['wal_commit_ms']:.2f} ms, fsync {disk['fsync_ms']:.2f} ms"
                            + (f"; {run['share_of_limit']:.0%} of {run['limit_rps']:,.0f}" if kind == RS else "")
                        )
        finally:
            tarpit.close()
            for daemon in daemons.values():
                daemon.stop()
        self.details["schedule_runs"] = runs
        every = [run for by_kind in runs.values() for kind_runs in by_kind.values() for run in kind_runs]
        disk = {key: median([run[key] for run in every]) for key in ("fsync_ms", "wal_commit_ms", "rollback_commit_ms")}
        self.figures.add(
            "commit_latency",
            "disk: one durable SQLite commit in the work folder, synchronous=FULL (median)",
            "ms",
            disk["rollback_commit_ms"],
            disk["wal_commit_ms"],
            "(measured)",
            None,
            scrapyd_text=f"rollback journal {fmt(disk['rollback_commit_ms'], 'ms')}",
            rs_text=f"WAL {fmt(disk['wal_commit_ms'], 'ms')} (4 KiB rewrite + fsync {fmt(disk['fsync_ms'], 'ms')})",
            note="Probed just before and just after every schedule.json run (a one-row insert and its commit "
            f"from Python's sqlite3, 100 commits a probe, 50 with the rollback journal; the plain-file fsync "
            f"100 times), {2 * len(every)} probes in all; each run is given the mean of its two. Scrapyd's queue is a "
            "rollback-journal database, so each of its schedules pays the left figure; a scrapyd-rs group "
            "commit pays the WAL figure once for all the jobs in it.",
        )
        def percentiles(kind_runs):
            return "/".join(fmt(median([run[key] for run in kind_runs]), "ms") for key in ("p50_ms", "p99_ms"))

        for clients in args.schedule_clients:
            sd = median([run["rps"] for run in runs[clients][SD]])
            rs_runs = runs[clients][RS]
            rs = median([run["rps"] for run in rs_runs])
            share = median([run["share_of_limit"] for run in rs_runs])
            limit = median([run["limit_rps"] for run in rs_runs])
            cost = median([run["request_cost_ms"] for run in rs_runs])
            commit = median([run["wal_commit_ms"] for run in rs_runs])
            target = {1: "(no target)", 8: "≥ 20×", 32: "≥ 20×"}.get(clients, "(no target)")
            met = None if target == "(no target)" else rs / sd >= 20
            self.figures.add(
                f"schedule_rps_{clients}",
                f"schedule.json, durable answers, {clients} concurrent client{'s' if clients > 1 else ''}",
                "req/s",
                sd,
                rs,
                target,
                met,
                better="higher",
                trials={kind: [run["rps"] for run in runs[clients][kind]] for kind in KINDS},
                rs_text=f"{fmt(rs, 'req/s')} ({share:.0%} of the limit, {limit:,.0f})",
                note=f"limit = clients ÷ (WAL commit {commit:.3f} ms + request cost {cost:.3f} ms), per run; "
                "request cost = the mean daemonstatus.json round trip at the same concurrency (clients ÷ its "
                "req/s over 2 s, right after the run). p50/p99 latency, scrapyd-rs: "
                f"{percentiles(rs_runs)}; Scrapyd: {percentiles(runs[clients][SD])}.",
            )

    SCHEDULE_BODY = "project=bench&spider=pages&base_url=http%3A%2F%2F127.0.0.1%3A9%2F"

    def phase_memory(self):
        """Fresh daemons, every slot held by an idle crawl, then jobs are
        scheduled (wrk + Lua POST) up to 10%, 50% and 100% of the target,
        RSS read at each mark. Bounded: the second half adds next to
        nothing."""
        args = self.args
        daemons = self.pair("memory")
        targets = {SD: args.scrapyd_bulk_jobs, RS: args.bulk_jobs}
        results = {kind: [] for kind in KINDS}
        tarpit = Tarpit()
        try:
            for daemon in daemons.values():
                daemon.start()
                daemon.add_version("bench", "1", self.egg)
            self.occupy_slots(daemons, tarpit)
            for kind in KINDS:
                daemon = daemons[kind]
                url = f"http://127.0.0.1:{daemon.port}/schedule.json"
                daemon.client.close()
                time.sleep(1)
                results[kind].append(self.memory_mark(daemon))
                for share in (0.1, 0.5, 1.0):
                    goal = int(targets[kind] * share)
                    pending = daemon.status_counts()["pending"]
                    if pending < goal:
                        started = time.monotonic()
                        self.schedule_until(daemon, url, goal)
                        log(f"{kind}: {goal - pending} jobs scheduled in {time.monotonic() - started:.1f} s")
                    daemon.client.close()
                    time.sleep(2)
                    results[kind].append(self.memory_mark(daemon))
            for daemon in daemons.values():
                daemon.stop()
        finally:
            tarpit.close()
        self.details["bulk_memory"] = results
        sd, rs = results[SD][-1], results[RS][-1]
        half = results[RS][-2]
        growth = rs["rss_mib"] - half["rss_mib"]
        bounded = growth <= max(5.0, 0.1 * half["rss_mib"])
        marks = ", ".join(f"{m['pending']:,}: {m['rss_mib']:.1f}" for m in results[RS])
        sd_marks = ", ".join(f"{m['pending']:,}: {m['rss_mib']:.1f}" for m in results[SD])
        self.figures.add(
            "rss_after_bulk",
            f"memory (VmRSS) after {args.bulk_jobs:,} jobs scheduled",
            "MiB",
            sd["rss_mib"],
            rs["rss_mib"],
            "bounded; say the figure",
            bounded,
            trials=results,
            scrapyd_text=f"{sd['rss_mib']:.1f} MiB at {sd['pending']:,} jobs",
            rs_text=f"{rs['rss_mib']:.1f} MiB at {rs['pending']:,} jobs",
            note=f"MiB by pending jobs, scrapyd-rs: {marks} (peak {rs['hwm_mib']:.1f}); Scrapyd: {sd_marks} "
            f"(peak {sd['hwm_mib']:.1f}). 'met' = the second half added ≤ max(5 MiB, 10%). "
            "Scrapyd is taken to fewer jobs (--scrapyd-bulk-jobs) because it schedules slowly.",
        )

    def memory_mark(self, daemon: Daemon) -> dict:
        memory = daemon.rss()
        return {
            "pending": daemon.status_counts()["pending"],
            "rss_mib": memory["VmRSS"] / 1024,
            "hwm_mib": memory["VmHWM"] / 1024,
        }

    def schedule_until(self, daemon: Daemon, url: str, goal: int) -> None:
        """Runs the load generator until `goal` jobs are pending."""
        pending = daemon.status_counts()["pending"]
        watcher = Client(daemon.port)
        last = {"pending": pending, "changed": time.monotonic()}

        def reached():
            now_pending = watcher.get_json("/daemonstatus.json")[0]["pending"]
            if now_pending != last["pending"]:
                last["pending"], last["changed"] = now_pending, time.monotonic()
            return now_pending >= goal or time.monotonic() - last["changed"] > 5

        try:
            self.loadgen.run(url, 3600, post_body=self.SCHEDULE_BODY, limit=goal - pending, stop_when=reached)
        finally:
            watcher.close()

    # --- schedule answered → crawl started -----------------------------

    def phase_latency(self):
        args = self.args
        daemons = self.pair("latency")
        site = Site()
        try:
            for daemon in daemons.values():
                daemon.start()
                daemon.add_version("bench", "1", self.egg)
            from_answer = {kind: [] for kind in KINDS}
            from_request = {kind: [] for kind in KINDS}
            for trial in range(args.latency_trials + 1):
                for kind in self.trial_order(trial):
                    daemon = daemons[kind]
                    time.sleep(random.uniform(0, 1))  # arrive at a random moment
                    sent = datetime.datetime.now()
                    job = daemon.schedule(project="bench", spider="pages", base_url=site.url)
                    answered = datetime.datetime.now()
                    start_time = self.wait_started(daemon, job)
                    daemon.wait_for(
                        lambda c: c["running"] == 0 and c["pending"] == 0, "the crawl to end", timeout=120
                    )
                    if trial > 0:
                        from_answer[kind].append((start_time - answered).total_seconds() * 1000)
                        from_request[kind].append((start_time - sent).total_seconds() * 1000)
            for daemon in daemons.values():
                daemon.stop()
        finally:
            site.close()
        for label, values, key in (
            ("schedule answered → crawl started (`start_time`)", from_answer, "schedule_to_start_ms"),
            ("schedule sent → crawl started (`start_time`)", from_request, "schedule_sent_to_start_ms"),
        ):
            sd, rs = median(values[SD]), median(values[RS])
            speedup = sd / rs if rs and rs > 0 else math.inf
            self.figures.add(
                key,
                label + ", poll_interval = 5",
                "ms",
                sd,
                rs,
                "≥ 200× (≤ 20 ms)",
                rs <= 20 and speedup >= 200,
                ratio_text=(f"{speedup:,.0f}× faster" if math.isfinite(speedup) else "rs started before the answer"),
                trials=values,
                note="start_time as listjobs.json reports it, minus the client's local clock when the "
                + ("answer arrived" if key == "schedule_to_start_ms" else "request left")
                + ". Both stamp start_time just before spawning; scrapyd-rs claims the job as soon as it is "
                "committed, which can be before the answer reaches the client. Scrapyd's expected value is "
                "about poll_interval/2.",
            )

    def wait_started(self, daemon: Daemon, job: str) -> datetime.datetime:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listing, _, _ = daemon.client.get_json("/listjobs.json?project=bench")
            for entry in listing["running"] + listing["finished"]:
                if entry["id"] == job and entry.get("start_time"):
                    return parse_time(entry["start_time"])
            time.sleep(0.005)
        raise RuntimeError(f"{daemon.kind}: job {job} did not start within 60 s\n{daemon.log_tail()}")

    # --- listjobs with a large store ------------------------------------

    def phase_listjobs(self):
        args = self.args
        sizes = sorted(args.listjobs_sizes)
        # Scrapyd keeps finished jobs in memory by default, capped at
        # finished_to_keep: a store of N jobs exists only with its SQLite
        # job storage, so both daemons get that line (scrapyd-rs ignores it).
        daemons = self.pair("listjobs", "jobstorage = scrapyd.jobstorage.SqliteJobStorage")
        for daemon in daemons.values():
            daemon.start()
            daemon.add_version("bench", "1", self.egg)
            daemon.stop()
        filled = {kind: 0 for kind in KINDS}
        results = {kind: {} for kind in KINDS}
        for size in sizes:
            for kind in KINDS:
                daemon = daemons[kind]
                if kind == SD and size > args.scrapyd_listjobs_max:
                    continue
                log(f"{kind}: filling the store to {size:,} finished jobs")
                fill = fill_scrapyd_store if kind == SD else fill_rs_store
                fill(daemon.root / "dbs", filled[kind], size)
                filled[kind] = size
                startup = daemon.start()
                trials = args.trials if size <= 100_000 or kind == RS else 1
                _, _, _ = daemon.client.get_json("/listjobs.json")  # warm-up
                times, status_times = [], []
                for _ in range(trials):
                    listing, seconds, length = daemon.client.get_json("/listjobs.json")
                    times.append(seconds * 1000)
                    status_times.append(daemon.client.get_json("/daemonstatus.json")[1] * 1000)
                results[kind][size] = {
                    "ms": median(times),
                    "trials_ms": times,
                    "entries": len(listing["finished"]),
                    "bytes": length,
                    "daemonstatus_ms": median(status_times),
                    "rss_mib": daemon.rss()["VmRSS"] / 1024,
                    "startup_ms": startup * 1000,
                }
                daemon.stop()
        self.details["listjobs"] = results
        smallest = results[RS][sizes[0]]["ms"]
        for size in sizes:
            sd = results[SD].get(size)
            rs = results[RS][size]
            growth = rs["ms"] / smallest
            self.figures.add(
                f"listjobs_{size}",
                f"listjobs.json with {size:,} jobs in the store",
                "ms",
                sd["ms"] if sd else None,
                rs["ms"],
                "grows with the page, not the store",
                None if size == sizes[0] else growth <= 2.0,
                trials={k: results[k].get(size) for k in KINDS},
                scrapyd_text=(f"{fmt(sd['ms'], 'ms')} ({sd['entries']:,} entries, {sd['bytes'] / MB:.1f} MiB)"
                              if sd else "not run"),
                rs_text=f"{fmt(rs['ms'], 'ms')} ({rs['entries']:,} entries, {rs['bytes'] / 1024:.0f} KiB)",
                note=f"scrapyd-rs time ×{growth:.2f} of the {sizes[0]:,}-job store; its start-up with this "
                f"store {rs['startup_ms']:.1f} ms, RSS after the calls {rs['rss_mib']:.1f} MiB"
                + (f"; Scrapyd's RSS {sd['rss_mib']:.1f} MiB." if sd else "."),
            )
        for size in sizes:
            sd = results[SD].get(size)
            rs = results[RS][size]
            self.figures.add(
                f"daemonstatus_latency_{size}",
                f"daemonstatus.json, one call, {size:,} jobs in the store",
                "ms",
                sd["daemonstatus_ms"] if sd else None,
                rs["daemonstatus_ms"],
                "(no target)",
                None,
                scrapyd_text=None if sd else "not run",
            )
        self.notes.append(
            "listjobs store sizes: Scrapyd 1.6's default job storage is a list in memory capped at "
            "finished_to_keep (100), so it cannot hold N jobs; both configs name "
            "jobstorage = scrapyd.jobstorage.SqliteJobStorage, and Scrapyd's finished_jobs table is "
            "filled directly. Scrapyd then returns every stored job (it prunes only when a crawl ends), "
            "scrapyd-rs returns the finished_to_keep (100) most recent: the pages differ by design."
        )

    # --- a long queue, listed whole -------------------------------------

    def fill_pending(self, daemons, count: int) -> dict:
        """Brings both daemons to about `count` pending `pages` jobs, every
        slot already held by an idle crawl. scrapyd-rs through schedule.json
        at full speed (wrk, --connections); Scrapyd through one schedule.json
        whose queue row is then copied (it schedules a few hundred durable
        jobs a second). Answers the pending count of each."""
        rs = daemons[RS]
        self.schedule_until(rs, f"http://127.0.0.1:{rs.port}/schedule.json", count)
        sd = daemons[SD]
        sd.schedule(project="bench", spider="pages", base_url="http://127.0.0.1:9/")
        fill_scrapyd_queue(sd.root / "dbs", "bench", count)
        counts = {kind: daemons[kind].status_counts()["pending"] for kind in KINDS}
        log(f"pending jobs: {counts}")
        return counts

    def phase_pending(self):
        """listjobs.json?project=bench with a long queue of pending jobs,
        ten times per daemon: the time per job listed, and what the ten
        listings left in the daemon's memory."""
        args = self.args
        daemons = self.pair("pending")
        tarpit = Tarpit()
        results = {kind: {"times_s": []} for kind in KINDS}
        try:
            for daemon in daemons.values():
                daemon.start()
                daemon.add_version("bench", "1", self.egg)
            self.occupy_slots(daemons, tarpit)
            for kind in KINDS:
                results[kind]["idle_mib"] = daemons[kind].rss()["VmRSS"] / 1024
            pending = self.fill_pending(daemons, args.pending_jobs)
            for kind in KINDS:
                daemon = daemons[kind]
                daemon.client.close()
                time.sleep(1)
                results[kind]["pending"] = pending[kind]
                results[kind]["before_mib"] = daemon.rss()["VmRSS"] / 1024
                results[kind]["peak_reset"] = reset_peak_memory(daemon.pid)
            path = "/listjobs.json?project=bench"
            for kind in KINDS:
                # Checked once, untimed: the answer is whole and lists every job.
                status, _, body = raw_get(daemons[kind].port, path)
                if status != 200:
                    raise RuntimeError(f"{kind}: listjobs.json answered HTTP {status}: {body[:300]!r}")
                results[kind]["bytes"] = len(body)
                listed = len(json.loads(body)["pending"])
                if listed != pending[kind]:
                    raise RuntimeError(f"{kind}: listed {listed} pending jobs of {pending[kind]}")
                del body
            for listing in range(args.listings):
                for kind in self.trial_order(listing):
                    status, seconds = timed_get(daemons[kind].port, path)
                    if status != 200:
                        raise RuntimeError(f"{kind}: listjobs.json answered HTTP {status}")
                    results[kind]["times_s"].append(seconds)
            for kind in KINDS:
                time.sleep(1)
                memory = daemons[kind].rss()
                results[kind]["after_mib"] = memory["VmRSS"] / 1024
                results[kind]["peak_mib"] = memory["VmHWM"] / 1024
        finally:
            tarpit.close()
            for daemon in daemons.values():
                daemon.stop()
        self.details["pending_listing"] = results
        per_job = {kind: median(results[kind]["times_s"]) / results[kind]["pending"] * 1e6 for kind in KINDS}
        sd, rs = per_job[SD], per_job[RS]

        def listing_text(kind):
            r = results[kind]
            return (f"{fmt(per_job[kind], 'µs')} ({fmt(median(r['times_s']) * 1000, 'ms')} a listing of "
                    f"{r['pending']:,}, {r['bytes'] / MB:.1f} MiB)")

        self.figures.add(
            "pending_listing_us_per_job",
            f"listjobs.json?project=… with {args.pending_jobs:,} pending jobs: time per job",
            "µs",
            sd,
            rs,
            "≤ 1 µs, ≥ 10× faster",
            rs <= 1 and sd / rs >= 10,
            trials={kind: results[kind]["times_s"] for kind in KINDS},
            scrapyd_text=listing_text(SD),
            rs_text=listing_text(RS),
            note=f"Median of {args.listings} listings per daemon, interleaved, each over a fresh connection, "
            "from connecting to the last byte, the bytes read into one reused buffer and dropped (one more "
            "listing, untimed, is decoded and its jobs counted). Every slot holds an "
            "idle crawl; scrapyd-rs's queue was filled through schedule.json at full speed, Scrapyd's by one "
            "schedule.json whose queue row was copied with fresh job ids (the rows Scrapyd itself writes).",
        )
        delta = {kind: results[kind]["after_mib"] - results[kind]["before_mib"] for kind in KINDS}

        def memory_text(kind):
            r = results[kind]
            return f"{delta[kind]:+.1f} MiB ({r['before_mib']:.1f} → {r['after_mib']:.1f})"

        self.figures.add(
            "pending_listing_rss",
            f"memory after {args.listings} such listings, minus before (VmRSS)",
            "MiB",
            delta[SD],
            delta[RS],
            "≤ 32 MiB",
            delta[RS] <= 32,
            scrapyd_text=memory_text(SD),
            rs_text=memory_text(RS),
            ratio_text="–",
            note="'before' is the daemon idle with the queue filled, just before the first listing. Peak during "
            f"the listings: scrapyd-rs {results[RS]['peak_mib']:.1f} MiB, Scrapyd {results[SD]['peak_mib']:.1f} MiB; "
            f"idle before the queue was filled: scrapyd-rs {results[RS]['idle_mib']:.1f} MiB, "
            f"Scrapyd {results[SD]['idle_mib']:.1f} MiB.",
        )

    # --- a slowloris crowd ------------------------------------------------

    def phase_slowloris(self):
        """Health checks over fresh connections while a crowd of connections
        trickles header lines (bench/crowd.py, in its own process), each
        opened again at once when the daemon cuts it. max_connections is
        scrapyd-rs's default (1000); Scrapyd has no such limit."""
        args = self.args
        daemons = self.pair("slowloris")
        results = {}
        for kind in KINDS:
            daemon = daemons[kind]
            daemon.start()
            daemon.client.close()
            time.sleep(0.5)
            reset_peak_memory(daemon.pid)
            crowd = subprocess.Popen(
                [sys.executable, str(BENCH / "crowd.py"), "--port", str(daemon.port),
                 "--connections", str(args.slowloris_connections), "--interval", "1"],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                ready = wait_for_line(crowd, "ready", 60)
                time.sleep(1)
                checks = []
                for _ in range(args.health_checks):
                    checks.append(health_check(daemon.port, 10))
                    time.sleep(0.1)
            finally:
                crowd.send_signal(signal.SIGTERM)
                try:
                    output, _ = crowd.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    crowd.kill()
                    output, _ = crowd.communicate()
            lines = [line for line in output.splitlines() if line.startswith("{")]
            memory = daemon.rss()
            results[kind] = {
                "checks": checks,
                **latency_summary(checks),
                "crowd_ready": ready,
                "crowd": json.loads(lines[-1]) if lines else None,
                "peak_mib": memory["VmHWM"] / 1024,
            }
            daemon.stop()
        self.details["slowloris"] = results
        sd, rs = results[SD], results[RS]

        def text(r):
            crowd = r["crowd"] or {}
            return (f"{latency_text(r)} ({crowd.get('opened', 0):,} connections opened, "
                    f"{crowd.get('cut', 0):,} cut)")

        self.figures.add(
            "slowloris_health_worst_ms",
            f"daemonstatus.json during {args.slowloris_connections:,} slowloris connections "
            f"(fresh connection, {args.health_checks} checks)",
            "ms",
            sd["worst_ms"],
            rs["worst_ms"],
            "worst ≤ 100 ms",
            rs["worst_ms"] <= 100 and rs["failed"] == 0,
            scrapyd_text=text(sd),
            rs_text=text(rs),
            note="Each crowd connection sends a request line and a header, then a header line every 0.5–1.5 s, "
            "and is opened again at once when the daemon closes it. The checks start 1 s after every crowd "
            "connection has been opened once, 0.1 s apart, each timed from connecting to the last byte "
            f"(10 s timeout). Peak memory during it: scrapyd-rs {rs['peak_mib']:.1f} MiB, Scrapyd "
            f"{sd['peak_mib']:.1f} MiB." + ("" if sd["crowd_ready"] and rs["crowd_ready"] else
                                           " The crowd did not get every connection opened within 60 s."),
        )

    # --- huge bodies, and clients that never read ---------------------------

    def phase_bigbody(self):
        """Eight concurrent schedule.json requests with a 250 MiB form body
        each, health checks running meanwhile; the daemon's peak memory."""
        args = self.args
        daemons = self.pair("bigbody")
        tarpit = Tarpit()
        size = args.big_body_mib * MB
        prefix = b"project=bench&spider=pages&base_url=http%3A%2F%2F127.0.0.1%3A9%2F&blob="
        body = memoryview(prefix + b"a" * (size - len(prefix)))
        results = {}
        try:
            for daemon in daemons.values():
                daemon.start()
                daemon.add_version("bench", "1", self.egg)
            self.occupy_slots(daemons, tarpit)
            for kind in KINDS:
                daemon = daemons[kind]
                daemon.client.close()
                time.sleep(1)
                before = daemon.rss()["VmRSS"] / 1024
                reset_peak_memory(daemon.pid)
                checks = HealthChecks(daemon.port)
                checks.start()
                started = time.perf_counter()
                clients = [None] * args.big_bodies

                def send(index, port=daemon.port):
                    clients[index] = send_big_body(port, body, 1800)

                run_in_threads(send, args.big_bodies)
                seconds = time.perf_counter() - started
                checked = checks.stop()
                results[kind] = {
                    "before_mib": before,
                    "peak_mib": daemon.rss()["VmHWM"] / 1024,
                    "seconds": seconds,
                    "clients": clients,
                    "statuses": [client["status"] for client in clients],
                    **latency_summary(checked),
                }
                log(f"{kind}: {args.big_bodies} bodies of {args.big_body_mib} MiB: {results[kind]['statuses']}, "
                    f"peak {results[kind]['peak_mib']:.0f} MiB, {seconds:.1f} s")
        finally:
            tarpit.close()
            for daemon in daemons.values():
                daemon.stop()
            # Scrapyd queued every body: gigabytes of SQLite.
            shutil.rmtree(daemons[SD].root, ignore_errors=True)
        self.details["bigbody"] = results

        def outcome(kind):
            r = results[kind]
            statuses = r["statuses"]
            common = max(set(statuses), key=statuses.count)
            told = f"{statuses.count(common)} × HTTP {common}" if common else f"{statuses.count(None)} × no answer"
            if len(set(statuses)) > 1:
                told += ", " + ", ".join(f"{s}" for s in statuses if s != common)
            return told, r

        for kind in KINDS:
            told, r = outcome(kind)
            r["told"] = told
        sd, rs = results[SD], results[RS]
        label = f"{args.big_bodies} concurrent {args.big_body_mib} MiB schedule.json bodies"
        self.figures.add(
            "bigbody_peak_mib",
            f"peak memory (VmHWM), {label}",
            "MiB",
            sd["peak_mib"],
            rs["peak_mib"],
            "bounded (413 past max_request_body_size)",
            rs["peak_mib"] <= rs["before_mib"] + 32 and all(s == 413 for s in rs["statuses"]),
            scrapyd_text=f"{fmt(sd['peak_mib'], 'MiB')} ({sd['told']}, {sd['seconds']:.0f} s)",
            rs_text=f"{fmt(rs['peak_mib'], 'MiB')} ({rs['told']}, {rs['seconds']:.1f} s)",
            note=f"Idle before: scrapyd-rs {rs['before_mib']:.1f} MiB, Scrapyd {sd['before_mib']:.1f} MiB. "
            "Each client sends the headers (Content-Length announced), then the body, while reading the answer. "
            "Every slot holds an idle crawl, so what Scrapyd accepts stays pending; its folder is deleted after.",
        )
        self.figures.add(
            "bigbody_health_worst_ms",
            f"daemonstatus.json meanwhile ({label})",
            "ms",
            sd["worst_ms"],
            rs["worst_ms"],
            "(no target)",
            None,
            scrapyd_text=latency_text(sd),
            rs_text=latency_text(rs),
            note="A check over a fresh connection every 0.1 s while the bodies are sent and answered.",
        )

    def phase_slowreader(self):
        """Clients that ask for listjobs.json of a long queue and never read
        the answer, health checks meanwhile; the daemon's peak memory."""
        args = self.args
        daemons = self.pair("slowreader")
        tarpit = Tarpit()
        results = {}
        try:
            for daemon in daemons.values():
                daemon.start()
                daemon.add_version("bench", "1", self.egg)
            self.occupy_slots(daemons, tarpit)
            pending = self.fill_pending(daemons, args.slow_reader_jobs)
            request = b"GET /listjobs.json?project=bench HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            for kind in KINDS:
                daemon = daemons[kind]
                daemon.client.close()
                time.sleep(1)
                before = daemon.rss()["VmRSS"] / 1024
                reset_peak_memory(daemon.pid)
                checks = HealthChecks(daemon.port)
                checks.start()
                readers = []
                for _ in range(args.slow_readers):
                    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
                    sock.sendall(request)
                    readers.append(sock)
                time.sleep(args.slow_reader_seconds)
                during = latency_summary(list(checks.checks))
                for sock in readers:
                    sock.close()
                checked = checks.stop()
                results[kind] = {
                    "pending": pending[kind],
                    "before_mib": before,
                    "peak_mib": daemon.rss()["VmHWM"] / 1024,
                    "during_hold": during,
                    **latency_summary(checked),
                }
                log(f"{kind}: {args.slow_readers} slow readers: peak {results[kind]['peak_mib']:.0f} MiB, "
                    f"health {latency_text(results[kind])}")
        finally:
            tarpit.close()
            for daemon in daemons.values():
                daemon.stop()
        self.details["slowreader"] = results
        sd, rs = results[SD], results[RS]
        label = f"{args.slow_readers} clients that never read listjobs.json ({rs['pending']:,} pending jobs)"

        def slow_text(r):
            per_client = (r["peak_mib"] - r["before_mib"]) / args.slow_readers
            return f"{fmt(r['peak_mib'], 'MiB')} (idle {r['before_mib']:.1f}; {per_client:.2f} MiB a client)"

        self.figures.add(
            "slowreader_peak_mib",
            f"peak memory (VmHWM), {label}",
            "MiB",
            sd["peak_mib"],
            rs["peak_mib"],
            "(no target)",
            None,
            scrapyd_text=slow_text(sd),
            rs_text=slow_text(rs),
            note=f"The clients send the request, keep the connection open {args.slow_reader_seconds:g} s without "
            "reading a byte, then close it. Scrapyd's queue: one schedule.json whose row was copied, as in "
            f"the pending phase ({sd['pending']:,} jobs).",
        )
        self.figures.add(
            "slowreader_health_worst_ms",
            f"daemonstatus.json meanwhile ({args.slow_readers} clients that never read)",
            "ms",
            sd["worst_ms"],
            rs["worst_ms"],
            "≤ 100 ms",
            rs["worst_ms"] <= 100 and rs["failed"] == 0,
            scrapyd_text=latency_text(sd),
            rs_text=latency_text(rs),
            note="A check over a fresh connection every 0.1 s from the first request until the daemon has "
            "answered one after the clients left (120 s timeout each); checks that ended while the clients "
            f"were connected: scrapyd-rs {latency_text(rs['during_hold'])} ({rs['during_hold']['count']}), "
            f"Scrapyd {latency_text(sd['during_hold'])} ({sd['during_hold']['count']}).",
        )


def first_200_any(port: int, process: subprocess.Popen) -> float:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    started = time.perf_counter()
    while time.perf_counter() - started < 30:
        if process.poll() is not None:
            raise RuntimeError("hyper-baseline exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request)
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("hyper-baseline did not answer")



# --------------------------------------------------------------------------
# Raw HTTP for the hostile cases: fresh connections, exact timings
# --------------------------------------------------------------------------


def raw_get(port: int, path: str, timeout: float = 600) -> tuple[int | None, float, bytes]:
    """GET `path` over a fresh connection (`Connection: close`); answers
    (status, seconds from connecting to the last byte, body with any chunked
    encoding undone). The body is read whole before it is decoded, so the
    timing is the daemon's and the wire's, not the parser's."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        parts = []
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            parts.append(data)
    seconds = time.perf_counter() - started
    head, _, body = b"".join(parts).partition(b"\r\n\r\n")
    status = parse_status(head)
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        body = dechunk(body)
    return status, seconds, body


def timed_get(port: int, path: str, timeout: float = 600) -> tuple[int | None, float]:
    """GET `path` over a fresh connection (`Connection: close`), the answer
    read into one reused 4 MiB buffer and dropped; answers (status, seconds
    from connecting to the last byte). Keeping a 15 MB answer costs Python
    about as long as a fast daemon takes to write it (a new buffer per
    read, then the join): this times the daemon and the wire."""
    view = memoryview(bytearray(4 << 20))
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        got = sock.recv_into(view)
        head = bytes(view[:got])
        while got:
            got = sock.recv_into(view)
    seconds = time.perf_counter() - started
    return parse_status(head), seconds


def wait_for_line(process: subprocess.Popen, wanted: str, timeout: float) -> bool:
    """Reads the process's stdout lines until one equals `wanted`; False if
    it does not come within `timeout` seconds or the process ends."""
    import select

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        line = process.stdout.readline()
        if not line:
            return False
        if line.strip() == wanted:
            return True
    return False


def parse_status(head: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else None


def dechunk(data: bytes) -> bytes:
    """Undoes HTTP/1.1 chunked transfer encoding."""
    out, position = [], 0
    while True:
        end = data.index(b"\r\n", position)
        size = int(data[position:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2 : end + 2 + size])
        position = end + 2 + size + 2


def health_check(port: int, timeout: float) -> dict:
    """One daemonstatus.json over a fresh connection: milliseconds from
    connecting to the last byte of the answer, and its status; a check that
    fails or times out counts as `timeout` seconds."""
    started = time.perf_counter()
    try:
        status, seconds, _ = raw_get(port, "/daemonstatus.json", timeout)
        return {"ms": seconds * 1000, "status": status}
    except OSError as error:
        return {"ms": max(time.perf_counter() - started, timeout) * 1000, "status": None, "error": repr(error)}


class HealthChecks(threading.Thread):
    """daemonstatus.json over a fresh connection every `interval` seconds
    until stopped; `stop` lets the check in flight finish."""

    def __init__(self, port: int, interval: float = 0.1, timeout: float = 120):
        super().__init__(daemon=True)
        self.port, self.interval, self.timeout = port, interval, timeout
        self.checks: list[dict] = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.checks.append(health_check(self.port, self.timeout))
            self.stopping.wait(self.interval)

    def stop(self) -> list[dict]:
        self.stopping.set()
        self.join()
        return self.checks


def latency_summary(checks: list[dict]) -> dict:
    times = [check["ms"] for check in checks]
    return {
        "count": len(checks),
        "worst_ms": max(times) if times else None,
        "median_ms": median(times),
        "failed": sum(1 for check in checks if check["status"] != 200),
    }


def latency_text(summary: dict) -> str:
    text = f"worst {fmt(summary['worst_ms'], 'ms')}, median {fmt(summary['median_ms'], 'ms')}"
    if summary["failed"]:
        text += f", {summary['failed']} of {summary['count']} failed"
    return text


def reset_peak_memory(pid: int) -> bool:
    """Resets the process's VmHWM to its current VmRSS (Linux 4.0+), so that
    VmHWM read later is the peak of what happened in between."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def fill_scrapyd_queue(dbs: Path, project: str, count: int) -> int:
    """Brings Scrapyd's queue of `project` (its SqliteSpiderQueue,
    dbs/<project>.db) to `count` pending jobs, copying the one job already in
    it, scheduled through schedule.json, with a fresh `_job` id each (Scrapyd
    names jobs uuid1().hex): the rows are exactly what Scrapyd writes, only
    written in one transaction instead of one durable commit each."""
    connection = sqlite3.connect(dbs / f"{project}.db", timeout=60)
    rows = connection.execute("SELECT priority, message FROM spider_queue").fetchall()
    if not rows:
        raise RuntimeError("Scrapyd's queue is empty: nothing to copy")
    priority, message = rows[0]
    template = json.loads(bytes(message).decode("ascii"))

    def copies():
        for _ in range(count - len(rows)):
            copy = dict(template)
            copy["_job"] = uuid.uuid1().hex
            yield priority, sqlite3.Binary(json.dumps(copy).encode("ascii"))

    with connection:
        connection.executemany("INSERT INTO spider_queue (priority, message) VALUES (?, ?)", copies())
    total = connection.execute("SELECT count(*) FROM spider_queue").fetchone()[0]
    connection.close()
    return total


def send_big_body(port: int, body: memoryview, timeout: float) -> dict:
    """POSTs `body` to schedule.json as a form, reading the answer while it
    sends (a daemon may answer and close before the body is through)."""
    result = {"sent": 0, "status": None}
    received = []
    started = time.perf_counter()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as error:
        return {**result, "error": repr(error), "seconds": time.perf_counter() - started}

    def read():
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                received.append(data)
        except OSError as error:
            result["read_error"] = repr(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        sock.sendall(
            b"POST /schedule.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for offset in range(0, len(body), MB):
            sock.sendall(body[offset : offset + MB])
            result["sent"] = offset + len(body[offset : offset + MB])
    except OSError as error:
        result["send_error"] = repr(error)
    reader.join(timeout)
    sock.close()
    answer = b"".join(received)
    result["status"] = parse_status(answer)
    result["answer"] = answer.partition(b"\r\n\r\n")[2][:200].decode(errors="replace")
    result["seconds"] = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------
# Filling the stores directly
# --------------------------------------------------------------------------


def fake_times(index: int, now: float) -> tuple[float, float]:
    """Start and end of the index-th oldest fake job: one a minute."""
    end = now - 3600 - (10_000_000 - index) * 60
    return end - 30, end


def fill_rs_store(dbs: Path, start: int, stop: int) -> None:
    """Adds finished jobs start..stop to scrapyd-rs's SQLite store, as the
    daemon would have written them (see src/store/mod.rs)."""
    path = dbs / "scrapyd-rs.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous = OFF")
    columns = {row[1]: row for row in connection.execute("PRAGMA table_info(jobs)")}
    values = {
        "job_id": None,
        "project_id": None,
        "spider_id": None,
        "counter": None,
        "project": "bench",
        "spider": "pages",
        "version": None,
        "run_version": "1",
        "state": "finished",
        "priority": 0.0,
        "units": 1,
        "args": "[]",
        "settings": "[]",
        "tags": "[]",
        "pending_time": None,
        "start_time": None,
        "end_time": None,
        "pid": 4242,
        "pid_start_ticks": 1,
        "exit_code": 0,
        "close_reason": "finished",
        "cancel_count": 0,
        "listed": 1,
    }
    # PRAGMA table_info rows: cid, name, type, notnull, default, pk
    missing = [name for name, row in columns.items() if row[3] and row[4] is None and not row[5] and name not in values]
    if missing:
        raise RuntimeError(f"scrapyd-rs's jobs table has required columns the benchmark doesn't fill: {missing}")
    names = [name for name in values if name in columns]
    project_id = connection.execute("SELECT id FROM projects WHERE name = 'bench'").fetchone()[0]
    found = connection.execute("SELECT id FROM spiders WHERE project_id = ? AND name = 'pages'", (project_id,)).fetchone()
    if found is None:  # spider ids are given at a spider's first job
        with connection:
            connection.execute(
                "INSERT INTO spiders (project_id, id, name) "
                "SELECT ?, coalesce(max(id), 0) + 1, 'pages' FROM spiders WHERE project_id = ?",
                (project_id, project_id),
            )
        found = connection.execute(
            "SELECT id FROM spiders WHERE project_id = ? AND name = 'pages'", (project_id,)
        ).fetchone()
    spider_id = found[0]
    now = time.time()

    def rows():
        for index in range(start, stop):
            begin, end = fake_times(index, now)
            row = dict(values)
            row.update(
                job_id=uuid.UUID(int=random.getrandbits(128)).hex,
                project_id=project_id,
                spider_id=spider_id,
                counter=index + 1,
                pending_time=begin - 1,
                start_time=begin,
                end_time=end,
            )
            yield tuple(row[name] for name in names)

    with connection:
        connection.executemany(
            f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", rows()
        )
        connection.execute(
            "UPDATE spiders SET last_counter = ? WHERE project_id = ? AND id = ?", (stop, project_id, spider_id)
        )
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("ANALYZE")
    connection.close()


def fill_scrapyd_store(dbs: Path, start: int, stop: int) -> None:
    """Adds finished jobs start..stop to Scrapyd 1.6's SqliteJobStorage
    table (dbs/jobs.db, finished_jobs), as scrapyd.sqlite writes them."""
    connection = sqlite3.connect(dbs / "jobs.db")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS finished_jobs "
        "(id integer PRIMARY KEY, project text, spider text, job text, start_time datetime, end_time datetime)"
    )
    now = time.time()

    def stamp(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S.%f")

    def rows():
        for index in range(start, stop):
            begin, end = fake_times(index, now)
            yield ("bench", "pages", uuid.UUID(int=random.getrandbits(128)).hex, stamp(begin), stamp(end))

    with connection:
        connection.executemany(
            "INSERT INTO finished_jobs (project, spider, job, start_time, end_time) VALUES (?, ?, ?, ?, ?)", rows()
        )
    connection.close()


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def versions(args) -> dict:
    from importlib.metadata import version

    def run(*command):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    return {
        "scrapyd": version("scrapyd"),
        "scrapy": version("scrapy"),
        "twisted": version("twisted"),
        "python": platform.python_version(),
        "scrapyd_rs": run(str(args.scrapyd_rs), "--version"),
        "scrapyd_rs_built_from": args.rs_built_from
        or f"prebuilt; repository HEAD is {run('git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD')}",
        "load_generator": run(args.loadgen, "--version"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "niceness": os.nice(0),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapyd-rs", type=Path, required=True, help="the scrapyd-rs binary")
    parser.add_argument("--hyper", type=Path, required=True, help="the hyper-baseline binary")
    parser.add_argument("--loadgen", choices=["wrk", "oha"], default="wrk")
    parser.add_argument("--work", type=Path, default=BENCH / ".work", help="the daemons' folders (default bench/.work)")
    parser.add_argument("--out", type=Path, default=BENCH / "results.json")
    parser.add_argument("--full", action="store_true", help="Scrapyd too is scheduled to 100k jobs and lists a 1M-job store (long)")
    parser.add_argument("--trials", type=int, default=5, help="trials of start-up, idle memory, listspiders and listjobs (after a warm-up)")
    parser.add_argument("--rps-trials", type=int, default=3, help="load-generator runs per server")
    parser.add_argument("--upload-trials", type=int, default=3)
    parser.add_argument("--latency-trials", type=int, default=7)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load-generator run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="load-generator threads")
    parser.add_argument("--max-proc", type=int, default=4, help="max_proc of both daemons")
    parser.add_argument("--bulk-jobs", type=int, default=None, help="jobs scheduled on scrapyd-rs for the memory figure (default 100000)")
    parser.add_argument(
        "--scrapyd-bulk-jobs",
        type=int,
        default=None,
        help="jobs scheduled on Scrapyd for the memory figure (default 5000; --full: as --bulk-jobs)",
    )
    parser.add_argument("--rs-built-from", default=None, help="what the scrapyd-rs binary was built from")
    parser.add_argument(
        "--no-1m", action="store_true", help="leave out the 1,000,000-job store (scrapyd-rs; Scrapyd with --full)"
    )
    parser.add_argument(
        "--scrapyd-listjobs-max",
        type=int,
        default=None,
        help="largest store Scrapyd's listjobs is run on, as it answers every stored job "
        "(default 100000; --full: 1000000)",
    )
    parser.add_argument(
        "--schedule-clients",
        type=int,
        nargs="+",
        default=[1, 8, 32],
        help="concurrent clients of the schedule.json runs (default 1 8 32)",
    )
    parser.add_argument("--pending-jobs", type=int, default=100_000, help="pending jobs listed by the pending phase")
    parser.add_argument("--listings", type=int, default=10, help="listings per daemon in the pending phase")
    parser.add_argument("--slowloris-connections", type=int, default=1100)
    parser.add_argument("--health-checks", type=int, default=50, help="health checks during the slowloris crowd")
    parser.add_argument("--big-bodies", type=int, default=8, help="concurrent huge schedule.json bodies")
    parser.add_argument("--big-body-mib", type=int, default=250, help="size of each huge body, MiB")
    parser.add_argument("--slow-readers", type=int, default=50, help="clients that never read their listjobs.json")
    parser.add_argument("--slow-reader-jobs", type=int, default=62_500, help="pending jobs during the slow readers")
    parser.add_argument("--slow-reader-seconds", type=float, default=20, help="how long the slow readers hold on")
    parser.add_argument("--only", nargs="*", choices=PHASES, help="run only these phases")
    args = parser.parse_args()
    if args.bulk_jobs is None:
        args.bulk_jobs = 100_000
    if args.scrapyd_bulk_jobs is None:
        args.scrapyd_bulk_jobs = args.bulk_jobs if args.full else 5_000
    args.listjobs_sizes = [10_000, 100_000] + ([] if args.no_1m else [1_000_000])
    if args.scrapyd_listjobs_max is None:
        args.scrapyd_listjobs_max = 1_000_000 if args.full else 100_000
    args.scrapyd_rs = args.scrapyd_rs.resolve()
    args.hyper = args.hyper.resolve()
    args.work = args.work.resolve()

    bench = Bench(args)
    log(f"work folder {args.work}; load generator {bench.loadgen.version}")
    bench.run()

    machine = versions(args)
    table = bench.figures.markdown()
    notes = [
        f"Same machine ({machine['cpus']} CPUs, {machine['cpu']}), one run, same scrapyd.conf "
        f"(max_proc = {args.max_proc}, poll_interval = 5.0, finished_to_keep = 100), same eggs, "
        f"crawls run by the same Python ({sys.executable}).",
        f"Scrapyd {machine['scrapyd']} (Twisted {machine['twisted']}, Python {machine['python']}); "
        f"{machine['scrapyd_rs']} built from {machine['scrapyd_rs_built_from']}; {machine['load_generator']}.",
        "Figures are medians; the load generator runs on the same cores as the server it loads. "
        f"Load average before/after: {bench.details['load_before'][0]:.2f} / {bench.details['load_after'][0]:.2f}.",
        "ratio = scrapyd-rs ÷ Scrapyd.",
        *bench.notes,
    ]
    print_report(table, notes, bench.figures.rows)
    results = {
        "generated_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "config": CONFIG.format(port="<port>", max_proc=args.max_proc, python=sys.executable, extra=""),
        "figures": bench.figures.rows,
        "notes": notes,
        "details": bench.details,
        "table_markdown": table,
    }
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {args.out} after {bench.details['seconds']} s")


if __name__ == "__main__":
    main()
