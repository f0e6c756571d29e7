"""The Scrapyd JSON API: answers, error messages, methods, headers, auth, uploads."""

from __future__ import annotations

import io
import json
import random
import zipfile

import pytest
import requests
from conftest import ALL_SPIDERS, NODE_NAME, PASSWORD, USERNAME, expected_json
from scrapyd_api import ScrapydAPI
from scrapyd_client.pyclient import ScrapydClient


GET_ENDPOINTS = ["daemonstatus.json", "listprojects.json", "listversions.json", "listspiders.json",
                 "listjobs.json", "status.json"]
POST_ENDPOINTS = ["addversion.json", "schedule.json", "cancel.json", "delversion.json", "delproject.json"]
# Twisted lists the render_* methods of Scrapyd's resource classes in the
# order the classes define them, base classes first: HEAD (twisted's
# Resource), OPTIONS (Scrapyd's WsResource), then the endpoint's own method.
GET_ALLOWED = "UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'GET']"
POST_ALLOWED = "UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'POST']"
# Scrapyd's class of each POST endpoint, named in its answer to HEAD
POST_CLASSES = {"addversion.json": "AddVersion", "schedule.json": "Schedule", "cancel.json": "Cancel",
                "delversion.json": "DeleteVersion", "delproject.json": "DeleteProject"}


def error_body(message: str) -> bytes:
    return expected_json(status="error", message=message, node_name=NODE_NAME)


# --------------------------------------------------------------------------
# Exact bodies
# --------------------------------------------------------------------------


def test_daemonstatus_exact_body(daemon):
    response = daemon.request("GET", "/daemonstatus.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == expected_json(pending=0, running=0, finished=0, status="ok", node_name=NODE_NAME)


def test_listprojects_exact_body_when_empty(daemon):
    response = daemon.request("GET", "/listprojects.json")
    assert response.content == expected_json(projects=[], status="ok", node_name=NODE_NAME)


def test_listversions_of_unknown_project_is_empty_not_an_error(daemon):
    response = daemon.request("GET", "/listversions.json", params={"project": "nope"})
    assert response.content == expected_json(versions=[], status="ok", node_name=NODE_NAME)


def test_listjobs_exact_body_when_empty(daemon):
    response = daemon.request("GET", "/listjobs.json")
    assert response.content == expected_json(pending=[], running=[], finished=[], status="ok", node_name=NODE_NAME)


def test_addversion_exact_body(daemon, egg_file):
    with open(egg_file, "rb") as f:
        response = daemon.request(
            "POST", "/addversion.json", data={"project": "testproject", "version": "1.0"},
            files={"egg": ("project.egg", f)},
        )
    assert response.status_code == 200
    assert response.content == expected_json(
        project="testproject", version="1.0", spiders=3, status="ok", node_name=NODE_NAME
    ), daemon.stderr()


def test_schedule_status_cancel_delete_exact_bodies(deployed):
    daemon = deployed
    # A crawl of a closed port: it ends at once, with an error in its log.
    response = daemon.request(
        "POST", "/schedule.json",
        data={"project": "testproject", "spider": "pages", "jobid": "job-1", "base_url": "http://127.0.0.1:9/"},
    )
    assert response.content == expected_json(jobid="job-1", status="ok", node_name=NODE_NAME)

    response = daemon.request("GET", "/status.json", params={"job": "no-such-job"})
    assert response.content == expected_json(currstate=None, status="ok", node_name=NODE_NAME)

    response = daemon.request("POST", "/cancel.json", data={"project": "testproject", "job": "no-such-job"})
    assert response.content == expected_json(prevstate=None, status="ok", node_name=NODE_NAME)

    daemon.wait_finished("job-1")
    response = daemon.request("GET", "/status.json", params={"job": "job-1", "project": "testproject"})
    assert response.content == expected_json(currstate="finished", status="ok", node_name=NODE_NAME)

    response = daemon.request("POST", "/delversion.json", data={"project": "testproject", "version": "1.0"})
    assert response.content == expected_json(status="ok", node_name=NODE_NAME)

    daemon.upload("testproject", "1.0", daemon.egg_file)
    response = daemon.request("POST", "/delproject.json", data={"project": "testproject"})
    assert response.content == expected_json(status="ok", node_name=NODE_NAME)


# --------------------------------------------------------------------------
# Error messages (HTTP 200, node_name, exact text)
# --------------------------------------------------------------------------


MISSING_PARAMETERS = [
    ("POST", "addversion.json", {}, "project"),
    ("POST", "addversion.json", {"project": "p"}, "version"),
    ("POST", "addversion.json", {"project": "p", "version": "1"}, "egg"),
    ("POST", "addversion.json", {"version": "1"}, "project"),
    ("POST", "schedule.json", {}, "project"),
    ("POST", "schedule.json", {"spider": "pages"}, "project"),
    ("POST", "schedule.json", {"project": "testproject"}, "spider"),
    ("POST", "cancel.json", {}, "project"),
    ("POST", "cancel.json", {"job": "j"}, "project"),
    ("POST", "cancel.json", {"project": "testproject"}, "job"),
    ("GET", "status.json", {}, "job"),
    ("GET", "status.json", {"project": "testproject"}, "job"),
    ("GET", "listversions.json", {}, "project"),
    ("GET", "listspiders.json", {}, "project"),
    ("GET", "listspiders.json", {"_version": "1.0"}, "project"),
    ("POST", "delversion.json", {}, "project"),
    ("POST", "delversion.json", {"version": "1.0"}, "project"),
    ("POST", "delversion.json", {"project": "testproject"}, "version"),
    ("POST", "delproject.json", {}, "project"),
]


@pytest.mark.parametrize(("method", "endpoint", "params", "missing"), MISSING_PARAMETERS)
def test_missing_parameter(deployed, method, endpoint, params, missing):
    if method == "GET":
        response = deployed.request("GET", "/" + endpoint, params=params)
    else:
        response = deployed.request("POST", "/" + endpoint, data=params)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == error_body(f"'{missing}' parameter is required")


def test_parameters_from_query_string_of_a_post(deployed):
    response = deployed.request("POST", "/cancel.json?project=testproject&job=nothing")
    assert response.json() == {"prevstate": None, "status": "ok", "node_name": NODE_NAME}


def test_body_value_wins_over_query_value(deployed):
    response = deployed.request("POST", "/cancel.json?project=nope&job=x", data={"project": "testproject"})
    assert response.json() == {"prevstate": None, "status": "ok", "node_name": NODE_NAME}


def test_parameters_as_multipart(deployed):
    response = deployed.request(
        "POST", "/cancel.json", files={"project": (None, "testproject"), "job": (None, "nothing")}
    )
    assert response.json() == {"prevstate": None, "status": "ok", "node_name": NODE_NAME}


def test_empty_value_counts_as_present(deployed):
    response = deployed.request("POST", "/schedule.json", data={"project": "testproject", "spider": ""})
    assert response.content == error_body("spider '' not found")


NOT_FOUND = [
    ("POST", "schedule.json", {"project": "nope", "spider": "pages"}, "project 'nope' not found"),
    ("POST", "schedule.json", {"project": "testproject", "spider": "pages", "_version": "9.9"},
     "version '9.9' not found"),
    ("POST", "schedule.json", {"project": "testproject", "spider": "nope"}, "spider 'nope' not found"),
    # checked in order: project, then version, then spider
    ("POST", "schedule.json", {"project": "nope", "spider": "nope", "_version": "9.9"}, "project 'nope' not found"),
    ("POST", "schedule.json", {"project": "testproject", "spider": "nope", "_version": "9.9"},
     "version '9.9' not found"),
    ("POST", "cancel.json", {"project": "nope", "job": "j"}, "project 'nope' not found"),
    ("GET", "status.json", {"job": "j", "project": "nope"}, "project 'nope' not found"),
    ("GET", "listspiders.json", {"project": "nope"}, "project 'nope' not found"),
    ("GET", "listspiders.json", {"project": "testproject", "_version": "9.9"}, "version '9.9' not found"),
    ("GET", "listjobs.json", {"project": "nope"}, "project 'nope' not found"),
    ("GET", "listjobs.json", {"project": ""}, "project '' not found"),
    ("POST", "delproject.json", {"project": "nope"}, "project 'nope' not found"),
    ("POST", "delversion.json", {"project": "testproject", "version": "9.9"}, "version '9.9' not found"),
]


@pytest.mark.parametrize(("method", "endpoint", "params", "message"), NOT_FOUND)
def test_not_found_errors(deployed, method, endpoint, params, message):
    if method == "GET":
        response = deployed.request("GET", "/" + endpoint, params=params)
    else:
        response = deployed.request("POST", "/" + endpoint, data=params)
    assert response.status_code == 200
    assert response.content == error_body(message)


def test_invalid_priority(deployed):
    response = deployed.request(
        "POST", "/schedule.json", data={"project": "testproject", "spider": "pages", "priority": "x"}
    )
    assert response.status_code == 200
    assert response.content == error_body("priority is invalid: could not convert string to float: b'x'")


@pytest.mark.parametrize(
    ("value", "shown"), [("", "b''"), ("0x10", "b'0x10'"), ("1__0", "b'1__0'"), ("é", "b'\\xc3\\xa9'")]
)
def test_invalid_priority_shows_the_bytes_as_python_does(deployed, value, shown):
    response = deployed.request(
        "POST", "/schedule.json", data={"project": "testproject", "spider": "pages", "priority": value.encode()}
    )
    assert response.content == error_body(f"priority is invalid: could not convert string to float: {shown}")


@pytest.mark.parametrize("value", ["5", "-1", " 2 ", "1e3", "1_0", "+.5", "inf", "-inf", "-0"])
def test_priority_accepts_what_python_float_accepts(deployed, value):
    response = deployed.request(
        "POST", "/schedule.json",
        data={"project": "testproject", "spider": "pages", "priority": value, "base_url": "http://127.0.0.1:9/"},
    )
    assert response.json()["status"] == "ok", response.text


def test_priority_nan_is_accepted(deployed):
    # float(b"nan") works in Python, so Scrapyd schedules the job
    response = deployed.request(
        "POST", "/schedule.json", data={"project": "testproject", "spider": "pages", "priority": "nan"}
    )
    answer = response.json()
    assert answer["status"] == "ok", answer
    assert deployed.ok("GET", "status.json", {"job": answer["jobid"]})["currstate"] in ("pending", "running",
                                                                                          "finished")


@pytest.mark.parametrize(("settings", "index"), [(["NOEQUALS"], 0), (["A=1", "B=2", ""], 2)])
def test_setting_without_equals_sign(deployed, settings, index):
    # Scrapyd 1.6 builds a dict from `NAME=VALUE` pairs; a value without "="
    # fails with Python's ValueError, and nothing is scheduled
    response = deployed.request(
        "POST", "/schedule.json", data={"project": "testproject", "spider": "pages", "setting": settings}
    )
    assert response.content == error_body(
        f"ValueError: dictionary update sequence element #{index} has length 1; 2 is required"
    )
    assert deployed.ok("GET", "daemonstatus.json")["pending"] == 0
    assert deployed.listjobs()["running"] == []


def test_egg_that_is_not_a_zip(daemon):
    response = daemon.request(
        "POST", "/addversion.json", data={"project": "p", "version": "1"},
        files={"egg": ("project.egg", b"this is not a zip file")},
    )
    assert response.status_code == 200
    assert response.content == error_body("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")
    assert daemon.ok("GET", "listprojects.json")["projects"] == []


def test_egg_as_plain_text_field_that_is_not_a_zip(daemon):
    # what `curl -d egg=path` sends
    response = daemon.request("POST", "/addversion.json", data={"project": "p", "version": "1", "egg": "egg.egg"})
    assert response.content == error_body("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")


# A project name that would leave its folder, as Scrapyd 1.6 answers it: where
# it looks the name up among the known projects, it is not found; where it
# builds the project's folder in eggs_dir from it, DirectoryTraversalError.
TRAVERSAL = "DirectoryTraversalError: ../p"
UNKNOWN = "project '../p' not found"
PROJECT_LEAVING_ITS_FOLDER = [
    ("GET", "listversions.json", {"project": "../p"}, TRAVERSAL),
    ("POST", "delversion.json", {"project": "../p", "version": "1.0"}, TRAVERSAL),
    ("POST", "delproject.json", {"project": "../p"}, TRAVERSAL),
    ("POST", "schedule.json", {"project": "../p", "spider": "pages"}, UNKNOWN),
    ("POST", "schedule.json", {"project": "../p", "spider": "pages", "_version": "1.0"}, UNKNOWN),
    ("POST", "cancel.json", {"project": "../p", "job": "j"}, UNKNOWN),
    ("GET", "status.json", {"job": "j", "project": "../p"}, UNKNOWN),
    ("GET", "listspiders.json", {"project": "../p"}, UNKNOWN),
    ("GET", "listspiders.json", {"project": "../p", "_version": "1.0"}, UNKNOWN),
    ("GET", "listjobs.json", {"project": "../p"}, UNKNOWN),
]


@pytest.mark.parametrize(("method", "endpoint", "params", "message"), PROJECT_LEAVING_ITS_FOLDER)
def test_project_name_leaving_its_folder_on_every_endpoint(deployed, method, endpoint, params, message):
    # testproject is deployed and eggs_dir/../p exists: neither may be reached
    (deployed.root / "p").mkdir()
    (deployed.root / "p" / "1_0.egg").write_bytes(deployed.egg_file.read_bytes())
    if method == "GET":
        response = deployed.request("GET", "/" + endpoint, params=params)
    else:
        response = deployed.request("POST", "/" + endpoint, data=params)
    assert response.status_code == 200
    assert response.content == error_body(message)
    assert (deployed.root / "p" / "1_0.egg").is_file()
    assert deployed.ok("GET", "listversions.json", {"project": "testproject"})["versions"] == ["1.0"]


def test_addversion_checks_the_zip_then_the_project_name(daemon):
    # Scrapyd checks that the egg is a ZIP, then the name, then nothing more:
    # a ZIP that is no egg at all still gets the name's error
    response = daemon.request(
        "POST", "/addversion.json", data={"project": "../p", "version": "1"},
        files={"egg": ("project.egg", b"not a zip")},
    )
    assert response.content == error_body("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")
    response = daemon.request(
        "POST", "/addversion.json", data={"project": "../p", "version": "1"},
        files={"egg": ("project.egg", zip_bytes({"a.txt": "no EGG-INFO here"}))},
    )
    assert response.content == error_body(TRAVERSAL)
    assert daemon.ok("GET", "listprojects.json")["projects"] == []


def test_project_name_leaving_its_folder(daemon, egg_file):
    with open(egg_file, "rb") as f:
        response = daemon.request(
            "POST", "/addversion.json", data={"project": "../p", "version": "1"}, files={"egg": ("project.egg", f)}
        )
    assert response.status_code == 200
    assert response.content == error_body("DirectoryTraversalError: ../p")
    assert daemon.ok("GET", "listprojects.json")["projects"] == []
    assert not (daemon.root / "p").exists()  # eggs_dir/../p


# --------------------------------------------------------------------------
# Methods, OPTIONS, CORS, paths
# --------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
def test_post_to_a_get_endpoint(daemon, endpoint):
    response = daemon.request("POST", "/" + endpoint)
    assert response.status_code == 200
    assert response.content == error_body(GET_ALLOWED)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_get_to_a_post_endpoint(daemon, endpoint):
    response = daemon.request("GET", "/" + endpoint)
    assert response.status_code == 200
    assert response.content == error_body(POST_ALLOWED)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "FOO"])
def test_other_methods(daemon, method):
    assert daemon.request(method, "/listprojects.json").content == error_body(GET_ALLOWED)
    assert daemon.request(method, "/schedule.json").content == error_body(POST_ALLOWED)


@pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
def test_head_to_a_get_endpoint(daemon, endpoint):
    get = daemon.request("GET", "/" + endpoint)
    head = daemon.request("HEAD", "/" + endpoint)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Type"] == "application/json"
    assert int(head.headers["Content-Length"]) == len(get.content)
    # Scrapyd's answers carry their length (Twisted sets it), never chunked.
    assert int(get.headers["Content-Length"]) == len(get.content)
    assert "Transfer-Encoding" not in get.headers


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_head_to_a_post_endpoint(daemon, endpoint):
    # HEAD is in Allow, but Twisted's render_HEAD calls render_GET, which
    # Scrapyd's POST endpoints lack: the (unsent) body is that AttributeError
    response = daemon.request("HEAD", "/" + endpoint)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Type"] == "application/json"
    message = f"AttributeError: '{POST_CLASSES[endpoint]}' object has no attribute 'render_GET'"
    assert int(response.headers["Content-Length"]) == len(error_body(message))


@pytest.mark.parametrize(
    ("endpoint", "allow"),
    [(e, "OPTIONS, HEAD, GET") for e in GET_ENDPOINTS] + [(e, "OPTIONS, HEAD, POST") for e in POST_ENDPOINTS],
)
def test_options(daemon, endpoint, allow):
    response = daemon.request("OPTIONS", "/" + endpoint)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(
    ("method", "endpoint", "verb"),
    [("GET", "listprojects.json", "GET"), ("POST", "cancel.json", "POST"), ("GET", "schedule.json", "POST")],
)
def test_cors_headers(daemon, method, endpoint, verb):
    response = daemon.request(method, "/" + endpoint)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Headers"].strip() == "X-Requested-With"
    methods = [m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")]
    assert verb in methods


def test_repeated_slashes_are_collapsed(daemon):
    response = daemon.request("GET", "//listprojects.json")
    assert response.status_code == 200
    assert response.content == expected_json(projects=[], status="ok", node_name=NODE_NAME)


def test_scrapyd_client_with_trailing_slash_url(deployed):
    # scrapyd-client 2.0.3 requests f"{url}/listprojects.json", so `//` here
    client = ScrapydClient(url=deployed.url + "/")
    assert client.projects() == ["testproject"]
    assert client.spiders("testproject") == ALL_SPIDERS


@pytest.mark.parametrize("path", ["/nope.json", "/nope", "/listprojects", "/listprojects.json/x"])
def test_unknown_path_is_404(daemon, path):
    assert daemon.request("GET", path).status_code == 404


# --------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------


@pytest.fixture
def auth_daemon(daemon_factory):
    return daemon_factory(username=USERNAME, password=PASSWORD)


@pytest.mark.parametrize("credentials", [None, (USERNAME, "wrong"), ("bob", PASSWORD)])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/daemonstatus.json"), ("GET", "/listprojects.json"), ("POST", "/schedule.json"),
     ("OPTIONS", "/schedule.json"), ("GET", "/"), ("GET", "/jobs"), ("GET", "/logs/")],
)
def test_auth_refuses(auth_daemon, credentials, method, path):
    with requests.Session() as session:
        session.trust_env = False  # no ~/.netrc
        response = session.request(method, auth_daemon.url + path, auth=credentials, timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Scrapyd"'
    assert response.content == b"Unauthorized"


def test_auth_refuses_other_schemes(auth_daemon):
    response = requests.get(
        auth_daemon.url + "/listprojects.json", headers={"Authorization": "Bearer abc"}, timeout=30
    )
    assert response.status_code == 401
    assert response.content == b"Unauthorized"


def test_auth_accepts_right_credentials(auth_daemon, egg_file, deploy):
    answer = auth_daemon.ok("GET", "listprojects.json")
    assert answer == {"projects": [], "status": "ok", "node_name": NODE_NAME}
    assert requests.get(auth_daemon.url + "/", auth=(USERNAME, PASSWORD), timeout=30).status_code == 200
    # the real clients, with credentials
    deploy(auth_daemon, "secured", "1", egg=egg_file)
    api = ScrapydAPI(auth_daemon.url, auth=(USERNAME, PASSWORD))
    assert api.list_projects() == ["secured"]
    assert api.list_spiders("secured") == ALL_SPIDERS


# --------------------------------------------------------------------------
# addversion: every way clients upload an egg
# --------------------------------------------------------------------------


def test_deploy_with_scrapyd_deploy(daemon, deploy):
    answer = deploy(daemon, "testproject", "1.0")
    assert answer == {"project": "testproject", "version": "1.0", "spiders": 3, "status": "ok",
                      "node_name": NODE_NAME}
    assert daemon.ok("GET", "listprojects.json")["projects"] == ["testproject"]
    assert daemon.ok("GET", "listversions.json", {"project": "testproject"})["versions"] == ["1.0"]
    assert daemon.ok("GET", "listspiders.json", {"project": "testproject"})["spiders"] == ALL_SPIDERS
    # stored as documented: the egg itself and its unpacked folder
    eggs = daemon.dirs["eggs"] / "testproject"
    assert (eggs / "1.0.egg").is_file()
    assert (eggs / "1.0" / "EGG-INFO" / "entry_points.txt").is_file()
    assert (eggs / "1.0" / "testproject" / "spiders" / "pages.py").is_file()


def test_deploy_with_python_scrapyd_api(daemon, egg_file):
    api = ScrapydAPI(daemon.url)
    with open(egg_file, "rb") as f:
        assert api.add_version("api", "0.1", f) == 3
    assert api.list_projects() == ["api"]
    assert api.list_versions("api") == ["0.1"]  # exactly as uploaded, not 0_1
    assert api.list_spiders("api") == ALL_SPIDERS


@pytest.mark.parametrize("filename", ["egg", "../../../tmp/evil/x.egg", "/abs/path/to/project.egg", "a\\b.egg"])
def test_addversion_multipart_any_filename(daemon, egg_file, filename):
    response = daemon.request(
        "POST", "/addversion.json", data={"project": "multi", "version": "2"},
        files={"egg": (filename, egg_file.read_bytes(), "application/octet-stream")},
    )
    assert response.json() == {"project": "multi", "version": "2", "spiders": 3, "status": "ok",
                               "node_name": NODE_NAME}, daemon.stderr()
    assert daemon.ok("GET", "listspiders.json", {"project": "multi"})["spiders"] == ALL_SPIDERS


def test_addversion_egg_as_urlencoded_bytes(daemon, egg_file):
    # ScrapydWeb and SpiderKeeper post the egg's bytes as a plain form field
    body = {"project": "plain", "version": "3", "egg": egg_file.read_bytes()}
    response = daemon.request("POST", "/addversion.json", data=body)
    assert response.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert response.json() == {"project": "plain", "version": "3", "spiders": 3, "status": "ok",
                               "node_name": NODE_NAME}, daemon.stderr()


def test_addversion_parameters_in_query_string(daemon, egg_file):
    response = daemon.request(
        "POST", "/addversion.json?project=query&version=4", files={"egg": ("project.egg", egg_file.read_bytes())}
    )
    assert response.json()["status"] == "ok", response.text
    assert daemon.ok("GET", "listversions.json", {"project": "query"})["versions"] == ["4"]


def test_reupload_replaces_the_version(daemon, egg_file, small_egg_file):
    daemon.upload("p", "1.0", egg_file)
    assert daemon.ok("GET", "listspiders.json", {"project": "p"})["spiders"] == ALL_SPIDERS
    answer = daemon.upload("p", "1.0", small_egg_file)
    assert answer["spiders"] == 2
    assert daemon.ok("GET", "listversions.json", {"project": "p"})["versions"] == ["1.0"]
    assert daemon.ok("GET", "listspiders.json", {"project": "p"})["spiders"] == ["pages", "slow"]
    assert not (daemon.dirs["eggs"] / "p" / "1.0" / "testproject" / "spiders" / "stubborn.py").exists()


def test_versions_in_loose_version_order(daemon, egg_file, small_egg_file):
    versions = ["1.9", "1.10", "r9", "r23"]
    shuffled = ["r23", "1.10", "r9", "1.9"]
    random.Random(7).shuffle(shuffled)
    for version in shuffled:
        daemon.upload("ordered", version, egg_file)
    assert daemon.ok("GET", "listversions.json", {"project": "ordered"})["versions"] == versions
    # the newest version (last in that order) is the default one
    daemon.upload("ordered", "r100", small_egg_file)
    assert daemon.ok("GET", "listversions.json", {"project": "ordered"})["versions"] == versions + ["r100"]
    assert daemon.ok("GET", "listspiders.json", {"project": "ordered"})["spiders"] == ["pages", "slow"]
    assert daemon.ok("GET", "listspiders.json", {"project": "ordered", "_version": "r23"})["spiders"] == ALL_SPIDERS
    # scheduling without _version uses the default version: stubborn is not in it
    response = daemon.request("POST", "/schedule.json", data={"project": "ordered", "spider": "stubborn"})
    assert response.content == error_body("spider 'stubborn' not found")


def test_versions_exactly_as_uploaded(daemon, egg_file):
    for version in ["0.1", "2024-01-01_main", "a b"]:
        daemon.upload("exact", version, egg_file)
    assert daemon.ok("GET", "listversions.json", {"project": "exact"})["versions"] == [
        "0.1", "2024-01-01_main", "a b"]


def test_versions_found_by_their_scrapyd_name(daemon, egg_file, small_egg_file):
    # Scrapyd lists 1.0 as 1_0, and clients that knew Scrapyd (ScrapydWeb)
    # send that name back; it finds the one version it stands for
    daemon.upload("p", "1.0", egg_file)
    daemon.upload("p", "r2+b", small_egg_file)
    assert daemon.ok("GET", "listversions.json", {"project": "p"})["versions"] == ["1.0", "r2+b"]
    assert daemon.ok("GET", "listspiders.json", {"project": "p", "_version": "1_0"})["spiders"] == ALL_SPIDERS
    assert daemon.ok("GET", "listspiders.json", {"project": "p", "_version": "r2_b"})["spiders"] == ["pages", "slow"]
    # stubborn is only in 1.0, so this schedule found 1.0; the job names it exactly
    jobid = daemon.schedule("p", "stubborn", _version="1_0", base_url="http://127.0.0.1:9/")
    assert daemon.wait_finished(jobid)["spider"] == "stubborn"
    # only Scrapyd's name itself, not every name Scrapyd would turn into it
    response = daemon.request("GET", "/listspiders.json", params={"project": "p", "_version": "1+0"})
    assert response.content == error_body("version '1+0' not found")
    daemon.ok("POST", "delversion.json", {"project": "p", "version": "1_0"})
    assert daemon.ok("GET", "listversions.json", {"project": "p"})["versions"] == ["r2+b"]
    assert not (daemon.dirs["eggs"] / "p" / "1.0.egg").exists()
    response = daemon.request("POST", "/delversion.json", data={"project": "p", "version": "1_0"})
    assert response.content == error_body("version '1_0' not found")


def test_scrapyd_name_of_two_versions_finds_neither(daemon, egg_file):
    daemon.upload("p", "1.0", egg_file)
    daemon.upload("p", "1+0", egg_file)
    for method, endpoint, params in [
        ("GET", "listspiders.json", {"project": "p", "_version": "1_0"}),
        ("POST", "schedule.json", {"project": "p", "spider": "pages", "_version": "1_0"}),
        ("POST", "delversion.json", {"project": "p", "version": "1_0"}),
    ]:
        if method == "GET":
            response = daemon.request("GET", "/" + endpoint, params=params)
        else:
            response = daemon.request("POST", "/" + endpoint, data=params)
        assert response.content == error_body("version '1_0' not found"), endpoint
    assert daemon.ok("GET", "daemonstatus.json")["pending"] == 0
    # an exact name still finds its version, and one uploaded as 1_0 wins over both
    assert daemon.ok("GET", "listspiders.json", {"project": "p", "_version": "1+0"})["spiders"] == ALL_SPIDERS
    daemon.upload("p", "1_0", egg_file)
    daemon.ok("POST", "delversion.json", {"project": "p", "version": "1_0"})
    assert sorted(daemon.ok("GET", "listversions.json", {"project": "p"})["versions"]) == ["1+0", "1.0"]


# --------------------------------------------------------------------------
# Broken eggs store nothing
# --------------------------------------------------------------------------


def zip_bytes(entries: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in entries.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_egg_without_entry_points(daemon, egg_file):
    daemon.upload("good", "1", egg_file)
    egg = zip_bytes({"mypkg/__init__.py": "", "EGG-INFO/PKG-INFO": "Name: mypkg\n"})
    for project in ("good", "other"):
        response = daemon.request(
            "POST", "/addversion.json", data={"project": project, "version": "2"},
            files={"egg": ("project.egg", egg)},
        )
        answer = response.json()
        assert answer["status"] == "error", answer
        assert answer["node_name"] == NODE_NAME
    assert daemon.ok("GET", "listprojects.json")["projects"] == ["good"]
    assert daemon.ok("GET", "listversions.json", {"project": "good"})["versions"] == ["1"]
    assert daemon.ok("GET", "listversions.json", {"project": "other"})["versions"] == []
    assert not (daemon.dirs["eggs"] / "good" / "2.egg").exists()


def test_egg_whose_settings_raise(daemon, egg_file, broken_settings_egg_file):
    daemon.upload("good", "1", egg_file)
    for project in ("good", "other"):
        with open(broken_settings_egg_file, "rb") as f:
            response = daemon.request(
                "POST", "/addversion.json", data={"project": project, "version": "2"},
                files={"egg": ("project.egg", f)},
            )
        answer = response.json()
        assert answer["status"] == "error", answer
        assert answer["message"].startswith("RunnerError: "), answer
        assert "settings are broken on purpose" in answer["message"]  # the crawl tool's stderr
        assert answer["node_name"] == NODE_NAME
    assert daemon.ok("GET", "listprojects.json")["projects"] == ["good"]
    assert daemon.ok("GET", "listversions.json", {"project": "good"})["versions"] == ["1"]
    assert daemon.ok("GET", "listversions.json", {"project": "other"})["versions"] == []
    assert daemon.ok("GET", "listspiders.json", {"project": "good"})["spiders"] == ALL_SPIDERS
    assert not (daemon.dirs["eggs"] / "good" / "2.egg").exists()
    assert not (daemon.dirs["eggs"] / "good" / "2").exists()
    assert not (daemon.dirs["eggs"] / "other").exists()


# --------------------------------------------------------------------------
# delversion / delproject
# --------------------------------------------------------------------------


def test_delversion_and_last_version_deletes_project(daemon, egg_file):
    daemon.upload("p", "1", egg_file)
    daemon.upload("p", "2", egg_file)
    daemon.upload("q", "1", egg_file)
    assert daemon.ok("POST", "delversion.json", {"project": "p", "version": "2"}) == {
        "status": "ok", "node_name": NODE_NAME}
    assert daemon.ok("GET", "listversions.json", {"project": "p"})["versions"] == ["1"]
    assert not (daemon.dirs["eggs"] / "p" / "2.egg").exists()
    assert not (daemon.dirs["eggs"] / "p" / "2").exists()
    # deleting it again
    response = daemon.request("POST", "/delversion.json", data={"project": "p", "version": "2"})
    assert response.content == error_body("version '2' not found")
    daemon.ok("POST", "delversion.json", {"project": "p", "version": "1"})
    assert daemon.ok("GET", "listprojects.json")["projects"] == ["q"]
    assert daemon.ok("GET", "listversions.json", {"project": "p"})["versions"] == []
    response = daemon.request("GET", "/listspiders.json", params={"project": "p"})
    assert response.content == error_body("project 'p' not found")


def test_delproject(daemon, egg_file):
    daemon.upload("p", "1", egg_file)
    daemon.upload("p", "2", egg_file)
    daemon.upload("q", "1", egg_file)
    daemon.ok("POST", "delproject.json", {"project": "p"})
    assert daemon.ok("GET", "listprojects.json")["projects"] == ["q"]
    assert daemon.ok("GET", "listversions.json", {"project": "p"})["versions"] == []
    assert not (daemon.dirs["eggs"] / "p").exists()
    response = daemon.request("POST", "/delproject.json", data={"project": "p"})
    assert response.content == error_body("project 'p' not found")
    # a project can come back
    daemon.upload("p", "3", egg_file)
    assert sorted(daemon.ok("GET", "listprojects.json")["projects"]) == ["p", "q"]
    assert daemon.ok("GET", "listversions.json", {"project": "p"})["versions"] == ["3"]


def test_listprojects_sorted_and_json_escaping(daemon, egg_file):
    for project in ["zeta", "alpha", "ünï", 'q"uote']:
        daemon.upload(project, "1", egg_file)
    response = daemon.request("GET", "/listprojects.json")
    projects = json.loads(response.content)["projects"]
    assert sorted(projects) == sorted(["zeta", "alpha", "ünï", 'q"uote'])
    # Python's json.dumps escapes non-ASCII
    assert b"\\u00fcn\\u00ef" in response.content


def test_egg_with_entries_leaving_its_folder(daemon):
    egg = zip_bytes({
        "EGG-INFO/entry_points.txt": "[scrapy]\nsettings = testproject.settings\n",
        "testproject/__init__.py": "",
        "../../../outside.txt": "escaped",
    })
    response = daemon.request(
        "POST", "/addversion.json", data={"project": "slip", "version": "1"}, files={"egg": ("project.egg", egg)}
    )
    answer = response.json()
    assert answer["status"] == "error", answer
    assert daemon.ok("GET", "listprojects.json")["projects"] == []
    for folder in (daemon.root, daemon.root.parent, daemon.root.parent.parent, daemon.dirs["eggs"]):
        assert not (folder / "outside.txt").exists()


@pytest.mark.parametrize("jobid", ["../../../evil", "a/b"])
def test_job_id_leaving_its_folder(deployed, jobid):
    response = deployed.request(
        "POST", "/schedule.json", data={"project": "testproject", "spider": "pages", "jobid": jobid}
    )
    answer = response.json()
    assert answer["status"] == "error", answer
    # (the message may name the path it would build)
    assert answer["message"].startswith("DirectoryTraversalError: "), answer
    assert answer["message"].endswith(jobid), answer
    assert deployed.listjobs()["pending"] == []


def test_forms_are_read_as_twisted_reads_them(deployed):
    """Scrapyd's forms go through Twisted: `;` separates pairs as `&` does,
    a pair without `=` is no parameter, a spider argument that is not UTF-8
    is Python's UnicodeDecodeError, a multipart body that cannot be split a
    bare 400."""
    form = {"headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    answer = deployed.request("POST", "/schedule.json", data="project=testproject&spider=pages&jobid=q6;a=1&noval",
                              **form).json()
    assert answer["jobid"] == "q6", answer
    _, entry = deployed.job("q6")
    assert entry["args"] == {"a": "1"}, entry
    for bad in ("%FF=1", "arg=%FF"):
        response = deployed.request("POST", "/schedule.json", data=f"project=testproject&spider=pages&{bad}", **form)
        assert response.content == error_body(
            "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"), bad
    response = deployed.request("POST", "/schedule.json", data="junk",
                                headers={"Content-Type": "multipart/form-data; boundary=xx"})
    assert response.status_code == 400 and response.content == b""
    jobs = deployed.listjobs()
    assert [job["id"] for state in ("pending", "running", "finished") for job in jobs[state]] == ["q6"]


def test_endpoints_are_found_by_their_decoded_names(daemon):
    """Twisted looks a resource up by its decoded name, so Scrapyd answers
    `/daemonstatus%2Ejson` as `/daemonstatus.json`."""
    import http.client
    from urllib.parse import urlsplit

    def get(path):
        # http.client sends the path as written (requests would decode it).
        address = urlsplit(daemon.url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        headers = {"Authorization": requests.auth._basic_auth_str(*daemon.auth)} if daemon.auth else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        answer = (response.status, response.read())
        connection.close()
        return answer

    for path in ("/daemonstatus%2Ejson", "/%64aemonstatus.json"):
        status, body = get(path)
        assert status == 200 and json.loads(body)["status"] == "ok", (path, body)
    assert get("/%6Aobs")[0] == 200
    assert get("/daemonstatus%2Fjson")[0] == 404
