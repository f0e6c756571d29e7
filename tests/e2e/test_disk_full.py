"""A full disk: the daemon's folders on a small tmpfs. Each write that does not
fit is answered with an error, leaves the store as it was, and the daemon
keeps serving. Needs root (mount); skipped elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zipfile

import pytest
from conftest import process_gone, wait_for
from test_shutdown import EXITS_AT_ONCE, NEVER_EXITS, fake_python


def tmpfs(mount_point, options):
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    yield from tmpfs(tmp_path / "small", "size=4m")


@pytest.fixture
def few_inodes(tmp_path):
    """A disk that runs out of inodes (files and folders) long before bytes."""
    yield from tmpfs(tmp_path / "few-inodes", "size=4m,nr_inodes=32")


def fill(disk, leave=0):
    """Fills the disk, leaving about `leave` bytes; returns the filler."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


def big_egg(egg_file, path, size):
    """The test egg plus an incompressible file of `size` bytes."""
    data = egg_file.read_bytes()
    path.write_bytes(data)
    with zipfile.ZipFile(path, "a") as egg:
        egg.writestr("testproject/blob.bin", os.urandom(size))
    return path


def test_egg_larger_than_the_disk(daemon_factory, egg_file, small_disk, tmp_path):
    daemon = daemon_factory(eggs_dir=small_disk / "eggs")
    daemon.upload("testproject", "1.0", egg_file)
    egg = big_egg(egg_file, tmp_path / "big.egg", 5 * 1024 * 1024)

    answer = daemon.upload("testproject", "2.0", egg, expect_ok=False)

    assert answer["status"] == "error"
    assert "No space left on device" in answer["message"] or "space" in answer["message"], answer
    assert daemon.ok("GET", "listversions.json", {"project": "testproject"})["versions"] == ["1.0"]
    assert sorted(p.name for p in (small_disk / "eggs" / "testproject").iterdir()) == ["1.0", "1.0.egg", "scrapy.cfg"]
    # Still serving: the version that fit is usable.
    assert daemon.ok("GET", "listspiders.json", {"project": "testproject"})["spiders"]


def test_database_on_a_full_disk(daemon_factory, egg_file, small_disk, site):
    daemon = daemon_factory(dbs_dir=small_disk / "dbs", max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    filler = fill(small_disk)

    refused = []
    for n in range(200):
        answer = daemon.post("schedule.json", {"project": "testproject", "spider": "slow", "base_url": site.url})
        if answer["status"] == "error":
            refused.append(answer["message"])
            break
    assert refused, "a full disk must refuse a schedule at some point"
    assert "full" in refused[0] or "space" in refused[0], refused
    listed = daemon.listjobs()
    count = len(listed["pending"]) + len(listed["running"]) + len(listed["finished"])

    # Nothing half-stored: what was refused is not listed; the daemon serves.
    assert daemon.ok("GET", "daemonstatus.json")
    filler.unlink()
    jobid = daemon.schedule("testproject", "slow", base_url=site.url)
    after = daemon.listjobs()
    assert len(after["pending"]) + len(after["running"]) + len(after["finished"]) == count + 1
    assert jobid in [job["id"] for job in after["pending"] + after["running"]]
    for job in after["pending"] + after["running"]:
        daemon.post("cancel.json", {"project": "testproject", "job": job["id"]})


def test_jobs_start_by_themselves_once_space_is_freed(daemon_factory, egg_file, small_disk):
    """Claims fail while the database's disk is full, and no schedule comes
    once space is freed: the launcher retries by itself."""
    daemon = daemon_factory(dbs_dir=small_disk / "dbs", max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    daemon.restart(python=fake_python(daemon, "never-exits", NEVER_EXITS))
    occupier = daemon.schedule("testproject", "pages")
    pid = daemon.wait_state(occupier, "running")["pid"]
    waiting = [daemon.schedule("testproject", "pages") for _ in range(3)]
    # A crash with a full disk: the crawl dies too, so the next start must
    # record its end and has a free slot for the jobs that wait.
    daemon.kill9()
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), message="the crawl to die")
    filler = fill(small_disk)

    daemon.set_options({"max_proc": 2, "python": fake_python(daemon, "exits-at-once", EXITS_AT_ONCE)})
    daemon.start()
    wait_for(lambda: "cannot claim the next job" in daemon.stderr(), message="a claim to fail on the full disk")
    time.sleep(1)  # a few retries, all failing
    jobs = daemon.listjobs()
    assert sorted(job["id"] for job in jobs["pending"]) == sorted(waiting), jobs

    filler.unlink()
    for jobid in waiting:
        assert daemon.wait_finished(jobid)["close_reason"] == "finished"
    assert daemon.wait_finished(occupier)["close_reason"] == "lost"
    assert daemon.ok("GET", "daemonstatus.json")["finished"] == 4


def test_a_crawl_whose_log_folder_cannot_be_created_on_a_full_disk_waits(daemon_factory, egg_file, few_inodes):
    """The daemon's disk is full, not the job's fault: the job stays pending
    and starts once there is room again."""
    daemon = daemon_factory(logs_dir=few_inodes / "logs", items_dir="")
    daemon.upload("testproject", "1.0", egg_file)
    daemon.restart(python=fake_python(daemon, "exits-at-once", EXITS_AT_ONCE))
    fillers = []
    try:
        while True:
            fillers.append(few_inodes / f"filler{len(fillers)}")
            fillers[-1].touch()
    except OSError:
        fillers.pop()

    jobid = daemon.schedule("testproject", "pages")
    wait_for(lambda: "back to pending" in daemon.stderr(), message="the launch to fail on the full disk")
    time.sleep(1)  # a few retries, all failing
    assert daemon.job(jobid)[0] == "pending"
    assert "No space left on device" in daemon.stderr()

    for filler in fillers:
        filler.unlink()
    entry = daemon.wait_finished(jobid)
    assert entry["close_reason"] == "finished"
    assert entry["log_url"] == f"/logs/testproject/pages/{jobid}.log"
