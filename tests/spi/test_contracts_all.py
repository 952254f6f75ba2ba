"""The listener, metrics, tracer and retry contracts, against every implementation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from constellation.spi import (
    CompositeListener,
    ExponentialBackoff,
    FixedDelay,
    InMemoryMetrics,
    LinearBackoff,
    LoggingListener,
    LoggingMetrics,
    NoOpListener,
    NoOpMetrics,
    NoOpTracer,
    NoRetry,
    OpenTelemetryTracer,
    OutboxListener,
    PrometheusMetrics,
)
from tests.spi.contracts import ListenerContract, MetricsContract, RetryContract, TracerContract

if TYPE_CHECKING:
    from pathlib import Path


class Recorder(NoOpListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def on_execution_start(self, event: Any) -> None:
        self.seen.append(("on_execution_start", event))

    def on_module_start(self, event: Any) -> None:
        self.seen.append(("on_module_start", event))

    def on_module_complete(self, event: Any) -> None:
        self.seen.append(("on_module_complete", event))

    def on_module_failed(self, event: Any) -> None:
        self.seen.append(("on_module_failed", event))

    def on_execution_complete(self, event: Any) -> None:
        self.seen.append(("on_execution_complete", event))


class TestNoOpListener(ListenerContract):
    def make(self) -> Any:
        return NoOpListener()


class TestLoggingListener(ListenerContract):
    def make(self) -> Any:
        return LoggingListener(logging.getLogger("constellation.test.events"))


class TestCompositeListener(ListenerContract):
    def make(self) -> Any:
        self.recorder = Recorder()
        return CompositeListener([NoOpListener(), self.recorder])

    def delivered(self) -> list[tuple[str, Any]] | None:
        return self.recorder.seen


class TestOutboxListener(ListenerContract):
    @pytest.fixture(autouse=True)
    def _path(self, tmp_path: Path) -> Any:
        self.path = tmp_path / "outbox.db"
        self.outboxes: list[OutboxListener] = []
        yield
        for o in self.outboxes:
            o.close()

    def make(self) -> Any:
        self.recorder = Recorder()
        outbox = OutboxListener(self.recorder, self.path, start=False)
        self.outboxes.append(outbox)
        return outbox

    def delivered(self) -> list[tuple[str, Any]] | None:
        while self.outboxes[-1].deliver_pending():
            pass
        return self.recorder.seen


class TestNoOpMetrics(MetricsContract):
    def make(self) -> Any:
        return NoOpMetrics()


class TestLoggingMetrics(MetricsContract):
    def make(self) -> Any:
        return LoggingMetrics()


class TestInMemoryMetrics(MetricsContract):
    def make(self) -> Any:
        return InMemoryMetrics()

    def read(self, provider: Any, name: str, tags: dict[str, str] | None) -> float | None:
        value = provider.counter_value(name, tags)
        return value if value else provider.gauge_value(name, tags)


class TestPrometheusMetrics(MetricsContract):
    def make(self) -> Any:
        return PrometheusMetrics()

    def read(self, provider: Any, name: str, tags: dict[str, str] | None) -> float | None:
        prom = name.replace(".", "_")
        value = provider.registry.get_sample_value(prom + "_total", tags or {})
        if value is None:
            value = provider.registry.get_sample_value(prom, tags or {})
        return value  # type: ignore[no-any-return]


class TestNoOpTracer(TracerContract):
    def make(self) -> Any:
        return NoOpTracer()


class TestOpenTelemetryTracer(TracerContract):
    def make(self) -> Any:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        return OpenTelemetryTracer(provider.get_tracer("contract"))

    def finished(self) -> list[Any] | None:
        from opentelemetry.trace import StatusCode

        spans = self.exporter.get_finished_spans()
        by_id = {s.context.span_id: s.name for s in spans}
        return [(s.name, by_id.get(s.parent.span_id) if s.parent else None,
                 s.status.status_code is StatusCode.ERROR) for s in spans]


class TestNoRetry(RetryContract):
    def make(self, max_retries: int) -> Any:
        return NoRetry()


class TestFixedDelay(RetryContract):
    def make(self, max_retries: int) -> Any:
        return FixedDelay(max_retries, 0.5)


class TestLinearBackoff(RetryContract):
    def make(self, max_retries: int) -> Any:
        return LinearBackoff(max_retries, 20.0)


class TestExponentialBackoff(RetryContract):
    def make(self, max_retries: int) -> Any:
        return ExponentialBackoff(max_retries, 10.0, jitter=0.5)
