"""Hostile input: eggs, names, HTTP abuse and authentication.

Every hostile request must be answered with a clear error (Scrapyd's JSON
error with HTTP 200, or the documented HTTP status for transport limits), and
must write nothing: for each case the whole folder tree around the daemon
(paths, sizes and contents; the SQLite files and the daemon's own stderr
excepted) and what the API lists are compared before and after.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import re
import select
import socket
import struct
import time
import urllib.parse
import uuid
import warnings
import zipfile
from pathlib import Path

import pytest
import requests
from conftest import NODE_NAME, PASSWORD, USERNAME, wait_for

NOT_ZIP = "egg is not a ZIP file (if using curl, use egg=@path not egg=path)"
ALL_SPIDERS = ["pages", "slow", "stubborn"]

# Limits given to the daemons that get hostile eggs.
MAX_UNPACKED = 1_000_000
MAX_ENTRIES = 50

# Small enough that the slow-client tests stay short; the cut-off must come
# within HTTP_TIMEOUT + SLACK seconds.
HTTP_TIMEOUT = 2
SLACK = 5


# --------------------------------------------------------------------------
# "Nothing written anywhere"
# --------------------------------------------------------------------------


def _ignored(rel: Path) -> bool:
    """The SQLite files (written by every request's bookkeeping) and stderr logs."""
    name = rel.name
    if re.fullmatch(r"daemon-\d+\.stderr", name):
        return True
    return "dbs" in rel.parts[:-1] and ".sqlite" in name


def tree(top: Path) -> dict:
    """Every folder, file and link under `top`: kind, size and content hash."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        found[str(here.relative_to(top)) + "/"] = "dir"
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            path = here / name
            rel = path.relative_to(top)
            if _ignored(rel):
                continue
            if path.is_symlink():
                found[str(rel)] = ("link", os.readlink(path))
            else:
                data = path.read_bytes()
                found[str(rel)] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return found


def tree_diff(before: dict, after: dict) -> str:
    lines = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            lines.append(f"removed {key}")
        elif key not in before:
            lines.append(f"added   {key} {after[key]}")
        elif before[key] != after[key]:
            lines.append(f"changed {key}: {before[key]} -> {after[key]}")
    return "\n".join(lines)


def api_state(daemon) -> dict:
    """What the API says is stored: projects, their versions and spiders, jobs."""
    auth = daemon.auth
    fresh = requests.Session()
    fresh.trust_env = False
    try:
        def get(endpoint, params=None):
            response = fresh.get(daemon.url + "/" + endpoint, params=params, auth=auth, timeout=30)
            assert response.status_code == 200, (endpoint, response.status_code, response.text)
            answer = response.json()
            assert answer["status"] == "ok", (endpoint, answer)
            return answer

        projects = get("listprojects.json")["projects"]
        state = {"projects": projects}
        for project in projects:
            versions = get("listversions.json", {"project": project})["versions"]
            state[f"versions:{project}"] = versions
            state[f"spiders:{project}"] = get("listspiders.json", {"project": project})["spiders"]
        status = get("daemonstatus.json")
        state["counts"] = (status["pending"], status["running"], status["finished"])
        jobs = get("listjobs.json")
        state["jobs"] = {key: jobs[key] for key in ("pending", "running", "finished")}
        return state
    finally:
        fresh.close()


class Unchanged:
    """Snapshot of a daemon's surroundings; `check()` asserts nothing moved.

    The tree snapshotted is the daemon root's parent (the test's tmp_path), so
    that an entry escaping the daemon's folders by a few `..` is seen too.
    """

    def __init__(self, daemon):
        self.daemon = daemon
        self.top = daemon.root.parent
        self.tree = tree(self.top)
        self.api = api_state(daemon)

    def check(self, what=""):
        assert self.daemon.process.poll() is None, f"daemon died after {what}:\n{self.daemon.stderr()}"
        after = tree(self.top)
        assert after == self.tree, f"files changed after {what}:\n{tree_diff(self.tree, after)}"
        assert api_state(self.daemon) == self.api, f"API state changed after {what}"


def assert_error(answer: dict, message: str | None = None, *, startswith=None, contains=()):
    """A Scrapyd JSON error, optionally with an exact message or parts of it."""
    assert answer.get("status") == "error", answer
    assert answer.get("node_name") == NODE_NAME, answer
    assert set(answer) == {"status", "message", "node_name"}, answer
    text = answer["message"]
    assert isinstance(text, str) and text, answer
    if message is not None:
        assert text == message, answer
    if startswith is not None:
        assert text.startswith(startswith), answer
    for part in ([contains] if isinstance(contains, str) else contains):
        assert part in text, (part, answer)


def post_raw(daemon, endpoint, **kwargs) -> requests.Response:
    """POST with a fresh connection, HTTP status not checked."""
    kwargs.setdefault("timeout", 60)
    kwargs.setdefault("auth", daemon.auth)
    with requests.Session() as session:
        session.trust_env = False
        return session.post(daemon.url + "/" + endpoint, **kwargs)


def post_json(daemon, endpoint, **kwargs) -> dict:
    response = post_raw(daemon, endpoint, **kwargs)
    assert response.status_code == 200, (endpoint, response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return response.json()


def upload_bytes(daemon, project, version, egg: bytes, as_field=False) -> dict:
    data = {"project": project, "version": version}
    if as_field:
        return post_json(daemon, "addversion.json", data={**data, "egg": egg})
    return post_json(daemon, "addversion.json", data=data, files={"egg": ("project.egg", egg)})


# --------------------------------------------------------------------------
# Raw HTTP
# --------------------------------------------------------------------------


def connect(daemon, timeout=10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, timeout=30):
    """(status, headers with lower-case names, body) of one HTTP/1.1 answer."""
    deadline = time.monotonic() + timeout
    data = b""

    def more():
        nonlocal data
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed; received {data[:300]!r}")
        data += chunk

    while b"\r\n\r\n" not in data:
        more()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(data) - len(head) - 4 < length:
        more()
    body = data[len(head) + 4:][:length]
    return status, headers, body


def raw_request(daemon, payload: bytes, timeout=30):
    with connect(daemon) as sock:
        sock.sendall(payload)
        return read_response(sock, timeout)


def http_post(path, body: bytes, content_type, extra=b"", host=b"127.0.0.1") -> bytes:
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n"
        + b"Content-Type: " + content_type.encode() + b"\r\n"
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


def wait_closed(sock: socket.socket, limit: float, feed: bytes | None = None, every: float = 0.5):
    """Wait until the peer closes `sock`, sending `feed` every `every` seconds
    meanwhile if given. Returns (closed, seconds, bytes received)."""
    start = time.monotonic()
    received = b""
    next_feed = start
    while True:
        now = time.monotonic()
        if now - start > limit:
            return False, now - start, received
        if feed is not None and now >= next_feed:
            try:
                sock.sendall(feed)
            except (BrokenPipeError, ConnectionResetError):
                return True, time.monotonic() - start, received
            next_feed = now + every
        wait = min(0.2, max(0.0, limit - (now - start)))
        readable, _, _ = select.select([sock], [], [], wait)
        if readable:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return True, time.monotonic() - start, received
            if not chunk:
                return True, time.monotonic() - start, received
            received += chunk


def assert_cut_off(sock, what, feed=None, allowed_statuses=(408,)):
    closed, seconds, received = wait_closed(sock, HTTP_TIMEOUT + SLACK, feed=feed)
    assert closed, f"{what}: connection still open after {seconds:.1f}s (http_timeout={HTTP_TIMEOUT}); got {received[:200]!r}"
    if received:
        status = int(received.split(b" ", 2)[1])
        assert status in allowed_statuses, (what, received[:300])


# --------------------------------------------------------------------------
# Hostile eggs
# --------------------------------------------------------------------------


def rebuild(base: bytes, drop=(), replace=None, add=()) -> bytes:
    """A copy of the egg `base` without `drop`, with `replace`d contents and
    extra entries `add` (pairs of name or ZipInfo, and data)."""
    replace = replace or {}
    source = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is the point
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as egg:
            for info in source.infolist():
                if info.filename in drop:
                    continue
                egg.writestr(info, replace.get(info.filename, source.read(info)))
            for item, data in add:
                egg.writestr(item, data)
    return out.getvalue()


def entry_points(base: bytes, text) -> bytes:
    return rebuild(base, replace={"EGG-INFO/entry_points.txt": text})


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


def patch_name(egg: bytes, placeholder: bytes, name: bytes) -> bytes:
    """Rename an entry byte for byte (zipfile cuts names at NUL, so names
    with NUL are written with a placeholder of the same length)."""
    assert len(placeholder) == len(name)
    assert egg.count(placeholder) == 2, "the placeholder must be in the local and central headers only"
    return egg.replace(placeholder, name)


def _central_records(egg: bytes):
    """(offset of each central directory record, its name)."""
    archive = zipfile.ZipFile(io.BytesIO(egg))
    at = archive.start_dir
    records = []
    while egg[at:at + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack("<HHH", egg[at + 28:at + 34])
        records.append((at, egg[at + 46:at + 46 + name_len].decode()))
        at += 46 + name_len + extra_len + comment_len
    return archive, records


def declare_size(egg: bytes, name: str, size: int) -> bytes:
    """The egg with entry `name` claiming `size` unpacked bytes in both its
    local and its central header: a zip bomb that lies about itself."""
    archive, records = _central_records(egg)
    data = bytearray(egg)
    for at, record_name in records:
        if record_name == name:
            data[at + 24:at + 28] = struct.pack("<I", size)
    local = archive.getinfo(name).header_offset
    assert data[local:local + 4] == b"PK\x03\x04"
    data[local + 22:local + 26] = struct.pack("<I", size)
    return bytes(data)


def corrupt_data(egg: bytes, name: str) -> bytes:
    """The egg with a few bytes of entry `name`'s compressed data flipped."""
    archive = zipfile.ZipFile(io.BytesIO(egg))
    info = archive.getinfo(name)
    at = info.header_offset
    name_len, extra_len = struct.unpack("<HH", egg[at + 26:at + 30])
    start = at + 30 + name_len + extra_len
    assert info.compress_size > 8
    data = bytearray(egg)
    for i in range(2, 8):
        data[start + i] ^= 0xFF
    return bytes(data)


def many_entries(base: bytes, count: int) -> bytes:
    return rebuild(base, add=[(f"testproject/data/f{i}.txt", "x") for i in range(count)])


def zeros(name: str, size: int):
    return (name, b"\0" * size)


# Each case: (id, builder(base egg bytes, escape path) -> egg bytes, check(message, escape path)).
# `escape` is a unique absolute path outside every daemon folder, checked to
# still be absent afterwards.


def _outside(name):
    return f"egg entry '{name}' would be written outside the egg folder"


def _case_dotdot(base, escape):
    return rebuild(base, add=[("../evil.py", "print('pwned')\n")])


def _case_deep_dotdot(base, escape):
    ups = "../" * 12
    return rebuild(base, add=[(ups + escape.lstrip("/"), "pwned\n")])


def _case_inner_dotdot(base, escape):
    return rebuild(base, add=[("testproject/../../../evil.py", "pwned\n")])


def _case_absolute(base, escape):
    return rebuild(base, add=[(escape, "pwned\n")])


def _case_backslash_dotdot(base, escape):
    return rebuild(base, add=[("..\\..\\evil.py", "pwned\n")])


def _case_symlink(base, escape):
    return rebuild(base, add=[(symlink_info("testproject/link.py"), "/etc/passwd")])


def _case_symlink_then_write_through(base, escape):
    folder = os.path.dirname(escape)
    return rebuild(base, add=[(symlink_info("testproject/lnk"), folder),
                              (f"testproject/lnk/{os.path.basename(escape)}", "pwned\n")])


def _case_duplicate_same_name(base, escape):
    return rebuild(base, add=[("testproject/settings.py", "raise SystemExit('second copy')\n")])


def _case_duplicate_other_spelling(base, escape):
    return rebuild(base, add=[("testproject//settings.py", "raise SystemExit('second copy')\n")])


def _case_duplicate_dot_spelling(base, escape):
    return rebuild(base, add=[("./testproject/settings.py", "raise SystemExit('second copy')\n")])


def _case_nul_in_name(base, escape):
    egg = rebuild(base, add=[("testproject/QQQNULQQQ.py", "x = 1\n")])
    return patch_name(egg, b"QQQNULQQQ", b"evil\0.pyx")


def _case_newline_in_name(base, escape):
    return rebuild(base, add=[("testproject/evil\n.py", "x = 1\n")])


def _case_escape_sequence_in_name(base, escape):
    return rebuild(base, add=[("testproject/\x1b[2Jevil.py", "x = 1\n")])


def _case_bomb_one_entry(base, escape):
    return rebuild(base, add=[zeros("testproject/bomb.bin", 5 * 1024 * 1024)])


def _case_bomb_many_entries(base, escape):
    return rebuild(base, add=[zeros(f"testproject/bomb{i}.bin", 200_000) for i in range(10)])


def _case_bomb_lying_sizes(base, escape):
    # A different settings module, so that a half-done upload to an existing
    # project would show in the project's files.
    egg = rebuild(base, replace={"EGG-INFO/entry_points.txt": "[scrapy]\nsettings = othermodule.settings\n"},
                  add=[zeros("testproject/bomb.bin", 5 * 1024 * 1024)])
    return declare_size(egg, "testproject/bomb.bin", 100)


def _case_corrupt_data(base, escape):
    egg = rebuild(base, replace={"EGG-INFO/entry_points.txt": "[scrapy]\nsettings = othermodule.settings\n"},
                  add=[("testproject/big.py", "# " + "abcdefgh" * 5000 + "\n")])
    return corrupt_data(egg, "testproject/big.py")


def _case_too_many_entries(base, escape):
    return many_entries(base, 100)


def _case_no_entry_points(base, escape):
    return rebuild(base, drop=("EGG-INFO/entry_points.txt",))


def _case_entry_points_is_folder(base, escape):
    return rebuild(base, drop=("EGG-INFO/entry_points.txt",),
                   add=[("EGG-INFO/entry_points.txt/", b"")])


def _case_entry_points_empty(base, escape):
    return entry_points(base, "")


def _case_entry_points_no_scrapy(base, escape):
    return entry_points(base, "[console_scripts]\nsettings = testproject.settings\n")


def _case_entry_points_no_settings(base, escape):
    return entry_points(base, "[scrapy]\nsetting = testproject.settings\n")


def _case_entry_points_not_utf8(base, escape):
    return entry_points(base, b"[scrapy]\nsettings = testproject.\xff\xfesettings\n")


def _case_entry_points_binary(base, escape):
    return entry_points(base, bytes(range(256)) * 4)


def _case_entry_points_path_module(base, escape):
    return entry_points(base, "[scrapy]\nsettings = ../../etc/passwd\n")


def _case_entry_points_injection(base, escape):
    return entry_points(base, "[scrapy]\nsettings = testproject.settings; import os\n")


def _case_entry_points_huge(base, escape):
    return entry_points(base, "[scrapy]\n" + "#" * 2_000_000 + "\nsettings = testproject.settings\n")


def _case_empty_zip(base, escape):
    out = io.BytesIO()
    zipfile.ZipFile(out, "w").close()
    return out.getvalue()


EGG_CASES = [
    ("dotdot", _case_dotdot, _outside("../evil.py")),
    ("deep-dotdot", _case_deep_dotdot, "would be written outside the egg folder"),
    ("inner-dotdot", _case_inner_dotdot, _outside("testproject/../../../evil.py")),
    ("absolute", _case_absolute, "would be written outside the egg folder"),
    ("backslash-dotdot", _case_backslash_dotdot, "egg entry '..\\..\\evil.py'"),
    ("symlink", _case_symlink,
     "egg entry 'testproject/link.py' is a symbolic link; eggs may hold only files and folders"),
    ("symlink-write-through", _case_symlink_then_write_through,
     "egg entry 'testproject/lnk' is a symbolic link; eggs may hold only files and folders"),
    ("duplicate-same-name", _case_duplicate_same_name, "egg has two entries with exactly the same name"),
    ("duplicate-double-slash", _case_duplicate_other_spelling,
     "egg entry 'testproject//settings.py' appears more than once"),
    ("duplicate-dot-slash", _case_duplicate_dot_spelling,
     "egg entry './testproject/settings.py' appears more than once"),
    ("nul-in-name", _case_nul_in_name, "has an unsafe name: it contains a control character"),
    ("newline-in-name", _case_newline_in_name, "has an unsafe name: it contains a control character"),
    ("escape-in-name", _case_escape_sequence_in_name, "has an unsafe name: it contains a control character"),
    ("bomb-one-entry", _case_bomb_one_entry, f"egg unpacks to more than the limit of {MAX_UNPACKED} bytes"),
    ("bomb-many-entries", _case_bomb_many_entries,
     f"egg unpacks to more than the limit of {MAX_UNPACKED} bytes"),
    ("bomb-lying-sizes", _case_bomb_lying_sizes, "egg "),
    ("corrupt-data", _case_corrupt_data, "egg entry 'testproject/big.py' is corrupt or truncated"),
    ("too-many-entries", _case_too_many_entries, f"egg has 112 entries, more than the limit of {MAX_ENTRIES}"),
    ("no-entry-points", _case_no_entry_points, "egg has no EGG-INFO/entry_points.txt"),
    ("entry-points-is-folder", _case_entry_points_is_folder, "egg has no EGG-INFO/entry_points.txt"),
    ("entry-points-empty", _case_entry_points_empty,
     "egg's EGG-INFO/entry_points.txt has no `settings = <module>` line in a [scrapy] section"),
    ("entry-points-no-scrapy", _case_entry_points_no_scrapy,
     "egg's EGG-INFO/entry_points.txt has no `settings = <module>` line in a [scrapy] section"),
    ("entry-points-no-settings", _case_entry_points_no_settings,
     "egg's EGG-INFO/entry_points.txt has no `settings = <module>` line in a [scrapy] section"),
    ("entry-points-not-utf8", _case_entry_points_not_utf8,
     "egg's EGG-INFO/entry_points.txt cannot be used: it is not UTF-8 text"),
    ("entry-points-binary", _case_entry_points_binary, "EGG-INFO/entry_points.txt"),
    ("entry-points-path-module", _case_entry_points_path_module, "is not a dotted Python module name"),
    ("entry-points-injection", _case_entry_points_injection, "is not a dotted Python module name"),
    # Bigger than the 1 MiB cap on entry_points.txt, but this daemon's
    # unpacked-size limit is lower and comes first.
    ("entry-points-huge", _case_entry_points_huge, f"egg unpacks to more than the limit of {MAX_UNPACKED} bytes"),
    ("empty-zip", _case_empty_zip, "egg has no EGG-INFO/entry_points.txt"),
]


@pytest.fixture
def limited(daemon_factory, egg_file):
    """A daemon with small egg limits and `testproject` 1.0 uploaded."""
    daemon = daemon_factory(egg_max_unpacked_size=MAX_UNPACKED, egg_max_entries=MAX_ENTRIES)
    daemon.upload("testproject", "1.0", egg_file)
    return daemon


@pytest.fixture
def escape_path(tmp_path_factory):
    """A unique absolute path outside every daemon folder, that must stay absent."""
    folder = tmp_path_factory.mktemp("escape")
    path = folder / f"scrapyd-rs-hostile-{uuid.uuid4().hex}.py"
    yield str(path)
    assert not path.exists() and not os.path.lexists(path), f"an egg entry was written to {path}"
    assert list(folder.iterdir()) == [], f"something was written to {folder}: {list(folder.iterdir())}"


def _refused_everywhere(daemon, egg: bytes, expected: str, as_field=False):
    """Upload `egg` as a new project, a new version of an existing project
    and over the existing version; each must be refused, change nothing."""
    failures = []
    for project, version in (("hostile", "1"), ("testproject", "2.0"), ("testproject", "1.0")):
        unchanged = Unchanged(daemon)
        answer = upload_bytes(daemon, project, version, egg, as_field=as_field)
        try:
            assert_error(answer, contains=expected)
            unchanged.check(f"uploading to {project} {version}: {answer}")
        except AssertionError as error:
            failures.append(f"[{project} {version}] {error}".split("\nassert ")[0])
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("builder", "expected"), [case[1:] for case in EGG_CASES],
                         ids=[case[0] for case in EGG_CASES])
def test_hostile_egg_is_refused_and_writes_nothing(limited, egg_file, escape_path, builder, expected):
    egg = builder(egg_file.read_bytes(), escape_path)
    _refused_everywhere(limited, egg, expected)
    # The existing version still works.
    assert limited.ok("GET", "listspiders.json", {"project": "testproject"})["spiders"] == ALL_SPIDERS


def test_hostile_egg_as_urlencoded_field(limited, egg_file, escape_path):
    egg = _case_dotdot(egg_file.read_bytes(), escape_path)
    _refused_everywhere(limited, egg, _outside("../evil.py"), as_field=True)


EVIL_SPIDER = """import scrapy


class EvilSpider(scrapy.Spider):
    name = {name!r}
    start_urls = []
"""


@pytest.mark.parametrize("spider", ["../evil", "a/b", ".."])
def test_egg_with_a_badly_named_spider(limited, egg_file, spider):
    """Spider names come from `scrapy list` at upload; one that would leave
    the logs folder refuses the whole egg."""
    egg = rebuild(egg_file.read_bytes(), add=[("testproject/spiders/evil.py", EVIL_SPIDER.format(name=spider))])
    _refused_everywhere(limited, egg, f"DirectoryTraversalError: {spider}")


def _truncations(egg: bytes):
    n = len(egg)
    return {0: egg[:0], 4: egg[:4], 30: egg[:30], n // 4: egg[: n // 4], n // 2: egg[: n // 2],
            n - 22: egg[: n - 22], n - 1: egg[: n - 1]}


NOT_ZIPS = {
    "text": b"hello, I am not a zip\n",
    "html": b"<html><body>404</body></html>",
    "path-as-text": b"/home/me/project.egg",
    "random": bytes((i * 7919 + 13) % 256 for i in range(10_000)),
    "gzip": b"\x1f\x8b\x08\x00" + b"\0" * 100,
    "eocd-only-garbage": b"garbage" * 10 + b"PK\x05\x06" + b"\xff" * 18,
}


@pytest.mark.parametrize("name", list(NOT_ZIPS))
def test_non_zip_egg(limited, name):
    _refused_everywhere(limited, NOT_ZIPS[name], NOT_ZIP)
    answer = upload_bytes(limited, "hostile", "1", NOT_ZIPS[name])
    assert_error(answer, NOT_ZIP)


def test_truncated_zip_egg(limited, egg_file):
    unchanged = Unchanged(limited)
    failures = []
    for cut, egg in _truncations(egg_file.read_bytes()).items():
        for project, version in (("hostile", "1"), ("testproject", "2.0"), ("testproject", "1.0")):
            answer = upload_bytes(limited, project, version, egg)
            if answer.get("status") != "error" or answer.get("message") != NOT_ZIP:
                failures.append((cut, project, version, answer))
        unchanged.check(f"egg cut at {cut} bytes")
    assert not failures, failures


def test_egg_limits_are_inclusive_and_configurable(limited, egg_file):
    """Exactly at the limits is accepted, one past is refused."""
    base = egg_file.read_bytes()
    base_size = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(base)).infolist())
    base_entries = len(zipfile.ZipFile(io.BytesIO(base)).infolist())

    at_size = rebuild(base, add=[zeros("testproject/pad.bin", MAX_UNPACKED - base_size)])
    over_size = rebuild(base, add=[zeros("testproject/pad.bin", MAX_UNPACKED - base_size + 1)])
    at_count = many_entries(base, MAX_ENTRIES - base_entries)
    over_count = many_entries(base, MAX_ENTRIES - base_entries + 1)

    unchanged = Unchanged(limited)
    assert_error(upload_bytes(limited, "big", "1", over_size),
                 f"egg unpacks to more than the limit of {MAX_UNPACKED} bytes")
    assert_error(upload_bytes(limited, "many", "1", over_count),
                 f"egg has {MAX_ENTRIES + 1} entries, more than the limit of {MAX_ENTRIES}")
    unchanged.check("eggs one past the limits")

    assert upload_bytes(limited, "big", "1", at_size)["status"] == "ok"
    assert upload_bytes(limited, "many", "1", at_count)["status"] == "ok"
    assert limited.ok("GET", "listprojects.json")["projects"] == ["big", "many", "testproject"]


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

BAD_NAMES = [
    "", ".", "..", "../x", "x/..", "../../../../etc", "a/b", "/abs", "a\\b", "..\\x", "\\",
    "a\x00b", "\x00", "a\nb", "a\rb", "a\tb", "\x1b[31mred", "a\x7fb", "a\x85b", "x" * 201,
    "\u00e9" * 101,  # 202 bytes
]
GOOD_LONG_NAMES = ["p" * 200, "\u00e9" * 100]  # 200 bytes each


def test_addversion_refuses_bad_project_names(daemon, egg_file):
    egg = egg_file.read_bytes()
    unchanged = Unchanged(daemon)
    failures = []
    for name in BAD_NAMES:
        for as_multipart in (False, True):
            data = {"project": name, "version": "1"}
            if as_multipart:
                answer = post_json(daemon, "addversion.json", data=data, files={"egg": ("p.egg", egg)})
            else:
                answer = post_json(daemon, "addversion.json", data={**data, "egg": egg})
            if answer != {"status": "error", "message": f"DirectoryTraversalError: {name}", "node_name": NODE_NAME}:
                failures.append((name, as_multipart, answer))
        unchanged.check(f"project {name!r}")
    assert not failures, failures


# Versions keep their exact text and get folder names of their own, so
# Scrapyd's any-text versions are taken; these no crawl could be given.
BAD_VERSIONS = ["", "a\x00b", "\x00", "x" * 1025]


def test_addversion_refuses_bad_version_names(deployed, egg_file):
    egg = egg_file.read_bytes()
    unchanged = Unchanged(deployed)
    failures = []
    for name in BAD_VERSIONS:
        for project in ("testproject", "newproject"):
            answer = upload_bytes(deployed, project, name, egg)
            if answer != {"status": "error", "message": f"DirectoryTraversalError: {name}", "node_name": NODE_NAME}:
                failures.append((project, name, answer))
        unchanged.check(f"version {name!r}")
    assert not failures, failures


def test_names_at_the_length_limit_are_accepted(daemon, egg_file):
    for name in GOOD_LONG_NAMES:
        answer = daemon.upload(name, "1", egg_file)
        assert answer["spiders"] == len(ALL_SPIDERS)
        assert daemon.ok("GET", "listspiders.json", {"project": name})["spiders"] == ALL_SPIDERS
    assert sorted(daemon.ok("GET", "listprojects.json")["projects"]) == sorted(GOOD_LONG_NAMES)


@pytest.mark.parametrize("version", ["v" * 200, "\u00e9" * 100, "+" * 200, "%" * 200, "v" * 1024],
                         ids=["200-v", "100-e-acute", "200-plus", "200-percent", "1024-v"])
def test_version_at_the_length_limit(deployed, egg_file, version):
    """A long version is a valid name; whatever its folder is called on
    disk, it is either stored and usable, or refused with nothing written."""
    unchanged = Unchanged(deployed)
    answer = upload_bytes(deployed, "testproject", version, egg_file.read_bytes())
    if answer["status"] == "ok":
        versions = deployed.ok("GET", "listversions.json", {"project": "testproject"})["versions"]
        assert version in versions
        spiders = deployed.ok("GET", "listspiders.json", {"project": "testproject", "_version": version})
        assert spiders["spiders"] == ALL_SPIDERS
    else:
        unchanged.check(f"version of {len(version.encode())} bytes: {answer}")
        assert_error(answer, f"DirectoryTraversalError: {version}")


def test_versions_scrapyd_takes_are_kept_apart_on_disk(deployed, egg_file):
    """Scrapyd takes any version text (scrapyd-deploy's `version = GIT` makes
    `r12-feature/login` from a branch name). Each is stored under a folder
    of its own: none reaches outside its project, none is another's egg
    (`a.egg` against `a`) or the project's scrapy.cfg."""
    egg = egg_file.read_bytes()
    eggs = deployed.dirs["eggs"]
    outside = sorted(p.relative_to(deployed.root) for p in deployed.root.rglob("*") if eggs not in p.parents)
    versions = ["r12-feature/login", "../x", ".", "..", "a/b", "scrapy.cfg", "a", "a.egg", "2.0", "\\", "a\nb"]
    for version in versions:
        answer = upload_bytes(deployed, "testproject", version, egg)
        assert answer["status"] == "ok", (version, answer)
    listed = deployed.ok("GET", "listversions.json", {"project": "testproject"})["versions"]
    assert set(versions) <= set(listed), listed
    for version in versions:
        spiders = deployed.ok("GET", "listspiders.json", {"project": "testproject", "_version": version})
        assert spiders["spiders"] == ALL_SPIDERS, version
    assert (eggs / "testproject" / "scrapy.cfg").is_file()
    assert not list((eggs / "testproject").glob(".upload-*"))
    # Nothing was written outside the eggs folder.
    after = sorted(p.relative_to(deployed.root) for p in deployed.root.rglob("*") if eggs not in p.parents)
    assert after == outside
    # An empty _version is no version, as in Scrapyd: the latest one.
    answer = deployed.ok("POST", "schedule.json", {"project": "testproject", "spider": "pages", "_version": ""})
    assert answer["jobid"]
    for version in versions:
        deployed.ok("POST", "delversion.json", {"project": "testproject", "version": version})
    left = deployed.ok("GET", "listversions.json", {"project": "testproject"})["versions"]
    assert not set(versions) & set(left), left
    assert sorted(p.name for p in (eggs / "testproject").iterdir()) == sorted(
        [p for v in left for p in (folder_of(v), folder_of(v) + ".egg")] + ["scrapy.cfg"])


def folder_of(version: str) -> str:
    """The folder name of a version uploaded on this code (see the README)."""
    def keep(at: int, char: str) -> bool:
        if char == ".":
            return at > 0 and not (version.endswith(".egg") and at == len(version) - 4) and version != "scrapy.cfg"
        return char.isascii() and (char.isalnum() or char in "-_")
    return "".join(c if keep(i, c) else "".join(f"%{b:02X}" for b in c.encode())
                   for i, c in enumerate(version)) or "%"


def test_schedule_refuses_bad_job_ids(deployed):
    unchanged = Unchanged(deployed)
    failures = []
    for name in BAD_NAMES:
        answer = post_json(deployed, "schedule.json",
                           data={"project": "testproject", "spider": "pages", "jobid": name})
        expected = f"DirectoryTraversalError: testproject/pages/{name}"
        if answer != {"status": "error", "message": expected, "node_name": NODE_NAME}:
            failures.append((name, answer))
        unchanged.check(f"jobid {name!r}")
    assert not failures, failures


def test_schedule_refuses_bad_spider_names(deployed):
    unchanged = Unchanged(deployed)
    failures = []
    for name in BAD_NAMES + ["pages/../pages", "pages\x00", "Pages", "pages "]:
        answer = post_json(deployed, "schedule.json", data={"project": "testproject", "spider": name})
        if answer != {"status": "error", "message": f"spider '{name}' not found", "node_name": NODE_NAME}:
            failures.append((name, answer))
        unchanged.check(f"spider {name!r}")
    assert not failures, failures


def test_schedule_refuses_bad_project_and_version_names(deployed):
    unchanged = Unchanged(deployed)
    failures = []
    for name in BAD_NAMES:
        answer = post_json(deployed, "schedule.json", data={"project": name, "spider": "pages"})
        if answer.get("status") != "error" or answer.get("message") not in (
                f"project '{name}' not found", f"DirectoryTraversalError: {name}"):
            failures.append(("project", name, answer))
        if name == "":
            # Scrapyd takes an empty _version for none (tested apart).
            unchanged.check(f"project {name!r}")
            continue
        answer = post_json(deployed, "schedule.json",
                           data={"project": "testproject", "spider": "pages", "_version": name})
        if answer.get("status") != "error" or answer.get("message") not in (
                f"version '{name}' not found", f"DirectoryTraversalError: {name}"):
            failures.append(("_version", name, answer))
        unchanged.check(f"project/_version {name!r}")
    assert not failures, failures


def test_delete_endpoints_refuse_bad_names(deployed):
    """`delproject ..` must not delete the eggs folder's parent, and so on."""
    unchanged = Unchanged(deployed)
    failures = []
    for name in BAD_NAMES + ["testproject/..", "testproject/../testproject"]:
        for endpoint, data in (("delproject.json", {"project": name}),
                               ("delversion.json", {"project": name, "version": "1.0"}),
                               ("delversion.json", {"project": "testproject", "version": name})):
            answer = post_json(deployed, endpoint, data=data)
            if answer.get("status") != "error" or answer.get("message") not in (
                    f"DirectoryTraversalError: {name}", f"project '{name}' not found",
                    f"version '{name}' not found", "version '1.0' not found"):
                failures.append((endpoint, data, answer))
        unchanged.check(f"deleting {name!r}")
    assert not failures, failures


def _python_utf8_error(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return str(error)
    raise AssertionError(f"{raw!r} is valid UTF-8")


INVALID_UTF8 = [b"\xff", b"ab\xff", b"\xc3", b"\xc3(", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf0\x90\x80",
                b"\xf8\x88\x80\x80\x80", b"\x80", b"ok\xc0\xaf"]


def test_invalid_utf8_in_names(deployed, egg_file):
    egg = egg_file.read_bytes()
    unchanged = Unchanged(deployed)
    failures = []
    for raw in INVALID_UTF8:
        quoted = urllib.parse.quote_from_bytes(raw, safe="")
        reason = _python_utf8_error(raw)
        cases = [
            ("addversion.json", f"project={quoted}&version=1", "project"),
            ("addversion.json", f"project=testproject&version={quoted}", "version"),
            ("schedule.json", f"project={quoted}&spider=pages", "project"),
            ("schedule.json", f"project=testproject&spider={quoted}", "spider"),
            ("schedule.json", f"project=testproject&spider=pages&jobid={quoted}", "jobid"),
            ("delproject.json", f"project={quoted}", "project"),
        ]
        for endpoint, query, name in cases:
            body = query + "&egg=" + urllib.parse.quote_from_bytes(egg) if endpoint == "addversion.json" else query
            answer = post_json(deployed, endpoint, data=body.encode(),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
            expected = f"{name} is invalid: {reason}"
            if answer != {"status": "error", "message": expected, "node_name": NODE_NAME}:
                failures.append((endpoint, query, expected, answer))
        # The same in a multipart body, the raw byte in the part.
        answer = post_json(deployed, "addversion.json", files={
            "project": (None, raw), "version": (None, b"1"), "egg": ("p.egg", egg)})
        expected = f"project is invalid: {reason}"
        if answer != {"status": "error", "message": expected, "node_name": NODE_NAME}:
            failures.append(("multipart addversion", raw, expected, answer))
        unchanged.check(f"invalid UTF-8 {raw!r}")
    assert not failures, "\n".join(map(repr, failures))


# --------------------------------------------------------------------------
# Malformed bodies and many parameters
# --------------------------------------------------------------------------

MALFORMED_MULTIPART = {
    "no-boundary": ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=\"project\"\r\n\r\np\r\n--x--\r\n"),
    "empty-boundary": ("multipart/form-data; boundary=", b"--\r\n\r\n----\r\n"),
    "body-without-boundary": ("multipart/form-data; boundary=XyZ", b"project=p&version=1&egg=PK"),
    "unterminated-part-headers": (
        "multipart/form-data; boundary=XyZ",
        b"--XyZ\r\nContent-Disposition: form-data; name=\"project\"\r\nX-Junk: aaa"),
    "no-closing-boundary": (
        "multipart/form-data; boundary=XyZ",
        b"--XyZ\r\nContent-Disposition: form-data; name=\"project\"\r\n\r\np\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"egg\"; filename=\"a.egg\"\r\n\r\nPK\x03\x04abc"),
    "garbage-part-header": (
        "multipart/form-data; boundary=XyZ",
        b"--XyZ\r\n\x00\x01\x02 not a header\r\n\r\np\r\n--XyZ--\r\n"),
    "header-without-colon": (
        "multipart/form-data; boundary=XyZ",
        b"--XyZ\r\nContent-Disposition form-data name project\r\n\r\np\r\n--XyZ--\r\n"),
    # Over RFC 2046's 70 characters: refused before the body is searched
    # for it (which would cost the body's size times its length).
    "boundary-too-long": ("multipart/form-data; boundary=" + "-" * 5000 + "x", b"-" * 90_000),
}


@pytest.mark.parametrize("case", list(MALFORMED_MULTIPART))
def test_malformed_multipart(limited, case):
    """A body with no boundary to split it by: Twisted's bare 400, as
    Scrapyd answers. Other broken ones: the API's error (Scrapyd reads
    what it can of them and misses a parameter)."""
    content_type, body = MALFORMED_MULTIPART[case]
    unchanged = Unchanged(limited)
    for endpoint in ("addversion.json", "schedule.json"):
        status, headers, raw = raw_request(limited, http_post("/" + endpoint, body, content_type))
        if case in ("no-boundary", "body-without-boundary"):
            assert (status, raw) == (400, b""), (endpoint, status, raw)
        else:
            assert status == 200, (endpoint, status, raw)
            answer = json.loads(raw)
            assert_error(answer, startswith="malformed request body:")
        unchanged.check(f"{case} to {endpoint}")


def _parse_qs_first(body: bytes, name: bytes) -> str:
    """What Twisted's parse_qs reads for `name`: pairs split at `&` and `;`,
    a pair without `=` skipped, blank values kept."""
    for item in body.replace(b";", b"&").split(b"&"):
        if b"=" not in item:
            continue
        key, value = item.split(b"=", 1)
        if urllib.parse.unquote_to_bytes(key.replace(b"+", b" ")) == name:
            return urllib.parse.unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
    return None


MALFORMED_URLENCODED = [
    b"project=%zz&spider=pages",
    b"project=%&spider=pages",
    b"project=nope%2&spider=pages",
    b"project=a=b=c&spider=pages",
    b"&&&project=nope&&=&=x&spider=pages&&",
    b"project=nope%00&spider=pages",
    b"project=no+pe%20%2B&spider=pages",
    b"\xff\xfe=\x00&project=nope&spider=pages",
    b"project&spider=pages",
    b"project=nope&project=testproject&spider=pages",
]


def test_malformed_urlencoded_bodies(deployed):
    """Read leniently, as Twisted does: odd escapes stay literal; no crash,
    no job, nothing written."""
    unchanged = Unchanged(deployed)
    failures = []
    for body in MALFORMED_URLENCODED:
        project = _parse_qs_first(body, b"project")
        status, headers, raw = raw_request(
            deployed, http_post("/schedule.json", body, "application/x-www-form-urlencoded"))
        answer = json.loads(raw) if status == 200 else None
        message = "'project' parameter is required" if project is None else f"project '{project}' not found"
        if answer != {"status": "error", "message": message, "node_name": NODE_NAME}:
            failures.append((body, status, raw[:300]))
        unchanged.check(f"body {body!r}")
    assert not failures, "\n".join(map(repr, failures))


def _many(count, prefix="a"):
    return "&".join(f"{prefix}{i}=1" for i in range(count))


def test_too_many_parameters(deployed):
    unchanged = Unchanged(deployed)
    too_many = "malformed request body: more than 1000 parameters"
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    # 1000 in all is fine: project, spider and 998 more.
    answer = post_json(deployed, "schedule.json", data=("project=nope&spider=x&" + _many(998)).encode(), headers=form)
    assert_error(answer, "project 'nope' not found")
    # 1001 is not: in the body, in the query string, or split between them.
    answer = post_json(deployed, "schedule.json", data=("project=nope&spider=x&" + _many(999)).encode(), headers=form)
    assert_error(answer, too_many)
    response = requests.post(deployed.url + "/schedule.json?project=nope&spider=x&" + _many(999), timeout=60)
    assert response.status_code == 200
    assert_error(response.json(), too_many)
    response = requests.get(deployed.url + "/listjobs.json?" + _many(1001), timeout=60)
    assert response.status_code == 200
    assert_error(response.json(), too_many)
    response = requests.post(deployed.url + "/schedule.json?" + _many(600, "q"), data=_many(600).encode(),
                             headers=form, timeout=60)
    assert_error(response.json(), too_many)
    # The same name repeated counts every time.
    answer = post_json(deployed, "schedule.json",
                       data=("project=nope&spider=x&" + "&".join(["setting=A=1"] * 1000)).encode(), headers=form)
    assert_error(answer, too_many)
    # Multipart parts count too.
    parts = {f"a{i}": (None, b"1") for i in range(1001)}
    answer = post_json(deployed, "schedule.json", files=parts)
    assert_error(answer, too_many)
    # A flood of parameters is answered quickly; pairs without `=` are no
    # parameters (as Twisted reads a form) and cost only their scan.
    started = time.monotonic()
    answer = post_json(deployed, "schedule.json", data=("&".join(["x=1"] * 200_000)).encode(), headers=form)
    assert_error(answer, too_many)
    answer = post_json(deployed, "schedule.json", data=("&".join(["x"] * 300_000)).encode(), headers=form)
    assert_error(answer, "'project' parameter is required")
    answer = post_json(deployed, "addversion.json", data=_many(200_000).encode(), headers=form)
    assert_error(answer, too_many)
    assert time.monotonic() - started < 30
    unchanged.check("too many parameters")


# --------------------------------------------------------------------------
# Body size, slow clients, connections
# --------------------------------------------------------------------------

BODY_LIMIT = 100_000
# Every request but an egg upload.
REQUEST_LIMIT = 20_000


@pytest.fixture
def small_body(daemon_factory, egg_file):
    daemon = daemon_factory(max_body_size=BODY_LIMIT, max_request_body_size=REQUEST_LIMIT,
                            http_timeout=HTTP_TIMEOUT)
    daemon.upload("testproject", "1.0", egg_file)  # well under the limit
    return daemon


def test_body_over_the_limit_gets_413(small_body, egg_file):
    daemon = small_body
    unchanged = Unchanged(daemon)
    noise = random.Random(0).randbytes(BODY_LIMIT * 2)  # does not compress
    big_egg = rebuild(egg_file.read_bytes(), add=[("testproject/noise.bin", noise)])
    assert len(big_egg) > BODY_LIMIT
    response = post_raw(daemon, "addversion.json", data={"project": "big", "version": "1"},
                        files={"egg": ("p.egg", big_egg)})
    assert response.status_code == 413, (response.status_code, response.text[:300])
    unchanged.check("an oversized multipart upload")

    # Exactly at the limit is read; one byte more is not. Eggs have their
    # own limit; every other request the smaller one.
    form = "application/x-www-form-urlencoded"
    for endpoint, limit in [("/addversion.json", BODY_LIMIT), ("/schedule.json", REQUEST_LIMIT)]:
        head = b"project=nope&spider=x&version=1&pad="
        at_limit = head + b"a" * (limit - len(head))
        status, _, raw = raw_request(daemon, http_post(endpoint, at_limit, form))
        assert status == 200, raw
        assert_error(json.loads(raw))
        status, _, raw = raw_request(daemon, http_post(endpoint, at_limit + b"a", form))
        assert status == 413, (endpoint, status, raw)
    unchanged.check("bodies at and over the limit")


def test_arguments_no_process_can_take_are_refused(small_body):
    daemon = small_body
    unchanged = Unchanged(daemon)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = {
        "arg=a%00b": "spider argument 'arg' cannot be passed to a process: it contains a NUL byte",
        "setting=A%3Dx%00": "setting 'A' cannot be passed to a process: it contains a NUL byte",
    }
    for extra, message in cases.items():
        answer = post_json(daemon, "schedule.json", data=f"project=testproject&spider=pages&{extra}",
                           headers=form)
        assert_error(answer, message)
    unchanged.check("arguments a process cannot take")


def test_announced_huge_body_is_refused_without_reading_it(small_body):
    daemon = small_body
    unchanged = Unchanged(daemon)
    with connect(daemon) as sock:
        sock.sendall(b"POST /addversion.json HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 1000000000000\r\n\r\nproject=p&version=1&egg=PK")
        status, _, body = read_response(sock, timeout=HTTP_TIMEOUT + SLACK)
    assert status == 413, (status, body)
    unchanged.check("an announced huge body")


def test_chunked_body_over_the_limit(small_body):
    daemon = small_body
    unchanged = Unchanged(daemon)
    chunk = b"a" * 10_000
    with connect(daemon) as sock:
        sock.sendall(b"POST /addversion.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(BODY_LIMIT // len(chunk) + 5):
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may answer and close before all is sent
        status, _, body = read_response(sock, timeout=HTTP_TIMEOUT + SLACK)
    assert status == 413, (status, body)
    unchanged.check("an oversized chunked body")


def test_silent_client_is_cut_off(small_body):
    with connect(small_body) as sock:
        # Others are served meanwhile.
        assert small_body.ok("GET", "daemonstatus.json")["pending"] == 0
        assert_cut_off(sock, "a client that sends nothing")


def test_partial_headers_are_cut_off(small_body):
    with connect(small_body) as sock:
        sock.sendall(b"GET /daemonstatus.json HTTP/1.1\r\nHost: x\r\n")
        assert_cut_off(sock, "a client that stops in its headers")


def test_slowloris_headers_are_cut_off(small_body):
    """A header line every half second: each read makes progress, but the
    whole header must still arrive within http_timeout."""
    with connect(small_body) as sock:
        sock.sendall(b"GET /daemonstatus.json HTTP/1.1\r\nHost: x\r\n")
        assert_cut_off(sock, "a client trickling header lines", feed=b"X-Slow: a\r\n")


def test_stalled_body_is_cut_off(small_body):
    unchanged = Unchanged(small_body)
    with connect(small_body) as sock:
        sock.sendall(b"POST /addversion.json HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 5000\r\n\r\nproject=slow&version=1&egg=PK")
        assert_cut_off(sock, "a client that stops in its body")
    unchanged.check("a stalled upload")


def test_trickled_body_is_cut_off(small_body):
    unchanged = Unchanged(small_body)
    with connect(small_body) as sock:
        sock.sendall(b"POST /schedule.json HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 5000\r\n\r\nproject=testproject&spider=pages&x=")
        assert_cut_off(sock, "a client trickling its body", feed=b"a")
    unchanged.check("a trickled schedule")


def test_trickled_chunked_body_is_cut_off(small_body):
    with connect(small_body) as sock:
        sock.sendall(b"POST /schedule.json HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        assert_cut_off(sock, "a client trickling chunks", feed=b"1\r\na\r\n")


def _fresh_get(daemon, timeout):
    with requests.Session() as session:
        session.trust_env = False
        return session.get(daemon.url + "/daemonstatus.json", timeout=timeout,
                           headers={"Connection": "close"})


def test_a_full_table_makes_room_for_a_newcomer(daemon_factory):
    daemon = daemon_factory(max_connections=2)
    wait_for(lambda: _fresh_get(daemon, 5).status_code == 200, timeout=10, message="a first answer")
    time.sleep(0.5)  # let the daemon see the probes' connections close
    holders = [connect(daemon), connect(daemon)]
    try:
        # The longest idle holder is closed to serve the newcomer at once.
        assert _fresh_get(daemon, 2).status_code == 200
        assert wait_closed(holders[0], 5)[0]
    finally:
        for sock in holders:
            sock.close()
    assert daemon.process.poll() is None


def test_many_idle_connections_do_not_kill_the_daemon(daemon_factory):
    daemon = daemon_factory(max_connections=5, http_timeout=HTTP_TIMEOUT)
    holders = [socket.create_connection(("127.0.0.1", daemon.port), timeout=5) for _ in range(20)]

    # Idle holders are cut off after http_timeout, so others get served.
    def served():
        try:
            return _fresh_get(daemon, 2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(served, timeout=HTTP_TIMEOUT * 10 + SLACK * 3, interval=0.5,
                 message="an answer while idle connections come and go")
    finally:
        for sock in holders:
            sock.close()
    assert daemon.process.poll() is None


# --------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


BAD_AUTHORIZATIONS = {
    "missing": None,
    "empty": "",
    "wrong-password": _basic(f"{USERNAME}:wrong".encode()),
    "wrong-user": _basic(f"bob:{PASSWORD}".encode()),
    "password-prefix": _basic(f"{USERNAME}:{PASSWORD[:-1]}".encode()),
    "password-extended": _basic(f"{USERNAME}:{PASSWORD}x".encode()),
    "password-with-nul": _basic(f"{USERNAME}:{PASSWORD}\0".encode()),
    "swapped": _basic(f"{PASSWORD}:{USERNAME}".encode()),
    "no-colon": _basic(f"{USERNAME}{PASSWORD}".encode()),
    "only-colon": _basic(b":"),
    "empty-credentials": "Basic ",
    "scheme-only": "Basic",
    "not-base64": "Basic !!!",
    "truncated-base64": _basic(f"{USERNAME}:{PASSWORD}".encode())[:-3],
    "bearer": "Bearer x",
    "bearer-with-right-base64": "Bearer " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode(),
    "digest": 'Digest username="alice", realm="Scrapyd", nonce="x", uri="/", response="y"',
    "plain-credentials": f"Basic {USERNAME}:{PASSWORD}",
    "huge": "Basic " + "A" * 6000,
}


@pytest.fixture
def auth_daemon(daemon_factory, egg_file):
    daemon = daemon_factory(username=USERNAME, password=PASSWORD)
    daemon.upload("testproject", "1.0", egg_file)
    return daemon


def _assert_unauthorized(status, headers, body, what):
    assert status == 401, (what, status, body[:200])
    assert headers.get("www-authenticate") == 'Basic realm="Scrapyd"', (what, headers)
    assert body == b"Unauthorized", (what, body[:200])


def _auth_header(value):
    return b"" if value is None else b"Authorization: " + value.encode("latin-1") + b"\r\n"


def test_auth_refuses_wrong_missing_and_malformed(auth_daemon, egg_file):
    unchanged = Unchanged(auth_daemon)
    egg = urllib.parse.quote_from_bytes(egg_file.read_bytes()).encode()
    failures = []
    for case, value in BAD_AUTHORIZATIONS.items():
        requests_ = [
            b"GET /listprojects.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + _auth_header(value) + b"\r\n",
            http_post("/addversion.json", b"project=sneaky&version=1&egg=" + egg,
                      "application/x-www-form-urlencoded", extra=_auth_header(value)),
            http_post("/schedule.json", b"project=testproject&spider=pages",
                      "application/x-www-form-urlencoded", extra=_auth_header(value)),
        ]
        for payload in requests_:
            try:
                _assert_unauthorized(*raw_request(auth_daemon, payload), (case, payload[:40]))
            except AssertionError as error:
                failures.append(str(error))
        unchanged.check(f"authorization {case}")
    assert not failures, "\n".join(failures)


def test_auth_refuses_non_ascii_header_bytes(auth_daemon):
    unchanged = Unchanged(auth_daemon)
    for value in (b"Basic \xff\xfe\xfd", b"\xc3\xa9\xc3\xa9", b"Basic " + base64.b64encode(
            f"{USERNAME}:".encode() + PASSWORD.encode() + b"\xff")):
        payload = b"GET /listprojects.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: " + value + b"\r\n\r\n"
        status, headers, body = raw_request(auth_daemon, payload)
        if status != 400:  # a parser may refuse the header outright
            _assert_unauthorized(status, headers, body, value)
    unchanged.check("non-ASCII Authorization")


def test_auth_accepts_exact_credentials_only(auth_daemon):
    good = _basic(f"{USERNAME}:{PASSWORD}".encode())
    payload = b"GET /listprojects.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + _auth_header(good) + b"\r\n"
    status, _, body = raw_request(auth_daemon, payload)
    assert status == 200, body
    assert b'"testproject"' in body
    # Twice the header: the first one counts in most servers; either way the
    # wrong one must not let anyone in.
    payload = (b"GET /listprojects.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               + _auth_header(BAD_AUTHORIZATIONS["wrong-password"]) + _auth_header(good) + b"\r\n")
    status, headers, body = raw_request(auth_daemon, payload)
    if status != 200:
        _assert_unauthorized(status, headers, body, "wrong then right")


def test_auth_scheme_is_case_insensitive(auth_daemon):
    """RFC 7235: the scheme is case-insensitive; Twisted (so Scrapyd) lower-cases it."""
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    for scheme in ("basic", "BASIC"):
        response = requests.get(auth_daemon.url + "/listprojects.json",
                                headers={"Authorization": f"{scheme} {token}"}, timeout=30)
        assert response.status_code == 200, (scheme, response.status_code, response.text)


# --------------------------------------------------------------------------
# Default bind address
# --------------------------------------------------------------------------


def _listening(port: int):
    """(family, address) of every socket listening on `port`, from /proc."""
    found = []
    for family, path in (("ipv4", "/proc/net/tcp"), ("ipv6", "/proc/net/tcp6")):
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, _, port_hex = local.partition(":")
            if state == "0A" and int(port_hex, 16) == port:
                if family == "ipv4":
                    found.append((family, socket.inet_ntoa(struct.pack("<I", int(address, 16)))))
                else:
                    raw = bytes.fromhex(address)
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.append((family, socket.inet_ntop(socket.AF_INET6, raw)))
    return found


def _other_addresses():
    """This machine's non-loopback IPv4 addresses."""
    found = set()
    for target in ("192.0.2.1", "10.255.255.255", "8.8.8.8"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 9))
                found.add(probe.getsockname()[0])
        except OSError:
            pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(info[4][0])
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


@pytest.fixture
def default_bind_daemon(daemon_factory, monkeypatch):
    monkeypatch.delenv("SCRAPYD_BIND_ADDRESS", raising=False)
    daemon = daemon_factory(bind_address=None)
    assert "bind_address" not in daemon.config_path.read_text()
    return daemon


def test_default_bind_is_loopback_only(default_bind_daemon):
    listening = _listening(default_bind_daemon.port)
    assert listening == [("ipv4", "127.0.0.1")], listening


def test_default_bind_refuses_other_addresses(default_bind_daemon):
    others = _other_addresses()
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address")
    for address in others:
        with pytest.raises(OSError):
            socket.create_connection((address, default_bind_daemon.port), timeout=3).close()
    assert default_bind_daemon.ok("GET", "daemonstatus.json")["pending"] == 0
