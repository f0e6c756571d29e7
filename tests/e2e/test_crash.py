"""Crash safety: kill -9 of the daemon with crawls running and pending, crawls
that end while the daemon is down, a pid that is not the crawl any more, and
folders the daemon cannot write to. After every restart each job is listed in
the state it truly is in, once, and no crawl runs twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3

from conftest import daemon_with_slow_crawl, process_gone, start_slow, wait_for


def test_kill9_with_running_and_pending_crawls(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    running = start_slow(daemon, site)
    pending = daemon.schedule("testproject", "pages", base_url=site.url, jobid="waiting")
    pid = daemon.job(running)[1]["pid"]
    before = daemon.listjobs()

    daemon.kill9()
    assert not process_gone(pid), "the crawl must survive its daemon"
    daemon.start()

    # Adopted: still running with the same pid; the pending job still waits
    # for the slot the adopted crawl holds.
    after = daemon.listjobs()
    assert [job["id"] for job in after["running"]] == [running]
    assert after["running"][0]["pid"] == pid
    assert after["running"][0]["start_time"] == before["running"][0]["start_time"]
    assert [job["id"] for job in after["pending"]] == [pending]

    # Followed to its end, which the new daemon records.
    assert daemon.ok("POST", "cancel.json", {"project": "testproject", "job": running})["prevstate"] == "running"
    finished = daemon.wait_finished(running)
    assert finished["close_reason"] == "cancelled"
    assert finished["end_time"] > finished["start_time"]
    daemon.wait_finished(pending)

    jobs = daemon.listjobs()
    ids = [job["id"] for state in ("pending", "running", "finished") for job in jobs[state]]
    assert sorted(ids) == sorted([running, pending])
    assert daemon.launches()[running] == 1
    assert daemon.launches()[pending] == 1


def test_crawl_that_finished_while_the_daemon_was_down(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    jobid = daemon.schedule("testproject", "pages", base_url=site.url)
    daemon.wait_state(jobid, "running")
    pid = daemon.job(jobid)[1]["pid"] or wait_for(lambda: daemon.job(jobid)[1]["pid"], message="a pid")

    daemon.kill9()
    wait_for(lambda: process_gone(pid), message="the crawl to end on its own")
    daemon.start()

    entry = daemon.wait_finished(jobid)
    # The close reason comes from Scrapy's own log line.
    assert entry["close_reason"] == "finished"
    assert "Spider closed (finished)" in daemon.log_path("testproject", "pages", jobid).read_text()


def test_crawl_killed_while_the_daemon_was_down_is_lost(daemon_factory, egg_file, site):
    daemon, jobid, pid = daemon_with_slow_crawl(daemon_factory, egg_file, site)

    daemon.kill9()
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_for(lambda: process_gone(pid), message="the crawl to die")
    daemon.start()

    entry = daemon.wait_finished(jobid)
    assert entry["close_reason"] == "lost"
    assert daemon.ok("GET", "daemonstatus.json")["running"] == 0


def test_a_live_process_with_another_start_time_is_not_the_crawl(daemon_factory, egg_file, site):
    """A pid reused by another program must not be taken for the crawl: the
    record's process start time no longer matches, so the job is finished."""
    daemon, jobid, pid = daemon_with_slow_crawl(daemon_factory, egg_file, site)

    daemon.kill9()
    database = sqlite3.connect(daemon.dirs["dbs"] / "scrapyd-rs.sqlite")
    with database:
        database.execute("UPDATE jobs SET pid_start_ticks = pid_start_ticks + 1 WHERE job_id = ?", (jobid,))
    database.close()
    daemon.start()

    entry = daemon.wait_finished(jobid)
    assert entry["close_reason"] == "lost"
    # The daemon did not touch the process it did not recognise.
    assert not process_gone(pid)
    os.killpg(os.getpgid(pid), signal.SIGKILL)


def test_sigterm_leaves_crawls_running_for_the_next_start(daemon_factory, egg_file, site):
    daemon, jobid, pid = daemon_with_slow_crawl(daemon_factory, egg_file, site)

    daemon.stop()
    assert not process_gone(pid)
    log = daemon.log_path("testproject", "slow", jobid)
    size = log.stat().st_size
    wait_for(lambda: log.stat().st_size > size, message="the crawl to keep crawling without its daemon")
    daemon.start()

    assert daemon.job(jobid)[0] == "running"
    daemon.ok("POST", "cancel.json", {"project": "testproject", "job": jobid})
    daemon.wait_finished(jobid)


def tree(root):
    return sorted(
        (str(path.relative_to(root)), path.stat().st_size if path.is_file() else None)
        for path in root.rglob("*")
        if "dbs" not in path.parts and not path.name.startswith("daemon-")
    )


def test_unwritable_egg_folder_stores_nothing_and_keeps_serving(daemon, egg_file):
    # A file where the project's egg folder must go: every write there fails.
    daemon.dirs["eggs"].mkdir(exist_ok=True)
    (daemon.dirs["eggs"] / "blocked").write_text("in the way")
    before = tree(daemon.root)

    answer = daemon.upload("blocked", "1.0", egg_file, expect_ok=False)

    assert answer["status"] == "error"
    assert "blocked" in answer["message"]
    assert tree(daemon.root) == before
    assert daemon.ok("GET", "listprojects.json")["projects"] == []
    # Still serving, and other projects still work.
    daemon.upload("fine", "1.0", egg_file)
    assert daemon.ok("GET", "listprojects.json")["projects"] == ["fine"]


def test_unwritable_log_folder_fails_the_job_not_the_daemon(daemon, egg_file, site):
    daemon.upload("testproject", "1.0", egg_file)
    (daemon.dirs["logs"] / "testproject").write_text("in the way")

    jobid = daemon.schedule("testproject", "pages", base_url=site.url)
    entry = daemon.wait_finished(jobid)

    assert entry["close_reason"] == "failed"
    assert entry["log_url"] is None
    assert daemon.ok("GET", "daemonstatus.json")["finished"] == 1
