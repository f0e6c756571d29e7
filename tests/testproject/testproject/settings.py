# Settings of the test project: fast, quiet crawls of the local test site.
BOT_NAME = "testproject"

SPIDER_MODULES = ["testproject.spiders"]
NEWSPIDER_MODULE = "testproject.spiders"

ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"

DOWNLOAD_DELAY = 0
RETRY_ENABLED = False
