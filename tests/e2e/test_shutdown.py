"""SIGTERM: what a stopping daemon does to the queue and to running crawls.

A stopping daemon launches nothing new, and a job it could not start because
it was stopping is still pending for the next start. With
`crawls_on_shutdown = stop` it ends its crawls and records them before it
exits; with the default `leave` the next start adopts them (test_restart.py).
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

import requests
from conftest import wait_for, wait_log_contains, process_gone, start_slow

# Stand-ins for the interpreter, so thousands of crawls cost little. The
# daemon appends a crawl's output to its log, where the close reason is read.
EXITS_AT_ONCE = "#!/bin/sh\necho 'INFO: Spider closed (finished)'\n"
NEVER_EXITS = "#!/bin/sh\nwhile :; do sleep 1; done\n"


def fake_python(daemon, name, text):
    path = daemon.root / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def schedule_many(daemon, count, threads=4):
    """Schedules `count` crawls of `pages` over a few keep-alive connections; returns their ids."""

    def schedule(n):
        ids = []
        with requests.Session() as session:
            for _ in range(n):
                answer = session.post(
                    daemon.url + "/schedule.json", data={"project": "testproject", "spider": "pages"}, timeout=60
                ).json()
                assert answer["status"] == "ok", answer
                ids.append(answer["jobid"])
        return ids

    shares = [count // threads + (1 if n < count % threads else 0) for n in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return [jobid for ids in pool.map(schedule, shares) for jobid in ids]


def test_sigterm_while_launching_loses_no_pending_job(daemon_factory, egg_file):
    for trial in range(3):
        daemon = daemon_factory(max_proc=4, finished_to_keep=0)
        daemon.upload("testproject", "1.0", egg_file)
        daemon.restart(python=fake_python(daemon, "exits-at-once", EXITS_AT_ONCE))
        scheduled = schedule_many(daemon, 3000)

        daemon.stop()  # while the launcher is still working through the queue
        first_log = daemon.stderr()
        # The next start runs what is left, with crawls that never end: what
        # it lists is what the first daemon left, plus up to 4 new crawls.
        daemon.restart(python=fake_python(daemon, "never-exits", NEVER_EXITS))

        # Listed once the new daemon has filled its slots with crawls of
        # its own: the first daemon's crawls are listed as running until
        # the new one has recorded their end.
        def slots_filled_by_this_start():
            jobs = daemon.listjobs()
            started_now = set(daemon.started_now())
            running = {job["id"] for job in jobs["running"]}
            return running <= started_now and (len(running) == 4 or not jobs["pending"])

        wait_for(slots_filled_by_this_start, message="the slots filled")
        jobs = daemon.listjobs()
        listed = [job["id"] for state in ("pending", "running", "finished") for job in jobs[state]]
        assert sorted(listed) == sorted(scheduled), f"trial {trial}: jobs lost or duplicated"
        # Every finished job was ended by its own crawl, never by the shutdown.
        reasons = collections.Counter(job.get("close_reason") for job in jobs["finished"])
        assert set(reasons) <= {"finished"}, (trial, reasons, first_log)
        assert jobs["pending"], f"trial {trial}: SIGTERM came after the last launch"
        assert "could not start" not in first_log, first_log
        assert max(daemon.launches().values()) == 1
        daemon.cleanup()


def test_stop_ends_crawls_and_records_them_before_exiting(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=2, crawls_on_shutdown="stop", cancel_kill_grace=2)
    daemon.upload("testproject", "1.0", egg_file)
    slow = start_slow(daemon, site)
    stubborn = start_slow(daemon, site, spider="stubborn")  # ignores TERM: KILLed after the grace
    waiting = daemon.schedule("testproject", "slow", base_url=site.url)
    pids = [daemon.job(jobid)[1]["pid"] for jobid in (slow, stubborn)]

    daemon.stop()

    # Both ended before the daemon did, the stubborn one by the KILL.
    assert all(process_gone(pid) for pid in pids)
    assert "crawl still alive after the grace" in daemon.stderr()
    daemon.start()
    for jobid in (slow, stubborn):
        state, entry = daemon.job(jobid)
        assert state == "finished", (jobid, daemon.listjobs())
        assert entry["close_reason"] == "shutdown", entry
    # Scrapy closed the slow spider itself, on the TERM.
    assert "Spider closed (shutdown)" in daemon.log_path("testproject", "slow", slow).read_text()
    assert daemon.job(stubborn)[1]["exit_code"] == -9
    # The job that waited was not touched; it runs now. (Cancelled once it
    # crawls: a SIGINT while Scrapy is still starting can be lost.)
    assert daemon.job(waiting)[0] in ("pending", "running")
    daemon.wait_state(waiting, "running")
    wait_log_contains(daemon, "testproject", "slow", waiting, "slow page")
    assert daemon.ok("POST", "cancel.json", {"project": "testproject", "job": waiting})["status"] == "ok"
    daemon.wait_finished(waiting)


def test_crawls_on_shutdown_is_leave_or_stop(daemon_factory):
    daemon = daemon_factory()
    daemon.stop()
    for value in ("kill", "yes"):
        daemon.set_options({"crawls_on_shutdown": value})
        try:
            daemon.start()
        except AssertionError as error:
            message = str(error)
        else:
            raise AssertionError(f"crawls_on_shutdown = {value} was accepted")
        assert f'option crawls_on_shutdown = "{value}": expected leave' in message, message
    daemon.set_options({"crawls_on_shutdown": "Leave"})
    assert daemon.start().ok("GET", "daemonstatus.json")["status"] == "ok"
