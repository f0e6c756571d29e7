import os

import scrapy


class PagesSpider(scrapy.Spider):
    """Crawls the test site from `/`: one item per page (the index and 5 pages).

    With `cloud_probe=P/S/J`, the crawl first uses its own Scrapy Cloud
    credentials (SHUB_JOBAUTH) through the official client: it writes a key
    of its own job's metadata and tries to read job P/S/J's, and yields one
    item saying how each went.
    """

    name = "pages"

    def __init__(self, base_url=None, tag=None, cloud_probe=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.base_url = base_url
        self.tag = tag
        self.cloud_probe = cloud_probe

    async def start(self):
        if self.cloud_probe:
            yield self.probe_cloud(self.cloud_probe)
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
