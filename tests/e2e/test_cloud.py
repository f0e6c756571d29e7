"""The Scrapy Cloud API, jobs half, through the official client.

`scrapinghub` (ScrapinghubClient and HubstorageClient) talks to the real
binary; crawls are real Scrapy runs of tests/testproject against the local
test site. The same jobs are read through Scrapyd's API on the side: one job
model for both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import copy_project, process_gone, read_items, wait_for, wait_log_contains
from scrapinghub import HubstorageClient, ScrapinghubClient
from scrapinghub.client.exceptions import DuplicateJobError, NotFound, Unauthorized

KEY = "cloud-test-key"
# A project deployed under a name of digits gets that number as its id.
PROJECT = 7007


@pytest.fixture
def cloud(daemon_factory, egg_file):
    """A daemon with a Cloud key and tests/testproject as project 7007."""
    daemon = daemon_factory(cloud_api_keys=KEY, max_proc=2)
    daemon.upload(str(PROJECT), "1.0", egg_file)
    daemon.client = ScrapinghubClient(KEY, dash_endpoint=daemon.url + "/api/", endpoint=daemon.url + "/")
    daemon.hs = HubstorageClient(auth=KEY, endpoint=daemon.url + "/")
    yield daemon
    daemon.client.close()
    daemon.hs.close()


def state_of(job) -> str:
    return job.metadata.get("state")


def wait_cloud_state(job, state, timeout=60):
    return wait_for(lambda: state_of(job) == state, timeout=timeout, message=f"{job.key} {state}")


def scrapyd_jobs(daemon, project=PROJECT) -> dict:
    """Every listed job of listjobs.json by Scrapyd id, with its section."""
    listing = daemon.get("listjobs.json", params={"project": str(project)})
    return {job["id"]: (section, job) for section in ("pending", "running", "finished")
            for job in listing[section]}


def test_projects_and_spiders(cloud):
    assert cloud.client.projects.list() == [PROJECT]
    project = cloud.client.get_project(PROJECT)
    names = {spider["id"]: spider for spider in project.spiders.list()}
    assert set(names) == {"pages", "slow", "stubborn"}
    assert names["pages"]["version"] == "1.0"
    spider = project.spiders.get("pages")
    assert spider.key == f"{PROJECT}/{spider._id}"
    with pytest.raises(NotFound):
        project.spiders.get("nope")
    # Tags of a spider.
    spider.update_tags(add=["a", "b"])
    spider.update_tags(remove=["a"])
    assert spider.list_tags() == ["b"]
    # An id made for a spider that was never deployed.
    hs_project = cloud.hs.get_project(PROJECT)
    new_id = hs_project.ids.spider("undeployed", create=1)
    assert isinstance(new_id, int) and new_id != spider._id
    assert hs_project.ids.spider("undeployed") == new_id
    listed = {s["id"]: s for s in project.spiders.list()}
    assert listed["undeployed"]["version"] is None


def test_a_cloud_run_is_a_real_crawl_seen_by_both_apis(cloud, site):
    project = cloud.client.get_project(PROJECT)
    job = project.jobs.run("pages", job_args={"base_url": site.url, "tag": "cloud"},
                           job_settings={"MY_SETTING": "from-cloud"}, add_tag=["t1", "t2"],
                           priority=3, units=1)
    assert job.key.startswith(f"{PROJECT}/")
    wait_cloud_state(job, "finished")
    meta = job.metadata.list()
    meta = dict(meta)
    assert meta["close_reason"] == "finished"
    assert meta["tags"] == ["t1", "t2"]
    assert meta["priority"] == 3
    assert meta["spider_args"] == {"base_url": site.url, "tag": "cloud"}
    assert meta["job_settings"] == {"MY_SETTING": "from-cloud"}
    assert meta["api_url"] == cloud.url + "/api/"
    assert meta["pending_time"] <= meta["running_time"] <= meta["finished_time"]
    assert meta["version"] == "1.0"
    # Scrapyd sees the same job, with its Scrapyd id and the shared priority.
    section, entry = next(v for v in scrapyd_jobs(cloud).values() if v[1]["spider"] == "pages")
    assert section == "finished"
    assert entry["priority"] == 1.0  # Cloud 3 is Scrapyd 1.0
    items = read_items(cloud.items_path(str(PROJECT), "pages", entry["id"]))
    assert {item["my_setting"] for item in items} == {"from-cloud"}
    assert {item["tag"] for item in items} == {"cloud"}
    # The activity log has the job's whole life, newest first.
    events = [e["event"] for e in project.activity.iter() if e.get("job") == job.key]
    assert events == ["job:completed", "job:started", "job:scheduled"]


def test_a_scrapyd_job_is_seen_by_the_cloud_client(cloud, site):
    jobid = cloud.schedule(str(PROJECT), "pages", base_url=site.url)
    cloud.wait_finished(jobid)
    project = cloud.client.get_project(PROJECT)
    finished = list(project.jobs.iter(state="finished"))
    assert len(finished) == 1
    key = finished[0]["key"]
    job = project.jobs.get(key)
    assert job.metadata.get("spider") == "pages"
    assert job.metadata.get("priority") == 2  # Scrapyd 0.0 is Cloud 2
    assert job.metadata.get("close_reason") == "finished"
    assert project.jobs.count(state="finished") == 1
    assert project.jobs.count(state="pending") == 0


def test_duplicates_filters_and_tags(cloud, site):
    project = cloud.client.get_project(PROJECT)
    # A project held for outside workers: nothing of it is launched here.
    project.settings.set("botgroups", ["elsewhere"])
    first = project.jobs.run("pages", job_args={"n": "1"}, add_tag=["a"])
    with pytest.raises(DuplicateJobError):
        project.jobs.run("pages", job_args={"n": "1"})
    second = project.jobs.run("pages", job_args={"n": "2"}, add_tag=["b"])
    third = project.jobs.run("slow", job_args={"n": "1"}, add_tag=["a", "b"])
    keys = lambda jobs: [job["key"] for job in jobs]  # noqa: E731
    assert keys(project.jobs.iter(state="pending")) == [third.key, second.key, first.key]
    assert keys(project.jobs.iter(state="pending", has_tag="a")) == [third.key, first.key]
    assert keys(project.jobs.iter(state="pending", has_tag="b", lacks_tag="a")) == [second.key]
    assert keys(project.jobs.iter(state="pending", spider="slow")) == [third.key]
    assert project.jobs.count(state="pending", has_tag=["a", "b"]) == 3
    first.update_tags(add=["c"], remove=["a"])
    assert first.metadata.get("tags") == ["c"]
    assert project.jobs.update_tags(add=["all"], spider="pages") == 2
    assert second.metadata.get("tags") == ["b", "all"]
    # Nothing ran: the daemon serves no bot group of this project.
    time.sleep(1)
    assert all(state_of(job) == "pending" for job in (first, second, third))
    assert len(scrapyd_jobs(cloud)) == 3
    # Dash's own listing.
    listed = requests.get(cloud.url + "/api/jobs/list.json",
                          params={"project": PROJECT, "state": "pending", "has_tag": "all"},
                          auth=(KEY, ""), timeout=10).json()
    assert listed["status"] == "ok" and listed["total"] == 2
    assert {job["id"] for job in listed["jobs"]} == {first.key, second.key}


def test_an_outside_worker_claims_held_jobs(cloud):
    project = cloud.client.get_project(PROJECT)
    project.settings.set("botgroups", ["workers"])
    assert project.settings.get("botgroups") == ["workers"]
    low = project.jobs.run("pages", job_args={"n": "low"}, priority=1)
    high = project.jobs.run("pages", job_args={"n": "high"}, priority=4)
    hs_project = cloud.hs.get_project(PROJECT)
    claimed = hs_project.jobq.start(worker="w1")
    assert claimed["key"] == high.key  # priority first
    assert claimed["auth"]
    assert claimed["worker"] == "w1"
    assert state_of(high) == "running"
    assert hs_project.jobq.start()["key"] == low.key
    assert hs_project.jobq.start() is None  # a claim is never handed out twice
    # The worker reports the end.
    hs_project.jobq.finish(claimed["key"], close_reason="done-outside")
    assert high.metadata.get("close_reason") == "done-outside"
    assert state_of(high) == "finished"
    events = [e["event"] for e in project.activity.iter() if e.get("job") == high.key]
    assert events == ["job:completed", "job:started", "job:scheduled"]


def start_slow_crawl(cloud, site):
    """A `slow` crawl run through the Cloud API, crawling: its job and Scrapyd id."""
    running = cloud.client.get_project(PROJECT).jobs.run("slow", job_args={"base_url": site.url})
    wait_cloud_state(running, "running")
    jobid = next(iter(scrapyd_jobs(cloud)))
    wait_log_contains(cloud, str(PROJECT), "slow", jobid, "slow page")
    return running, jobid


def test_stop_cancel_and_delete(cloud, site):
    project = cloud.client.get_project(PROJECT)
    running, jobid = start_slow_crawl(cloud, site)
    # A crawl of the daemon's own is asked to stop, as cancel.json would.
    response = requests.post(cloud.url + "/api/jobs/stop.json", data={"project": PROJECT, "job": running.key},
                             auth=(KEY, ""), timeout=10)
    assert response.json() == {"status": "ok"}
    wait_cloud_state(running, "finished")
    assert running.metadata.get("close_reason") == "cancelled"
    # Pending jobs are cancelled through jobq.
    project.settings.set("botgroups", ["elsewhere"])
    waiting = project.jobs.run("pages", job_args={"n": "w"})
    assert project.jobs.cancel([waiting.key]) == {"count": 1}
    assert state_of(waiting) == "finished"
    assert waiting.metadata.get("close_reason") == "cancelled"
    events = [e["event"] for e in project.activity.iter() if e.get("job") == waiting.key]
    assert events == ["job:cancelled", "job:scheduled"]
    # Deleted jobs leave both listings.
    answer = requests.post(cloud.url + "/api/jobs/delete.json", data={"project": PROJECT, "job": running.key},
                           auth=(KEY, ""), timeout=10).json()
    assert answer == {"status": "ok", "count": 1}
    assert state_of(running) == "deleted"
    assert jobid not in scrapyd_jobs(cloud)
    assert running.key not in [job["key"] for job in project.jobs.iter(state="finished")]


def test_a_crawl_deleted_while_it_runs_leaves_no_data(cloud, site):
    running, jobid = start_slow_crawl(cloud, site)
    pid = cloud.job(jobid)[1]["pid"]
    answer = requests.post(cloud.url + "/api/jobs/delete.json", data={"project": PROJECT, "job": running.key},
                           auth=(KEY, ""), timeout=10).json()
    assert answer == {"status": "ok", "count": 1}
    # The crawl is stopped; what it logs while closing is not stored.
    wait_for(lambda: process_gone(pid), message="the crawl to end")
    wait_for(lambda: "crawl finished" in cloud.stderr(), message="its end recorded")
    assert state_of(running) == "deleted"
    assert cloud.data_value("SELECT count(*) FROM record_blocks") == 0


def dash_post(cloud, endpoint, data):
    """A Dash call as plain HTTP: the client refuses to send some requests."""
    return requests.post(cloud.url + "/api/" + endpoint, data=data, auth=(KEY, ""), timeout=10)


def storage_post(cloud, path, body):
    return requests.post(cloud.url + path, data=body, auth=(KEY, ""), timeout=10)


def held_jobs(cloud, count):
    """`count` finished jobs of a project no crawl is started for, each
    tagged `keep` and with one item."""
    project = cloud.client.get_project(PROJECT)
    project.settings.set("botgroups", ["elsewhere"])
    jobs = [project.jobs.run("pages", job_args={"n": str(n)}, add_tag=["keep"], meta={"state": "finished"})
            for n in range(count)]
    for job in jobs:
        job.items.write({"n": 1})
        job.items.flush()
    return jobs


def test_a_delete_naming_an_unknown_job_deletes_nothing(cloud):
    first, second = held_jobs(cloud, 2)
    spider_id = first.key.split("/")[1]
    for bad, status in ((f"{PROJECT}/{spider_id}/999", 404), ("1/2/3/4/5", 404), ("", 404)):
        answer = dash_post(cloud, "jobs/delete.json",
                           [("project", PROJECT), ("job", first.key), ("job", bad), ("job", second.key)])
        assert answer.status_code == status, (bad, answer.text)
        assert answer.json()["status"] == "error"
        assert [state_of(job) for job in (first, second)] == ["finished", "finished"], bad
        assert [len(list(job.items.iter())) for job in (first, second)] == [1, 1], bad
    # All known: all deleted, a job named twice counted once.
    answer = dash_post(cloud, "jobs/delete.json",
                       [("project", PROJECT), ("job", first.key), ("job", second.key), ("job", first.key)])
    assert answer.json() == {"status": "ok", "count": 2}
    assert [state_of(job) for job in (first, second)] == ["deleted", "deleted"]


def test_update_and_delete_must_name_their_jobs(cloud):
    jobs = held_jobs(cloud, 3)
    refused = [
        ("jobs/update.json", {"project": PROJECT, "add_tag": "zz"},
         "'job' or 'spider' parameter is required"),
        # Filters alone do not name jobs either.
        ("jobs/update.json", {"project": PROJECT, "remove_tag": "keep", "has_tag": "keep", "state": "finished"},
         "'job' or 'spider' parameter is required"),
        ("jobs/delete.json", {"project": PROJECT}, "'job' parameter is required"),
    ]
    for endpoint, data, message in refused:
        answer = dash_post(cloud, endpoint, data)
        assert answer.status_code == 400, (endpoint, data, answer.text)
        assert answer.json() == {"status": "error", "message": message}
        for job in jobs:
            assert state_of(job) == "finished"
            assert job.metadata.get("tags") == ["keep"]
    # A spider names its jobs (scrapyd-rs's extension, what the client's
    # `jobs.update_tags(spider=...)` sends).
    answer = dash_post(cloud, "jobs/update.json", {"project": PROJECT, "spider": "pages", "add_tag": "zz"})
    assert answer.json() == {"status": "ok", "count": 3}
    assert [job.metadata.get("tags") for job in jobs] == [["keep", "zz"]] * 3


def test_metadata_the_daemon_keeps_is_refused_in_the_wrong_type(cloud):
    job, = held_jobs(cloud, 1)
    path = "/jobs/" + job.key
    before = dict(job.metadata.list())
    refused = [
        (path + "/tags", '"notalist"'),
        (path, json.dumps({"tags": [1, {"a": 2}]})),
        (path, json.dumps({"tags": None})),
        # One bad value refuses the whole change.
        (path, json.dumps({"note": "x", "tags": ["new"], "pending_time": "garbage"})),
        (path + "/pending_time", '"garbage"'),
        (path + "/running_time", "1.5"),
        (path + "/finished_time", "true"),
        (path + "/priority", '"high"'),
        (path + "/priority", "9"),
        (path + "/units", '"two"'),
        (path + "/close_reason", "5"),
        (path + "/spider_args", "[]"),
        (path + "/job_settings", '"x"'),
        (path + "/version", "{}"),
        (path + "/scheduled_by", "1"),
        # Through the queue too, every line checked before any is applied.
        (f"/jobq/{PROJECT}/update",
         json.dumps({"key": job.key, "note": "x"}) + "\n" + json.dumps({"key": job.key, "tags": "x"})),
    ]
    for where, body in refused:
        answer = storage_post(cloud, where, body)
        assert answer.status_code == 400, (where, body, answer.text)
        assert set(answer.json()) == {"message"}, answer.text
        assert dict(job.metadata.list()) == before, (where, body)
    # The message says what was wrong.
    assert storage_post(cloud, path + "/tags", '"notalist"').json() == {
        "message": "tags must be a JSON array of strings"}
    assert storage_post(cloud, path + "/pending_time", '"garbage"').json() == {
        "message": "pending_time must be a whole number of milliseconds, not a string"}
    # What the daemon showed can be written back, as HubstorageClient's
    # save() does; other keys take any value.
    saved = {key: value for key, value in before.items() if key not in ("key", "state", "auth")}
    assert storage_post(cloud, path, json.dumps({**saved, "note": [1, {"a": None}]})).status_code == 200
    assert dict(job.metadata.list()) == {**before, "note": [1, {"a": None}]}
    job.metadata.set("close_reason", "done")
    assert job.metadata.get("close_reason") == "done"
    # A new job's metadata is checked the same way: none is made.
    answer = dash_post(cloud, "run.json", {"project": PROJECT, "spider": "pages",
                                           "meta": json.dumps({"pending_time": "garbage"})})
    assert answer.status_code == 400 and answer.json()["status"] == "error", answer.text
    answer = storage_post(cloud, f"/jobq/{PROJECT}/push", json.dumps({"spider": "pages", "tags": "x"}))
    assert answer.status_code == 400 and set(answer.json()) == {"message"}, answer.text
    assert cloud.client.get_project(PROJECT).jobs.count(state=["pending", "running", "finished"]) == 1


def test_tags_are_kept_once_and_never_empty(cloud):
    project = cloud.client.get_project(PROJECT)
    project.settings.set("botgroups", ["elsewhere"])
    answer = dash_post(cloud, "run.json", [("project", PROJECT), ("spider", "pages"),
                                           ("add_tag", "a"), ("add_tag", "a"), ("add_tag", ""), ("add_tag", "b")])
    job = project.jobs.get(answer.json()["jobid"])
    assert job.metadata.get("tags") == ["a", "b"]
    answer = dash_post(cloud, "jobs/update.json", [("project", PROJECT), ("job", job.key),
                                                   ("add_tag", "c"), ("add_tag", "c"), ("add_tag", "")])
    assert answer.json() == {"status": "ok", "count": 1}
    assert job.metadata.get("tags") == ["a", "b", "c"]
    job.metadata.set("tags", ["d", "", "d", "e", "d"])
    assert job.metadata.get("tags") == ["d", "e"]
    pushed = cloud.hs.get_project(PROJECT).push_job("pages", tags=["x", "x", ""])
    assert pushed.metadata["tags"] == ["x"]
    # Tag filters see each tag once.
    assert [j["key"] for j in project.jobs.iter(state="pending", has_tag="d")] == [job.key]
    # A spider's tags too.
    answer = requests.patch(cloud.url + f"/api/v2/projects/{PROJECT}/spiders/pages/tags",
                            json={"add": ["s", "", "s"]}, auth=(KEY, ""), timeout=10)
    assert answer.status_code == 200
    assert project.spiders.get("pages").list_tags() == ["s"]


def test_metadata_settings_and_activity(cloud):
    project = cloud.client.get_project(PROJECT)
    project.settings.set("botgroups", ["elsewhere"])
    job = project.jobs.run("pages", meta={"custom": {"deep": [1, 2]}, "state": "running"})
    assert state_of(job) == "running"
    assert job.metadata.get("custom") == {"deep": [1, 2]}
    job.metadata.set("note", "hello")
    job.metadata.update({"count": 3, "state": "ignored"})
    assert job.metadata.get("note") == "hello"
    assert job.metadata.get("count") == 3
    assert state_of(job) == "running"  # a merge never changes the state
    job.metadata.delete("note")
    assert job.metadata.get("note") is None
    assert job.metadata.get("never-set") is None
    # Project settings.
    project.settings.set("job_runtime_limit", 24)
    project.settings.update({"a": 1})
    assert project.settings.get("job_runtime_limit") == 24
    project.settings.delete("a")
    assert dict(project.settings.iter()) == {"botgroups": ["elsewhere"], "job_runtime_limit": 24}
    # Activity written by clients, newest first, with filters.
    project.activity.add([{"event": "custom", "n": n} for n in range(5)])
    assert [e["n"] for e in project.activity.iter(count=2)] == [4, 3]
    filtered = list(project.activity.iter(filter=[("n", ">=", [3])], count=10))
    assert [e["n"] for e in filtered] == [4, 3]


def test_keys_are_checked(cloud):
    wrong = ScrapinghubClient("wrong", dash_endpoint=cloud.url + "/api/", endpoint=cloud.url + "/")
    with pytest.raises(Unauthorized):
        wrong.projects.list()
    with pytest.raises(Unauthorized):
        list(wrong.get_project(PROJECT).jobs.iter())
    assert requests.get(cloud.url + "/jobq/%d/count" % PROJECT, timeout=10).status_code == 401
    # The key may come as the `apikey` parameter too, as the Jobs API
    # documents; it is not taken for anything else (run.json: no argument).
    assert requests.get(cloud.url + "/jobq/%d/count" % PROJECT, params={"apikey": "wrong"},
                        timeout=10).status_code == 401
    assert requests.get(cloud.url + "/jobq/%d/count" % PROJECT, params={"apikey": KEY},
                        timeout=10).status_code == 200
    answer = requests.post(cloud.url + "/api/run.json", params={"apikey": KEY},
                           data={"project": PROJECT, "spider": "pages", "arg": "1"}, timeout=10)
    assert answer.json()["status"] == "ok", answer.text
    job = cloud.client.get_job(answer.json()["jobid"])
    assert job.metadata.get("spider_args") == {"arg": "1"}
    job.cancel()
    # Scrapyd's API keeps its own rules (no password here).
    assert cloud.get("listprojects.json")["projects"] == [str(PROJECT)]


def test_shub_deploy(cloud, tmp_path):
    project_dir = copy_project(tmp_path / "project")
    (project_dir / "scrapinghub.yml").write_text(
        f"projects:\n  default: {PROJECT}\n"
        f"endpoints:\n  default: {cloud.url}/api/\n"
        f"apikeys:\n  default: {KEY}\n"
    )
    shub = Path(sys.executable).parent / "shub"
    result = subprocess.run([str(shub), "deploy", "--version", "2.0"], cwd=project_dir,
                            capture_output=True, text=True, timeout=300,
                            env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
                                 "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert cloud.get("listversions.json", params={"project": str(PROJECT)})["versions"] == ["1.0", "2.0"]
    project = cloud.client.get_project(PROJECT)
    assert {s["version"] for s in project.spiders.list() if s["id"] == "pages"} == {"2.0"}


def test_a_crawl_uses_its_own_credentials(cloud, site):
    project = cloud.client.get_project(PROJECT)
    other = project.jobs.run("slow", job_args={"base_url": site.url})
    wait_cloud_state(other, "running")
    job = project.jobs.run("pages", job_args={"base_url": site.url, "cloud_probe": other.key})
    wait_cloud_state(job, "finished")
    assert job.metadata.get("probe") == "written by the crawl"
    entry = next(v for v in scrapyd_jobs(cloud).values() if v[1]["spider"] == "pages")[1]
    items = read_items(cloud.items_path(str(PROJECT), "pages", entry["id"]))
    probe = next(item for item in items if "own" in item)
    assert probe == {"job_key": job.key, "user": job.key, "own": "written", "other": 401}
    # The credentials die with the job.
    assert "auth" not in dict(job.metadata.list())
    project.jobs.cancel([other.key])
    requests.post(cloud.url + "/api/jobs/stop.json", data={"project": PROJECT, "job": other.key},
                  auth=(KEY, ""), timeout=10)
    wait_cloud_state(other, "finished")
