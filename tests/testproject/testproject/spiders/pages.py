import scrapy


class PagesSpider(scrapy.Spider):
    """Crawls the test site from `/`: one item per page (the index and 5 pages)."""

    name = "pages"

    def __init__(self, base_url=None, tag=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.base_url = base_url
        self.tag = tag

    async def start(self):
        yield scrapy.Request(self.base_url.rstrip("/") + "/")

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
