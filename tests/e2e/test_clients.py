"""The real client libraries end to end: python-scrapyd-api and scrapyd-client's ScrapydClient."""

from __future__ import annotations

import pytest
from conftest import ALL_SPIDERS, NODE_NAME, SITE_TITLES, read_items, wait_for
from scrapyd_api import ScrapydAPI
from scrapyd_api.exceptions import ScrapydResponseError
from scrapyd_client.pyclient import ScrapydClient


def test_python_scrapyd_api(daemon, egg_file, site):
    api = ScrapydAPI(daemon.url)
    with open(egg_file, "rb") as f:
        assert api.add_version("api", "r1", f) == 3
    with open(egg_file, "rb") as f:
        assert api.add_version("api", "r2", f) == 3
    assert api.list_projects() == ["api"]
    assert api.list_versions("api") == ["r1", "r2"]
    assert api.list_spiders("api") == ALL_SPIDERS

    jobid = api.schedule("api", "pages", settings={"MY_SETTING": "from-api"}, base_url=site.url, tag="api")
    wait_for(lambda: api.job_status("api", jobid) == "finished", message="job_status finished")
    items = read_items(daemon.items_path("api", "pages", jobid))
    assert len(items) == len(SITE_TITLES)
    assert {(i["my_setting"], i["tag"], i["job"]) for i in items} == {("from-api", "api", jobid)}

    jobs = api.list_jobs("api")
    assert [job["id"] for job in jobs["finished"]] == [jobid]
    assert jobs["node_name"] == NODE_NAME
    assert api.cancel("api", "no-such-job") is None

    with pytest.raises(ScrapydResponseError, match="spider 'nope' not found"):
        api.schedule("api", "nope")
    with pytest.raises(ScrapydResponseError, match="project 'nope' not found"):
        api.list_spiders("nope")

    assert api.delete_version("api", "r1") is True
    assert api.list_versions("api") == ["r2"]
    assert api.delete_project("api") is True
    assert api.list_projects() == []


def test_scrapyd_client_library(daemon, egg_file, site):
    daemon.upload("lib", "1", egg_file)
    client = ScrapydClient(url=daemon.url)
    assert client.projects() == ["lib"]
    assert client.spiders("lib", pattern="s*") == ["slow", "stubborn"]
    assert client.versions("lib") == ["1"]
    status = client.daemonstatus()
    assert status == {"pending": 0, "running": 0, "finished": 0, "status": "ok", "node_name": NODE_NAME}

    jobid = client.schedule("lib", "pages", args=[("base_url", site.url), ("setting", "MY_SETTING=lib")])
    wait_for(lambda: client.status(jobid, project="lib")["currstate"] == "finished", message="finished")
    items = read_items(daemon.items_path("lib", "pages", jobid))
    assert {i["my_setting"] for i in items} == {"lib"}
    assert [job["id"] for job in client.jobs("lib")["finished"]] == [jobid]
    assert client.cancel("lib", jobid) == {"prevstate": None, "status": "ok", "node_name": NODE_NAME}
    assert client.delversion("lib", "1") == {"status": "ok", "node_name": NODE_NAME}
    assert client.projects() == []
