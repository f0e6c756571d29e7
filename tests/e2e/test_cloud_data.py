"""Job data through the Scrapy Cloud API: what real crawls produce, captured
into the store and read back with the official client and plain HTTP in
every format; written by clients; exactly once across a restart.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import time
import xml.etree.ElementTree as ElementTree

import pytest
import requests
from conftest import SITE_TITLES, read_items, wait_for, wait_log_contains
from scrapinghub import ScrapinghubClient
from test_cloud import KEY, PROJECT, cloud, scrapyd_jobs, state_of, wait_cloud_state  # noqa: F401


def crawl_pages(cloud, site, **extra):
    project = cloud.client.get_project(PROJECT)
    job = project.jobs.run("pages", job_args={"base_url": site.url, **extra})
    wait_cloud_state(job, "finished")
    return job


def get(cloud, path, **kwargs):
    kwargs.setdefault("auth", (KEY, ""))
    kwargs.setdefault("timeout", 30)
    return requests.get(cloud.url + path, **kwargs)


def test_a_crawls_items_and_log_through_the_client(cloud, site):
    job = crawl_pages(cloud, site, tag="data")
    items = list(job.items.iter())  # msgpack, the client's default
    assert sorted(item["title"] for item in items) == sorted(SITE_TITLES)
    assert all(item["tag"] == "data" for item in items)
    # The same items as the Scrapyd feed file, in its order.
    entry = next(v for v in scrapyd_jobs(cloud).values() if v[1]["spider"] == "pages")[1]
    assert items == read_items(cloud.items_path(str(PROJECT), "pages", entry["id"]))
    # JSON too, with keys.
    keyed = list(job.items.iter(meta=["_key"]))
    assert [item["_key"] for item in keyed] == [f"{job.key}/{n}" for n in range(len(items))]
    assert job.items.get(2)["title"] == items[2]["title"]
    # Logs with levels; the stats dump became scrapystats.
    logs = list(job.logs.iter())
    messages = [record["message"] for record in logs]
    assert any(message.startswith("[scrapy.core.engine] Spider closed (finished)") for message in messages)
    assert {record["level"] for record in logs} >= {20}
    assert all(isinstance(record["time"], int) for record in logs)
    stats = job.metadata.get("scrapystats")
    assert stats["item_scraped_count"] == len(SITE_TITLES)
    assert stats["finish_reason"] == "finished"
    assert job.items.stats()["totals"]["input_values"] == len(SITE_TITLES)
    # Only errors and above.
    assert list(job.logs.iter(level="ERROR")) == []
    # Dash's listing counts what the crawl produced.
    listed = get(cloud, "/api/jobs/list.json", params={"project": PROJECT, "job": job.key}).json()["jobs"][0]
    assert listed["items_scraped"] == len(SITE_TITLES)
    assert listed["logs"] == len(logs)
    assert listed["responses_received"] == len(SITE_TITLES)
    assert listed["errors_count"] == 0


def test_every_format(cloud, site):
    job = crawl_pages(cloud, site)
    path = "/items/" + job.key
    lines = get(cloud, path).text.splitlines()
    assert len(lines) == len(SITE_TITLES) and all(json.loads(line)["title"] for line in lines)
    as_json = get(cloud, path, params={"format": "json"}).json()
    assert [item["title"] for item in as_json] == [json.loads(line)["title"] for line in lines]
    answer = get(cloud, path, params={"format": "csv", "fields": "title,tag", "include_headers": "1"})
    assert answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["title", "tag"] and len(rows) == len(SITE_TITLES) + 1
    assert get(cloud, path, params={"format": "csv"}).status_code == 400  # fields are required
    tree = ElementTree.fromstring(get(cloud, path, params={"format": "xml"}).content)
    assert len(tree.findall("value")) == len(SITE_TITLES)
    assert tree.find("value/struct/member/name") is not None
    by_accept = get(cloud, path, headers={"Accept": "text/csv"}, params={"fields": "title"})
    assert by_accept.text.splitlines()[0] in SITE_TITLES
    texts = get(cloud, "/logs/" + job.key, params={"format": "text"}).text
    assert "Spider closed (finished)" in texts
    # gzip on request, and a file name to save as.
    raw = get(cloud, path, headers={"Accept-Encoding": "gzip"}, stream=True,
              params={"saveas": "pages.jl"})
    assert raw.headers["Content-Encoding"] == "gzip"
    assert raw.headers["Content-Disposition"] == "Attachment; filename=pages.jl"
    assert gzip.decompress(raw.raw.read()).decode().splitlines() == lines
    # Paging by key and count, filters, one record, stats.
    page = get(cloud, path, params={"start": f"{job.key}/2", "count": 2, "meta": "_key"}).text.splitlines()
    assert [json.loads(line)["_key"] for line in page] == [f"{job.key}/2", f"{job.key}/3"]
    after = get(cloud, path, params={"startafter": f"{job.key}/4"}).text.splitlines()
    assert len(after) == len(SITE_TITLES) - 5
    title = json.loads(lines[0])["title"]
    filtered = get(cloud, path, params={"filter": json.dumps(["title", "=", [title]])}).text.splitlines()
    assert [json.loads(line)["title"] for line in filtered] == [title]
    assert json.loads(get(cloud, path + "/1").text)["title"] == json.loads(lines[1])["title"]
    assert get(cloud, path + "/99").status_code == 404
    stats = get(cloud, path + "/stats").json()
    assert stats["counts"]["title"] == len(SITE_TITLES)
    # Across the spider's and the project's jobs.
    spider_path = "/items/" + job.key.rsplit("/", 1)[0]
    assert len(get(cloud, spider_path).text.splitlines()) == len(SITE_TITLES)


def test_clients_write_job_data(cloud):
    project = cloud.client.get_project(PROJECT)
    project.settings.set("botgroups", ["elsewhere"])
    job = project.jobs.run("pages", meta={"state": "running"})
    for n in range(25):
        job.items.write({"n": n})
    job.logs.info("hello")
    job.logs.error("boom")
    job.requests.add(url="http://x/", status=200, method="GET", rs=10, duration=5, ts=1, parent=None, fp="f")
    job.samples.write([1, 2, 3])
    for stream in (job.items, job.logs, job.requests, job.samples):
        stream.flush()
    assert [item["n"] for item in job.items.iter()] == list(range(25))
    assert [record["message"] for record in job.logs.iter(level="ERROR")] == ["boom"]
    assert list(job.requests.iter())[0] == {"url": "http://x/", "status": 200, "method": "GET", "rs": 10,
                                            "duration": 5, "time": 1, "fp": "f"}
    assert list(job.samples.iter()) == [[1, 2, 3]]
    # A retried batch is stored once.
    body = "\n".join(json.dumps({"n": n}) for n in (23, 24, 25)) + "\n"
    answer = requests.post(cloud.url + f"/items/{job.key}", params={"start": 23}, data=body,
                           auth=(KEY, ""), timeout=10)
    assert answer.status_code == 200
    assert [item["n"] for item in job.items.iter()] == list(range(26))
    # A record over 1 MiB is refused whole, nothing stored.
    huge = json.dumps({"blob": "x" * (1024 * 1024 + 10)})
    answer = requests.post(cloud.url + f"/items/{job.key}", params={"start": 26}, data=huge,
                           auth=(KEY, ""), timeout=30)
    assert answer.status_code == 413
    assert len(list(job.items.iter())) == 26
    # Deleting the job deletes its data and gives its pages back to the disk.
    for n in range(400):
        job.items.write({"n": 26 + n, "pad": "x" * 10_000})
    job.items.flush()
    full = cloud.data_value("PRAGMA page_count")
    requests.delete(cloud.url + f"/jobs/{job.key}", auth=(KEY, ""), timeout=10)
    assert get(cloud, f"/items/{job.key}").status_code == 404
    assert cloud.data_value("PRAGMA page_count") * 4 < full, (full, cloud.data_value("PRAGMA page_count"))


def test_lone_surrogates_are_kept_as_replacement_characters(cloud):
    """Python's json.dumps writes a string's lone surrogate as an escape
    ("\\ud800"); no UTF-8 text holds one, and refusing the record would lose
    it (a client retries the batch for hours)."""
    project = cloud.client.get_project(PROJECT)
    job = project.jobs.run("pages", meta={"state": "running"})
    job.items.write({"text": "a\ud800b", "\udc00key": 1})
    job.logs.info("x\udfff")
    job.items.flush()
    job.logs.flush()
    assert list(job.items.iter()) == [{"text": "a\ufffdb", "\ufffdkey": 1}]
    assert [record["message"] for record in job.logs.iter()] == ["x\ufffd"]
    collection = project.collections.get_store("lone")
    collection.set({"_key": "k", "value": "\ud83d"})
    assert collection.get("k") == {"value": "\ufffd"}
    # A surrogate pair is a character, kept as it is.
    job.items.write({"text": "\U0001F600"})
    job.items.flush()
    assert list(job.items.iter())[1] == {"text": "\U0001F600"}


def peak_memory(daemon) -> int:
    """The daemon's peak resident memory so far (VmHWM), in bytes."""
    status = open(f"/proc/{daemon.process.pid}/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def test_uploads_are_checked_whole_and_cost_about_their_size_in_memory(cloud):
    project = cloud.client.get_project(PROJECT)
    project.settings.set("botgroups", ["elsewhere"])
    job = project.jobs.run("pages", meta={"state": "running"})

    def post(stream, body, **kwargs):
        return requests.post(cloud.url + f"/{stream}/{job.key}", data=body, auth=(KEY, ""), timeout=600, **kwargs)

    def stored(stream):
        return get(cloud, f"/{stream}/{job.key}/stats").json()["totals"]["input_values"]

    # Records not of their stream's shape, or a negative start: refused
    # whole, in the Storage API's error format, nothing stored.
    refused = [
        ("items", '{"a": 1}\n[1, 2]\n', {}),
        ("items", "5\n", {}),
        ("items", '{"a": 1}\n', {"start": -1}),
        ("logs", '{"message": "no level, no time"}\n', {}),
        ("logs", '"just a string"\n', {}),
        ("samples", '{"a": 1}\n', {}),
        ("requests", '{"status": 200}\n', {}),
    ]
    for stream, body, params in refused:
        answer = post(stream, body, params=params)
        assert answer.status_code == 400, (stream, body, answer.status_code, answer.text)
        assert answer.json()["message"], answer.text
        assert stored(stream) == 0, (stream, body)
    # An item of 60,000 fields (under 1 MiB) costs about its size to
    # check, not the square of its fields.
    wide = "{" + ",".join(f'"k{n:07d}":0' for n in range(60_000)) + "}"
    started = time.monotonic()
    assert post("items", wide).status_code == 200
    assert time.monotonic() - started < 15
    assert stored("items") == 1
    # A path that takes 1 MiB takes no more once inflated.
    answer = requests.post(cloud.url + f"/jobs/{job.key}", data=gzip.compress(b"1\n" * 2**21),
                           headers={"Content-Encoding": "gzip"}, auth=(KEY, ""), timeout=30)
    assert answer.status_code == 413, answer.text
    # A million 8-byte items: 8 MB once inflated, from a few KB of gzip.
    # Held as a value each, they took over half a GB.
    count = 1_000_000
    body = gzip.compress(b'{"a":1}\n' * count)
    before = peak_memory(cloud)
    answer = post("items", body, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    grown = peak_memory(cloud) - before
    assert grown < 150 * 2**20, f"the peak memory grew by {grown / 2**20:.0f} MiB for an 8 MB batch"
    assert stored("items") == count + 1
    assert get(cloud, f"/items/{job.key}/{count}").json() == {"a": 1}


def test_record_paths_answer_in_the_storage_apis_format(cloud):
    project = cloud.client.get_project(PROJECT)
    project.settings.set("botgroups", ["elsewhere"])
    job = project.jobs.run("pages", meta={"state": "running"})
    job.items.write({"n": 0})
    job.items.flush()
    base = f"/items/{job.key}"
    # A bad index is a bad request; a path below a record, or a write to
    # one, names nothing: JSON errors, not Scrapyd's file pages.
    # An index past what the store holds names no record (as a signed
    # 64-bit number it would be negative).
    beyond = f"{base}/{2**63}"
    for path, status in ((f"{base}/-1", 400), (f"{base}/abc", 400), (f"{base}/1", 404), (f"{base}/0/x", 404),
                         (beyond, 404)):
        answer = get(cloud, path)
        assert answer.status_code == status, (path, answer.status_code, answer.text)
        assert answer.json()["message"], path
    answer = requests.post(cloud.url + f"{base}/0", data='{"n": 1}', auth=(KEY, ""), timeout=10)
    assert answer.status_code == 404 and answer.json()["message"]
    # One record, with the meta a listing would give it.
    record = get(cloud, f"{base}/0", params={"meta": ["_key", "_ts"]}).json()
    assert record["n"] == 0 and record["_key"] == f"{job.key}/0" and record["_ts"] > 0
    # HEAD is GET without the body.
    head = requests.head(cloud.url + base, auth=(KEY, ""), timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"] == get(cloud, base).headers["Content-Type"]


def test_a_crawl_that_fails_to_start_logs_its_error_as_an_error(cloud):
    # A spider the egg does not have (a pushed job names any spider): Scrapy
    # prints its traceback to stderr, after its "Versions" log line.
    pushed = cloud.hs.get_project(PROJECT).push_job("brandnew")
    job = cloud.client.get_job(pushed.key)
    wait_cloud_state(job, "finished")
    errors = list(job.logs.iter(level="ERROR"))
    assert any("Spider not found: brandnew" in record["message"] for record in errors), list(job.logs.iter())
    assert all(record["level"] >= 40 for record in errors)


def test_reads_take_a_time_window(cloud):
    project = cloud.client.get_project(PROJECT)
    project.settings.set("botgroups", ["elsewhere"])
    job = project.jobs.run("pages", meta={"state": "running"})
    for batch in range(3):
        answer = requests.post(cloud.url + f"/items/{job.key}", data=json.dumps({"batch": batch}),
                               auth=(KEY, ""), timeout=10)
        assert answer.status_code == 200
        time.sleep(0.01)
    times = [item["_ts"] for item in job.items.iter(meta=["_ts"])]
    assert times == sorted(times) and len(set(times)) == 3
    # From `startts` on, before `endts`, as the client passes them through.
    assert [item["batch"] for item in job.items.iter(startts=times[1])] == [1, 2]
    assert [item["batch"] for item in job.items.iter(endts=times[1])] == [0]
    assert [item["batch"] for item in job.items.iter(startts=times[1], endts=times[2], count=5)] == [1]
    assert [item["batch"] for item in job.items.iter(startts=times[0], count=1)] == [0]


def test_capture_resumes_after_a_restart_exactly_once(cloud, site):
    project = cloud.client.get_project(PROJECT)
    job = project.jobs.run("slow", job_args={"base_url": site.url})
    wait_cloud_state(job, "running")
    jobid = next(iter(scrapyd_jobs(cloud)))
    wait_log_contains(cloud, str(PROJECT), "slow", jobid, "n=2")
    cloud.kill9()
    cloud.start()
    wait_log_contains(cloud, str(PROJECT), "slow", jobid, "n=6")
    # A line cut short in the items feed, then the crawl ends.
    feed = cloud.items_path(str(PROJECT), "slow", jobid)
    feed.parent.mkdir(parents=True, exist_ok=True)
    with open(feed, "a") as out:
        out.write('{"cut": ')
    requests.post(cloud.url + "/api/jobs/stop.json", data={"project": PROJECT, "job": job.key},
                  auth=(KEY, ""), timeout=10)
    wait_cloud_state(job, "finished")
    pages = [int(m.group(1)) for record in job.logs.iter()
             for m in [re.search(r"slow page .*n=(\d+)", record["message"])] if m]
    assert pages == list(range(pages[0], pages[0] + len(pages))), pages  # each once, in order
    assert len(pages) >= 6
    notes = [record["message"] for record in job.logs.iter() if "scrapyd-rs" in record["message"]]
    assert any("cut short" in note for note in notes), notes


def test_a_scrapyd_jobs_data_is_in_the_cloud_api_too(cloud, site):
    jobid = cloud.schedule(str(PROJECT), "pages", base_url=site.url)
    cloud.wait_finished(jobid)
    project = cloud.client.get_project(PROJECT)
    key = next(iter(project.jobs.iter(state="finished")))["key"]
    items = list(project.jobs.get(key).items.iter())
    assert len(items) == len(SITE_TITLES)
    wait_for(lambda: project.jobs.get(key).metadata.get("scrapystats"), message="stats")


@pytest.fixture
def shub_cloud(daemon_factory, egg_file):
    """Like `cloud`, with crawls run by Scrapy Cloud's own runner."""
    daemon = daemon_factory(cloud_api_keys=KEY, max_proc=2, crawl_runner="shub")
    daemon.upload(str(PROJECT), "1.0", egg_file)
    daemon.client = ScrapinghubClient(KEY, dash_endpoint=daemon.url + "/api/", endpoint=daemon.url + "/")
    yield daemon
    daemon.client.close()


def test_the_shub_runner_streams_everything_and_writes_scrapyds_files(shub_cloud, site):
    cloud = shub_cloud
    job = crawl_pages(cloud, site, tag="shub")
    assert job.metadata.get("close_reason") == "finished"
    items = list(job.items.iter())
    assert sorted(item["title"] for item in items) == sorted(SITE_TITLES)
    assert all(item["tag"] == "shub" for item in items)
    # Requests and the final stats come only with this runner.
    urls = {request["url"].rstrip("/") for request in job.requests.iter()}
    assert urls == {site.url} | {f"{site.url}/page/{n}" for n in range(1, 6)}
    assert job.metadata.get("scrapystats")["item_scraped_count"] == len(SITE_TITLES)
    messages = [record["message"] for record in job.logs.iter()]
    assert any("Spider closed (finished)" in message for message in messages)
    # Scrapyd's files, as Scrapyd users know them.
    entry = next(v for v in scrapyd_jobs(cloud).values() if v[1]["spider"] == "pages")[1]
    assert entry["close_reason"] == "finished"
    log = cloud.log_path(str(PROJECT), "pages", entry["id"]).read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[scrapy\.core\.engine\] INFO: Spider closed \(finished\)$", log, re.M)
    feed = read_items(cloud.items_path(str(PROJECT), "pages", entry["id"]))
    assert [item["title"] for item in feed] == [item["title"] for item in items]
    assert all("_type" not in item for item in feed)
    # The stream file is gone once captured.
    assert not list((cloud.dirs["dbs"] / "streams").glob("*/stream"))
    # Each STA became a sample: [time, items, responses, enqueued, dequeued,
    # errors], one at the spider's opening, one at its close.
    samples = list(job.samples.iter())
    assert len(samples) >= 2, samples
    assert all(len(sample) == 6 and all(isinstance(v, int) for v in sample) for sample in samples)
    assert [sample[0] for sample in samples] == sorted(sample[0] for sample in samples)
    assert samples[0][1:] == [0, 0, 0, 0, 0]
    assert samples[-1][1] == len(SITE_TITLES)
    assert samples[-1][2] == len(urls)


def test_the_shub_runners_outcome_is_the_close_reason_without_a_log(daemon_factory, egg_file, site):
    daemon = daemon_factory(cloud_api_keys=KEY, max_proc=1, crawl_runner="shub", logs_dir="")
    daemon.upload(str(PROJECT), "1.0", egg_file)
    daemon.client = ScrapinghubClient(KEY, dash_endpoint=daemon.url + "/api/", endpoint=daemon.url + "/")
    try:
        project = daemon.client.get_project(PROJECT)
        job = project.jobs.run("pages", job_args={"base_url": site.url},
                               job_settings={"CLOSESPIDER_ITEMCOUNT": 1})
        wait_cloud_state(job, "finished")
        # Only FIN says so: there is no log file to read it from.
        assert job.metadata.get("close_reason") == "closespider_itemcount"
        entry = next(iter(scrapyd_jobs(daemon).values()))[1]
        assert entry["close_reason"] == "closespider_itemcount"
        assert job.metadata.get("scrapystats")["finish_reason"] == "closespider_itemcount"
    finally:
        daemon.client.close()


def test_deleting_a_project_deletes_its_jobs_data(cloud, site):
    jobid = cloud.schedule(str(PROJECT), "pages", base_url=site.url)
    cloud.wait_finished(jobid)
    project = cloud.client.get_project(PROJECT)
    key = next(iter(project.jobs.iter(state="finished")))["key"]
    assert len(list(project.jobs.get(key).items.iter())) == len(SITE_TITLES)
    assert cloud.data_value("SELECT count(*) FROM record_blocks") > 0
    cloud.post("delproject.json", data={"project": str(PROJECT)})
    assert cloud.data_value("SELECT count(*) FROM record_blocks") == 0


# A crawl that says its first words, waits for the file `go` beside it, then
# says its last: what it writes after its log was deleted goes to the file
# it holds open. (A log record is complete once the next one begins.)
WAITING_CRAWL = """#!/bin/sh
echo '2026-01-01 00:00:00 [fake] INFO: first words'
echo '2026-01-01 00:00:00 [fake] INFO: waiting'
while [ ! -e {go} ]; do sleep 0.1; done
echo '2026-01-01 00:00:01 [fake] INFO: last words'
"""


def test_a_log_pruned_by_later_launches_is_still_captured_to_its_end(daemon_factory, egg_file):
    daemon = daemon_factory(cloud_api_keys=KEY, max_proc=3, jobs_to_keep=1)
    daemon.upload(str(PROJECT), "1.0", egg_file)
    go = daemon.root / "go"
    crawl = daemon.root / "waiting-crawl"
    crawl.write_text(WAITING_CRAWL.format(go=go))
    crawl.chmod(0o755)
    daemon.restart(python=crawl)
    project = ScrapinghubClient(KEY, dash_endpoint=daemon.url + "/api/", endpoint=daemon.url + "/").get_project(
        PROJECT
    )

    def log_text(key):
        return get(daemon, "/logs/" + key, params={"format": "text"}).text

    first = daemon.schedule(str(PROJECT), "pages")
    daemon.wait_state(first, "running")
    key = next(iter(project.jobs.iter(state="running")))["key"]
    wait_for(lambda: "first words" in log_text(key), message="first words captured")
    # Two more crawls of the same spider: the second launch keeps only the
    # newest file of the spider's log folder, and the first crawl's log goes.
    for _ in range(2):
        daemon.wait_state(daemon.schedule(str(PROJECT), "pages"), "running")
    assert not daemon.log_path(str(PROJECT), "pages", first).exists(), "jobs_to_keep = 1 deletes older logs"

    go.touch()
    daemon.wait_finished(first)
    assert "last words" in log_text(key)
