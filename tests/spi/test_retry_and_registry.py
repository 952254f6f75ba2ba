"""Retry policies and the backend registry."""

from __future__ import annotations

import importlib

import pytest

from constellation import ConfigurationError
from constellation.spi import (
    ExponentialBackoff,
    FixedDelay,
    InMemoryCacheBackend,
    LinearBackoff,
    NoRetry,
    create_backend,
    list_backends,
    policy_for,
    register_backend,
    unregister_backend,
)

ERR = RuntimeError("x")


def delays(policy: object, attempts: int = 5) -> list[float | None]:
    return [policy.should_retry(ERR, n) for n in range(1, attempts + 1)]  # type: ignore[attr-defined]


def test_policies_follow_their_formulas_and_stop() -> None:
    assert delays(NoRetry()) == [None] * 5
    assert delays(FixedDelay(2, 0.5)) == [0.5, 0.5, None, None, None]
    assert delays(LinearBackoff(3, 1.0)) == [1.0, 2.0, 3.0, None, None]
    assert delays(ExponentialBackoff(4, 1.0)) == [1.0, 2.0, 4.0, 8.0, None]
    assert delays(ExponentialBackoff(10, 10.0), 4) == [10.0, 20.0, 30.0, 30.0]  # capped


def test_jitter_stays_within_its_fraction() -> None:
    policy = ExponentialBackoff(3, 1.0, jitter=0.5)
    for _ in range(100):
        d = policy.should_retry(ERR, 2)
        assert d is not None
        assert 2.0 <= d <= 3.0


def test_call_options_map_to_policies() -> None:
    assert delays(policy_for(None, None, None)) == [None] * 5
    assert delays(policy_for(2, 0.1, "fixed"), 3) == [0.1, 0.1, None]
    assert delays(policy_for(2, 0.1, "linear"), 3) == [0.1, 0.2, None]
    assert delays(policy_for(3, 0.1, None), 4) == [0.1, 0.2, 0.4, None]


@pytest.mark.parametrize("bad", [{"max_retries": -1}, {"max_retries": 1, "delay": -1.0}])
def test_invalid_policies_are_configuration_errors(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        FixedDelay(**bad)  # type: ignore[arg-type]


def test_builtin_backends_are_listed_and_created_by_name() -> None:
    names = {b.name for b in list_backends("cache")}
    assert "memory" in names
    assert isinstance(create_backend("cache", "memory", max_entries=5), InMemoryCacheBackend)
    assert {b.name for b in list_backends("retry")} >= {"none", "fixed", "linear",
                                                       "exponential"}


def test_unknown_names_list_what_is_registered() -> None:
    with pytest.raises(ConfigurationError) as info:
        create_backend("cache", "redsi")
    assert "no cache backend named 'redsi'" in info.value.message
    assert "memory" in info.value.message
    with pytest.raises(ConfigurationError, match="unknown backend kind"):
        list_backends("queue")


def test_register_replace_and_unregister() -> None:
    class Custom(InMemoryCacheBackend):
        pass

    register_backend("cache", "custom-test", Custom, description="a test cache")
    try:
        info = next(b for b in list_backends("cache") if b.name == "custom-test")
        assert (info.description, info.source) == ("a test cache", "registered")
        with pytest.raises(ConfigurationError, match="already registered"):
            register_backend("cache", "custom-test", Custom)
        register_backend("cache", "custom-test", Custom, replace=True, description="v2")
        assert isinstance(create_backend("cache", "custom-test"), Custom)
        info = next(b for b in list_backends("cache") if b.name == "custom-test")
        assert info.description == "v2"
        with pytest.raises(ConfigurationError, match="custom-test"):
            create_backend("cache", "custom-test", nonsense=1)
    finally:
        assert unregister_backend("cache", "custom-test") is True
    assert unregister_backend("cache", "custom-test") is False


def test_backends_are_discovered_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from constellation.spi import _registry

    group = "constellation.backends.cache"
    fake = importlib.metadata.EntryPoint(
        name="from-plugin", value="constellation.spi._cache:InMemoryCacheBackend", group=group)
    broken = importlib.metadata.EntryPoint(
        name="broken", value="no_such_module_xyz:Thing", group=group)

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [fake, broken] if group == "constellation.backends.cache" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(_registry, "_discovered", set())
    try:
        infos = {b.name: b for b in list_backends("cache")}
        assert infos["from-plugin"].source == f"entry point {group}"
        assert "broken" not in infos  # logged, not fatal
        assert isinstance(create_backend("cache", "from-plugin"), InMemoryCacheBackend)
    finally:
        unregister_backend("cache", "from-plugin")


@pytest.mark.parametrize(("module", "make", "hint"), [
    ("redis", lambda: importlib.import_module("constellation.spi").RedisCacheBackend(),
     "constellation-engine[redis]"),
    ("psycopg",
     lambda: importlib.import_module("constellation.spi").PostgresExecutionStorage("host=x"),
     "constellation-engine[postgres]"),
])
def test_a_missing_extra_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch, module: str,
                                               make: object, hint: str) -> None:
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" fail
    with pytest.raises(ConfigurationError, match=r"pip install") as info:
        make()  # type: ignore[operator]
    assert hint in info.value.message
