"""Backend SPIs: the extension points an embedder plugs its infrastructure into.

Each SPI is a small protocol with a no-op (or in-memory) default in the same module;
:class:`Backends` bundles them; the registry finds backends by name, including plugins
from the entry-point groups ``constellation.backends.<kind>``.
"""

from spi._backends import Backends
from spi._cache import MISSING, CacheBackend, CacheStats, InMemoryCacheBackend
from spi._listener import (
    CompositeListener,
    ExecutionEvent,
    ExecutionListener,
    LoggingListener,
    ModuleEvent,
    NoOpListener,
)
from spi._metrics import InMemoryMetrics, LoggingMetrics, MetricsProvider, NoOpMetrics
from spi._otel import OpenTelemetryTracer
from spi._outbox import OutboxListener
from spi._postgres import PostgresExecutionStorage
from spi._prometheus import PrometheusMetrics
from spi._redis import RedisCacheBackend
from spi._registry import (
    KINDS,
    BackendInfo,
    create_backend,
    list_backends,
    register_backend,
    unregister_backend,
)
from spi._retry import (
    ExponentialBackoff,
    FixedDelay,
    LinearBackoff,
    NoRetry,
    RetryPolicy,
    policy_for,
)
from spi._sqlite import SqliteExecutionStorage
from spi._storage import (
    ExecutionRecord,
    ExecutionStorage,
    InMemoryExecutionStorage,
    NoOpExecutionStorage,
)
from spi._tracing import NoOpSpan, NoOpTracer, Span, TracerProvider

__all__ = [
    "KINDS",
    "MISSING",
    "BackendInfo",
    "Backends",
    "CacheBackend",
    "CacheStats",
    "CompositeListener",
    "ExecutionEvent",
    "ExecutionListener",
    "ExecutionRecord",
    "ExecutionStorage",
    "ExponentialBackoff",
    "FixedDelay",
    "InMemoryCacheBackend",
    "InMemoryExecutionStorage",
    "InMemoryMetrics",
    "LinearBackoff",
    "LoggingListener",
    "LoggingMetrics",
    "MetricsProvider",
    "ModuleEvent",
    "NoOpExecutionStorage",
    "NoOpListener",
    "NoOpMetrics",
    "NoOpSpan",
    "NoOpTracer",
    "NoRetry",
    "OpenTelemetryTracer",
    "OutboxListener",
    "PostgresExecutionStorage",
    "PrometheusMetrics",
    "RedisCacheBackend",
    "RetryPolicy",
    "Span",
    "SqliteExecutionStorage",
    "TracerProvider",
    "create_backend",
    "list_backends",
    "policy_for",
    "register_backend",
    "unregister_backend",
]
