import signal

from scrapy import signals

from .slow import SlowSpider


def ignore_stop_signals():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class StubbornSpider(SlowSpider):
    """Like `slow`, but ignores SIGINT and SIGTERM: only a KILL stops it.

    Scrapy installs its own handlers when the crawl starts, so they are
    replaced once the spider is open and again on every page.
    """

    name = "stubborn"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.on_spider_opened, signal=signals.spider_opened)
        return spider

    def on_spider_opened(self, spider):
        ignore_stop_signals()
        self.logger.info("stubborn: ignoring SIGINT and SIGTERM")

    def parse(self, response):
        ignore_stop_signals()
        yield from super().parse(response)
