"""Backends: the bundle of SPI implementations an engine uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Backends"]


@dataclass(frozen=True, slots=True)
class Backends:
    """The backends an engine reports to and stores in; every field is optional.

    ``None`` means the built-in default: no-op metrics, tracing and listener, in-memory
    storage and cache.

    Attributes:
        metrics: a MetricsProvider.
        tracer: a TracerProvider.
        listener: an ExecutionListener.
        storage: an ExecutionStorage.
        cache: a CacheBackend.
        pipelines: a PipelineStore (``engine.pipelines`` keeps pipelines, versions,
            aliases and canaries in it; given one, ``engine.compile(source, name=...)``
            records a version).
        secrets: a SecretsBackend for ``ctx.secret(name)`` (default: environment
            variables ``CONSTELLATION_SECRET_<NAME>``).
    """

    metrics: Any = None
    tracer: Any = None
    listener: Any = None
    storage: Any = None
    cache: Any = None
    pipelines: Any = None
    secrets: Any = None
