"""Shared fixtures: every test leaves no actors and no engines behind."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pykka
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Shared checks, with pytest's detailed assertion messages as in a test module.
pytest.register_assert_rewrite("tests.faults")


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=5)


@pytest.fixture
def engine_factory() -> Iterator[object]:
    """Build engines that are shut down after the test, whatever happens in it."""
    from constellation import Constellation

    engines: list[Constellation] = []

    def make(*args: object, **kwargs: object) -> Constellation:
        engine = Constellation(*args, **kwargs)  # type: ignore[arg-type]
        engines.append(engine)
        return engine

    yield make
    for e in engines:
        e.shutdown(drain_timeout=5)
