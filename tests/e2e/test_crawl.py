"""Scheduling and running real Scrapy crawls: items, logs, job states, cancel, priority."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import (
    JOBID_RE,
    NODE_NAME,
    SITE_TITLES,
    TIME_RE,
    cancel,
    daemon_with_slow_crawl,
    expected_json,
    read_items,
    start_slow,
    wait_for,
    wait_log_contains,
)

PENDING_FIELDS = {"id", "project", "spider", "version", "settings", "args"}
RUNNING_FIELDS = {"id", "project", "spider", "pid", "start_time", "log_url", "items_url"}
FINISHED_FIELDS = {"id", "project", "spider", "start_time", "end_time", "log_url", "items_url"}
# documented extras that old clients ignore
EXTRA_FIELDS = {"priority", "close_reason", "exit_code", "items_count"}


def assert_fields(entry: dict, required: set):
    keys = set(entry)
    assert required <= keys, f"missing {required - keys} in {entry}"
    assert keys - required <= EXTRA_FIELDS, f"unexpected {keys - required - EXTRA_FIELDS} in {entry}"


# --------------------------------------------------------------------------


def test_crawl_with_arguments_and_settings(deployed, site):
    daemon = deployed
    jobid = daemon.schedule("testproject", "pages", base_url=site.url, tag="t1", setting="MY_SETTING=hello")
    assert JOBID_RE.match(jobid), jobid
    entry = daemon.wait_finished(jobid)

    items = read_items(daemon.items_path("testproject", "pages", jobid))
    assert sorted(item["title"] for item in items) == sorted(SITE_TITLES)
    assert {item["url"] for item in items} == {site.url + "/"} | {f"{site.url}/page/{n}" for n in range(1, 6)}
    for item in items:
        assert item["tag"] == "t1"
        assert item["my_setting"] == "hello"
        assert item["job"] == jobid

    log = daemon.log_path("testproject", "pages", jobid).read_text()
    assert "Spider closed (finished)" in log

    assert_fields(entry, FINISHED_FIELDS)
    assert entry["project"] == "testproject"
    assert entry["spider"] == "pages"
    assert TIME_RE.match(entry["start_time"]), entry
    assert TIME_RE.match(entry["end_time"]), entry
    assert entry["start_time"] <= entry["end_time"]
    assert entry["log_url"] == f"/logs/testproject/pages/{jobid}.log"
    assert entry["items_url"] == f"/items/testproject/pages/{jobid}.jl"

    status = daemon.request("GET", "/status.json", params={"job": jobid})
    assert status.content == expected_json(currstate="finished", status="ok", node_name=NODE_NAME)
    assert daemon.ok("GET", "daemonstatus.json") == {
        "pending": 0, "running": 0, "finished": 1, "status": "ok", "node_name": NODE_NAME}
    # the listjobs filter
    assert [job["id"] for job in daemon.listjobs("testproject")["finished"]] == [jobid]


def test_repeated_setting_and_first_value_of_repeated_argument(deployed, site):
    daemon = deployed
    response = daemon.request(
        "POST", "/schedule.json",
        data=[("project", "testproject"), ("spider", "pages"), ("base_url", site.url),
              ("tag", "first"), ("tag", "second"),
              ("setting", "MY_SETTING=a=b"), ("setting", "LOG_LEVEL=DEBUG")],
    )
    jobid = response.json()["jobid"]
    daemon.wait_finished(jobid)
    items = read_items(daemon.items_path("testproject", "pages", jobid))
    assert len(items) == len(SITE_TITLES)
    assert {item["tag"] for item in items} == {"first"}
    assert {item["my_setting"] for item in items} == {"a=b"}  # split on the first "=" only
    assert "DEBUG" in daemon.log_path("testproject", "pages", jobid).read_text()


def test_job_states_and_fields(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)

    occupier = start_slow(daemon, site, jobid="occupier")
    state, running = daemon.job(occupier)
    assert state == "running"
    assert_fields(running, RUNNING_FIELDS)
    assert running["project"] == "testproject"
    assert running["spider"] == "slow"
    assert isinstance(running["pid"], int) and running["pid"] > 0
    assert TIME_RE.match(running["start_time"]), running
    assert running["log_url"] == "/logs/testproject/slow/occupier.log"
    assert running["items_url"] in (None, "/items/testproject/slow/occupier.jl")
    assert daemon.request("GET", "/status.json", params={"job": occupier}).content == expected_json(
        currstate="running", status="ok", node_name=NODE_NAME)

    # a user-chosen job id is kept; the slot is busy, so it waits
    jobid = daemon.schedule(
        "testproject", "pages", jobid="my-job-1", _version="1.0", base_url=site.url, tag="t2",
        setting="MY_SETTING=hello",
    )
    assert jobid == "my-job-1"
    state, pending = daemon.job(jobid)
    assert state == "pending"
    assert_fields(pending, PENDING_FIELDS)
    assert {k: pending[k] for k in PENDING_FIELDS} == {
        "id": "my-job-1",
        "project": "testproject",
        "spider": "pages",
        "version": "1.0",
        "settings": {"MY_SETTING": "hello"},
        "args": {"base_url": site.url, "tag": "t2"},
    }
    # without _version, version is null
    other = daemon.schedule("testproject", "pages", base_url=site.url)
    assert daemon.job(other)[1]["version"] is None
    assert daemon.job(other)[1]["args"] == {"base_url": site.url}
    assert daemon.job(other)[1]["settings"] == {}

    response = daemon.request("GET", "/status.json", params={"job": "my-job-1", "project": "testproject"})
    assert response.content == expected_json(currstate="pending", status="ok", node_name=NODE_NAME)
    assert daemon.ok("GET", "daemonstatus.json") == {
        "pending": 2, "running": 1, "finished": 0, "status": "ok", "node_name": NODE_NAME}
    assert [job["id"] for job in daemon.listjobs()["pending"]] == ["my-job-1", other]

    assert cancel(daemon, "testproject", occupier) == "running"
    daemon.wait_finished(occupier)
    daemon.wait_finished("my-job-1")
    daemon.wait_finished(other)

    items = read_items(daemon.items_path("testproject", "pages", "my-job-1"))
    assert len(items) == len(SITE_TITLES)
    assert {(item["tag"], item["my_setting"], item["job"]) for item in items} == {("t2", "hello", "my-job-1")}

    finished = daemon.listjobs()["finished"]
    # most recent first
    assert [job["id"] for job in finished] == [other, "my-job-1", occupier]
    for job in finished:
        assert_fields(job, FINISHED_FIELDS)
        assert TIME_RE.match(job["start_time"]) and TIME_RE.match(job["end_time"]), job
    assert daemon.ok("GET", "daemonstatus.json") == {
        "pending": 0, "running": 0, "finished": 3, "status": "ok", "node_name": NODE_NAME}


def test_cancel_pending_job(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    occupier = start_slow(daemon, site)
    jobid = daemon.schedule("testproject", "pages", base_url=site.url)
    assert daemon.job(jobid)[0] == "pending"

    response = daemon.request("POST", "/cancel.json", data={"project": "testproject", "job": jobid})
    assert response.content == expected_json(prevstate="pending", status="ok", node_name=NODE_NAME)
    assert daemon.job(jobid) == (None, None)
    assert daemon.ok("GET", "status.json", {"job": jobid})["currstate"] is None
    assert daemon.ok("GET", "daemonstatus.json")["pending"] == 0
    # cancelling again: nothing left to cancel
    assert cancel(daemon, "testproject", jobid) is None

    assert cancel(daemon, "testproject", occupier) == "running"
    daemon.wait_finished(occupier)
    time.sleep(1)  # the cancelled job must not have been started by the freed slot
    jobs = daemon.listjobs()
    assert [job["id"] for job in jobs["finished"]] == [occupier]
    assert jobs["pending"] == [] and jobs["running"] == []
    assert daemon.ok("GET", "daemonstatus.json")["finished"] == 1
    assert not daemon.log_path("testproject", "pages", jobid).exists()


def test_cancel_running_job(deployed, site):
    daemon = deployed
    jobid = start_slow(daemon, site)
    response = daemon.request("POST", "/cancel.json", data={"project": "testproject", "job": jobid})
    assert response.content == expected_json(prevstate="running", status="ok", node_name=NODE_NAME)
    entry = daemon.wait_finished(jobid)
    assert entry["log_url"] == f"/logs/testproject/slow/{jobid}.log"
    # SIGINT: Scrapy's graceful shutdown
    assert "Spider closed (shutdown)" in daemon.log_path("testproject", "slow", jobid).read_text()
    assert cancel(daemon, "testproject", jobid) is None


def test_cancel_with_signal_name(deployed, site):
    daemon = deployed
    jobid = start_slow(daemon, site)
    assert cancel(daemon, "testproject", jobid, signal="TERM") == "running"
    daemon.wait_finished(jobid)
    assert "Spider closed (shutdown)" in daemon.log_path("testproject", "slow", jobid).read_text()


def test_cancel_twice_kills_a_crawl_that_ignores_signals(deployed, site):
    daemon = deployed
    jobid = start_slow(daemon, site, spider="stubborn")
    wait_log_contains(daemon, "testproject", "stubborn", jobid, "ignoring SIGINT and SIGTERM")
    pid = daemon.job(jobid)[1]["pid"]

    assert cancel(daemon, "testproject", jobid) == "running"
    time.sleep(2)  # ScrapydWeb's force-stop: a second cancel two seconds later
    assert daemon.job(jobid)[0] == "running"  # it ignored the first one
    assert cancel(daemon, "testproject", jobid) == "running"
    daemon.wait_finished(jobid, timeout=30)
    # KILLed: Scrapy never got to close the spider
    assert "Spider closed" not in daemon.log_path("testproject", "stubborn", jobid).read_text()
    # the crawl process is gone
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        cmdline = b""
    assert jobid.encode() not in cmdline


def test_cancel_unknown_job(deployed):
    response = deployed.request("POST", "/cancel.json", data={"project": "testproject", "job": "nope"})
    assert response.content == expected_json(prevstate=None, status="ok", node_name=NODE_NAME)


def test_priority_across_projects(daemon_factory, egg_file, deploy, site):
    daemon = daemon_factory(max_proc=1)
    deploy(daemon, "alpha", "1", egg=egg_file)
    deploy(daemon, "beta", "1", egg=egg_file)
    occupier = start_slow(daemon, site, project="alpha")

    low = daemon.schedule("alpha", "pages", base_url=site.url, priority="0")
    high = daemon.schedule("beta", "pages", base_url=site.url, priority="5")
    assert daemon.job(low)[0] == "pending" and daemon.job(high)[0] == "pending"

    assert cancel(daemon, "alpha", occupier) == "running"
    low_entry = daemon.wait_finished(low)
    high_entry = daemon.wait_finished(high)
    assert high_entry["start_time"] < low_entry["start_time"], (high_entry, low_entry)
    assert high_entry["end_time"] <= low_entry["start_time"]  # one slot
    assert [job["id"] for job in daemon.listjobs()["finished"]] == [low, high, occupier]
    assert [job["id"] for job in daemon.listjobs("beta")["finished"]] == [high]
    assert len(read_items(daemon.items_path("beta", "pages", high))) == len(SITE_TITLES)


def test_fifo_within_the_same_priority(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    occupier = start_slow(daemon, site)
    first = daemon.schedule("testproject", "pages", base_url=site.url, priority="1.5")
    second = daemon.schedule("testproject", "pages", base_url=site.url, priority="1.5")
    assert cancel(daemon, "testproject", occupier) == "running"
    first_entry = daemon.wait_finished(first)
    second_entry = daemon.wait_finished(second)
    assert first_entry["start_time"] < second_entry["start_time"]


def test_delproject_cancels_its_pending_jobs(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("busy", "1", egg_file)
    daemon.upload("doomed", "1", egg_file)
    occupier = start_slow(daemon, site, project="busy")
    doomed = daemon.schedule("doomed", "pages", base_url=site.url)
    kept = daemon.schedule("busy", "pages", base_url=site.url)
    assert daemon.job(doomed)[0] == "pending"

    daemon.ok("POST", "delproject.json", {"project": "doomed"})
    assert daemon.job(doomed) == (None, None)
    assert [job["id"] for job in daemon.listjobs()["pending"]] == [kept]
    assert daemon.ok("GET", "daemonstatus.json")["pending"] == 1
    assert daemon.ok("GET", "listprojects.json")["projects"] == ["busy"]

    assert cancel(daemon, "busy", occupier) == "running"
    daemon.wait_finished(kept)
    assert daemon.job(doomed) == (None, None)
    assert not daemon.log_path("doomed", "pages", doomed).exists()


def test_delversion_of_the_last_version_cancels_pending_jobs_too(daemon_factory, egg_file, site):
    # deleting the last version deletes the project, like delproject
    daemon = daemon_factory(max_proc=1)
    daemon.upload("busy", "1", egg_file)
    daemon.upload("doomed", "1", egg_file)
    occupier = start_slow(daemon, site, project="busy")
    doomed = daemon.schedule("doomed", "pages", base_url=site.url)
    daemon.ok("POST", "delversion.json", {"project": "doomed", "version": "1"})
    assert daemon.ok("GET", "listprojects.json")["projects"] == ["busy"]
    assert cancel(daemon, "busy", occupier) == "running"
    daemon.wait_finished(occupier)
    time.sleep(1)
    assert daemon.job(doomed) == (None, None)
    assert not daemon.log_path("doomed", "pages", doomed).exists()


def test_jobs_to_keep_and_finished_to_keep(daemon_factory, egg_file, site):
    daemon = daemon_factory(jobs_to_keep=2, finished_to_keep=3)
    daemon.upload("testproject", "1.0", egg_file)
    jobs = []
    for _ in range(4):
        jobid = daemon.schedule("testproject", "pages", base_url=site.url)
        daemon.wait_finished(jobid)
        jobs.append(jobid)
    last = daemon.schedule("testproject", "pages", base_url=site.url)
    wait_for(lambda: [job["id"] for job in daemon.listjobs()["finished"]] == [last, *reversed(jobs)][:3],
             message="finished_to_keep=3")
    daemon.wait_finished(last)

    # jobs_to_keep=2: as in Scrapyd, before each crawl's files are created all
    # but the 2 newest of the folder are deleted, so the last crawl's files
    # sit beside those of the 2 crawls before it
    for folder, suffix in (("logs", ".log"), ("items", ".jl")):
        names = {p.name for p in (daemon.dirs[folder] / "testproject" / "pages").iterdir()}
        assert names == {f"{job}{suffix}" for job in (jobs[-2], jobs[-1], last)}, (folder, names, jobs, last)


def test_status_and_listjobs_filter_by_project(daemon_factory, egg_file, site):
    daemon = daemon_factory(max_proc=1)
    daemon.upload("one", "1", egg_file)
    daemon.upload("two", "1", egg_file)
    running = start_slow(daemon, site, project="one")
    pending = daemon.schedule("one", "pages", base_url=site.url)
    other = daemon.schedule("two", "pages", base_url=site.url)

    assert daemon.ok("GET", "status.json", {"job": running, "project": "one"})["currstate"] == "running"
    assert daemon.ok("GET", "status.json", {"job": running, "project": "two"})["currstate"] is None
    assert daemon.ok("GET", "status.json", {"job": pending, "project": "two"})["currstate"] is None
    assert daemon.ok("GET", "status.json", {"job": other})["currstate"] == "pending"

    jobs = daemon.listjobs("two")
    assert jobs["running"] == [] and jobs["finished"] == []
    assert [job["id"] for job in jobs["pending"]] == [other]
    jobs = daemon.listjobs("one")
    assert [job["id"] for job in jobs["running"]] == [running]
    assert [job["id"] for job in jobs["pending"]] == [pending]

    # cancel only looks in the named project
    assert cancel(daemon, "two", running) is None
    assert cancel(daemon, "two", pending) is None
    assert daemon.job(pending)[0] == "pending"
    assert cancel(daemon, "two", other) == "pending"
    assert cancel(daemon, "one", pending) == "pending"
    assert cancel(daemon, "one", running) == "running"
    daemon.wait_finished(running)


def test_running_entries_always_have_a_pid(daemon_factory, egg_file, site):
    # ScrapydWeb and others read `pid` and `start_time` of every running entry;
    # Scrapyd lists a crawl as running only once its process exists.
    daemon = daemon_factory(max_proc=1)
    daemon.upload("testproject", "1.0", egg_file)
    jobs = [daemon.schedule("testproject", "pages", base_url=site.url) for _ in range(3)]
    bad = []

    def all_finished():
        listing = daemon.listjobs()
        for entry in listing["running"]:
            if not isinstance(entry.get("pid"), int) or not TIME_RE.match(entry.get("start_time") or ""):
                bad.append(entry)
        return {job["id"] for job in listing["finished"]} == set(jobs)

    wait_for(all_finished, interval=0, message="3 crawls to finish")
    assert bad == [], bad[:3]


def test_unicode_job_id_and_arguments(deployed, site):
    daemon = deployed
    jobid = daemon.schedule("testproject", "pages", base_url=site.url, jobid="job ü 1", tag="héllo ✓")
    entry = daemon.wait_finished(jobid)
    assert entry["log_url"] == "/logs/testproject/pages/job ü 1.log"
    assert entry["items_url"] == "/items/testproject/pages/job ü 1.jl"
    items = read_items(daemon.items_path("testproject", "pages", jobid))
    assert {(item["tag"], item["job"]) for item in items} == {("héllo ✓", "job ü 1")}
    response = daemon.request("GET", "/logs/testproject/pages/job%20%C3%BC%201.log")
    assert response.status_code == 200
    assert response.content == daemon.log_path("testproject", "pages", jobid).read_bytes()


def thread_nice(pid: int) -> dict[str, set[int]]:
    """The nice values of a process's threads, by thread name."""
    nice: dict[str, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread has ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        nice.setdefault(name, set()).add(int(fields[16]))  # field 19 of proc_pid_stat(5)
    return nice


def test_bulk_work_yields_the_cpu_to_requests(daemon_factory, egg_file, site):
    # Capturing a crawl and writing its data run at a lower priority (nice
    # +10); answering requests and committing schedules do not.
    daemon, _, _ = daemon_with_slow_crawl(daemon_factory, egg_file, site)
    pid = daemon.process.pid
    own = os.getpriority(os.PRIO_PROCESS, pid)  # the daemon's main thread
    nice = thread_nice(pid)
    bulk = min(own + 10, 19)
    assert nice["capture"] == {bulk}
    assert nice["data-writer"] == {bulk}
    assert nice["store-writer"] == {own}
    assert nice["tokio-rt-worker"] == {own}
