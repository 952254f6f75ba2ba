"""The chaos suite's marker: ``soak`` tests run only with ``-m soak`` or CONSTELLATION_SOAK=1."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long chaos soak, run with -m soak")


def soak_enabled(config: pytest.Config) -> bool:
    """Whether soak tests were asked for (``-m soak`` or CONSTELLATION_SOAK=1)."""
    if os.environ.get("CONSTELLATION_SOAK", "") == "1":
        return True
    expr = config.getoption("markexpr", default="") or ""
    return "soak" in expr and "not soak" not in expr


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if soak_enabled(config):
        return
    skip = pytest.mark.skip(reason="soak test: run with -m soak or CONSTELLATION_SOAK=1")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
