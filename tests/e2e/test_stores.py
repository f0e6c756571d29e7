"""The Scrapy Cloud stores a project's jobs share: collections and the crawl
frontier (HCF), through the official `scrapinghub` client and, where the
wire itself is the point (status codes, error texts, msgpack), raw HTTP.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time

import msgpack
import pytest
import requests
from conftest import read_items, wait_for
from scrapinghub import HubstorageClient, ScrapinghubClient
from scrapinghub.client.exceptions import BadRequest, NotFound, ValueTooLarge

KEY = "stores-test-key"
PROJECT = 8008
AUTH = (KEY, "")


@pytest.fixture
def cloud(daemon_factory, egg_file):
    """A daemon with a Cloud key and tests/testproject as project 8008."""
    daemon = daemon_factory(cloud_api_keys=KEY, max_proc=2)
    daemon.upload(str(PROJECT), "1.0", egg_file)
    connect(daemon)
    yield daemon
    daemon.client.close()


def connect(daemon):
    daemon.client = ScrapinghubClient(KEY, dash_endpoint=daemon.url + "/api/", endpoint=daemon.url + "/")
    daemon.project = daemon.client.get_project(PROJECT)


def url(daemon, path):
    return f"{daemon.url}/{path}"


# --------------------------------------------------------------------------
# Collections
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["s", "cs", "vs", "vcs"])
def test_a_collection_of_each_type(cloud, kind):
    col = cloud.project.collections.get(kind, "things")
    col.set({"_key": "b", "n": 2, "tags": ["x"]})
    time.sleep(0.01)  # three writes, three times (milliseconds)
    col.set([{"_key": "a", "n": 1}, {"_key": "c", "n": 3, "tags": ["x", "y"]}, {"_key": "ab", "n": 4}])
    time.sleep(0.01)
    col.set({"_key": "b", "n": 20, "tags": ["x"]})  # the last value wins
    assert col.get("b") == {"n": 20, "tags": ["x"]}
    with pytest.raises(NotFound):
        col.get("nope")
    # Scans: key order, with `_key` when asked (the client always asks).
    assert [r["_key"] for r in col.iter()] == ["a", "ab", "b", "c"]
    assert list(col.iter(key=["c", "a", "zz"])) == [{"_key": "a", "n": 1}, {"_key": "c", "n": 3, "tags": ["x", "y"]}]
    assert [r["_key"] for r in col.iter(prefix="a")] == ["a", "ab"]
    assert [r["_key"] for r in col.iter(prefix=["a", "c"], prefixcount=1)] == ["a", "c"]
    assert [r["_key"] for r in col.iter(start="ab")] == ["ab", "b", "c"]
    assert [r["_key"] for r in col.iter(startafter="ab", count=1)] == ["b"]
    assert [r["_key"] for r in col.iter(filter=[("tags", "haselement", ["x"])])] == ["b", "c"]
    assert [r["_key"] for r in col.iter(filter=[("n", ">", [2])], prefix="a")] == ["ab"]
    with_ts = list(col.iter(meta=["_key", "_ts"], key="a"))
    ts = with_ts[0]["_ts"]
    assert isinstance(ts, int) and ts > 1_600_000_000_000
    assert [r["_key"] for r in col.iter(startts=ts, endts=ts + 1)] == ["a", "ab", "c"]
    assert col.count() == 4
    assert col.count(prefix="a") == 2
    assert col.count(filter='["n", ">=", [4]]') == 2
    # Deleting keys, present or not; the emptied collection stays listed.
    col.delete(["a", "ab", "never-there"])
    col.delete("b")
    assert [r["_key"] for r in col.iter()] == ["c"]
    col.delete("c")
    assert col.count() == 0
    assert {"name": "things", "type": kind} in cloud.project.collections.list()
    # Truncating removes it.
    col.set({"_key": "z"})
    col.truncate()
    assert list(col.iter()) == []
    assert {"name": "things", "type": kind} not in cloud.project.collections.list()


def test_types_and_names_are_separate_collections(cloud):
    collections = cloud.project.collections
    for kind in ("s", "cs", "vs", "vcs"):
        collections.get(kind, "shared").set({"_key": "k", "kind": kind})
    collections.get_store("other").set({"_key": "k", "kind": "other"})
    assert collections.get_cached_store("shared").get("k") == {"kind": "cs"}
    assert collections.get_versioned_cached_store("shared").get("k") == {"kind": "vcs"}
    listed = collections.list()
    assert listed == [{"name": "other", "type": "s"}] + [
        {"name": "shared", "type": kind} for kind in ("s", "cs", "vs", "vcs")
    ]
    # Truncating a name takes every type of it, and only it.
    collections.get_store("shared").truncate()
    assert collections.list() == [{"name": "other", "type": "s"}]


def test_bad_records_are_refused_and_change_nothing(cloud):
    col = cloud.project.collections.get_store("strict")
    col.set({"_key": "kept", "v": 1})
    path = url(cloud, f"collections/{PROJECT}/s/strict")
    for body in ['{"_key": "new", "v": 1}\n{"v": 2}', '{"_key": []}', '{"_key": ""}', '{"_key": "new"}\nnot json',
                 '["_key", "new"]']:
        answer = requests.post(path, data=body, auth=AUTH, timeout=10)
        assert answer.status_code == 400, body
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert answer.text.startswith("Error parsing data, ")
    answer = requests.post(path, data='{"v": 2}', auth=AUTH, timeout=10)
    assert answer.text == "Error parsing data, missing value for _key field"
    with pytest.raises(BadRequest):
        col.set({"no": "key"})
    # A value over 1 MiB: 413, in a batch with a good record or alone.
    with pytest.raises(ValueTooLarge):
        col.set([{"_key": "new"}, {"_key": "large", "value": "x" * 1024**2}])
    assert [r["_key"] for r in col.iter()] == ["kept"]
    # Types and names are checked; reads of a collection never written are empty.
    assert requests.get(url(cloud, f"collections/{PROJECT}/x/strict"), auth=AUTH, timeout=10).status_code == 400
    assert requests.post(url(cloud, f"collections/{PROJECT}/s/bad-name"), data='{"_key": "k"}',
                         auth=AUTH, timeout=10).status_code == 400
    assert list(cloud.project.collections.get_store("unwritten").iter()) == []
    assert cloud.project.collections.get_store("unwritten").count() == 0
    with pytest.raises(NotFound):
        cloud.project.collections.get_store("unwritten").get("k")
    # A project that does not exist, and no credentials.
    assert requests.get(url(cloud, "collections/999/s/strict"), auth=AUTH, timeout=10).status_code == 404
    assert requests.get(url(cloud, f"collections/{PROJECT}/s/strict"), timeout=10).status_code == 401


def test_reads_come_as_the_client_asks(cloud):
    col = cloud.project.collections.get_store("formats")
    col.set([{"_key": "a", "n": 1, "f": 1.5, "s": "é", "l": [None, True]}, {"_key": "b", "n": 2}])
    path = url(cloud, f"collections/{PROJECT}/s/formats")
    # msgpack: concatenated maps, whatever else.
    answer = requests.get(path, params={"meta": "_key"}, headers={"Accept": "application/x-msgpack"},
                          auth=AUTH, timeout=10)
    assert answer.headers["Content-Type"] == "application/x-msgpack"
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(answer.content)
    assert list(unpacker) == [{"_key": "a", "n": 1, "f": 1.5, "s": "é", "l": [None, True]}, {"_key": "b", "n": 2}]
    one = requests.get(path + "/b", headers={"Accept": "application/x-msgpack"}, auth=AUTH, timeout=10)
    assert msgpack.unpackb(one.content, raw=False) == {"n": 2}
    # JSON lines by default, a JSON array for application/json or format=json,
    # and the other formats of job data.
    lines = requests.get(path, auth=AUTH, timeout=10)
    assert lines.headers["Content-Type"].startswith("application/x-jsonlines")
    assert [json.loads(line) for line in lines.text.splitlines()] == [
        {"n": 1, "f": 1.5, "s": "é", "l": [None, True]}, {"n": 2}]
    array = requests.get(path, headers={"Accept": "application/json"}, auth=AUTH, timeout=10)
    assert array.json() == [{"n": 1, "f": 1.5, "s": "é", "l": [None, True]}, {"n": 2}]
    assert requests.get(path, params={"format": "json", "count": 0}, auth=AUTH, timeout=10).json() == []
    xml = requests.get(path, params={"format": "xml", "key": "b"}, auth=AUTH, timeout=10)
    assert xml.headers["Content-Type"].startswith("application/xml") and "<items>" in xml.text
    assert requests.get(path, params={"format": "yaml"}, auth=AUTH, timeout=10).status_code == 400
    # The count and the list are JSON whatever the client accepts.
    count = requests.get(path + "/count", headers={"Accept": "application/x-msgpack"}, auth=AUTH, timeout=10)
    assert count.json() == {"count": 2, "scanned": 2}


def test_a_scan_streams_a_big_collection(cloud):
    col = cloud.project.collections.get_store("big")
    writer = col.create_writer(size=5000)
    for n in range(20000):
        writer.write({"_key": f"k{n:06d}", "n": n, "pad": "p" * 50})
    writer.close()
    keys = [record["_key"] for record in col.iter()]
    assert keys == [f"k{n:06d}" for n in range(20000)]
    assert col.count(filter='["n", "<", [10]]') == 10
    assert [r["n"] for r in col.iter(start="k019998")] == [19998, 19999]


def test_batch_uploads_are_applied_once(cloud):
    """The client's writers send `?start=`: a retried upload (its answer
    lost) must not undo what was written meanwhile, nor count twice."""
    path = url(cloud, f"collections/{PROJECT}/s/uploads")
    first = '{"_key": "k", "v": "first"}\n'
    assert requests.post(path, params={"start": 0}, data=first, auth=AUTH, timeout=10).ok
    assert requests.post(path, data='{"_key": "k", "v": "meanwhile"}', auth=AUTH, timeout=10).ok
    assert requests.post(path, params={"start": 0}, data=first, auth=AUTH, timeout=10).ok  # the retry
    col = cloud.project.collections.get_store("uploads")
    assert col.get("k") == {"v": "meanwhile"}
    # Once keys were deleted, the same upload again is a new write.
    col.delete("k")
    assert requests.post(path, params={"start": 0}, data=first, auth=AUTH, timeout=10).ok
    assert col.get("k") == {"v": "first"}
    # gzip uploads, as HubstorageClient's collection writers send them.
    zipped = gzip.compress(b'{"_key": "z", "v": 1}\n{"_key": "y", "v": 2}\n')
    answer = requests.post(path, params={"start": 1}, data=zipped, headers={"Content-Encoding": "gzip"},
                           auth=AUTH, timeout=10)
    assert answer.ok, answer.text
    hs = HubstorageClient(auth=KEY, endpoint=cloud.url + "/")
    writer = hs.get_project(PROJECT).collections.create_writer("s", "uploads")
    writer.write({"_key": "w", "v": 3})
    writer.close()
    hs.close()
    assert [r["_key"] for r in col.iter()] == ["k", "w", "y", "z"]


# --------------------------------------------------------------------------
# The crawl frontier
# --------------------------------------------------------------------------


def requests_of(batches):
    return [request for batch in batches for request in batch["requests"]]


def test_frontier_newcount_dedups_across_uploads(cloud):
    frontiers = cloud.project.frontiers
    slot = frontiers.get("web").get("example.com")
    slot.q.add([{"fp": f"/p/{n}"} for n in range(150)])
    slot.flush()
    assert slot.newcount == 150
    # Seen fingerprints count for nothing, in a later upload or in the same one.
    slot.q.add([{"fp": "/p/0"}, {"fp": "/p/149"}, {"fp": "/new", "qdata": {"d": 1}}, {"fp": "/new"}])
    slot.f.add(["/p/1", "/only-fp"])
    slot.flush()
    assert slot.newcount == 152
    # Batches of at most 100 new requests of one upload, first come first.
    batches = slot.q.list()
    assert [len(batch["requests"]) for batch in batches] == [100, 50, 2]
    assert requests_of(batches) == [[f"/p/{n}", None] for n in range(150)] + [["/new", {"d": 1}], ["/only-fp", None]]
    assert len({batch["id"] for batch in batches}) == 3
    # mincount: batches until they hold at least that many requests.
    assert [len(b["requests"]) for b in slot.q.list(mincount=101)] == [100, 50]
    assert [len(b["requests"]) for b in slot.q.list(mincount=1)] == [100]
    # Deleting batches (single ids and lists); fingerprints stay.
    slot.q.delete(batches[0]["id"])
    assert slot.q.list() == batches[1:]
    slot.q.delete([batches[1]["id"], "00000000ffffffffff"])
    assert slot.q.list() == batches[2:]
    slot.q.add([{"fp": "/p/5"}])
    slot.flush()
    assert slot.newcount == 152
    # Another slot of another frontier counts on its own.
    other = frontiers.get("other").get("s")
    other.q.add([{"fp": "/p/0"}])
    other.flush()
    assert other.newcount == 1
    assert frontiers.list() == ["other", "web"]
    assert frontiers.get("web").list() == ["example.com"]


def test_priorities_and_fingerprint_data(cloud):
    slot = cloud.project.frontiers.get("prio").get("s")
    slot.q.add([{"fp": "late", "p": 2}, {"fp": "b", "fdata": {"x": 1}}, {"fp": "deep", "p": 1, "qdata": [1]},
                {"fp": "a", "p": 0}])
    slot.flush()
    # Lowest p first, then first come.
    assert [batch["requests"] for batch in slot.q.list()] == [[["b", None], ["a", None]], [["deep", [1]]],
                                                                [["late", None]]]
    # Fingerprints in lexicographic order, with their fdata.
    answer = requests.get(url(cloud, f"hcf/{PROJECT}/prio/s/s/f"), auth=AUTH, timeout=10)
    assert [json.loads(line) for line in answer.text.splitlines()] == [
        {"fp": "a"}, {"fp": "b", "fdata": {"x": 1}}, {"fp": "deep"}, {"fp": "late"}]
    assert slot.f.list() == ["a", "b", "deep", "late"]


def test_bad_requests_are_refused_and_change_nothing(cloud):
    path = url(cloud, f"hcf/{PROJECT}/f/s/s1")
    for body in ['{"fp": "ok"}\n{"nofp": 1}', '{"fp": ""}', '{"fp": 3}', '{"fp": "ok", "p": "high"}', '"ok"',
                 'not json']:
        answer = requests.post(path, data=body, auth=AUTH, timeout=10)
        assert answer.status_code == 400, body
        assert "message" in answer.json()
    big = json.dumps({"fp": "big", "qdata": "x" * 1024**2})
    assert requests.post(path, data=big, auth=AUTH, timeout=10).status_code == 413
    assert cloud.project.frontiers.list() == []
    deleted = requests.post(path + "/q/deleted", data="[1]", auth=AUTH, timeout=10)
    assert deleted.status_code == 400
    # A body in an encoding the daemon does not read is refused, not
    # stored as garbage.
    answer = requests.post(path, data=b'{"fp": "br"}', headers={"Content-Encoding": "br"}, auth=AUTH, timeout=10)
    assert answer.status_code == 400 and "Content-Encoding" in answer.json()["message"]
    assert cloud.project.frontiers.list() == []
    # A slot that does not exist: empty reads, a delete that is fine.
    assert requests.get(path + "/q", auth=AUTH, timeout=10).text == ""
    assert requests.delete(path, auth=AUTH, timeout=10).status_code == 200


def test_every_storage_write_may_come_gzipped(cloud):
    # As with job data and collections, a frontier upload may be gzipped.
    body = gzip.compress(b'{"fp": "gz1"}\n{"fp": "gz2"}\n')
    answer = requests.post(url(cloud, f"hcf/{PROJECT}/gz/s/s1"), data=body, headers={"Content-Encoding": "gzip"},
                           auth=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"newcount": 2}
    assert cloud.project.frontiers.get("gz").get("s1").f.list() == ["gz1", "gz2"]
    # And the project's activity.
    event = gzip.compress(json.dumps({"event": "job:custom", "job": "1/2/3", "user": "me"}).encode())
    answer = requests.post(url(cloud, f"activity/{PROJECT}"), data=event, headers={"Content-Encoding": "gzip"},
                           auth=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    assert cloud.project.activity.list(count=1)[0]["event"] == "job:custom"


def test_batches_are_stable_and_the_same_for_every_reader(cloud):
    slot = cloud.project.frontiers.get("stable").get("s")
    slot.q.add([{"fp": f"/first/{n}", "p": 1} for n in range(250)])
    slot.flush()
    before = {batch["id"]: batch["requests"] for batch in slot.q.list()}
    assert len(before) == 3
    # Another client adds requests, of higher and lower priority, while two
    # readers read the queue over and over.
    adder = ScrapinghubClient(KEY, dash_endpoint=cloud.url + "/api/", endpoint=cloud.url + "/")
    second = ScrapinghubClient(KEY, dash_endpoint=cloud.url + "/api/", endpoint=cloud.url + "/")
    stop = threading.Event()
    added = []

    def add():
        adding = adder.get_project(PROJECT).frontiers.get("stable").get("s")
        n = 0
        while not stop.is_set():
            adding.q.add([{"fp": f"/more/{n}/{i}", "p": n % 3} for i in range(30)])
            adding.flush()
            added.append(n)
            n += 1

    thread = threading.Thread(target=add)
    thread.start()
    other_slot = second.get_project(PROJECT).frontiers.get("stable").get("s")
    seen = {}
    try:
        for _ in range(20):
            for reader in (slot, other_slot):
                for batch in reader.q.list():
                    assert seen.setdefault(batch["id"], batch["requests"]) == batch["requests"]
            # The batches of before are all still there, unchanged.
            now = {batch["id"]: batch["requests"] for batch in slot.q.list()}
            assert all(now[batch_id] == requests for batch_id, requests in before.items())
    finally:
        stop.set()
        thread.join()
        adder.close()
        second.close()
    assert added
    # Both readers see the same queue; deleting by id removes exactly those.
    assert slot.q.list() == other_slot.q.list()
    slot.q.delete(list(before))
    remaining = requests_of(other_slot.q.list())
    assert len(remaining) == 30 * len(added)
    assert not any(fp.startswith("/first/") for fp, _ in remaining)


def test_slot_delete(cloud):
    frontier = cloud.project.frontiers.get("gone")
    slot = frontier.get("s")
    slot.q.add([{"fp": "a"}])
    slot.flush()
    slot.delete()
    assert frontier.list() == []
    assert slot.q.list() == [] and slot.f.list() == []
    slot.delete()  # fine when absent
    # A deleted slot has forgotten its fingerprints.
    slot.q.add([{"fp": "a"}])
    slot.flush()
    assert slot.newcount == 1


# --------------------------------------------------------------------------
# Both stores: uploads of many tiny records
# --------------------------------------------------------------------------


def peak_memory(daemon) -> int:
    """The daemon's peak resident memory so far (VmHWM), in bytes."""
    status = open(f"/proc/{daemon.process.pid}/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


@pytest.mark.parametrize("store", ["collection", "frontier"])
def test_uploads_of_tiny_records_cost_about_their_size_in_memory(cloud, store):
    """A small gzip body may hold a million tiny records within the body
    limit (which bounds the inflated bytes). Held as strings each (a key and
    a value; a fingerprint, an entry and fdata), the peak grew by 175 and
    194 MiB; packed, by about 100 (the body, the records, and SQLite's page
    cache filling up)."""
    count = 1_000_000
    if store == "collection":
        path = f"collections/{PROJECT}/s/tiny"
        inflated = b"".join(b'{"_key":"k%d","value":1}\n' % n for n in range(count))
    else:
        path = f"hcf/{PROJECT}/tiny/s/s1"
        inflated = b"".join(b'{"fp":"%d"}\n' % n for n in range(count))
    assert len(inflated) < 32 * 2**20
    before = peak_memory(cloud)
    answer = requests.post(url(cloud, path), data=gzip.compress(inflated), headers={"Content-Encoding": "gzip"},
                           auth=AUTH, timeout=600)
    assert answer.status_code == 200, answer.text
    grown = peak_memory(cloud) - before
    assert grown < 140 * 2**20, f"the peak memory grew by {grown / 2**20:.0f} MiB for {len(inflated) / 2**20:.0f} MiB"
    # All stored, in order.
    if store == "collection":
        counted = requests.get(url(cloud, path + "/count"), auth=AUTH, timeout=600).json()
        assert counted["count"] == count
        assert cloud.project.collections.get_store("tiny").get(f"k{count - 1}") == {"value": 1}
    else:
        assert answer.json() == {"newcount": count}
        queue = requests.get(url(cloud, path + "/q"), auth=AUTH, timeout=600).text.splitlines()
        assert len(queue) == count // 100
        assert json.loads(queue[-1])["requests"][-1] == [str(count - 1), None]


# --------------------------------------------------------------------------
# A crawl, and a restart
# --------------------------------------------------------------------------


def test_a_crawl_uses_the_stores_with_its_own_credentials(cloud, site):
    project = cloud.project
    project.collections.get_store("shared").set({"_key": "from-the-test"})
    seeded = project.frontiers.get("shared").get("s1")
    seeded.q.add([{"fp": "/seed/0"}, {"fp": "/seed/1", "qdata": {"seed": True}}])
    seeded.flush()
    job = project.jobs.run("pages", job_args={"base_url": site.url, "stores_probe": "shared"})
    wait_for(lambda: job.metadata.get("state") == "finished", message="the crawl to finish")
    assert job.metadata.get("close_reason") == "finished"
    section = cloud.get("listjobs.json", params={"project": str(PROJECT)})["finished"]
    items = read_items(cloud.items_path(str(PROJECT), "pages", section[0]["id"]))
    probe = next(item for item in items if "stores_probe" in item)
    assert probe["job_key"] == job.key
    assert probe["found"] == ["from-the-test"]
    assert probe["got"] == {"by": "crawl"}
    assert probe["newcount"] == 3  # /seed/0 was seen before
    assert probe["consumed"] == [["/seed/0", None], ["/seed/1", {"seed": True}]] + [
        [f"/crawl/{n}", {"n": n}] for n in range(3)]
    assert probe["left"] == []
    # What the crawl did is there for everyone with the project's key.
    assert project.collections.get_store("shared").get(job.key) == {"by": "crawl"}
    assert seeded.q.list() == []
    assert seeded.f.list() == ["/crawl/0", "/crawl/1", "/crawl/2", "/seed/0", "/seed/1"]


def test_job_credentials_reach_only_their_project_while_running(cloud):
    project = cloud.project
    project.settings.set("botgroups", ["workers"])
    job = project.jobs.run("pages")
    hs = HubstorageClient(auth=KEY, endpoint=cloud.url + "/")
    claimed = hs.get_project(PROJECT).jobq.start(worker="w")
    assert claimed["key"] == job.key
    credentials = (job.key, claimed["auth"])
    mine = url(cloud, f"collections/{PROJECT}/s/jobs")
    assert requests.post(mine, data='{"_key": "k"}', auth=credentials, timeout=10).ok
    assert requests.get(url(cloud, f"hcf/{PROJECT}/list"), auth=credentials, timeout=10).json() == []
    other = url(cloud, f"collections/{PROJECT + 1}/s/jobs")
    assert requests.get(other, auth=credentials, timeout=10).status_code == 401
    hs.get_project(PROJECT).jobq.finish(job.key)
    hs.close()
    assert requests.get(mine, auth=credentials, timeout=10).status_code == 401


def test_every_answered_write_survives_kill_9(cloud):
    """Writers keep writing to a collection and a frontier slot; the daemon
    is killed with SIGKILL in the middle; after a restart, every write that
    was answered is there."""
    answered_keys, answered_fps, newcounts = [], [], []
    stop = threading.Event()

    def write_records(worker):
        session = requests.Session()
        n = 0
        while not stop.is_set():
            keys = [f"w{worker}-{n}-{i}" for i in range(50)]
            body = "\n".join(json.dumps({"_key": key, "n": n}) for key in keys)
            try:
                answer = session.post(url(cloud, f"collections/{PROJECT}/s/durable"), data=body, auth=AUTH,
                                      timeout=10)
            except requests.RequestException:
                return
            if answer.ok:
                answered_keys.extend(keys)
            n += 1

    def add_requests(worker):
        session = requests.Session()
        n = 0
        while not stop.is_set():
            fps = [f"/w{worker}/{n}/{i}" for i in range(50)]
            body = "\n".join(json.dumps({"fp": fp}) for fp in fps)
            try:
                answer = session.post(url(cloud, f"hcf/{PROJECT}/durable/s/s"), data=body, auth=AUTH, timeout=10)
            except requests.RequestException:
                return
            if answer.ok:
                answered_fps.extend(fps)
                newcounts.append(answer.json()["newcount"])
            n += 1

    threads = [threading.Thread(target=target, args=(worker,))
               for worker in range(2) for target in (write_records, add_requests)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answered_keys) > 2000 and len(answered_fps) > 2000, message="writes to be answered")
    cloud.kill9()
    stop.set()
    for thread in threads:
        thread.join()
    cloud.start()
    connect(cloud)
    col = cloud.project.collections.get_store("durable")
    stored = {record["_key"] for record in col.iter()}
    assert set(answered_keys) <= stored
    slot = cloud.project.frontiers.get("durable").get("s")
    assert set(answered_fps) <= set(slot.f.list())
    queued = {fp for fp, _ in requests_of(slot.q.list())}
    assert set(answered_fps) <= queued
    assert newcounts and all(count == 50 for count in newcounts)


def test_deleting_the_project_deletes_its_stores(cloud, egg_file):
    cloud.project.collections.get_store("kept").set({"_key": "k"})
    slot = cloud.project.frontiers.get("f").get("s")
    slot.q.add([{"fp": "a"}])
    slot.flush()
    cloud.post("delproject.json", data={"project": str(PROJECT)})
    # The same name gets the same id back (no job ever had it): nothing of
    # the old project's stores may show through.
    cloud.upload(str(PROJECT), "1.0", egg_file)
    assert cloud.client.projects.list() == [PROJECT]
    assert cloud.project.collections.list() == []
    assert cloud.project.frontiers.list() == []
    slot.q.add([{"fp": "a"}])
    slot.flush()
    assert slot.q.list()[0]["requests"] == [["a", None]]
