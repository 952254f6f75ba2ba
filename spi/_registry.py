"""The backend registry: backends by kind and name, and plugins from entry points.

Kinds: ``metrics``, ``tracer``, ``listener``, ``storage``, ``cache``, ``retry``,
``pipelines``, ``secrets``. The built-in backends are registered by name; packages add
theirs through the entry-point group ``constellation.backends.<kind>`` (the entry
point's name is the backend's name, its object a factory). Selection is always by
explicit name (``cache_backend: "redis"``), never "whatever happens to be installed".
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["KINDS", "BackendInfo", "create_backend", "list_backends", "register_backend",
           "unregister_backend"]

logger = logging.getLogger("constellation.spi")

KINDS = ("metrics", "tracer", "listener", "storage", "cache", "retry", "pipelines",
         "secrets")
ENTRY_POINT_GROUP = "constellation.backends.{kind}"


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A registered backend.

    Attributes:
        kind: one of :data:`KINDS`.
        name: its name (``"memory"``, ``"redis"``).
        factory: called with keyword arguments to build an instance.
        description: one line for listings.
        source: ``"builtin"``, ``"registered"`` or ``"entry point <group>"``.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str = ""
    source: str = "registered"


# The one piece of module-level mutable state besides pykka's actor registry.
_lock = threading.Lock()
_backends: dict[tuple[str, str], BackendInfo] = {}
_discovered: set[str] = set()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigurationError(f"unknown backend kind {kind!r}; kinds are "
                                 f"{', '.join(KINDS)}", details={"field": "kind"})


def register_backend(kind: str, name: str, factory: Callable[..., Any], *,
                     description: str = "", replace: bool = False) -> None:
    """Register a backend factory under ``kind`` and ``name``.

    Raises:
        ConfigurationError: an unknown kind, a non-callable factory, or a taken name
            (unless ``replace``).
    """
    _check_kind(kind)
    if not callable(factory):
        raise ConfigurationError(f"the factory of {kind} backend {name!r} is not callable",
                                 details={"field": "factory"})
    with _lock:
        if (kind, name) in _backends and not replace:
            raise ConfigurationError(f"a {kind} backend named {name!r} is already "
                                     "registered", details={"field": "name"})
        _backends[(kind, name)] = BackendInfo(kind, name, factory, description)


def unregister_backend(kind: str, name: str) -> bool:
    """Remove a backend; whether it was registered."""
    _check_kind(kind)
    with _lock:
        return _backends.pop((kind, name), None) is not None


def list_backends(kind: str) -> list[BackendInfo]:
    """Every backend of ``kind``: built-in, registered and from entry points, by name."""
    _check_kind(kind)
    _discover(kind)
    with _lock:
        return sorted((b for (k, _), b in _backends.items() if k == kind),
                      key=lambda b: b.name)


def create_backend(kind: str, name: str, **options: Any) -> Any:
    """Build the backend ``name`` of ``kind`` with ``options``.

    Raises:
        ConfigurationError: no such backend (the message lists what is registered), or
            its factory rejected the options.
    """
    _check_kind(kind)
    _discover(kind)
    with _lock:
        info = _backends.get((kind, name))
        known = sorted(n for (k, n) in _backends if k == kind)
    if info is None:
        raise ConfigurationError(
            f"no {kind} backend named {name!r}; registered: {', '.join(known) or 'none'}",
            details={"field": kind, "name": name, "registered": known})
    try:
        return info.factory(**options)
    except TypeError as exc:
        raise ConfigurationError(f"{kind} backend {name!r}: {exc}",
                                 details={"field": kind, "name": name}) from exc


def _discover(kind: str) -> None:
    with _lock:
        if kind in _discovered:
            return
        _discovered.add(kind)
    group = ENTRY_POINT_GROUP.format(kind=kind)
    for ep in importlib.metadata.entry_points(group=group):
        try:
            factory = ep.load()
        except Exception:
            logger.exception("could not load %s backend %r from %s", kind, ep.name, ep.value)
            continue
        with _lock:
            _backends.setdefault((kind, ep.name), BackendInfo(
                kind, ep.name, factory, f"from {ep.value}", f"entry point {group}"))


def _register_builtins() -> None:
    from constellation.spi._cache import InMemoryCacheBackend
    from constellation.spi._listener import LoggingListener, NoOpListener
    from constellation.spi._metrics import InMemoryMetrics, LoggingMetrics, NoOpMetrics
    from constellation.spi._otel import OpenTelemetryTracer
    from constellation.spi._outbox import OutboxListener
    from constellation.spi._pipelines import InMemoryPipelineStore, NoOpPipelineStore
    from constellation.spi._postgres import PostgresExecutionStorage
    from constellation.spi._postgres_pipelines import PostgresPipelineStore
    from constellation.spi._prometheus import PrometheusMetrics
    from constellation.spi._redis import RedisCacheBackend
    from constellation.spi._retry import ExponentialBackoff, FixedDelay, LinearBackoff, NoRetry
    from constellation.spi._secrets import EnvSecrets, FileSecrets, StaticSecrets
    from constellation.spi._sql_pipelines import SqlitePipelineStore
    from constellation.spi._sqlite import SqliteExecutionStorage
    from constellation.spi._storage import InMemoryExecutionStorage, NoOpExecutionStorage
    from constellation.spi._tracing import NoOpTracer

    builtins: list[tuple[str, str, Callable[..., Any], str]] = [
        ("metrics", "noop", NoOpMetrics, "discard every measurement (default)"),
        ("metrics", "memory", InMemoryMetrics, "keep measurements in memory (tests)"),
        ("metrics", "logging", LoggingMetrics, "log each measurement"),
        ("metrics", "prometheus", PrometheusMetrics,
         "Prometheus counters, histograms, gauges (the 'prometheus' extra)"),
        ("tracer", "noop", NoOpTracer, "no spans (default)"),
        ("tracer", "opentelemetry", OpenTelemetryTracer,
         "OpenTelemetry spans (the 'otel' extra)"),
        ("listener", "noop", NoOpListener, "ignore events (default)"),
        ("listener", "logging", LoggingListener, "log each event"),
        ("listener", "outbox", OutboxListener,
         "durable at-least-once delivery to another listener (listener=..., path=...)"),
        ("storage", "memory", InMemoryExecutionStorage, "records in memory (default)"),
        ("storage", "noop", NoOpExecutionStorage, "record nothing"),
        ("storage", "sqlite", SqliteExecutionStorage, "records in a SQLite file (path=...)"),
        ("storage", "postgres", PostgresExecutionStorage,
         "records in PostgreSQL (dsn=...; the 'postgres' extra)"),
        ("cache", "memory", InMemoryCacheBackend, "in-process TTL + LRU cache (default)"),
        ("cache", "redis", RedisCacheBackend, "Redis with server-side TTL (url=...; the "
                                              "'redis' extra)"),
        ("retry", "none", NoRetry, "never retry"),
        ("retry", "fixed", FixedDelay, "fixed delay"),
        ("retry", "linear", LinearBackoff, "linear backoff"),
        ("retry", "exponential", ExponentialBackoff, "exponential backoff with jitter"),
        ("pipelines", "memory", InMemoryPipelineStore, "pipelines in memory (default)"),
        ("pipelines", "noop", NoOpPipelineStore, "keep no pipelines, record no versions"),
        ("pipelines", "sqlite", SqlitePipelineStore,
         "pipelines, versions, aliases, canaries in a SQLite file (path=...)"),
        ("pipelines", "postgres", PostgresPipelineStore,
         "pipelines in PostgreSQL (dsn=...; the 'postgres' extra)"),
        ("secrets", "env", EnvSecrets,
         "environment variables CONSTELLATION_SECRET_<NAME> (default; prefix=...)"),
        ("secrets", "file", FileSecrets,
         "a directory of one file per secret, or a JSON object file (path=...)"),
        ("secrets", "static", StaticSecrets, "a mapping given in code (values=...)"),
    ]
    for kind, name, factory, description in builtins:
        _backends[(kind, name)] = BackendInfo(kind, name, factory, description, "builtin")


_register_builtins()
