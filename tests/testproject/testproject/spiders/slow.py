import scrapy


class SlowSpider(scrapy.Spider):
    """Follows `/slow?n=...` on the test site for ever: runs until cancelled.

    A safety net closes it after 5 minutes should a test leave it behind.
    """

    name = "slow"
    custom_settings = {"CLOSESPIDER_TIMEOUT": 300}

    def __init__(self, base_url=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.base_url = base_url

    async def start(self):
        yield scrapy.Request(self.base_url.rstrip("/") + "/slow?n=0")

    def parse(self, response):
        self.logger.info("slow page %s", response.url)
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)
