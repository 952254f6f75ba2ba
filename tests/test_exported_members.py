"""The public surface is exactly what ``__all__`` says, and all of it imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

import constellation
import constellation.actors
import constellation.spi

EXPECTED = {
    "Backends", "CallContext", "CallOptions", "CircuitBreakerConfig", "CircuitOpenError",
    "ModuleTimeoutError",
    "ResumeError", "install_signal_handlers",
    "CompilationError",
    "ConfigurationError", "Constellation", "ConstellationError", "DagSpec", "Diagnostic",
    "Execution", "ExecutionCancelledError", "ExecutionResult", "ExecutionStatus",
    "ExecutionTimeoutError", "InputError", "InputTypeError", "LifecycleState",
    "MissingInputError", "ModuleDefinition", "ModuleExecutionError", "ModuleOutputTypeError",
    "NodeRecord", "NodeStatus", "Pipeline", "PipelineBuilder", "Priority", "QueueFullError",
    "Ref", "SchedulerConfig", "ShuttingDownError", "UnknownInputError", "UnknownModuleError",
    "module",
    "NoCanaryError", "PipelineConflictError", "PipelineError", "PipelineStoreError",
    "UnknownHashError", "UnknownPipelineError", "UnknownVersionError",
}


def test_constellation_all_is_exactly_the_public_names() -> None:
    assert set(constellation.__all__) == EXPECTED
    assert constellation.__all__ == sorted(constellation.__all__)


SPI_EXPECTED = [
    "KINDS", "MISSING", "BackendInfo", "Backends", "CacheBackend", "CacheStats",
    "ClaimingStorage", "CompositeListener", "ExecutionEvent", "ExecutionListener",
    "ExecutionRecord",
    "ExecutionStorage", "ExponentialBackoff", "FixedDelay", "InMemoryCacheBackend",
    "InMemoryExecutionStorage", "InMemoryMetrics", "LinearBackoff", "LoggingListener",
    "LoggingMetrics", "MetricsProvider", "ModuleEvent", "NoOpExecutionStorage", "NoOpListener",
    "NoOpMetrics", "NoOpSpan", "NoOpTracer", "NoRetry", "OpenTelemetryTracer", "OutboxListener",
    "PostgresExecutionStorage", "PrometheusMetrics", "RedisCacheBackend", "RetryPolicy", "Span",
    "SqliteExecutionStorage", "TracerProvider", "create_backend", "list_backends", "policy_for",
    "register_backend", "unregister_backend",
    "CanarySetting", "InMemoryPipelineStore", "NoOpPipelineStore", "PipelineStore",
    "PipelineVersion", "PostgresPipelineStore", "SqlitePipelineStore", "StoredPipeline",
]

ACTORS_EXPECTED = [
    "CallContext", "Execution", "PooledActor", "SchedulerQueue", "ThreadPool", "TimerService",
    "current_pool", "default_dispatcher",
]


def test_spi_all_is_exactly_the_public_names_sorted() -> None:
    assert constellation.spi.__all__ == sorted(SPI_EXPECTED)


def test_actors_all_is_exactly_the_public_names_sorted_without_internals() -> None:
    assert constellation.actors.__all__ == sorted(ACTORS_EXPECTED)
    assert "Runtime" not in constellation.actors.__all__
    assert "Supervisor" not in constellation.actors.__all__


def test_every_public_name_resolves() -> None:
    for package in (constellation, constellation.actors, constellation.spi):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        constellation.NoSuchThing  # noqa: B018


def test_importing_the_packages_in_any_order_works() -> None:
    for first in ("constellation.actors", "constellation.spi", "constellation.core.types",
                  "constellation"):
        code = f"import {first}; import constellation; constellation.Constellation"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_core_import_needs_no_extras() -> None:
    code = ("import sys, constellation; constellation.Constellation; "
            "bad = [m for m in ('fastapi', 'redis', 'psycopg', 'prometheus_client', "
            "'opentelemetry', 'dask') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_isolated_child_imports_none_of_the_runtime() -> None:
    # The child of every isolation="process" call runs this module: it must start fast.
    code = ("import sys, constellation.actors._isolated_child; "
            "loaded = sorted(m for m in sys.modules if m.startswith('constellation') "
            "or m == 'pykka'); "
            "assert loaded == ['constellation', 'constellation.actors', "
            "'constellation.actors._isolated_child'], loaded; "
            "import constellation.actors as a; assert a.ThreadPool.__name__ == 'ThreadPool'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
