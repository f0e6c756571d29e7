"""Restarting the daemon loses nothing: projects, spiders, pending and finished jobs."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import ALL_SPIDERS, NODE_NAME, SITE_TITLES, cancel, daemon_with_slow_crawl, process_gone, read_items, start_slow, wait_for


def without_running(jobs: dict) -> dict:
    return {"pending": jobs["pending"], "finished": jobs["finished"]}


def all_ids(jobs: dict) -> list[str]:
    return [job["id"] for state in ("pending", "running", "finished") for job in jobs[state]]


def test_listspiders_after_restart_does_not_need_python(daemon_factory, egg_file, small_egg_file):
    daemon = daemon_factory()
    daemon.upload("p", "1", egg_file)
    daemon.upload("p", "2", small_egg_file)
    daemon.upload("q", "0.1", egg_file)
    before = {
        "projects": sorted(daemon.ok("GET", "listprojects.json")["projects"]),
        "versions": daemon.ok("GET", "listversions.json", {"project": "p"})["versions"],
        "spiders": daemon.ok("GET", "listspiders.json", {"project": "p"})["spiders"],
        "spiders1": daemon.ok("GET", "listspiders.json", {"project": "p", "_version": "1"})["spiders"],
        "spiders_q": daemon.ok("GET", "listspiders.json", {"project": "q"})["spiders"],
    }
    assert before["spiders"] == ["pages", "slow"]
    assert before["spiders1"] == ALL_SPIDERS

    daemon.restart(python="/bin/false")  # any attempt to run Python now fails
    after = {
        "projects": sorted(daemon.ok("GET", "listprojects.json")["projects"]),
        "versions": daemon.ok("GET", "listversions.json", {"project": "p"})["versions"],
        "spiders": daemon.ok("GET", "listspiders.json", {"project": "p"})["spiders"],
        "spiders1": daemon.ok("GET", "listspiders.json", {"project": "p", "_version": "1"})["spiders"],
        "spiders_q": daemon.ok("GET", "listspiders.json", {"project": "q"})["spiders"],
    }
    assert after == before
    # scheduling checks the spider without Python too
    response = daemon.request("POST", "/schedule.json", data={"project": "p", "spider": "stubborn"})
    assert response.json() == {"status": "error", "message": "spider 'stubborn' not found", "node_name": NODE_NAME}


def test_restart_keeps_pending_and_finished_jobs(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    daemon.upload("other", "1.0", egg_file)

    done = daemon.schedule("testproject", "pages", base_url=site.url, tag="before")
    daemon.wait_finished(done)
    occupier = start_slow(daemon, site)
    waiting = [
        daemon.schedule("testproject", "pages", base_url=site.url, tag="low", priority="-1"),
        daemon.schedule("other", "pages", _version="1.0", base_url=site.url, setting="MY_SETTING=x", priority="3"),
        daemon.schedule("testproject", "pages", jobid="chosen", base_url=site.url),
    ]
    cancelled = daemon.schedule("testproject", "pages", base_url=site.url)
    assert cancel(daemon, "testproject", cancelled) == "pending"

    before = daemon.listjobs()
    assert {job["id"] for job in before["pending"]} == set(waiting)
    assert [job["id"] for job in before["finished"]] == [done]
    status_before = daemon.ok("GET", "daemonstatus.json")

    daemon.restart()

    after = daemon.listjobs()
    assert without_running(after) == without_running(before)
    assert daemon.ok("GET", "daemonstatus.json")["pending"] == status_before["pending"]
    # the crawl that was running is still accounted for (adopted, or finished)
    ids = all_ids(after)
    assert len(ids) == len(set(ids)), after
    assert occupier in ids
    assert cancelled not in ids

    if daemon.job(occupier)[0] == "running":
        assert cancel(daemon, "testproject", occupier) == "running"
    daemon.wait_finished(occupier)
    for jobid in waiting:
        daemon.wait_finished(jobid)
    final = daemon.listjobs()
    assert final["pending"] == [] and final["running"] == []
    # priority order survived the restart: 3, then 0, then -1
    assert [job["id"] for job in final["finished"]][:3] == [waiting[0], "chosen", waiting[1]]
    ids = all_ids(final)
    assert len(ids) == len(set(ids)) == 5
    items = read_items(daemon.items_path("other", "pages", waiting[1]))
    assert {item["my_setting"] for item in items} == {"x"}
    assert len(items) == len(SITE_TITLES)


def test_running_crawl_survives_a_restart(daemon_factory, egg_file, site):
    daemon, occupier, pid = daemon_with_slow_crawl(daemon_factory, egg_file, site)

    daemon.restart()

    # SIGTERM leaves crawls running; the new daemon adopts it
    state, entry = daemon.job(occupier)
    assert state == "running", daemon.listjobs()
    assert entry["pid"] == pid
    assert daemon.ok("GET", "daemonstatus.json")["running"] == 1
    assert cancel(daemon, "testproject", occupier) == "running"
    entry = daemon.wait_finished(occupier)
    log = daemon.log_path("testproject", "slow", occupier).read_text()
    assert "Spider closed (shutdown)" in log


def test_crawl_dead_during_a_kill9_is_finished_after_restart(daemon_factory, egg_file, site):
    daemon, occupier, pid = daemon_with_slow_crawl(daemon_factory, egg_file, site)
    pending = daemon.schedule("testproject", "pages", base_url=site.url)

    daemon.kill9()
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_for(lambda: process_gone(pid), message="crawl to die")
    daemon.start()

    daemon.wait_finished(occupier)
    daemon.wait_finished(pending)
    ids = all_ids(daemon.listjobs())
    assert sorted(ids) == sorted([occupier, pending])


def test_crawl_that_ended_while_the_daemon_was_down(daemon_factory, egg_file, site):
    daemon, occupier, pid = daemon_with_slow_crawl(daemon_factory, egg_file, site)
    pending = daemon.schedule("testproject", "pages", base_url=site.url)

    daemon.stop()
    os.killpg(pid, signal.SIGINT)  # Scrapy closes the spider cleanly
    wait_for(lambda: process_gone(pid), message="crawl to end")
    daemon.start()

    entry = daemon.wait_finished(occupier)
    if "close_reason" in entry:
        assert entry["close_reason"] == "shutdown"  # read from its log
    assert entry["log_url"] == f"/logs/testproject/slow/{occupier}.log"
    daemon.wait_finished(pending)
    assert sorted(all_ids(daemon.listjobs())) == sorted([occupier, pending])


@pytest.mark.parametrize("python", ["/bin/false", "/nonexistent/python"])
def test_crawl_that_cannot_start_ends_finished(daemon_factory, egg_file, site, python):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    daemon.restart(python=python)
    first = daemon.schedule("testproject", "pages", base_url=site.url)
    second = daemon.schedule("testproject", "pages", base_url=site.url)
    daemon.wait_finished(first)
    daemon.wait_finished(second)  # the slot was freed
    assert daemon.ok("GET", "daemonstatus.json") == {
        "pending": 0, "running": 0, "finished": 2, "status": "ok", "node_name": NODE_NAME}
