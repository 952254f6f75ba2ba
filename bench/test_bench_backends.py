"""Instrumentation overhead (tox -e bench): W1 and W3 with no backends, with the no-op
backends (must match: same code path), with metrics + OpenTelemetry + a listener, and
with a listener that raises in every callback or sleeps 1 s per event (pipelines must
not notice). See also bench/backends_overhead.py, which alternates the configurations."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from bench.workloads import MODULES, chain, diamond
from constellation import Backends, Constellation, SchedulerConfig
from constellation.spi import NoOpListener, NoOpMetrics, NoOpTracer

if TYPE_CHECKING:
    from collections.abc import Iterator


def _tracer() -> Any:
    """OpenTelemetry SDK spans, exported one by one (simple processor) to an exporter
    that drops them: the SDK's cost per span, without a heap that grows by every span
    (an in-memory exporter keeps them all, and the cyclic collector then scans them)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from constellation.spi import OpenTelemetryTracer

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropping()))
    return OpenTelemetryTracer(provider.get_tracer("bench"))


def _metrics() -> Any:
    from constellation.spi import PrometheusMetrics

    return PrometheusMetrics()


def _full() -> Backends:
    return Backends(metrics=_metrics(), tracer=_tracer(), listener=QuietListener())


class QuietListener(NoOpListener):
    """A well-behaved listener that takes every event (it counts them): the baseline for
    the raising and sleeping ones. (A listener that implements no callback is never
    called at all, so it would measure nothing.)"""

    def __init__(self) -> None:
        self.events = 0

    def on_execution_start(self, event: Any) -> None:
        self.events += 1

    def on_module_start(self, event: Any) -> None:
        self.events += 1

    def on_module_complete(self, event: Any) -> None:
        self.events += 1

    def on_module_failed(self, event: Any) -> None:
        self.events += 1

    def on_execution_complete(self, event: Any) -> None:
        self.events += 1


class RaisingListener(NoOpListener):
    """Raises in every callback."""

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("on_"):
            raise RuntimeError("listener bug")
        return object.__getattribute__(self, name)


class SleepingListener(NoOpListener):
    """Takes 1 s per event."""

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda event: time.sleep(1.0)
        return object.__getattribute__(self, name)


CONFIGS = {
    "none": lambda: None,
    "listener": lambda: Backends(listener=QuietListener()),
    "raising": lambda: Backends(listener=RaisingListener()),
    "sleeping": lambda: Backends(listener=SleepingListener()),
    "noop": lambda: Backends(metrics=NoOpMetrics(), tracer=NoOpTracer(),
                             listener=NoOpListener()),
    "full": _full,
    "metrics": lambda: Backends(metrics=_metrics()),
    "tracing": lambda: Backends(tracer=_tracer()),
}


@pytest.fixture(params=sorted(CONFIGS))
def engine(request: pytest.FixtureRequest) -> Iterator[Constellation]:
    with Constellation(MODULES, backends=CONFIGS[request.param](), scheduler=SchedulerConfig(
            max_concurrency=64, worker_threads=8, max_queue_size=None)) as e:
        yield e


def test_w1_chain_with_backends(engine: Constellation, benchmark: Any) -> None:
    wl = chain()
    pipeline = engine.compile(wl.spec)
    benchmark(lambda: engine.run(pipeline, wl.inputs))


def test_w3_diamond_1000_with_backends(engine: Constellation, benchmark: Any) -> None:
    wl = diamond()
    pipeline = engine.compile(wl.spec)

    def batch() -> None:
        for h in [engine.submit(pipeline, wl.inputs) for _ in range(1000)]:
            h.result()

    benchmark.pedantic(batch, rounds=3, warmup_rounds=1)
