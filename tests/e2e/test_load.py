"""Big queues, big files, slow readers and crowds.

The daemon's memory must not grow with the size of a listing or a file, a
client that stops reading must not hold anything for long, and a crowd of
connections that never finish their requests must not keep a well-behaved
client from being served. Bounds here are generous: they tell flat from
growing; the benchmark measures the figures.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time

import pytest
import requests
from conftest import NODE_NAME, python_style_json, start_slow, wait_for

# Jobs in the big queue: enough that a listing built whole in memory would
# show (about 3 KB each), few enough to schedule in seconds.
QUEUE = 30_000
HTTP_TIMEOUT = 2
SLACK = 5
MIB = 1024 * 1024


def rss(daemon) -> int:
    """The daemon's resident memory, in bytes."""
    status = open(f"/proc/{daemon.process.pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


SCHEDULING_THREADS = 8


def schedule_many(daemon, count: int, threads: int = SCHEDULING_THREADS) -> list[str]:
    """Schedules `count` jobs of the `pages` spider over keep-alive
    connections; priorities cycle through 0..4. Answers the job ids."""
    ids: list[str] = []
    lock = threading.Lock()

    def worker(start: int):
        connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
        mine = []
        for index in range(start, count, threads):
            body = f"project=testproject&spider=pages&priority={index % 5}&n={index}"
            connection.request("POST", "/schedule.json", body,
                               {"Content-Type": "application/x-www-form-urlencoded"})
            answer = json.loads(connection.getresponse().read())
            assert answer["status"] == "ok", answer
            mine.append(answer["jobid"])
        connection.close()
        with lock:
            ids.extend(mine)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert len(ids) == count
    return ids


@pytest.fixture(scope="module")
def big_queue(tmp_path_factory, egg_file, site):
    """One slot, busy with a crawl that never ends, and QUEUE jobs waiting."""
    from conftest import Daemon, kill_processes_mentioning

    root = tmp_path_factory.mktemp("big-queue")
    daemon = Daemon(root, {"max_proc": 1, "http_timeout": HTTP_TIMEOUT})
    daemon.start()
    try:
        daemon.upload("testproject", "1.0", egg_file)
        slow = start_slow(daemon, site)
        ids = schedule_many(daemon, QUEUE)
        yield daemon, slow, ids
    finally:
        daemon.cleanup()
        kill_processes_mentioning(str(root))


def test_a_big_listing_is_complete_and_memory_stays_flat(big_queue):
    daemon, slow, ids = big_queue
    before = rss(daemon)
    answer = python_style_json(daemon.request("GET", "/listjobs.json", params={"project": "testproject"}))
    after_one = rss(daemon)
    assert answer["status"] == "ok" and answer["node_name"] == NODE_NAME
    pending = answer["pending"]
    assert sorted(job["id"] for job in pending) == sorted(ids)
    # Highest priority first, then in the order scheduled (each of the
    # scheduling threads sent its jobs in the order of `n`).
    priorities = [job["priority"] for job in pending]
    assert priorities == sorted(priorities, reverse=True)
    for thread in range(SCHEDULING_THREADS):
        mine = [(-job["priority"], int(job["args"]["n"])) for job in pending
                if int(job["args"]["n"]) % SCHEDULING_THREADS == thread]
        assert mine == sorted(mine)
    assert [job["id"] for job in answer["running"]] == [slow]
    for _ in range(9):
        assert len(daemon.get("listjobs.json")["pending"]) == QUEUE
    after_ten = rss(daemon)
    # Built whole, this listing costs about 100 MB per call.
    assert after_one - before < 32 * MIB, (before, after_one)
    assert after_ten - before < 32 * MIB, (before, after_ten)


def test_head_of_a_big_listing_says_its_length_and_holds_little(big_queue):
    daemon, slow, ids = big_queue
    before = rss(daemon)
    for project in (None, "testproject"):
        params = {"project": project} if project else {}
        head = daemon.request("HEAD", "/listjobs.json", params=params)
        assert head.status_code == 200 and head.content == b""
        get = daemon.request("GET", "/listjobs.json", params=params)
        # Scrapyd answers HEAD with the length of what GET sends; the
        # listing is spooled to be counted, never held whole in memory.
        assert int(head.headers["Content-Length"]) == len(get.content)
        assert "Transfer-Encoding" not in head.headers
        # The GET too says its length (as Scrapyd's), sent from the spool.
        assert int(get.headers["Content-Length"]) == len(get.content)
        assert "Transfer-Encoding" not in get.headers
    assert rss(daemon) - before < 32 * MIB


def test_the_jobs_page_of_a_big_queue_is_whole(big_queue):
    daemon, slow, ids = big_queue
    before = rss(daemon)
    for _ in range(3):
        page = daemon.request("GET", "/jobs")
        assert page.status_code == 200
        assert int(page.headers["Content-Length"]) == len(page.content)
        html = page.text
        assert html.endswith("</table>\n</body>\n</html>\n")
        rows = re.findall(r"<tr>\n<td>testproject</td>\n<td>\w+</td>\n<td>([0-9a-f]{32})</td>", html)
        assert sorted(rows) == sorted(ids + [slow])
    assert rss(daemon) - before < 32 * MIB


def test_each_listing_shows_every_job_once_while_jobs_launch_and_end(daemon_factory, egg_file):
    """A listing is one moment of the node, as Scrapyd's (one thread) is:
    jobs launched or ended while a long listing is written show once, in
    the section they were in when it began, and none is missed."""
    daemon = daemon_factory(max_proc=4, finished_to_keep=100_000)
    daemon.upload("testproject", "1.0", egg_file)
    # Long enough that a listing takes several pages; each crawl fails
    # at once (no base_url), so jobs launch and end all the time.
    ids = set(schedule_many(daemon, 3000))
    listings = moving = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = daemon.get("listjobs.json", {"project": "testproject"})
        listed = [job["id"] for section in ("pending", "running", "finished") for job in answer[section]]
        assert len(listed) == len(set(listed)), "a job listed twice"
        assert set(listed) == ids, "a job missing"
        listings += 1
        moving += bool(answer["running"]) and bool(answer["finished"])
    # The loop saw jobs in every section, many times.
    assert moving > 20, (listings, moving)


def _small_window_socket(daemon) -> socket.socket:
    """A client whose receive window is tiny, so the daemon cannot hand its
    whole answer to the kernel: it must wait for the client to read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", daemon.port))
    return sock


def _closed_by_peer(sock: socket.socket, limit: float) -> bool:
    """Reads (and drops) until the daemon closes the connection."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 20):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def test_clients_that_never_read_hold_little_and_are_cut_off(big_queue):
    daemon, _, _ = big_queue
    before = rss(daemon)
    readers = []
    for _ in range(20):
        sock = _small_window_socket(daemon)
        sock.sendall(b"GET /listjobs.json HTTP/1.1\r\nHost: x\r\n\r\n")
        readers.append(sock)
    try:
        time.sleep(1)
        # Others are served meanwhile, listings included.
        started = time.monotonic()
        assert daemon.ok("GET", "daemonstatus.json")["pending"] == QUEUE
        assert len(daemon.get("listjobs.json")["pending"]) == QUEUE
        assert time.monotonic() - started < 10
        # Twenty answers of 5 MB held whole would be 100 MB.
        assert rss(daemon) - before < 48 * MIB
        # No progress for http_timeout: each is closed (after the first
        # read, which gets the start of the answer).
        time.sleep(HTTP_TIMEOUT + 1)
        for sock in readers:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        assert all(_closed_by_peer(sock, HTTP_TIMEOUT + SLACK) for sock in readers)
    finally:
        for sock in readers:
            sock.close()


def test_big_files_are_streamed(big_queue):
    daemon, _, _ = big_queue
    folder = daemon.dirs["logs"] / "testproject" / "big"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "big.log"
    line = b"2026-01-01 00:00:00 [scrapy] INFO: a line of a long crawl\n"
    with open(log, "wb") as out:
        block = line * (MIB // len(line))
        for _ in range(200):
            out.write(block)
    size = log.stat().st_size
    before = rss(daemon)
    peak = before
    failures = []

    def download():
        try:
            with requests.get(daemon.url + "/logs/testproject/big/big.log", stream=True, timeout=60) as answer:
                assert answer.status_code == 200
                assert int(answer.headers["Content-Length"]) == size
                received = 0
                for chunk in answer.iter_content(1 << 20):
                    received += len(chunk)
                    time.sleep(0.001)
                assert received == size
        except Exception as error:  # noqa: BLE001 (reported below)
            failures.append(error)

    clients = [threading.Thread(target=download) for _ in range(4)]
    for thread in clients:
        thread.start()
    while any(thread.is_alive() for thread in clients):
        peak = max(peak, rss(daemon))
        time.sleep(0.05)
    assert not failures, failures
    # Four whole copies would be 800 MB.
    assert peak - before < 64 * MIB, (before, peak)
    # Ranges still work, suffix ranges included.
    tail = daemon.request("GET", "/logs/testproject/big/big.log", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and len(tail.content) == 100
    assert tail.content == log.read_bytes()[-100:]
    log.unlink()


def test_a_parameter_flood_costs_little(big_queue):
    daemon, _, _ = big_queue
    before = rss(daemon)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    flood = b"a=&" * (13 * MIB)  # 39 MB: only addversion.json reads that much
    started = time.monotonic()
    answer = daemon.session.post(daemon.url + "/addversion.json", data=flood, headers=form, timeout=60)
    assert answer.status_code == 200
    assert answer.json()["message"] == "malformed request body: more than 1000 parameters"
    assert time.monotonic() - started < 10
    # Pairs without `=` are no parameters at all (as Twisted reads a form).
    answer = daemon.session.post(daemon.url + "/addversion.json", data=b"a&" * (20 * MIB), headers=form,
                                 timeout=60)
    assert answer.json()["message"] == "'project' parameter is required"
    assert time.monotonic() - started < 20
    # The body itself is held once while it is read; its pairs are not.
    assert rss(daemon) - before < 100 * MIB
    # Other endpoints take small bodies only.
    answer = daemon.session.post(daemon.url + "/schedule.json", data=b"project=x&" + b"a" * (2 * MIB),
                                 headers=form, timeout=60)
    assert answer.status_code == 413


# --------------------------------------------------------------------------
# Crowds of connections
# --------------------------------------------------------------------------


def _health_check(daemon, timeout=5) -> float:
    with requests.Session() as session:
        session.trust_env = False
        started = time.monotonic()
        answer = session.get(daemon.url + "/daemonstatus.json", timeout=timeout,
                             headers={"Connection": "close"})
        assert answer.status_code == 200, answer.text
        return time.monotonic() - started


def test_a_slowloris_crowd_does_not_starve_others(daemon_factory):
    daemon = daemon_factory(max_connections=50, http_timeout=30)
    crowd = []
    try:
        for _ in range(80):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            sock.sendall(b"GET /daemonstatus.json HTTP/1.1\r\nHost: x\r\n")
            crowd.append(sock)
        worst = 0.0
        for round_ in range(20):
            # The crowd reconnects as it is cut, and trickles its headers.
            for _ in range(5):
                sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
                sock.sendall(b"GET / HTTP/1.1\r\n")
                crowd.append(sock)
            for sock in crowd[-20:]:
                try:
                    sock.sendall(b"X-Slow: %d\r\n" % round_)
                except OSError:
                    pass
            worst = max(worst, _health_check(daemon))
        # http_timeout is 30 s: a client that waited for a slot would show it.
        assert worst < 3, worst
    finally:
        for sock in crowd:
            sock.close()
    assert daemon.process.poll() is None


def test_a_newcomer_finding_every_connection_busy_gets_503(daemon_factory):
    daemon = daemon_factory(max_connections=3, http_timeout=30)
    busy = []
    try:
        # A request whose body is still coming is in progress.
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            sock.sendall(b"POST /schedule.json HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: 1000\r\n\r\nproject=")
            busy.append(sock)
        time.sleep(0.5)
        started = time.monotonic()
        answer = requests.get(daemon.url + "/daemonstatus.json", timeout=5)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert time.monotonic() - started < 2
    finally:
        for sock in busy:
            sock.close()

    def served():
        try:
            return _health_check(daemon) < 5
        except (AssertionError, requests.RequestException):
            return False  # the daemon has not seen the requests end yet

    wait_for(served, timeout=10, message="service once the requests ended")
