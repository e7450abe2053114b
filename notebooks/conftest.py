"""nbval settings for the notebooks: stderr (library warnings, progress bars) is not compared."""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "application/javascript")
