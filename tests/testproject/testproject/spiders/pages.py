import os

import scrapy


class PagesSpider(scrapy.Spider):
    """Crawls the test site from `/`: one item per page (the index and 5 pages).

    With `cloud_probe=P/S/J`, the crawl first uses its own Scrapy Cloud
    credentials (SHUB_JOBAUTH) through the official client: it writes a key
    of its own job's metadata and tries to read job P/S/J's, and yields one
    item saying how each went.

    With `stores_probe=NAME`, the crawl first uses its project's shared
    stores the way a spider on Scrapy Cloud does (`ScrapinghubClient()`
    with no arguments: SHUB_JOBAUTH and SHUB_STORAGE): it reads and writes
    the collection NAME, feeds slot `s1` of frontier NAME and consumes it,
    and yields one item saying what it saw.
    """

    name = "pages"

    def __init__(self, base_url=None, tag=None, cloud_probe=None, stores_probe=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.base_url = base_url
        self.tag = tag
        self.cloud_probe = cloud_probe
        self.stores_probe = stores_probe

    async def start(self):
        if self.cloud_probe:
            yield self.probe_cloud(self.cloud_probe)
        if self.stores_probe:
            yield self.probe_stores(self.stores_probe)
        yield scrapy.Request(self.base_url.rstrip("/") + "/")

    def probe_cloud(self, other_key):
        from requests import HTTPError
        from scrapinghub import HubstorageClient

        user, _, token = bytes.fromhex(os.environ["SHUB_JOBAUTH"]).decode().partition(":")
        client = HubstorageClient(auth=(user, token), endpoint=os.environ["SHUB_STORAGE"], max_retries=0)
        outcome = {"job_key": os.environ["SHUB_JOBKEY"], "user": user}
        own = client.get_job(os.environ["SHUB_JOBKEY"])
        own.metadata["probe"] = "written by the crawl"
        own.metadata.save()
        outcome["own"] = "written"
        try:
            client.get_job(other_key).metadata.get("state")
            outcome["other"] = "read"
        except HTTPError as error:
            outcome["other"] = error.response.status_code
        client.close()
        return outcome

    def probe_stores(self, name):
        from scrapinghub import ScrapinghubClient

        job_key = os.environ["SHUB_JOBKEY"]
        client = ScrapinghubClient()
        project = client.get_project(job_key.split("/")[0])
        outcome = {"stores_probe": name, "job_key": job_key}
        # The collection: what was there, then a record of this job's own.
        store = project.collections.get_store(name)
        outcome["found"] = [record["_key"] for record in store.iter()]
        store.set({"_key": job_key, "by": "crawl"})
        outcome["got"] = store.get(job_key)
        # The frontier: feed the slot (a fingerprint seen before does not
        # count), then consume every batch.
        slot = project.frontiers.get(name).get("s1")
        slot.q.add([{"fp": f"/crawl/{n}", "qdata": {"n": n}} for n in range(3)] + [{"fp": "/seed/0"}])
        slot.flush()
        outcome["newcount"] = slot.newcount
        batches = slot.q.list()
        outcome["consumed"] = [request for batch in batches for request in batch["requests"]]
        slot.q.delete([batch["id"] for batch in batches])
        outcome["left"] = slot.q.list()
        client.close()
        return outcome

    def parse(self, response):
        yield {
            "url": response.url,
            "title": response.css("h1::text").get(),
            "tag": self.tag,
            "my_setting": self.settings.get("MY_SETTING"),
            "job": getattr(self, "_job", None),
        }
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)
