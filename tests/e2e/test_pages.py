"""The web pages: `/`, `/jobs` (parsed by ScrapydWeb with regexes), `/logs/`, `/items/`."""

from __future__ import annotations

import re

import pytest
from conftest import Daemon, cancel, kill_processes_mentioning, start_slow

# ScrapydWeb's pattern for the rows of /jobs
JOBS_ROW_RE = re.compile(
    r"""<tr>\s*
    <td>(?P<Project>.*?)</td>\s*
    <td>(?P<Spider>.*?)</td>\s*
    <td>(?P<Job>.*?)</td>\s*
    (?:<td>(?P<PID>.*?)</td>\s*)?
    (?:<td>(?P<Start>.*?)</td>\s*)?
    (?:<td>(?P<Runtime>.*?)</td>\s*)?
    (?:<td>(?P<Finish>.*?)</td>\s*)?
    (?:<td>(?P<Log>.*?)</td>\s*)?
    (?:<td>(?P<Items>.*?)</td>\s*)?
    [\w\W]*?
</tr>
""",
    re.X,
)

# ScrapydWeb's pattern for the rows of a directory listing
DIRECTORY_ROW_RE = re.compile(
    r"""<tr\sclass="(?P<odd_even>odd|even)">\n
    \s+<td>(?P<filename>.*?)</td>\n
    \s+<td>(?P<size>.*?)</td>\n
    (?:\s+<td>(?P<last_modified>.*?)</td>\n)?
    \s+<td>(?P<content_type>.*?)</td>\n
    \s+<td>(?P<content_encoding>.*?)</td>\n
</tr>
""",
    re.X,
)

SECONDS_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
SIZE_RE = re.compile(r"^\d+[BKMG]$")
WEIRD_PROJECT = "a<b>c&d"


@pytest.fixture(scope="module")
def web(tmp_path_factory, egg_file, site):
    """One daemon for the module: two finished crawls, one running, one pending."""
    root = tmp_path_factory.mktemp("pages")
    daemon = Daemon(root, {"max_proc": "1"})
    try:
        daemon.start()
        daemon.upload("testproject", "1.0", egg_file)
        daemon.upload(WEIRD_PROJECT, "1", egg_file)
        daemon.finished = []
        for tag in ("one", "two"):
            jobid = daemon.schedule("testproject", "pages", base_url=site.url, tag=tag)
            daemon.wait_finished(jobid)
            daemon.finished.append(jobid)
        daemon.running = start_slow(daemon, site)
        daemon.pending = daemon.schedule("testproject", "pages", base_url=site.url)
        yield daemon
        cancel(daemon, "testproject", daemon.pending)
        cancel(daemon, "testproject", daemon.running)
    finally:
        daemon.cleanup()
        kill_processes_mentioning(str(root))


def html(daemon, path, **headers):
    response = daemon.request("GET", path, headers=headers)
    assert response.status_code == 200, (path, response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("text/html"), response.headers
    return response.text


def test_home_page(web):
    page = html(web, "/")
    for link in ('href="/jobs"', 'href="/logs/"', 'href="/items/"'):
        assert link in page
    assert "testproject" in page


def test_home_page_escapes_project_names(web):
    page = html(web, "/")
    assert "a&lt;b&gt;c&amp;d" in page
    assert WEIRD_PROJECT not in page


def test_jobs_page_parsed_by_scrapydweb(web):
    page = html(web, "/jobs")
    assert "<h1>Jobs</h1>" in page
    rows = [match.groupdict() for match in JOBS_ROW_RE.finditer(page)]
    jobs = [row["Job"] for row in rows]
    # pending, then running, then finished (most recent first)
    assert jobs == [web.pending, web.running, *reversed(web.finished)], rows

    for row in rows:
        assert row["Project"] == "testproject"
    pending, running, *finished = rows
    assert pending["Spider"] == "pages"
    assert running["Spider"] == "slow"
    assert SECONDS_RE.match(running["Start"]), running
    assert running["PID"] == str(web.job(web.running)[1]["pid"])
    for jobid, row in zip(reversed(web.finished), finished):
        assert row["Spider"] == "pages"
        assert SECONDS_RE.match(row["Start"]), row
        assert SECONDS_RE.match(row["Finish"]), row
        assert row["Log"] == f'<a href="/logs/testproject/pages/{jobid}.log">Log</a>'
        assert f'href="/items/testproject/pages/{jobid}.jl"' in row["Items"]
        # seconds of the listjobs time, without the fraction
        entry = web.job(jobid)[1]
        assert row["Start"] == entry["start_time"][:19]
        assert row["Finish"] == entry["end_time"][:19]


def test_jobs_page_escapes_values(web, site):
    jobid = web.schedule(WEIRD_PROJECT, "pages", base_url=site.url, jobid="<i>j")
    try:
        page = html(web, "/jobs")
        assert "&lt;i&gt;j" in page
        assert "<i>j" not in page
        assert "a&lt;b&gt;c&amp;d" in page
    finally:
        cancel(web, WEIRD_PROJECT, jobid)


def test_logs_directory_listing(web):
    page = html(web, "/logs/")
    assert "Directory listing for /logs/" in page
    rows = [m.groupdict() for m in DIRECTORY_ROW_RE.finditer(page)]
    names = [row["filename"] for row in rows]
    assert '<a href="testproject/">testproject/</a>' in names, page

    page = html(web, "/logs/testproject/pages/")
    assert "Directory listing for /logs/testproject/pages/" in page
    rows = [m.groupdict() for m in DIRECTORY_ROW_RE.finditer(page)]
    names = [row["filename"] for row in rows]
    assert sorted(names) == sorted(f'<a href="{jobid}.log">{jobid}.log</a>' for jobid in web.finished), page
    assert [row["odd_even"] for row in rows] in (["odd", "even"], ["even", "odd"])
    for row in rows:
        assert SIZE_RE.match(row["size"]), row


def test_items_directory_listing(web):
    page = html(web, "/items/testproject/pages/")
    assert "Directory listing for /items/testproject/pages/" in page
    names = [m.group("filename") for m in DIRECTORY_ROW_RE.finditer(page)]
    assert sorted(names) == sorted(f'<a href="{jobid}.jl">{jobid}.jl</a>' for jobid in web.finished), page


def test_log_file_whole_and_ranges(web):
    jobid = web.finished[0]
    data = web.log_path("testproject", "pages", jobid).read_bytes()
    assert len(data) > 20
    path = f"/logs/testproject/pages/{jobid}.log"

    response = web.request("GET", path)
    assert response.status_code == 200
    assert response.content == data

    response = web.request("GET", path, headers={"Range": "bytes=0-9"})
    assert response.status_code == 206
    assert response.content == data[:10]
    assert response.headers["Content-Range"] == f"bytes 0-9/{len(data)}"

    response = web.request("GET", path, headers={"Range": "bytes=-10"})
    assert response.status_code == 206
    assert response.content == data[-10:]
    assert response.headers["Content-Range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"

    # a suffix longer than the file: the whole file (Gerapy asks for bytes=-1000)
    response = web.request("GET", path, headers={"Range": f"bytes=-{len(data) + 1000}"})
    assert response.status_code in (200, 206)
    assert response.content == data

    # a range that ends before it starts is none: the whole file, as Twisted
    response = web.request("GET", path, headers={"Range": "bytes=5-2"})
    assert (response.status_code, response.content) == (200, data)

    # the file's time, and a client that has this version gets a 304
    modified = response.headers["Last-Modified"]
    assert modified.endswith(" GMT")
    response = web.request("GET", path, headers={"If-Modified-Since": modified})
    assert (response.status_code, response.content) == (304, b"")
    response = web.request("GET", path, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert (response.status_code, response.content) == (200, data)


def test_items_file(web):
    jobid = web.finished[1]
    response = web.request("GET", f"/items/testproject/pages/{jobid}.jl")
    assert response.status_code == 200
    assert response.content == web.items_path("testproject", "pages", jobid).read_bytes()


def test_any_file_type_under_logs(web):
    # logparser writes .json files next to the logs
    stats = web.dirs["logs"] / "testproject" / "pages" / "stats.json"
    stats.write_text('{"pages": 6}')
    try:
        response = web.request("GET", "/logs/testproject/pages/stats.json")
        assert response.status_code == 200
        assert response.content == b'{"pages": 6}'
    finally:
        stats.unlink()


@pytest.mark.parametrize("path", ["/logs/testproject/pages/nope.log", "/logs/../dbs/", "/items/nope/"])
def test_missing_files_are_404(web, path):
    assert web.request("GET", path).status_code == 404


def test_forwarded_prefix(web):
    prefix = "/scrapyd"
    page = html(web, "/", **{"X-Forwarded-Prefix": prefix})
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert f"{prefix}/jobs" in hrefs and f"{prefix}/logs/" in hrefs, hrefs
    assert all(h.startswith(prefix + "/") for h in hrefs if h.startswith("/")), hrefs

    page = html(web, "/jobs", **{"X-Forwarded-Prefix": prefix})
    jobid = web.finished[0]
    assert f'href="{prefix}/logs/testproject/pages/{jobid}.log"' in page
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert all(h.startswith(prefix + "/") for h in hrefs if h.startswith("/")), hrefs
