"""Helpers the benchmark scripts share (bench.py, cloud.py, stores.py): the
log line, medians, free ports, a process's memory, stopping a daemon and
the crawls it left, the machine's CPU and the printed report. Imported as
`common`: the scripts run as scripts (`python3 bench/bench.py …`), so their
folder is on the path.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
from pathlib import Path

MB = 1024 * 1024


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB (neither, once it has exited
    and not yet been waited for)."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name, which may hold spaces: utime and
        # stime are the 14th and 15th fields of the line.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_in_threads(target, count: int) -> None:
    """Runs `target(i)` for i in 0..count, each on a thread of its own, all at
    once; returns when every one has returned."""
    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def process_cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def stop_process(process: subprocess.Popen, grace: float) -> None:
    """TERM, then KILL if it has not exited within `grace` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def processes_in(root: Path) -> list[int]:
    """The processes (but this one) whose working folder is `root` or inside
    it: a daemon started there and the crawls it runs (in its eggs' folders)."""
    root = str(root)
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        cwd = process_cwd(int(entry))
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(int(entry))
    return found


def kill_processes_in(root: Path) -> None:
    """Kills every process (but this one) whose working folder is `root` or
    inside it: the crawls a stopped daemon left."""
    for pid in processes_in(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def cpu_model() -> str | None:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def print_report(table: str, notes: list[str], rows: list[dict]) -> None:
    """The figures' Markdown table, the run's notes, then each figure's."""
    print()
    print(table)
    print()
    for note in notes:
        print(f"- {note}")
    print()
    print("Notes by figure:")
    print()
    for row in rows:
        if row["note"]:
            print(f"- *{row['figure']}*: {row['note']}")
