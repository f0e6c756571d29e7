#!/usr/bin/env python3
"""The Scrapy Cloud benchmark of scrapyd-rs (issues 7 and 8).

Run after bench.py by `bash bench/run.sh`, or alone:

    python3 bench/cloud.py --scrapyd-rs target/release/scrapyd-rs [--hyper BIN]

Every figure is printed beside a raw baseline measured in the same run on
the same machine: SQLite's own insert of the same rows (Python's sqlite3,
WAL + synchronous=FULL), `cat` of the same JSON lines into the same
reader, a bare HTTP round trip (the hyper-baseline server when --hyper is
given, else the daemon's own daemonstatus.json), schedule.json beside
run.json. It prints a Markdown table and writes bench/cloud-results.json.

Crawls are real processes started by the daemon, but their interpreter is
a stand-in (`[python] 1 = <work>/fake-python`): for `-m scrapy list` it
lists the spiders, for `-m scrapy crawl SPIDER …` it writes Scrapy's log
lines to the LOG_FILE setting and JSON lines to the file its FEEDS setting
names, as Scrapy's feed exporter would, as fast as the disk takes them
(spider `items`) or at a set rate (spider `paced`). The daemon cannot tell
it from Scrapy: it follows the same files the same way.

Nothing here is a pass/fail test: the table says which targets were met on
this run, on this machine.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import io
import json
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlencode

from common import (
    MB,
    cpu_model,
    cpu_seconds,
    free_port,
    kill_processes_in,
    log,
    median,
    print_report,
    processes_in,
    rss_kib,
    run_in_threads,
    stop_process,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROJECT = "1"  # deployed under a name of digits: its Cloud id is 1
TAG = "rare"  # carried by --tag-fraction of the 1M jobs


def percentile(values, fraction):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(fraction * (len(values) - 1))))]


# --------------------------------------------------------------------------
# The crawl interpreter's stand-in and the items it writes
# --------------------------------------------------------------------------

FAKE_PYTHON = r'''#!{python} -S
"""Stand-in for the crawl interpreter (written by bench/cloud.py).

-m scrapy list           the spiders
-m scrapy crawl SPIDER   Scrapy's argv (-s NAME=VALUE, -a NAME=VALUE):
  idle    waits for SIGTERM (holds a process slot)
  noop    ends at once
  items   writes -a items=N lines of the template to the FEEDS file, as
          fast as the disk takes them, in 1 MiB writes
  paced   writes -a rate=R lines a second for -a seconds=S
"""
import json, os, signal, sys, time
from urllib.parse import unquote

TEMPLATE = {template!r}
argv = sys.argv[1:]
if argv[:3] == ["-m", "scrapy", "list"]:
    print("idle\nitems\nnoop\npaced")
    sys.exit(0)
if argv[:3] != ["-m", "scrapy", "crawl"]:
    sys.exit("unexpected arguments: %r" % (argv,))
spider = argv[3]
settings, args = {{}}, {{}}
for flag, value in zip(argv[4::2], argv[5::2]):
    name, _, text = value.partition("=")
    (settings if flag == "-s" else args)[name] = text
log_file = open(settings["LOG_FILE"], "a") if "LOG_FILE" in settings else None
feeds = json.loads(settings.get("FEEDS", "{{}}"))
feed_path = unquote(next(iter(feeds))[len("file://"):]) if feeds else None


def log(level, logger, message):
    if log_file:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log_file.write("%s [%s] %s: %s\n" % (stamp, logger, level, message))
        log_file.flush()


def close(reason, count, seconds):
    log("INFO", "bench", "wrote %d items in %.3f s" % (count, seconds))
    log("INFO", "scrapy.statscollectors", "Dumping Scrapy stats:\n%r"
        % ({{"item_scraped_count": count, "finish_reason": reason}},))
    log("INFO", "scrapy.core.engine", "Spider closed (%s)" % reason)
    sys.exit(0)


log("INFO", "scrapy.core.engine", "Spider opened")
started = time.perf_counter()
if spider == "idle":
    signal.signal(signal.SIGTERM, lambda *_: close("shutdown", 0, time.perf_counter() - started))
    while True:
        signal.pause()
if spider == "noop":
    close("finished", 0, 0.0)

template = open(TEMPLATE, "rb", buffering=0)
feed = open(feed_path, "ab", buffering=0)


MB = 1024 * 1024
written = 0
if spider == "items":
    total = int(args.get("items", "1000"))
    while written < total:
        chunk = template.read(MB)
        if not chunk:
            template.seek(0)
            continue
        count = chunk.count(b"\n")
        if written + count > total:
            cut = -1
            for _ in range(total - written):
                cut = chunk.index(b"\n", cut + 1)
            chunk, count = chunk[: cut + 1], total - written
        elif not chunk.endswith(b"\n"):
            last = chunk.rindex(b"\n") + 1
            template.seek(last - len(chunk), 1)
            chunk = chunk[:last]
        feed.write(chunk)
        written += count
    close("finished", written, time.perf_counter() - started)
if spider == "paced":
    rate, seconds = float(args.get("rate", "25000")), float(args.get("seconds", "10"))
    # The lines of the template's first 4 MiB, written over and over: their
    # ends found once, so that writing costs the stand-in next to nothing
    # (the daemon's share of the CPU is what is measured).
    window = template.read(4 * MB)
    window = window[: window.rindex(b"\n") + 1]
    ends, at = [], window.find(b"\n")
    while at >= 0:
        ends.append(at + 1)
        at = window.find(b"\n", at + 1)
    line = 0  # the next line of the window to write
    while True:
        elapsed = time.perf_counter() - started
        due = int(min(elapsed, seconds) * rate) - written
        written += max(due, 0)
        while due > 0:
            take = min(due, len(ends) - line)
            first = ends[line - 1] if line else 0
            feed.write(window[first : ends[line + take - 1]])
            line, due = (line + take) % len(ends), due - take
        if elapsed >= seconds:
            break
        # Scrapy writes items as they come; the daemon reads the feed every
        # 250 ms, so writing every 50 ms gives it the same work.
        time.sleep(0.05)
    close("finished", written, time.perf_counter() - started)
sys.exit("unknown spider %s" % spider)
'''

WORDS = (
    "kettle steel glass cotton linen oak walnut copper ceramic wool leather bamboo "
    "lamp chair table mug plate bowl towel rug shelf clock vase blanket pillow"
).split()


def write_template(path: Path, count: int) -> tuple[int, float]:
    """`count` JSON lines of shop items, about 300 bytes each, as Scrapy's
    feed exporter writes them (json.dumps with its default separators).
    Answers the bytes written and the mean line length."""
    rng = random.Random(7)
    total = 0
    with open(path, "w") as out:
        batch = []
        for n in range(count):
            a, b, c = rng.choice(WORDS), rng.choice(WORDS), rng.choice(WORDS)
            item = {
                "url": f"https://shop.example.com/{a}/{n:08d}.html",
                "title": f"{a.title()} {b} and {c}, model {n % 977}",
                "price": round(rng.uniform(1, 500), 2),
                "currency": "EUR",
                "sku": f"SKU-{n:08d}",
                "in_stock": n % 7 != 0,
                "rating": round(rng.uniform(1, 5), 1),
                "tags": [a, b, c],
                "description": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14))),
            }
            batch.append(json.dumps(item))
            if len(batch) == 10000:
                text = "\n".join(batch) + "\n"
                out.write(text)
                total += len(text)
                batch = []
        if batch:
            text = "\n".join(batch) + "\n"
            out.write(text)
            total += len(text)
    return total, total / count


def minimal_egg() -> bytes:
    """An egg the daemon accepts: a package with its settings module and
    EGG-INFO/entry_points.txt naming it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as egg:
        egg.writestr("benchproject/__init__.py", "")
        egg.writestr("benchproject/settings.py", "BOT_NAME = 'benchproject'\n")
        egg.writestr("EGG-INFO/PKG-INFO", "Metadata-Version: 1.0\nName: benchproject\nVersion: 1.0\n")
        egg.writestr("EGG-INFO/entry_points.txt", "[scrapy]\nsettings = benchproject.settings\n")
    return buffer.getvalue()


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class Client:
    """One keep-alive connection; reconnects when needed."""

    def __init__(self, port: int, timeout: float = 600):
        self.port = port
        self.timeout = timeout
        self.connection = None

    def request(self, method, path, body=None, headers=None):
        """Answers (status, body bytes, seconds from sending to the last byte)."""
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                start = time.perf_counter()
                self.connection.request(method, path, body=body, headers=headers or {})
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

    def get(self, path, headers=None):
        status, data, elapsed = self.request("GET", path, headers=headers)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {data[:300]!r}")
        return data, elapsed

    def get_json(self, path):
        data, _ = self.get(path)
        return json.loads(data)

    def post_form(self, path, form):
        status, data, _ = self.request(
            "POST", path, urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 200:
            raise RuntimeError(f"POST {path}: HTTP {status}: {data[:300]!r}")
        return json.loads(data)

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def wait_http(port: int, process: subprocess.Popen, deadline: float = 60) -> None:
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /daemonstatus.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        if time.monotonic() - started > deadline:
            raise RuntimeError(f"no answer on port {port}")
        time.sleep(0.01)


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------

CONFIG = """\
# Written by bench/cloud.py.
[scrapyd]
bind_address     = 127.0.0.1
http_port        = {port}
max_proc         = {max_proc}
eggs_dir         = eggs
logs_dir         = logs
items_dir        = items
dbs_dir          = dbs
jobs_to_keep     = 100
finished_to_keep = 100
node_name        = bench
python           = {python}

[python]
{project} = {fake}
"""


class Daemon:
    """One scrapyd-rs in its own folder under the work folder."""

    def __init__(self, bench: "Bench", name: str):
        self.bench = bench
        self.root = bench.work / name
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.port = free_port()
        (self.root / "scrapyd.conf").write_text(
            CONFIG.format(
                port=self.port,
                max_proc=bench.args.max_proc,
                python=sys.executable,
                project=PROJECT,
                fake=bench.fake_python,
            )
        )
        self.process = None
        self.client = Client(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self):
        output = open(self.root / "daemon.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRAPYD_", "SCRAPY_"))}
        self.process = subprocess.Popen(
            [str(self.bench.args.scrapyd_rs), "--config", str(self.root / "scrapyd.conf")],
            cwd=self.root,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
        output.close()
        wait_http(self.port, self.process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self):
        """TERM, then the crawls it leaves (processes whose working folder
        is inside this daemon's folder: the unpacked egg)."""
        self.client.close()
        if self.process is not None:
            stop_process(self.process, 30)
            self.process = None
        kill_processes_in(self.root)

    def deploy(self):
        boundary = uuid.uuid4().hex
        egg = minimal_egg()
        body = b"".join(
            [
                f'--{boundary}\r\nContent-Disposition: form-data; name="project"\r\n\r\n{PROJECT}\r\n'.encode(),
                f'--{boundary}\r\nContent-Disposition: form-data; name="version"\r\n\r\n1\r\n'.encode(),
                f'--{boundary}\r\nContent-Disposition: form-data; name="egg"; filename="p.egg"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n".encode()
                + egg
                + b"\r\n",
                f"--{boundary}--\r\n".encode(),
            ]
        )
        status, data, _ = self.client.request(
            "POST", "/addversion.json", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        if status != 200 or json.loads(data).get("status") != "ok":
            raise RuntimeError(f"addversion failed: {data[:500]!r}")

    def schedule(self, spider, priority=None, **args) -> str:
        form = {"project": PROJECT, "spider": spider, **args}
        if priority is not None:
            form["priority"] = str(priority)
        answer = self.client.post_form("/schedule.json", form)
        if answer.get("status") != "ok":
            raise RuntimeError(f"schedule failed: {answer}")
        return answer["jobid"]

    def run(self, spider, **args) -> str:
        """run.json; answers the job's key P/S/J."""
        answer = self.client.post_form("/api/run.json", {"project": PROJECT, "spider": spider, **args})
        if answer.get("status") != "ok":
            raise RuntimeError(f"run.json failed: {answer}")
        return answer["jobid"]

    def counts(self) -> dict:
        return self.client.get_json("/daemonstatus.json")

    def wait_for(self, predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if predicate(counts):
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; last {counts}")
            time.sleep(0.05)

    def stored(self, key: str) -> int:
        """How many items of job P/S/J are readable."""
        return self.client.get_json(f"/items/{key}/stats")["totals"]["input_values"]


# --------------------------------------------------------------------------
# Load generators
# --------------------------------------------------------------------------

# POSTs $BENCH_BODY (with $BENCH_UNIQUE=<run>-<thread>-<n> appended when
# set: run.json refuses the same spider with the same arguments while one
# is pending) and counts the answers whose JSON says ok.
WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local body = os.getenv("BENCH_BODY") or ""
local unique = os.getenv("BENCH_UNIQUE") or ""
local run = os.getenv("BENCH_RUN") or "0"
local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("id", next_id)
   table.insert(threads, thread)
end

function init(args)
   ok = 0
   bad = 0
   counter = 0
   if unique == "" then
      wrk.body = body
   end
end

function request()
   if unique == "" then
      return wrk.format()
   end
   counter = counter + 1
   return wrk.format(nil, nil, nil, body .. "&" .. unique .. "=" .. run .. "-" .. id .. "-" .. counter)
end

function response(status, headers, text)
   if status == 200 and (string.find(text, '"status": "ok"', 1, true) or string.find(text, '"status":"ok"', 1, true)) then
      ok = ok + 1
   else
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local total_ok, total_bad = 0, 0
   for _, thread in ipairs(threads) do
      total_ok = total_ok + thread:get("ok")
      total_bad = total_bad + thread:get("bad")
   end
   io.write(string.format("BENCH ok=%d bad=%d\n", total_ok, total_bad))
end
"""


class LoadGenerator:
    """wrk when installed, else threads of keep-alive Python clients."""

    def __init__(self, work: Path, tool: str, threads: int, connections: int):
        self.tool = tool
        self.threads = threads
        self.connections = connections
        self.script = work / "post.lua"
        self.script.write_text(WRK_LUA)
        self.runs = 0
        if tool == "wrk":
            done = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
            self.version = (done.stdout + done.stderr).strip().splitlines()[0]
        else:
            self.version = f"Python {platform.python_version()} threads ({connections} keep-alive connections)"

    def post(self, url: str, body: str, duration: float, unique: str = "") -> dict:
        """POSTs `body` to `url` for `duration` seconds; answers rps (of ok
        answers), ok, bad."""
        self.runs += 1
        if self.tool == "wrk":
            return self._wrk(url, body, duration, unique)
        return self._python(url, body, duration, unique)

    def _wrk(self, url, body, duration, unique):
        env = dict(os.environ, BENCH_BODY=body, BENCH_UNIQUE=unique, BENCH_RUN=str(self.runs))
        command = ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{max(1, round(duration))}s"]
        command += ["--latency", "-s", str(self.script), url]
        output = subprocess.run(command, capture_output=True, text=True, env=env).stdout
        rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
        counted = re.search(r"BENCH ok=(\d+) bad=(\d+)", output)
        if not rps or not counted:
            raise RuntimeError(f"cannot read wrk's output:\n{output}")
        ok, bad = int(counted.group(1)), int(counted.group(2))
        total = ok + bad
        rps = float(rps.group(1))
        p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
        p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
        return {
            "rps": rps * ok / total if total else 0.0,
            "ok": ok,
            "bad": bad,
            "p50": p50.group(1) if p50 else None,
            "p99": p99.group(1) if p99 else None,
        }

    def _python(self, url, body, duration, unique):
        port = int(url.split(":")[2].split("/")[0])
        path = "/" + url.split("/", 3)[3]
        counts = {"ok": 0, "bad": 0}
        lock = threading.Lock()
        stop_at = time.perf_counter() + duration

        def worker(index):
            client = Client(port)
            ok = bad = n = 0
            while time.perf_counter() < stop_at:
                n += 1
                text = body + (f"&{unique}={self.runs}-{index}-{n}" if unique else "")
                status, data, _ = client.request(
                    "POST", path, text.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
                )
                if status == 200 and b'"ok"' in data:
                    ok += 1
                else:
                    bad += 1
            client.close()
            with lock:
                counts["ok"] += ok
                counts["bad"] += bad

        started = time.perf_counter()
        run_in_threads(worker, self.connections)
        elapsed = time.perf_counter() - started
        return {"rps": counts["ok"] / elapsed, **counts, "p50": None, "p99": None}


# --------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------


def drain(command: list[str], rss_pid: int | None = None) -> dict:
    """Runs `command` (curl or cat), reads its standard output to the end
    counting bytes and newlines; with `rss_pid`, samples that process's
    VmRSS every 5 ms meanwhile. Answers seconds, bytes, lines, peak RSS."""
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], rss_kib(rss_pid).get("VmRSS", 0))
            except OSError:
                return
            time.sleep(0.005)

    sampler = None
    if rss_pid is not None:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, bufsize=0)
    size = lines = 0
    tail = b""
    fd = process.stdout.fileno()
    while True:
        chunk = os.read(fd, MB)
        if not chunk:
            break
        size += len(chunk)
        lines += chunk.count(b"\n")
        tail = chunk[-200:]
    process.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    if sampler:
        sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {process.returncode}")
    return {"seconds": elapsed, "bytes": size, "lines": lines, "peak_rss_kib": peak[0], "tail": tail}


def curl(url: str, headers: dict[str, str] | None = None) -> list[str]:
    command = ["curl", "-sS", "--fail", "--no-buffer"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    return command + [url]


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def fmt(value, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "ms":
        return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"
    if unit in ("req/s", "items/s"):
        return f"{value:,.0f} {unit}"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "%":
        return f"{value:.0f} %"
    return f"{value} {unit}"


class Figures:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, key, label, unit, baseline, value, target, met, baseline_text=None, value_text=None, note="", trials=None):
        row = {
            "key": key,
            "figure": label,
            "unit": unit,
            "baseline": baseline,
            "baseline_text": baseline_text if baseline_text is not None else fmt(baseline, unit),
            "scrapyd_rs": value,
            "scrapyd_rs_text": value_text if value_text is not None else fmt(value, unit),
            "target": target,
            "met": met,
            "note": note,
            "trials": trials or {},
        }
        self.rows.append(row)
        log(f"{label}: baseline {row['baseline_text']}, scrapyd-rs {row['scrapyd_rs_text']}, met: {met}")

    def markdown(self) -> str:
        lines = ["| figure | baseline | scrapyd-rs | target | met? |", "|---|---|---|---|---|"]
        for row in self.rows:
            met = {True: "yes", False: "**no**", None: "–"}[row["met"]]
            lines.append(
                f"| {row['figure']} | {row['baseline_text']} | {row['scrapyd_rs_text']} | {row['target']} | {met} |"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.figures = Figures()
        self.notes: list[str] = []
        self.details: dict = {}
        self.daemons: list[Daemon] = []
        self.loadgen = LoadGenerator(self.work, args.loadgen, args.threads, args.connections)
        self.template = self.work / "items.jl"
        self.fake_python = self.work / "fake-python"
        self.fake_python.write_text(FAKE_PYTHON.format(python=sys.executable, template=str(self.template)))
        self.fake_python.chmod(0o755)
        self.bare = None  # a bare HTTP server: (process, port, what)

    def daemon(self, name) -> Daemon:
        daemon = Daemon(self, name)
        self.daemons.append(daemon)
        return daemon

    def run(self):
        args = self.args
        started = time.time()
        self.details["load_before"] = os.getloadavg()
        items = max(args.read_items, args.stream_items)
        log(f"writing {items:,} items of JSON lines to {self.template}")
        size, mean = write_template(self.template, items)
        self.details["template"] = {"items": items, "bytes": size, "mean_line_bytes": round(mean, 1)}
        log(f"{size / MB:.0f} MiB, {mean:.0f} bytes an item")
        self.start_bare()
        self.details["fsync_ms"] = fsync_probe(self.work)
        phases = [
            ("schedule", self.phase_schedule),
            ("jobs", self.phase_jobs),
            ("capture", self.phase_capture),
        ]
        try:
            for name, phase in phases:
                if args.only and name not in args.only:
                    continue
                log(f"== phase {name}")
                phase()
        finally:
            for daemon in self.daemons:
                try:
                    daemon.stop()
                except Exception as error:  # noqa: BLE001 - best effort at exit
                    log(f"stopping {daemon.root.name}: {error}")
            if self.bare:
                self.bare[0].terminate()
                self.bare[0].wait()
            if not args.keep_work:
                # Gigabytes of items and jobs: gone unless asked for.
                self.template.unlink(missing_ok=True)
                for daemon in self.daemons:
                    shutil.rmtree(daemon.root, ignore_errors=True)
        self.details["load_after"] = os.getloadavg()
        self.details["seconds"] = round(time.time() - started, 1)

    # --- baselines ------------------------------------------------------------

    def start_bare(self):
        """The bare HTTP server of round-trip baselines: hyper-baseline (a
        hyper server answering a fixed body) when given."""
        if not self.args.hyper:
            return
        port = free_port()
        process = subprocess.Popen(
            [str(self.args.hyper), f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_http(port, process, deadline=10)
        self.bare = (process, port, "bare hyper server")

    def round_trip(self, daemon: Daemon, count: int = 300) -> tuple[float, str]:
        """Median round trip of a GET on a keep-alive connection, by the
        same client as the figure beside it."""
        if self.bare:
            client, path, what = Client(self.bare[1]), "/", self.bare[2]
        else:
            client, path, what = Client(daemon.port), "/daemonstatus.json", "daemonstatus.json"
        times = []
        for _ in range(count):
            times.append(client.get(path)[1] * 1000)
        client.close()
        return median(times), what

    # --- 1 and 5: run.json and schedule.json, idle and while crawls stream -----

    def phase_schedule(self):
        """run.json beside schedule.json, then schedule.json while crawls
        stream items, beside the same on an idle daemon. Every slot is held
        by a crawl (idle, or streaming at a set rate) so the jobs scheduled
        stay pending; the three states take turns, each trial in each, so
        that the background load of a shared machine hits them alike."""
        args = self.args
        daemon = self.daemon("schedule")
        daemon.start()
        daemon.deploy()
        schedule_url = f"{daemon.url}/schedule.json"
        run_url = f"{daemon.url}/api/run.json"
        schedule_body = f"project={PROJECT}&spider=noop&arg=1"
        run_body = f"project={PROJECT}&spider=noop"
        states = [("idle", 0.0), ("scrapy", args.stream_rate), ("target", args.stream_rate_high)]
        trials = {name: [] for name, _ in states}
        trials["run.json"] = []
        occupants: list[str] = []
        for trial in range(args.rps_trials + 1):  # round 0 warms up
            shift = trial % len(states)
            for name, rate in states[shift:] + states[:shift]:
                occupants = self.occupy(daemon, occupants, rate)
                before = sum(daemon.stored(key) for key in occupants) if rate else 0
                crawls_before = self.crawls_cpu(daemon)
                started = time.perf_counter()
                duration = args.duration if trial else 1
                result = self.loadgen.post(schedule_url, schedule_body, duration)
                window = time.perf_counter() - started
                if rate:
                    result["crawls_cores"] = (self.crawls_cpu(daemon) - crawls_before) / window
                    after = sum(daemon.stored(key) for key in occupants)
                    result["captured_per_s"] = (after - before) / window
                    if self.running_keys(daemon) != set(occupants):
                        self.notes.append(f"a crawl streaming at {rate:,.0f} items/s in all ended during a trial")
                if name == "idle":
                    run = self.loadgen.post(run_url, run_body, duration, unique="n")
                    if trial:
                        trials["run.json"].append(run)
                    if run["bad"]:
                        self.notes.append(f"run.json load: {run['bad']} answers not ok")
                if result["bad"]:
                    self.notes.append(f"schedule.json load ({name}): {result['bad']} answers not ok")
                if trial:
                    trials[name].append(result)
        self.details["schedule"] = trials
        rps = {name: [t["rps"] for t in runs] for name, runs in trials.items()}
        idle, run = median(rps["idle"]), median(rps["run.json"])
        pending = daemon.counts()["pending"]
        self.figures.add(
            "run_rps",
            f"`run.json` req/s, every ok durable ({self.loadgen.tool}, {args.connections} connections)",
            "req/s",
            idle,
            run,
            "beside `schedule.json`",
            None,
            baseline_text=f"`schedule.json`: {fmt(idle, 'req/s')}",
            value_text=f"{fmt(run, 'req/s')} ({run / idle:.0%})",
            note="Every slot held by an idle crawl, so jobs stay pending; each run.json trial right after a "
            "schedule.json one. Each run.json carries a distinct argument (the same spider with the same arguments "
            f"pending is refused as a duplicate, which run.json checks and schedule.json does not). {pending:,} jobs "
            "were pending at the end.",
            trials={"schedule.json": rps["idle"], "run.json": rps["run.json"]},
        )
        mean_line = self.details["template"]["mean_line_bytes"]
        for name, rate in states[1:]:
            busy = median(rps[name])
            each = rate / args.max_proc
            took = median([t["captured_per_s"] for t in trials[name]])
            crawls = median([t["crawls_cores"] for t in trials[name]])
            common = (
                f"{args.max_proc} crawls each writing {each:,.0f} items/s (~{mean_line:.0f}-byte JSON lines) to their "
                f"feeds, {crawls:.3f} of a core for the four; the daemon captured {took:,.0f} items/s into the job "
                "data store during the trials. Idle: the slots held by idle crawls; the states took turns, trial by "
                "trial."
            )
            if name == "scrapy":
                self.figures.add(
                    "schedule_while_streaming",
                    f"`schedule.json` req/s while {args.max_proc} crawls stream {rate:,.0f} items/s in all",
                    "req/s",
                    idle,
                    busy,
                    "≥ 90 % of idle",
                    busy >= 0.9 * idle,
                    baseline_text=f"idle: {fmt(idle, 'req/s')}",
                    value_text=f"{fmt(busy, 'req/s')} ({busy / idle:.0%})",
                    note=common + f" {each:,.0f} items/s is about what one Scrapy process writes at full speed "
                    "(a spider yielding items from one local response into a JSON-lines feed ran at ~8,000 items/s "
                    "on this machine, on a core of its own); the stand-ins write theirs for almost no CPU, so that "
                    "what is measured is the daemon's share.",
                    trials={"idle": rps["idle"], name: rps[name]},
                )
            else:
                self.figures.add(
                    "schedule_while_streaming_fast",
                    f"`schedule.json` req/s while {args.max_proc} streams bring {rate:,.0f} items/s in all",
                    "req/s",
                    idle,
                    busy,
                    "– (capture's CPU shows)",
                    None,
                    baseline_text=f"idle: {fmt(idle, 'req/s')}",
                    value_text=f"{fmt(busy, 'req/s')} ({busy / idle:.0%})",
                    note=common + " The capture target's rate: parsing and storing that many items takes a good "
                    "part of one of the two cores, which schedule.json then does not get.",
                    trials={"idle": rps["idle"], name: rps[name]},
                )
        daemon.stop()

    def occupy(self, daemon: Daemon, occupants: list[str], rate: float) -> list[str]:
        """Puts a crawl in every slot, in place of `occupants` (stopped):
        idle ones (`rate` 0), or ones writing `rate` items/s in all. The new
        jobs have the highest priority, so they, not the pending ones, take
        the slots. Answers their keys."""
        args = self.args
        if rate:
            form = {"rate": str(rate / args.max_proc), "seconds": str(args.duration * 2 + 30)}
            spider = "paced"
        else:
            form, spider = {}, "idle"
        keys = [daemon.run(spider, priority="4", n=uuid.uuid4().hex[:8], **form) for _ in range(args.max_proc)]
        for key in occupants:
            daemon.client.post_form("/api/jobs/stop.json", {"project": PROJECT, "job": key})
        deadline = time.monotonic() + 60
        while self.running_keys(daemon) != set(keys):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the new crawls did not take the slots: {self.running_keys(daemon)}")
            time.sleep(0.05)
        if rate:
            time.sleep(1.0)  # streaming at their pace
        return keys

    @staticmethod
    def crawls_cpu(daemon: Daemon) -> float:
        """CPU seconds the daemon's running crawls (stand-ins) have used."""
        total = 0.0
        for pid in processes_in(daemon.root):
            if pid == daemon.process.pid:
                continue
            try:
                total += cpu_seconds(pid)
            except (OSError, ValueError, IndexError):
                pass  # ended meanwhile
        return total

    @staticmethod
    def running_keys(daemon: Daemon) -> set[str]:
        data, _ = daemon.client.get(f"/jobq/{PROJECT}/list?state=running")
        return {json.loads(line)["key"] for line in data.splitlines()}

    # --- 2: job queries over 1,000,000 jobs --------------------------------------

    def phase_jobs(self):
        args = self.args
        daemon = self.daemon("jobs")
        daemon.start()
        daemon.deploy()
        daemon.stop()
        log(f"filling the store with {args.jobs:,} finished jobs, {args.tag_fraction:.0%} tagged {TAG!r}")
        started = time.perf_counter()
        tagged = fill_jobs(daemon.root / "dbs" / "scrapyd-rs.sqlite", args.jobs, args.tag_fraction)
        self.details["fill_seconds"] = round(time.perf_counter() - started, 1)
        daemon.start()
        queries = {
            "jobq_list": f"/jobq/{PROJECT}/list?has_tag={TAG}",
            "jobq_count": f"/jobq/{PROJECT}/count?has_tag={TAG}",
            "dash_list": f"/api/jobs/list.json?project={PROJECT}&has_tag={TAG}",
        }
        checks = {
            "jobq_list": lambda data: len(data.splitlines()) == min(1000, tagged),
            "jobq_count": lambda data: int(data) == tagged,
            "dash_list": lambda data: json.loads(data)["total"] == tagged,
        }
        times = {}
        for name, path in queries.items():
            data, first = daemon.client.get(path)
            if not checks[name](data):
                raise RuntimeError(f"{path}: unexpected answer {data[:300]!r}")
            later = [daemon.client.get(path)[1] * 1000 for _ in range(args.query_trials)]
            times[name] = {"first_ms": first * 1000, "median_ms": median(later), "max_ms": max(later)}
        trip, what = self.round_trip(daemon)
        raw = sqlite_tag_count(daemon.root / "dbs" / "scrapyd-rs.sqlite", TAG)
        self.details["jobs"] = {"jobs": args.jobs, "tagged": tagged, "times": times, "sqlite_count_ms": raw}
        labels = {
            "jobq_list": f"`jobs.iter(has_tag=…)`: `jobq/P/list`, first 1,000 of {tagged:,} tagged jobs",
            "jobq_count": "`jobs.count(has_tag=…)`: `jobq/P/count`",
            "dash_list": "Dash `jobs/list.json?has_tag=…` (1,000 jobs and the total)",
        }
        for name, label in labels.items():
            value = times[name]["median_ms"]
            self.figures.add(
                f"jobs_{name}",
                f"{label}, {args.jobs:,} jobs in the project",
                "ms",
                trip,
                value,
                "≤ 50 ms",
                value <= 50,
                baseline_text=f"{what} round trip: {fmt(trip, 'ms')}",
                value_text=f"{fmt(value, 'ms')} (first after restart {fmt(times[name]['first_ms'], 'ms')})",
                note=f"The median of {args.query_trials} calls after a first one on the restarted daemon (shown, not "
                "judged: SQLite's page cache is cold then); keep-alive Python client. "
                f"SQLite itself counts the tagged jobs through job_tags in {raw:.2f} ms (Python's sqlite3).",
                trials=times[name],
            )
        daemon.stop()

    # --- 3 and 4: capture, then reading the 1,000,000-item job -------------------

    def phase_capture(self):
        args = self.args
        daemon = self.daemon("capture")
        daemon.start()
        daemon.deploy()
        lines = self.details["template"]["mean_line_bytes"]

        # One stream of read_items items.
        key, seconds, wrote = self.capture(daemon, [args.read_items])
        one = args.read_items / seconds
        # Four at once, stream_items in all.
        each = args.stream_items // args.max_proc
        keys4, seconds4, wrote4 = self.capture(daemon, [each] * args.max_proc)
        four = each * args.max_proc / seconds4
        baseline = sqlite_insert_baseline(self.work / "baseline.sqlite", self.template, args.read_items)
        self.details["capture"] = {
            "one": {"items": args.read_items, "seconds": seconds, "crawl_wrote_seconds": wrote},
            "four": {"items": each * args.max_proc, "seconds": seconds4, "crawl_wrote_seconds": wrote4},
            "sqlite_baseline": baseline,
        }
        base_text = f"sqlite3 insert: {fmt(baseline['items_per_s'], 'items/s')}"
        note = (
            f"~{lines:.0f}-byte JSON lines written by the crawl to its feed (the items_dir file) in 1 MiB writes; "
            "from just before run.json to every item readable by `items/P/S/J/stats` (polled every 20 ms; the "
            "daemon looks at a running crawl's files every 250 ms). Baseline: Python's sqlite3 inserting the same "
            "lines into a table like the daemon's records table (WITHOUT ROWID, primary key job, kind, n), 16 KiB pages, WAL, "
            f"synchronous=FULL, {baseline['batch']:,} rows a transaction (what a 4 MiB read of the feed holds)."
        )
        self.figures.add(
            "capture_one",
            f"capture, one stream of {args.read_items:,} items",
            "items/s",
            baseline["items_per_s"],
            one,
            "≥ 100,000 items/s",
            one >= 100_000,
            baseline_text=base_text,
            note=note
            + f" The crawl itself wrote them in {wrote[0] or 0:.2f} s; the daemon used"
            f" {self.details['capture_cpu_us_per_item'][0]:.2f} µs of CPU per item.",
        )
        self.figures.add(
            "capture_four",
            f"capture, {args.max_proc} streams at once ({each:,} items each)",
            "items/s",
            baseline["items_per_s"],
            four,
            "≥ 100,000 items/s",
            four >= 100_000,
            baseline_text=base_text,
            value_text=f"{fmt(four, 'items/s')} in all",
            note=f"The crawls wrote theirs in {max(w or 0 for w in wrote4):.2f} s (slowest); the daemon used"
            f" {self.details['capture_cpu_us_per_item'][1]:.2f} µs of CPU per item.",
        )
        self.read_job(daemon, key[0], args.read_items)
        daemon.stop()

    def capture(self, daemon: Daemon, counts: list[int]):
        """Runs one `items` crawl per count at once (run.json); answers
        their keys, the seconds from the first run.json to every item
        readable, and the seconds each crawl took to write its items."""
        started = time.perf_counter()
        cpu_before = cpu_seconds(daemon.process.pid)
        keys = [daemon.run("items", items=str(count), n=uuid.uuid4().hex[:8]) for count in counts]
        done = [False] * len(keys)
        while not all(done):
            for index, key in enumerate(keys):
                if not done[index] and daemon.stored(key) >= counts[index]:
                    done[index] = True
            if time.perf_counter() - started > 600:
                raise RuntimeError("capture did not finish in 10 minutes")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        self.details.setdefault("capture_cpu_us_per_item", []).append(
            (cpu_seconds(daemon.process.pid) - cpu_before) / sum(counts) * 1e6
        )
        wrote = []
        daemon.wait_for(lambda c: c["running"] == 0, "the crawls to end")
        for key in keys:
            logs = daemon.client.get(f"/logs/{key}?format=text")[0].decode()
            found = re.search(r"wrote (\d+) items in ([\d.]+) s", logs)
            wrote.append(float(found.group(2)) if found else None)
        log(
            f"captured {sum(counts):,} items from {len(counts)} stream(s) in {seconds:.2f} s, "
            f"{self.details['capture_cpu_us_per_item'][-1]:.2f} µs of daemon CPU each"
        )
        return keys, seconds, wrote

    def read_job(self, daemon: Daemon, key: str, items: int):
        args = self.args
        base = f"{daemon.url}/items/{key}"
        # Raw baseline: the crawl's own feed file, through the same reader.
        feeds = sorted((daemon.root / "items").rglob("*.jl"), key=lambda p: p.stat().st_size, reverse=True)
        feed = feeds[0]
        cat = [drain(["cat", str(feed)]) for _ in range(args.read_trials)]
        if cat[0]["lines"] != items:
            raise RuntimeError(f"{feed} has {cat[0]['lines']} lines, not {items}")
        cat_rate = items / median([c["seconds"] for c in cat])
        formats = {
            "JSON lines": (curl(base), 1_000_000),
            "msgpack (the client's default)": (curl(base, {"Accept": "application/x-msgpack"}), 300_000),
            "CSV (5 fields)": (curl(base + "?format=csv&fields=url,title,price,sku,rating"), 300_000),
        }
        growth = []
        reads = {}
        for name, (command, target) in formats.items():
            results = []
            for _ in range(args.read_trials):
                before = rss_kib(daemon.pid).get("VmRSS", 0)
                result = drain(command, rss_pid=daemon.pid)
                result["rss_before_kib"] = before
                result.pop("tail")
                results.append(result)
                growth.append((result["peak_rss_kib"] - before) / 1024)
            if name.startswith("JSON") and results[0]["lines"] != items:
                raise RuntimeError(f"JSON lines read gave {results[0]['lines']} lines, not {items}")
            if name.startswith("CSV") and results[0]["lines"] != items:
                raise RuntimeError(f"CSV read gave {results[0]['lines']} lines, not {items}")
            reads[name] = results
            rate = items / median([r["seconds"] for r in results])
            mib_s = median([r["bytes"] / r["seconds"] / MB for r in results])
            self.figures.add(
                f"read_{name.split()[0].lower()}",
                f"read the {items:,}-item job as {name}",
                "items/s",
                cat_rate,
                rate,
                f"≥ {target:,} items/s",
                rate >= target,
                baseline_text=f"`cat` of the feed: {fmt(cat_rate, 'items/s')}",
                value_text=f"{fmt(rate, 'items/s')} ({mib_s:,.0f} MiB/s)",
                note="GET items/P/S/J by curl, its output read to the end by this script (the `cat` baseline: the "
                f"same reader on `cat` of the feed file, {cat[0]['bytes'] / MB:.0f} MiB); median of "
                f"{args.read_trials}.",
                trials=[r["seconds"] for r in results],
            )
        self.details["reads"] = reads
        self.details["cat"] = [{k: v for k, v in c.items() if k != "tail"} for c in cat]
        worst = max(growth)
        self.figures.add(
            "read_rss",
            "daemon resident memory growth while reading it",
            "MiB",
            None,
            worst,
            "< 32 MB",
            worst * MB < 32_000_000,
            baseline_text="–",
            value_text=f"{worst:.1f} MiB (largest of {len(growth)} reads)",
            note="VmRSS sampled every 5 ms during each read, minus VmRSS just before it.",
        )
        # Paging: a page of 100 by start key, at random places.
        client = Client(daemon.port)
        rng = random.Random(11)
        pages = {}
        for name, headers in (("msgpack", {"Accept": "application/x-msgpack"}), ("JSON lines", {})):
            for _ in range(30):  # warm-up, not counted
                client.get(f"/items/{key}?start={key}/{rng.randrange(0, items - 100)}&count=100", headers)
            times = []
            for _ in range(args.page_trials):
                n = rng.randrange(0, items - 100)
                data, elapsed = client.get(f"/items/{key}?start={key}/{n}&count=100", headers)
                times.append(elapsed * 1000)
                if name == "JSON lines" and len(data.splitlines()) != 100:
                    raise RuntimeError(f"a page held {len(data.splitlines())} records")
            pages[name] = times
        client.close()
        trip, what = self.round_trip(daemon)
        self.details["pages_ms"] = pages
        for name, times in pages.items():
            p50, p99, worst = median(times), percentile(times, 0.99), max(times)
            self.figures.add(
                f"page_{name.split()[0].lower()}",
                f"a page of 100 items by `start=P/S/J/N` key, {name}",
                "ms",
                trip,
                p99,
                "≤ 5 ms",
                p99 <= 5,
                baseline_text=f"{what} round trip: {fmt(trip, 'ms')}",
                value_text=f"p99 {fmt(p99, 'ms')} (median {fmt(p50, 'ms')}, max {fmt(worst, 'ms')})",
                note=f"{args.page_trials} pages at random offsets of the {items:,}-item job after 30 not counted, "
                "keep-alive Python client (its own parsing included, as in the round trip beside it).",
            )


def fill_jobs(path: Path, count: int, tag_fraction: float) -> int:
    """Adds `count` finished jobs of project 1 to scrapyd-rs's store as the
    daemon writes them (the jobs row, its tags in `tags` and one job_tags
    row per tag): every job carries one of four `shard-N` tags, a
    `tag_fraction` of them also TAG, and those have the item and log
    counts capture keeps (record_stats). Answers how many carry TAG."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous = OFF")
    columns = {row[1]: row for row in connection.execute("PRAGMA table_info(jobs)")}
    project_id = connection.execute("SELECT id FROM projects WHERE name = ?", (PROJECT,)).fetchone()[0]
    spiders = []
    for name in ("idle", "items", "noop", "paced"):
        found = connection.execute(
            "SELECT id FROM spiders WHERE project_id = ? AND name = ?", (project_id, name)
        ).fetchone()
        if found is None:
            with connection:
                connection.execute(
                    "INSERT INTO spiders (project_id, id, name) "
                    "SELECT ?, coalesce(max(id), 0) + 1, ? FROM spiders WHERE project_id = ?",
                    (project_id, name, project_id),
                )
            found = connection.execute(
                "SELECT id FROM spiders WHERE project_id = ? AND name = ?", (project_id, name)
            ).fetchone()
        spiders.append((found[0], name))
    values = {
        "job_id": None,
        "project_id": project_id,
        "spider_id": None,
        "counter": None,
        "project": PROJECT,
        "spider": None,
        "version": None,
        "run_version": "1",
        "state": "finished",
        "priority": 0.0,
        "units": 1,
        "args": "[]",
        "settings": "[]",
        "tags": None,
        "pending_time": None,
        "start_time": None,
        "end_time": None,
        "pid": 4242,
        "pid_start_ticks": 1,
        "exit_code": 0,
        "close_reason": "finished",
        "cancel_count": 0,
        "listed": 1,
        "meta": '{"scheduled_by":"bench","started_by":"bench"}',
    }
    missing = [n for n, row in columns.items() if row[3] and row[4] is None and not row[5] and n not in values]
    if missing:
        raise RuntimeError(f"the jobs table has required columns the benchmark doesn't fill: {missing}")
    names = [n for n in values if n in columns]
    every = max(1, round(1 / tag_fraction)) if tag_fraction > 0 else 0
    now = time.time()
    first_seq = (connection.execute("SELECT coalesce(max(seq), 0) FROM jobs").fetchone()[0]) + 1
    last_counters = {
        spider_id: connection.execute(
            "SELECT last_counter FROM spiders WHERE project_id = ? AND id = ?", (project_id, spider_id)
        ).fetchone()[0]
        for spider_id, _ in spiders
    }

    def tags_of(index):
        tags = [f"shard-{index % 4}"]
        if every and index % every == 0:
            tags.append(TAG)
        return tags

    def job_rows():
        rng = random.Random(3)
        counters = dict(last_counters)
        for index in range(count):
            spider_id, spider = spiders[index % len(spiders)]
            counters[spider_id] += 1
            end = now - (count - index) * 60
            row = dict(values)
            row.update(
                job_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                spider_id=spider_id,
                counter=counters[spider_id],
                spider=spider,
                tags=json.dumps(tags_of(index)),
                pending_time=end - 31,
                start_time=end - 30,
                end_time=end,
            )
            yield tuple(row[n] for n in names)

    def tag_rows():
        for index in range(count):
            for tag in tags_of(index):
                yield project_id, tag, first_seq + index

    with connection:
        connection.executemany(f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", job_rows())
        if connection.execute("SELECT max(seq) FROM jobs").fetchone()[0] != first_seq + count - 1:
            raise RuntimeError("job seqs are not the ones expected")
        connection.executemany("INSERT INTO job_tags (project_id, tag, seq) VALUES (?, ?, ?)", tag_rows())
        for index, (spider_id, _) in enumerate(spiders):
            added = len(range(index, count, len(spiders)))
            connection.execute(
                "UPDATE spiders SET last_counter = last_counter + ? WHERE project_id = ? AND id = ?",
                (added, project_id, spider_id),
            )
    tagged = sum(1 for index in range(count) if every and index % every == 0)
    # What capture leaves for a crawl, for the tagged jobs (the ones listed):
    # Dash's listing reads each job's item and log counts.
    data = sqlite3.connect(path.parent / "scrapyd-rs-data.sqlite")
    data.execute("PRAGMA synchronous = OFF")
    counts = json.dumps({name: 1000 for name in ("url", "title", "price", "currency", "sku", "in_stock", "rating", "tags", "description")})
    levels = json.dumps({"20": 40, "10": 200})
    with data:
        data.executemany(
            "INSERT INTO record_stats (job, kind, counts, input_values, input_bytes) VALUES (?, ?, ?, ?, ?)",
            (
                row
                for index in range(0, count, every or count + 1)
                for row in ((first_seq + index, 0, counts, 1000, 300_000), (first_seq + index, 1, levels, 240, 30_000))
            ),
        )
    data.close()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return tagged


def fsync_probe(folder: Path, count: int = 200) -> float:
    """Median milliseconds of a 4 KiB write + fsync in `folder`: what a
    durable commit costs on this disk right now (on a shared VM it varies
    a lot, and the schedule.json figures with it)."""
    path = folder / "fsync-probe"
    times = []
    with open(path, "wb") as probe:
        for _ in range(count):
            started = time.perf_counter()
            probe.write(os.urandom(4096))
            probe.flush()
            os.fsync(probe.fileno())
            times.append((time.perf_counter() - started) * 1000)
    path.unlink()
    return median(times)


def sqlite_tag_count(path: Path, tag: str) -> float:
    """Milliseconds SQLite takes to count a tag's rows of job_tags (median
    of 20), read-only."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    times = []
    for _ in range(20):
        started = time.perf_counter()
        connection.execute("SELECT count(*) FROM job_tags WHERE project_id = 1 AND tag = ?", (tag,)).fetchone()
        times.append((time.perf_counter() - started) * 1000)
    connection.close()
    return median(times)


def sqlite_insert_baseline(path: Path, template: Path, items: int) -> dict:
    """Python's sqlite3 inserting `items` lines of the template into a
    table like the daemon's records table, WAL + synchronous=FULL, in
    transactions of what a 4 MiB read holds."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    connection = sqlite3.connect(path, isolation_level=None)
    # The daemon's job data file's layout: 16 KiB pages (set before WAL).
    connection.execute("PRAGMA page_size = 16384")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute(
        "CREATE TABLE records (job INTEGER NOT NULL, kind INTEGER NOT NULL, n INTEGER NOT NULL, "
        "ts INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, kind, n)) WITHOUT ROWID"
    )
    with open(template, "rb") as source:
        head = source.read(4 * MB)
    batch = head.count(b"\n")
    n = 0
    started = time.perf_counter()
    with open(template, "r") as source:
        while n < items:
            rows = []
            for line in source:
                rows.append((1, 0, n, 0, line.rstrip("\n")))
                n += 1
                if len(rows) == batch or n == items:
                    break
            if not rows:
                break
            connection.execute("BEGIN")
            connection.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)
            connection.execute("COMMIT")
    seconds = time.perf_counter() - started
    connection.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {"items": n, "seconds": seconds, "items_per_s": n / seconds, "batch": batch, "mode": "WAL, synchronous=FULL"}


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite_python": sqlite3.sqlite_version,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapyd-rs", type=Path, default=REPO / "target" / "release" / "scrapyd-rs")
    parser.add_argument("--rs-built-from", default=None, help="what the scrapyd-rs binary was built from")
    parser.add_argument("--hyper", type=Path, default=None, help="hyper-baseline binary: the bare HTTP round trip")
    parser.add_argument("--loadgen", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--work", type=Path, default=BENCH / ".work" / "cloud")
    parser.add_argument("--out", type=Path, default=BENCH / "cloud-results.json")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the project of the job queries")
    parser.add_argument("--tag-fraction", type=float, default=0.01, help="of those jobs, the fraction tagged")
    parser.add_argument("--read-items", type=int, default=1_000_000, help="items of the one-stream job, then read")
    parser.add_argument("--stream-items", type=int, default=1_000_000, help="items of the four streams, in all")
    parser.add_argument(
        "--stream-rate", type=float, default=32_000, help="items/s the paced crawls write in all (Scrapy's own pace)"
    )
    parser.add_argument(
        "--stream-rate-high", type=float, default=100_000, help="items/s of the second window (the capture target)"
    )
    parser.add_argument("--rps-trials", type=int, default=9, help="rounds of schedule.json trials (each state once a round)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per load-generator run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-proc", type=int, default=4)
    parser.add_argument("--query-trials", type=int, default=20)
    parser.add_argument("--read-trials", type=int, default=2)
    parser.add_argument("--page-trials", type=int, default=300)
    parser.add_argument("--only", nargs="*", choices=["schedule", "jobs", "capture"])
    parser.add_argument("--keep-work", action="store_true", help="keep the daemons' folders and the items (GBs)")
    args = parser.parse_args()
    args.scrapyd_rs = args.scrapyd_rs.resolve()
    args.work = args.work.resolve()
    if args.hyper:
        args.hyper = args.hyper.resolve()

    bench = Bench(args)
    log(f"work folder {args.work}; load generator {bench.loadgen.version}")
    bench.run()

    info = machine()
    built = args.rs_built_from or subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    table = bench.figures.markdown()
    notes = [
        f"{info['cpus']} CPUs ({info['cpu']}), shared with the load generator, the crawls and whatever else runs "
        f"on the machine: load average {bench.details['load_before'][0]:.2f} before, "
        f"{bench.details['load_after'][0]:.2f} after.",
        f"scrapyd-rs built from {built}; {bench.loadgen.version}; Python {info['python']} "
        f"(sqlite3 {info['sqlite_python']}); max_proc = {args.max_proc}; a 4 KiB write + fsync took "
        f"{bench.details['fsync_ms']:.2f} ms (median).",
        *bench.notes,
    ]
    print_report(table, notes, bench.figures.rows)
    results = {
        "generated_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": info,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "figures": bench.figures.rows,
        "notes": notes,
        "details": bench.details,
        "table_markdown": table,
    }
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {args.out} after {bench.details['seconds']} s")


if __name__ == "__main__":
    main()
