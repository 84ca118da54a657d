"""Top-level reliability tests: ``soak_long`` tests run only when selected (``make soak`` passes ``-m soak_long``)."""

import pytest


def pytest_collection_modifyitems(config, items):
    markexpr = config.getoption("-m") or ""
    if "soak_long" in markexpr:
        return
    skip = pytest.mark.skip(reason="10-minute soak: run it with `make soak` (pytest -m soak_long)")
    for item in items:
        if "soak_long" in item.keywords:
            item.add_marker(skip)
