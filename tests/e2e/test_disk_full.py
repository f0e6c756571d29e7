"""A full disk: the daemon's folders on a small tmpfs. Each write that does not
fit is answered with an error, leaves the store as it was, and the daemon
keeps serving. Needs root (mount); skipped elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import zipfile

import pytest


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


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
    jobid = daemon.schedule("testproject", "pages", base_url=site.url)
    after = daemon.listjobs()
    assert len(after["pending"]) + len(after["running"]) + len(after["finished"]) == count + 1
    assert jobid in [job["id"] for job in after["pending"] + after["running"]]
    for job in after["pending"] + after["running"]:
        daemon.post("cancel.json", {"project": "testproject", "job": job["id"]})
