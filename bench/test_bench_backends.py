"""Instrumentation overhead (tox -e bench): W1 and W3 with no backends, with the no-op
backends (must match: same code path), and with metrics + OpenTelemetry + a listener."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from bench.workloads import MODULES, chain, diamond
from constellation import Backends, Constellation, SchedulerConfig
from spi import InMemoryMetrics, NoOpListener, NoOpMetrics, NoOpTracer

if TYPE_CHECKING:
    from collections.abc import Iterator


def _full() -> Backends:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from spi import OpenTelemetryTracer

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))

    class Listener(NoOpListener):
        pass

    return Backends(metrics=InMemoryMetrics(),
                    tracer=OpenTelemetryTracer(provider.get_tracer("bench")),
                    listener=Listener())


CONFIGS = {
    "none": lambda: None,
    "noop": lambda: Backends(metrics=NoOpMetrics(), tracer=NoOpTracer(),
                             listener=NoOpListener()),
    "full": _full,
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
