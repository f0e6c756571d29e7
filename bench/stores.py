"""Benchmark of the stores a project's jobs share: the crawl frontier (HCF)
and collections, on one scrapyd-rs (see bench/README.md, "Collections and
the frontier").

    python3 bench/stores.py [--bin target/release/scrapyd-rs] [--n 1000000]

Standard library only, plus `wrk` for the keep-alive `get` load. The daemon
runs in a fresh folder under bench/.work/ with a Cloud key; its project is
an egg with no spiders (the daemon's `python` is /bin/true, so listing its
spiders finds none), made here. Figures:

1. frontier add: N new requests to one slot, uploads of --batch requests
   over --connections keep-alive connections (the client's writers upload
   5000 at a time); the sum of the answers' `newcount` must be exactly N;
   then a tenth of the uploads again, which must count 0;
2. frontier read + delete: one consumer reads `q?mincount=M` and deletes
   what it read, until the slot is empty; every request must come back once;
3. collection set: N records with random keys, uploads of --batch;
4. collection get: `wrk` GETs random keys of those (msgpack, as the client
   asks) over 32 keep-alive connections for --seconds;
5. SQLite alone: the same rows inserted with Python's sqlite3 into the same
   tables with the daemon's settings (WAL, synchronous=FULL, its cache and
   checkpoint sizes), one transaction per upload, just before the daemon
   does the same: the rate the daemon's writes are compared with.

The daemon's resident memory (VmRSS) is sampled through every phase:
the peak of each phase is printed next to its figure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from common import free_port, rss_kib, run_in_threads

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
PROJECT = 4242
AUTH = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()


class Memory:
    """Samples the daemon's VmRSS every 50 ms; `peak()` since `reset()`."""

    def __init__(self, pid: int):
        self.pid, self.high, self.stopped = pid, 0, False
        threading.Thread(target=self._run, daemon=True).start()

    def now(self) -> int:
        return rss_kib(self.pid).get("VmRSS", 0) * 1024

    def _run(self):
        while not self.stopped:
            try:
                self.high = max(self.high, self.now())
            except OSError:
                return
            time.sleep(0.05)

    def reset(self):
        self.high = self.now()

    def peak(self) -> int:
        return self.high


def mib(count: int) -> str:
    return f"{count / 1048576:.1f} MiB"


class Daemon:
    def __init__(self, binary: str, work: Path):
        self.port = free_port()
        self.work = work
        config = work / "scrapyd.conf"
        config.write_text(
            "[scrapyd]\n"
            f"bind_address = 127.0.0.1\nhttp_port = {self.port}\n"
            f"eggs_dir = {work}/eggs\nlogs_dir = {work}/logs\nitems_dir = {work}/items\n"
            f"dbs_dir = {work}/dbs\n"
            # Listing the spiders of the benchmark's egg finds none.
            "python = /bin/true\n"
            f"cloud_api_keys = {KEY}\n"
        )
        self.process = subprocess.Popen([binary, "--config", str(config)], stderr=open(work / "daemon.log", "wb"))
        deadline = time.monotonic() + 10
        while True:
            try:
                self.request("GET", "/daemonstatus.json")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.memory = Memory(self.process.pid)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def request(self, method, path, body=None, headers=None, connection=None):
        own = connection is None
        connection = connection or self.connection()
        try:
            connection.request(method, path, body=body, headers={"Authorization": AUTH, **(headers or {})})
            response = connection.getresponse()
            data = response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
            return data
        finally:
            if own:
                connection.close()

    def stop(self):
        self.memory.stopped = True
        self.process.terminate()
        self.process.wait(timeout=30)


def empty_egg() -> bytes:
    """An egg the daemon accepts: a settings module named, no spiders."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as egg:
        egg.writestr("EGG-INFO/entry_points.txt", "[scrapy]\nsettings = benchproject.settings\n")
        egg.writestr("benchproject/__init__.py", "")
        egg.writestr("benchproject/settings.py", "")
    return buffer.getvalue()


def upload_egg(daemon: Daemon):
    boundary = "benchboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="project"\r\n\r\n{PROJECT}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="version"\r\n\r\n1\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="egg"; filename="p.egg"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode() + empty_egg() + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    answer = json.loads(daemon.request("POST", "/addversion.json", b"".join(parts),
                                       {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
    assert answer["status"] == "ok", answer


def run_uploads(daemon: Daemon, path: str, bodies: list[bytes], connections: int,
                quarters: list | None = None) -> list[bytes]:
    """POSTs every body (with `?start=`, as the client's writers do) over
    `connections` keep-alive connections; answers the answers in order.
    `quarters` gets the daemon's RSS when a quarter, half, three quarters
    and all of the uploads are answered."""
    answers: list[bytes] = [b""] * len(bodies)
    errors = []
    lock = threading.Lock()
    todo = iter(range(len(bodies)))
    answered = [0]
    marks = {len(bodies) * k // 4 for k in range(1, 5)}

    def worker():
        connection = daemon.connection()
        try:
            while True:
                with lock:
                    index = next(todo, None)
                if index is None:
                    return
                answers[index] = daemon.request("POST", f"{path}?start={index}", bodies[index],
                                                connection=connection)
                with lock:
                    answered[0] += 1
                    if quarters is not None and answered[0] in marks:
                        quarters.append(daemon.memory.now())
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)
        finally:
            connection.close()

    run_in_threads(lambda _index: worker(), connections)
    if errors:
        raise errors[0]
    return answers


def fingerprint(n: int) -> str:
    # Random order, as fingerprints (hashes, URLs of a crawl) arrive.
    return "/item/" + hashlib.sha1(str(n).encode()).hexdigest()[:24]


def collection_key(n: int) -> str:
    # Random order, and computable by the wrk script (get.lua) too.
    return "%07d-%d" % ((n * 7919) % 1000003, n)


def frontier_phase(daemon: Daemon, args, results: dict):
    n, batch = args.n, args.batch
    slot = f"/hcf/{PROJECT}/bench/s/one"
    bodies = [
        "\n".join(json.dumps({"fp": fingerprint(i), "qdata": {"n": i}}) for i in range(start, min(start + batch, n))).encode()
        for start in range(0, n, batch)
    ]
    daemon.memory.reset()
    quarters: list = []
    began = time.perf_counter()
    answers = run_uploads(daemon, slot, bodies, args.connections, quarters)
    took = time.perf_counter() - began
    newcount = sum(json.loads(answer)["newcount"] for answer in answers)
    assert newcount == n, f"newcount {newcount}, expected {n}"
    results["frontier add"] = {"count": n, "seconds": took, "rate": n / took, "peak_rss": daemon.memory.peak(),
                               "rss_by_quarter": quarters, "newcount": newcount}
    # The same fingerprints again (a new writer: other start), counted 0.
    again = bodies[:: 10]
    began = time.perf_counter()
    repeated = [daemon.request("POST", f"{slot}?start={n + i * batch}", body) for i, body in enumerate(again)]
    took_again = time.perf_counter() - began
    assert sum(json.loads(answer)["newcount"] for answer in repeated) == 0
    seen = sum(body.count(b"\n") + 1 for body in again)
    results["frontier add, all seen"] = {"count": seen, "seconds": took_again, "rate": seen / took_again}

    # One consumer reads and deletes until the slot is empty.
    daemon.memory.reset()
    connection = daemon.connection()
    got, rounds = 0, 0
    began = time.perf_counter()
    while True:
        text = daemon.request("GET", f"{slot}/q?mincount={args.mincount}", connection=connection)
        if not text:
            break
        ids = []
        for line in text.splitlines():
            entry = json.loads(line)
            ids.append(entry["id"])
            got += len(entry["requests"])
        daemon.request("POST", f"{slot}/q/deleted", json.dumps(ids).encode(), connection=connection)
        rounds += 1
    took = time.perf_counter() - began
    connection.close()
    assert got == n, f"read {got} requests, expected {n}"
    results["frontier read + delete"] = {"count": got, "seconds": took, "rate": got / took, "rounds": rounds,
                                         "mincount": args.mincount, "peak_rss": daemon.memory.peak()}


def collection_phase(daemon: Daemon, args, results: dict):
    n, batch = args.n, args.batch
    path = f"/collections/{PROJECT}/s/bench"
    value = "x" * 40
    bodies = [
        "\n".join(json.dumps({"_key": collection_key(i), "value": value, "n": i})
                  for i in range(start, min(start + batch, n))).encode()
        for start in range(0, n, batch)
    ]
    daemon.memory.reset()
    quarters: list = []
    began = time.perf_counter()
    run_uploads(daemon, path, bodies, args.connections, quarters)
    took = time.perf_counter() - began
    count = json.loads(daemon.request("GET", path + "/count"))["count"]
    assert count == n, f"count {count}, expected {n}"
    results["collection set"] = {"count": n, "seconds": took, "rate": n / took, "peak_rss": daemon.memory.peak(),
                                 "rss_by_quarter": quarters}

    # Random gets with keep-alive, by wrk.
    script = daemon.work / "get.lua"
    script.write_text(
        f'wrk.headers["Authorization"] = "{AUTH}"\n'
        'wrk.headers["Accept"] = "application/x-msgpack"\n'
        "math.randomseed(os.time())\n"
        "request = function()\n"
        f"  local n = math.random(0, {n - 1})\n"
        '  local key = string.format("%07d-%d", (n * 7919) % 1000003, n)\n'
        f'  return wrk.format("GET", "{path}/" .. key)\n'
        "end\n"
    )
    daemon.memory.reset()
    output = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{args.seconds}s", "-s", str(script), f"http://127.0.0.1:{daemon.port}/"],
        capture_output=True, text=True, check=True).stdout
    rate = float(next(line.split()[1] for line in output.splitlines() if line.startswith("Requests/sec")))
    errors = [line for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line]
    assert not errors, output
    results["collection get"] = {"rate": rate, "seconds": args.seconds, "connections": 32,
                                 "peak_rss": daemon.memory.peak()}


def sqlite_database(path: Path) -> sqlite3.Connection:
    """A database like the daemon's for SQLite alone (Python's sqlite3):
    the same tables, the daemon's settings (store/shared/mod.rs)."""
    database = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "cache_size = -32768",
                   "wal_autocheckpoint = 16384", "journal_size_limit = 67108864"):
        database.execute(f"PRAGMA {pragma}")
    database.executescript(
        """
        CREATE TABLE IF NOT EXISTS hcf_fingerprints (slot_id INTEGER NOT NULL, fp TEXT NOT NULL, fdata TEXT,
                                                     PRIMARY KEY (slot_id, fp)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS hcf_batches (id INTEGER PRIMARY KEY AUTOINCREMENT, slot_id INTEGER NOT NULL,
                                                priority REAL NOT NULL, size INTEGER NOT NULL, requests TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS hcf_queue ON hcf_batches (slot_id, priority, id);
        CREATE TABLE IF NOT EXISTS collection_records (id INTEGER PRIMARY KEY, collection_id INTEGER NOT NULL,
            key TEXT NOT NULL, ts INTEGER NOT NULL, expires INTEGER, value TEXT NOT NULL);
        CREATE UNIQUE INDEX IF NOT EXISTS collection_records_by_key ON collection_records (collection_id, key);
        """
    )
    return database


def sqlite_frontier(args, work: Path, results: dict):
    """The frontier's rows (each fingerprint, and its batch of 100), one
    transaction per upload."""
    n, batch = args.n, args.batch
    uploads = []
    for start in range(0, n, batch):
        fps = [(fingerprint(i),) for i in range(start, min(start + batch, n))]
        entries = [json.dumps([fp, {"n": i}]) for i, (fp,) in zip(range(start, n), fps)]
        chunks = [(1, 0.0, len(entries[k:k + 100]), "[" + ",".join(entries[k:k + 100]) + "]")
                  for k in range(0, len(entries), 100)]
        uploads.append((fps, chunks))
    database = sqlite_database(work / "alone-frontier.sqlite")
    began = time.perf_counter()
    for fps, chunks in uploads:
        database.execute("BEGIN")
        database.executemany("INSERT INTO hcf_fingerprints (slot_id, fp) VALUES (1, ?) ON CONFLICT DO NOTHING", fps)
        database.executemany("INSERT INTO hcf_batches (slot_id, priority, size, requests) VALUES (?, ?, ?, ?)", chunks)
        database.execute("COMMIT")
    took = time.perf_counter() - began
    database.close()
    results["SQLite alone: frontier rows"] = {"count": n, "seconds": took, "rate": n / took}


def sqlite_collection(args, work: Path, results: dict):
    """The collection's rows, one transaction per upload."""
    n, batch = args.n, args.batch
    value = json.dumps({"value": "x" * 40, "n": 0})
    uploads = [[(collection_key(i), value) for i in range(start, min(start + batch, n))]
               for start in range(0, n, batch)]
    database = sqlite_database(work / "alone-collection.sqlite")
    began = time.perf_counter()
    for rows in uploads:
        database.execute("BEGIN")
        database.executemany(
            "INSERT INTO collection_records (collection_id, key, ts, expires, value) VALUES (1, ?, 0, NULL, ?)"
            " ON CONFLICT (collection_id, key) DO UPDATE SET ts = excluded.ts, value = excluded.value", rows)
        database.execute("COMMIT")
    took = time.perf_counter() - began
    database.close()
    results["SQLite alone: collection rows"] = {"count": n, "seconds": took, "rate": n / took}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(ROOT / "target" / "release" / "scrapyd-rs"))
    parser.add_argument("--n", type=int, default=1_000_000, help="requests added, keys set (default 1000000)")
    parser.add_argument("--batch", type=int, default=5000, help="records per upload (default 5000)")
    parser.add_argument("--connections", type=int, default=2, help="concurrent uploaders (default 2)")
    parser.add_argument("--mincount", type=int, default=5000, help="requests per read of the queue (default 5000)")
    parser.add_argument("--seconds", type=int, default=10, help="duration of the get load (default 10)")
    parser.add_argument("--json", default=str(ROOT / "bench" / ".work" / "stores-results.json"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed for the get load (apt-get install wrk)")
    (ROOT / "bench" / ".work").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="stores-", dir=ROOT / "bench" / ".work"))
    results: dict = {}
    daemon = Daemon(args.bin, work)
    try:
        upload_egg(daemon)
        results["idle"] = {"rss": daemon.memory.now()}
        # SQLite alone just before the daemon does the same, so that both
        # run under the same load of the machine.
        sqlite_frontier(args, work, results)
        frontier_phase(daemon, args, results)
        sqlite_collection(args, work, results)
        collection_phase(daemon, args, results)
        results["end"] = {"rss": daemon.memory.now()}
    finally:
        daemon.stop()
    results["machine"] = {"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "n": args.n, "batch": args.batch,
                          "connections": args.connections}
    Path(args.json).write_text(json.dumps(results, indent=2))

    print(f"\n{args.n:,} requests / keys, uploads of {args.batch:,}, {args.connections} uploaders, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}\n")
    print("| figure | rate | time | daemon RSS: peak (at ¼, ½, ¾, all) |")
    print("|---|---|---|---|")
    for name, figure in results.items():
        if "rate" not in figure:
            continue
        unit = ("gets/s" if "get" in name else "rows/s" if "SQLite" in name
                else "requests/s" if "frontier" in name else "keys/s")
        rss = mib(figure["peak_rss"]) if "peak_rss" in figure else "–"
        if figure.get("rss_by_quarter"):
            rss += " (" + ", ".join(f"{rss / 1048576:.0f}" for rss in figure["rss_by_quarter"]) + ")"
        print(f"| {name} | {figure['rate']:,.0f} {unit} | {figure['seconds']:.2f} s | {rss} |")
    print(f"\nRSS idle {mib(results['idle']['rss'])}, at the end {mib(results['end']['rss'])}; "
          f"every figure in {args.json}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
