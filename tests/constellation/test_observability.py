"""Metrics, listeners and tracing wired into the runtime."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from constellation import (
    Backends,
    Constellation,
    ExecutionStatus,
    PipelineBuilder,
    QueueFullError,
    SchedulerConfig,
    module,
)
from constellation.spi import InMemoryMetrics, ModuleEvent, NoOpListener

SOURCE = "in t: String\nu = Uppercase(Trim(t))\nout u\n"


@module("Boom")
def boom(text: str) -> str:
    raise RuntimeError("boom")


def test_no_backends_means_no_observer_and_no_listener_thread() -> None:
    from constellation.spi import NoOpMetrics, NoOpTracer

    with Constellation() as engine:
        assert engine._runtime.observer is None
        assert engine.thread_budget == engine._runtime.dispatcher.max_threads + 32 + 1
    noop = Backends(metrics=NoOpMetrics(), tracer=NoOpTracer(), listener=NoOpListener())
    with Constellation(backends=noop) as engine:
        assert engine._runtime.observer is None


def test_metrics_count_executions_modules_compilations_and_rejections() -> None:
    metrics = InMemoryMetrics()
    gate = threading.Event()

    @module("Wait")
    def wait(text: str) -> str:
        gate.wait(10)
        return text

    engine = Constellation([boom, wait], backends=Backends(metrics=metrics),
                           scheduler=SchedulerConfig(max_concurrency=1, max_queue_size=1))
    for _ in range(3):
        assert engine.run(SOURCE, {"t": " a "}).ok
    failing = PipelineBuilder("failing")
    failing.output("o", failing.call("Boom", text=failing.input("t", str)))
    assert engine.run(failing, {"t": "x"}).status is ExecutionStatus.FAILED
    waiting = PipelineBuilder("waiting")
    waiting.output("o", waiting.call("Wait", text=waiting.input("t", str)))
    first = engine.submit(waiting, {"t": "1"})
    deadline = time.monotonic() + 5
    while engine.queued_count and time.monotonic() < deadline:
        time.sleep(0.005)
    second = engine.submit(waiting, {"t": "2"})  # fills the queue
    with pytest.raises(QueueFullError):
        engine.submit(waiting, {"t": "3"})
    gate.set()
    assert first.result(10).ok
    assert second.result(10).ok
    engine.shutdown()

    def c(name: str, **tags: str) -> float:
        return metrics.counter_value(name, tags or None)

    assert c("constellation.execution.total", status="completed") == 5
    assert c("constellation.execution.total", status="failed") == 1
    assert c("constellation.module.started", module_name="Trim") == 3
    assert c("constellation.module.completed", module_name="Uppercase") == 3
    assert c("constellation.module.failed", module_name="Boom") == 1
    assert len(metrics.observations("constellation.module.duration_ms",
                                    {"module_name": "Trim"})) == 3
    assert len(metrics.observations("constellation.execution.duration_ms",
                                    {"dag_name": "pipeline"})) == 3
    assert c("constellation.compilation.total", cache_hit="false") == 1
    assert c("constellation.compilation.total", cache_hit="true") == 2
    assert c("constellation.scheduler.rejected") == 1
    assert metrics.gauge_value("constellation.scheduler.queued") == 0
    assert metrics.gauge_value("constellation.scheduler.active") is not None


class Raising(NoOpListener):
    def __init__(self) -> None:
        self.calls = 0

    def _raise(self, event: Any) -> None:
        self.calls += 1
        raise RuntimeError("listener bug")

    on_execution_start = on_module_start = on_module_complete = _raise
    on_module_failed = on_execution_complete = _raise


def test_a_listener_that_raises_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    listener = Raising()
    with Constellation(backends=Backends(listener=listener)) as engine:
        results = [engine.run(SOURCE, {"t": f" {i} "}) for i in range(5)]
        observer = engine._runtime.observer
    assert [r.outputs for r in results] == [{"u": str(i)} for i in range(5)]
    assert listener.calls == 5 * 6  # start, 2 x (module start, complete), end
    assert observer is not None
    assert observer.failures == 30
    assert "backend Raising failed in on_execution_start" in caplog.text


def test_a_blocked_listener_does_not_delay_pipelines() -> None:
    gate = threading.Event()
    seen: list[str] = []

    class Blocked(NoOpListener):
        def on_module_complete(self, event: ModuleEvent) -> None:
            gate.wait(10)
            seen.append(event.node)

    with Constellation(backends=Backends(listener=Blocked())) as engine:
        results = [engine.run(SOURCE, {"t": "x"}) for _ in range(10)]
        assert all(r.ok for r in results)  # every run finished while the listener waits
        assert seen == []
        gate.set()
    assert len(seen) == 20  # delivered before shutdown completed


def test_events_past_the_backlog_bound_are_dropped_and_counted() -> None:
    gate = threading.Event()

    class Blocked(NoOpListener):
        def on_execution_start(self, event: Any) -> None:
            gate.wait(10)

    with Constellation(backends=Backends(listener=Blocked())) as engine:
        observer = engine._runtime.observer
        assert observer is not None
        observer.max_pending = 5
        for _ in range(10):
            assert engine.run(SOURCE, {"t": "x"}).ok
        assert observer.dropped > 0
        gate.set()


def test_opentelemetry_spans_parent_module_calls_under_their_execution() -> None:
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from constellation.spi import OpenTelemetryTracer

    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OpenTelemetryTracer(provider.get_tracer("test"))
    with Constellation([boom], backends=Backends(tracer=tracer)) as engine:
        ok = engine.run(SOURCE, {"t": " a "})
        failing = PipelineBuilder("failing")
        failing.output("o", failing.call("Boom", text=failing.input("t", str)))
        bad = engine.run(failing, {"t": "x"})
    spans = exporter.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    root = next(s for s in by_name["execute(pipeline)"]
                if s.attributes["execution_id"] == ok.execution_id)
    children = [s for s in spans if s.parent is not None
                and s.parent.span_id == root.context.span_id]
    assert sorted(s.name for s in children) == ["module(Trim)", "module(Uppercase)"]
    assert all(s.attributes["execution_id"] == ok.execution_id for s in children)
    assert {s.attributes["attempt"] for s in children} == {1}
    assert root.context.trace_id == children[0].context.trace_id
    failed_span = by_name["module(Boom)"][0]
    assert failed_span.status.status_code is StatusCode.ERROR
    failed_root = by_name["execute(failing)"][0]
    assert failed_root.attributes["execution_id"] == bad.execution_id
    assert failed_root.status.status_code is StatusCode.ERROR
    assert "compile" in by_name


class CallLog(InMemoryMetrics):
    """In-memory metrics that also count the calls made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {"counter": 0, "histogram": 0, "gauge": 0}

    def counter(self, name: str, value: float = 1.0, tags: Any = None) -> None:
        self.calls["counter"] += 1
        super().counter(name, value, tags)

    def histogram(self, name: str, value: float, tags: Any = None) -> None:
        self.calls["histogram"] += 1
        super().histogram(name, value, tags)

    def gauge(self, name: str, value: float, tags: Any = None) -> None:
        self.calls["gauge"] += 1
        super().gauge(name, value, tags)


def test_events_reach_the_listener_in_batches_with_every_events_meaning() -> None:
    gate, held = threading.Event(), threading.Event()
    seen: list[tuple[str, str, str]] = []

    class Recording(NoOpListener):
        first = True

        def on_execution_start(self, event: Any) -> None:
            if self.first:  # hold the listener while the other executions run
                self.first = False
                held.set()
                gate.wait(10)
            seen.append(("start", event.execution_id, ""))

        def on_module_start(self, event: ModuleEvent) -> None:
            seen.append(("module_start", event.execution_id, event.node))

        def on_module_complete(self, event: ModuleEvent) -> None:
            seen.append(("module_complete", event.execution_id, event.node))

        def on_execution_complete(self, event: Any) -> None:
            seen.append(("complete", event.execution_id, event.status))

    metrics = CallLog()
    with Constellation(backends=Backends(metrics=metrics, listener=Recording())) as engine:
        observer = engine._runtime.observer
        assert observer is not None
        pipeline = engine.compile(SOURCE)
        results = [engine.run(pipeline, {"t": " first "})]
        assert held.wait(10), "the listener never got the first execution's start"
        results += [engine.run(pipeline, {"t": f" {i} "}) for i in range(20)]
        assert all(r.ok for r in results)
        # Held: the events of the 20 later executions wait in the buffer, with at most
        # one message for all of them.
        assert observer.pending >= 20 * 6
        assert len(observer.actor.actor_inbox._messages) <= 1  # type: ignore[attr-defined]
        gate.set()
    # Every event, in order within each execution.
    ids = [r.execution_id for r in results]
    for eid in ids:
        mine = [(kind, what) for kind, e, what in seen if e == eid]
        assert mine == [("start", ""), ("module_start", "Trim"), ("module_complete", "Trim"),
                        ("module_start", "Uppercase"), ("module_complete", "Uppercase"),
                        ("complete", "completed")]
    assert len(seen) == 21 * 6

    def c(name: str, **tags: str) -> float:
        return metrics.counter_value(name, tags or None)

    # Counters sum to one increment per event; observations stay one per event.
    assert c("constellation.execution.total", status="completed") == 21
    assert c("constellation.module.started", module_name="Trim") == 21
    assert c("constellation.module.completed", module_name="Uppercase") == 21
    assert c("constellation.compilation.total", cache_hit="false") == 1
    assert len(metrics.observations("constellation.module.duration_ms",
                                    {"module_name": "Trim"})) == 21
    assert len(metrics.observations("constellation.execution.duration_ms",
                                    {"dag_name": "pipeline"})) == 21
    assert metrics.gauge_value("constellation.scheduler.queued") == 0
    # ... with far fewer counter calls than events counted (105 module and execution
    # increments arrived in a few batches).
    assert metrics.calls["counter"] < 20
    assert metrics.calls["histogram"] == 21 * 2 + 21 + 1


def test_runtime_metrics_are_combined_per_name_and_tags_within_a_batch() -> None:
    entered, gate = threading.Event(), threading.Event()

    class Holding(CallLog):
        def histogram(self, name: str, value: float, tags: Any = None) -> None:
            if name == "hold":
                entered.set()
                gate.wait(10)
            super().histogram(name, value, tags)

    metrics = Holding()
    with Constellation(backends=Backends(metrics=metrics)) as engine:
        observer = engine._runtime.observer
        assert observer is not None
        observer.metric("histogram", "hold", 0.0)
        assert entered.wait(10)  # the listener is busy: what follows is one batch
        for i in range(5):
            observer.metric("counter", "custom.hits", 2.0, {"kind": "a"})
            observer.metric("counter", "custom.hits", 1.0, {"kind": "b"})
            observer.metric("gauge", "custom.level", float(i), None)
            observer.metric("histogram", "custom.size", float(i), None)
        gate.set()
    assert metrics.counter_value("custom.hits", {"kind": "a"}) == 10.0
    assert metrics.counter_value("custom.hits", {"kind": "b"}) == 5.0
    assert metrics.gauge_value("custom.level") == 4.0
    assert metrics.observations("custom.size") == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert metrics.calls["counter"] == 2
    assert metrics.calls["gauge"] == 1
    assert metrics.calls["histogram"] == 1 + 5


def test_only_the_callbacks_a_listener_implements_are_called() -> None:
    """A listener with one callback gets its events and no others are built for it; one
    whose lookup raises is still called (and its failures counted)."""

    class Completions(NoOpListener):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_execution_complete(self, event: Any) -> None:
            self.seen.append(event.status)

    class Raising(NoOpListener):
        def __getattribute__(self, name: str) -> Any:
            if name.startswith("on_"):
                raise RuntimeError("listener bug")
            return object.__getattribute__(self, name)

    completions = Completions()
    with Constellation(backends=Backends(listener=completions)) as engine:
        observer = engine._runtime.observer
        assert observer is not None
        for _ in range(3):
            assert engine.run(SOURCE, {"t": " a "}).ok
        engine.shutdown()
        assert observer.failures == 0
    assert completions.seen == ["completed"] * 3
    with Constellation(backends=Backends(listener=Completions())) as engine:
        observer = engine._runtime.observer
        assert observer is not None
        assert observer.callbacks == {"on_execution_complete"}
        assert not observer.wants_module_start  # nothing would take the event
    with Constellation(backends=Backends(listener=Raising())) as engine:
        observer = engine._runtime.observer
        assert observer is not None
        assert engine.run(SOURCE, {"t": " a "}).ok
        engine.shutdown()
        assert observer.failures == 6  # 1 start + 2 module starts + 2 ends + 1 end
