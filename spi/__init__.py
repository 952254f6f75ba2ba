"""Backend SPIs: the extension points an embedder plugs its infrastructure into.

Installed as ``constellation.spi`` (the repository keeps it in the root folder ``spi/``).
Each SPI is a small protocol with a no-op (or in-memory) default in the same module;
:class:`Backends` bundles them; the registry finds backends by name, including plugins
from the entry-point groups ``constellation.backends.<kind>``.
"""

from constellation.spi._backends import Backends
from constellation.spi._cache import MISSING, CacheBackend, CacheStats, InMemoryCacheBackend
from constellation.spi._listener import (
    CompositeListener,
    ExecutionEvent,
    ExecutionListener,
    LoggingListener,
    ModuleEvent,
    NoOpListener,
)
from constellation.spi._metrics import InMemoryMetrics, LoggingMetrics, MetricsProvider, NoOpMetrics
from constellation.spi._otel import OpenTelemetryTracer
from constellation.spi._outbox import OutboxListener
from constellation.spi._pipelines import (
    CanarySetting,
    InMemoryPipelineStore,
    NoOpPipelineStore,
    PipelineStore,
    PipelineVersion,
    StoredPipeline,
)
from constellation.spi._postgres import PostgresExecutionStorage
from constellation.spi._postgres_pipelines import PostgresPipelineStore
from constellation.spi._prometheus import PrometheusMetrics
from constellation.spi._redis import RedisCacheBackend
from constellation.spi._registry import (
    KINDS,
    BackendInfo,
    create_backend,
    list_backends,
    register_backend,
    unregister_backend,
)
from constellation.spi._retry import (
    ExponentialBackoff,
    FixedDelay,
    LinearBackoff,
    NoRetry,
    RetryPolicy,
    policy_for,
)
from constellation.spi._sql_pipelines import SqlitePipelineStore
from constellation.spi._sqlite import SqliteExecutionStorage
from constellation.spi._storage import (
    ClaimingStorage,
    ExecutionRecord,
    ExecutionStorage,
    InMemoryExecutionStorage,
    NoOpExecutionStorage,
)
from constellation.spi._tracing import NoOpSpan, NoOpTracer, Span, TracerProvider

__all__ = [
    "BackendInfo",
    "Backends",
    "CacheBackend",
    "CacheStats",
    "CanarySetting",
    "ClaimingStorage",
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
    "InMemoryPipelineStore",
    "KINDS",
    "LinearBackoff",
    "LoggingListener",
    "LoggingMetrics",
    "MISSING",
    "MetricsProvider",
    "ModuleEvent",
    "NoOpExecutionStorage",
    "NoOpListener",
    "NoOpMetrics",
    "NoOpPipelineStore",
    "NoOpSpan",
    "NoOpTracer",
    "NoRetry",
    "OpenTelemetryTracer",
    "OutboxListener",
    "PipelineStore",
    "PipelineVersion",
    "PostgresExecutionStorage",
    "PostgresPipelineStore",
    "PrometheusMetrics",
    "RedisCacheBackend",
    "RetryPolicy",
    "Span",
    "SqliteExecutionStorage",
    "SqlitePipelineStore",
    "StoredPipeline",
    "TracerProvider",
    "create_backend",
    "list_backends",
    "policy_for",
    "register_backend",
    "unregister_backend",
]
