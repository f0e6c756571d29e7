# Packaged by scrapyd-deploy (`setup.py bdist_egg`); the entry point tells the
# daemon which settings module the egg's crawls use.
from setuptools import find_packages, setup

setup(
    name="testproject",
    version="1.0",
    packages=find_packages(),
    entry_points={"scrapy": ["settings = testproject.settings"]},
)
