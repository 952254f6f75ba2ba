"""Metrics, listeners and tracing: the defaults and the built-in helpers."""

from __future__ import annotations

import logging

import pytest

from constellation.spi import (
    CompositeListener,
    ExecutionEvent,
    ExecutionListener,
    InMemoryMetrics,
    LoggingListener,
    LoggingMetrics,
    MetricsProvider,
    ModuleEvent,
    NoOpListener,
    NoOpMetrics,
    NoOpTracer,
    TracerProvider,
)

EXEC = ExecutionEvent("e1", "p", "h", "completed", duration_ms=2.0)
MOD = ModuleEvent("e1", "Trim", "Trim", attempt=1, duration_ms=1.0)


def test_defaults_satisfy_the_protocols() -> None:
    assert isinstance(NoOpMetrics(), MetricsProvider)
    assert isinstance(InMemoryMetrics(), MetricsProvider)
    assert isinstance(NoOpListener(), ExecutionListener)
    assert isinstance(NoOpTracer(), TracerProvider)


def test_in_memory_metrics_record_by_name_and_tags() -> None:
    m = InMemoryMetrics()
    m.counter("constellation.execution.total", tags={"status": "completed"})
    m.counter("constellation.execution.total", tags={"status": "completed"})
    m.counter("constellation.execution.total", tags={"status": "failed"})
    m.histogram("constellation.module.duration_ms", 1.5, {"module_name": "Trim"})
    m.gauge("constellation.scheduler.queued", 3)
    m.gauge("constellation.scheduler.queued", 1)
    assert m.counter_value("constellation.execution.total", {"status": "completed"}) == 2
    assert m.counter_value("constellation.execution.total", {"status": "failed"}) == 1
    assert m.observations("constellation.module.duration_ms", {"module_name": "Trim"}) == [1.5]
    assert m.gauge_value("constellation.scheduler.queued") == 1
    assert "constellation.scheduler.queued" in m.names()


def test_logging_metrics_and_listener_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    LoggingMetrics().counter("jobs", 2, {"k": "v"})
    listener = LoggingListener()
    listener.on_execution_start(EXEC)
    listener.on_module_failed(ModuleEvent("e1", "Trim", "Trim", error="boom"))
    listener.on_execution_complete(EXEC)
    text = caplog.text
    assert "counter jobs +2" in text
    assert "execution e1 of p started" in text
    assert "Trim failed: boom" in text


def test_composite_listener_tells_everyone_even_after_a_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    class Broken(NoOpListener):
        def on_module_complete(self, event: ModuleEvent) -> None:
            raise RuntimeError("listener bug")

    class Recorder(NoOpListener):
        def on_module_complete(self, event: ModuleEvent) -> None:
            seen.append(event.node)

    composite = CompositeListener([Broken(), Recorder()])
    composite.on_module_complete(MOD)
    assert seen == ["Trim"]
    assert composite.failures == 1
    assert "listener Broken failed in on_module_complete" in caplog.text


def test_noop_tracer_spans_nest_and_accept_attributes() -> None:
    from constellation.spi._tracing import span

    tracer = NoOpTracer()
    with span(tracer, "execute(p)", {"pipeline": "p"}) as outer:
        outer.set_attribute("x", 1)
        inner = tracer.start_span("module(Trim)", parent=outer, start_time_ns=1)
        inner.record_error(ValueError("x"))
        inner.end(2)
    with pytest.raises(KeyError), span(tracer, "fails"):
        raise KeyError("x")
