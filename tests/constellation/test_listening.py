"""A listener's ``listening``: while it is false, module events are not built for it."""

from __future__ import annotations

import threading

from constellation import Backends, Constellation, ExecutionStatus, module
from constellation.events import EventHub
from constellation.spi import CompositeListener, ModuleEvent, NoOpListener
from tests.waiting import wait_for

SOURCE = "in t: String\nu = Uppercase(Trim(t))\nout u\n"


class Recording(NoOpListener):
    def __init__(self, listening: bool) -> None:
        self.listening = listening
        self.calls: list[str] = []
        self.finished = threading.Semaphore(0)

    def on_execution_start(self, event: object) -> None:
        self.calls.append("execution.start")

    def on_module_start(self, event: object) -> None:
        self.calls.append("module.start")

    def on_module_complete(self, event: object) -> None:
        self.calls.append("module.complete")

    def on_execution_complete(self, event: object) -> None:
        self.calls.append("execution.complete")
        self.finished.release()


def _run(engine: Constellation, listener: Recording) -> list[str]:
    listener.calls.clear()
    engine.run(SOURCE, {"t": " a "})
    assert listener.finished.acquire(timeout=10), "no execution event within 10 s"
    return list(listener.calls)


def test_module_events_follow_listening() -> None:
    listener = Recording(listening=False)
    with Constellation(backends=Backends(listener=listener)) as engine:
        assert _run(engine, listener) == ["execution.start", "execution.complete"]
        listener.listening = True
        assert _run(engine, listener) == [
            "execution.start", "module.start", "module.complete", "module.start",
            "module.complete", "execution.complete"]


class Raising(Recording):
    @property  # type: ignore[override]
    def listening(self) -> bool:
        raise RuntimeError("asked")

    @listening.setter
    def listening(self, value: bool) -> None:
        pass


def test_a_listening_that_raises_counts_as_listening() -> None:
    listener = Raising(listening=False)
    with Constellation(backends=Backends(listener=listener)) as engine:
        calls = _run(engine, listener)
        assert calls.count("module.complete") == 2
        assert engine.health()["events"]["failures"] >= 1


def test_a_composite_listens_when_one_of_its_listeners_does() -> None:
    quiet, plain = Recording(listening=False), NoOpListener()
    assert CompositeListener([quiet]).listening is False
    assert CompositeListener([quiet, plain]).listening is True  # no attribute: listening
    quiet.listening = True
    assert CompositeListener([quiet]).listening is True


def test_the_hub_listens_only_while_someone_is_subscribed() -> None:
    hub = EventHub()
    assert hub.listening is False
    with Constellation(backends=Backends(listener=hub)) as engine:
        engine.run(SOURCE, {"t": "x"})  # nobody watching: no module events built
        with hub.subscribe() as sub:
            assert hub.listening is True
            result = engine.run(SOURCE, {"t": " a "})
            types = []
            while not types or types[-1] != "execution.finished":
                event = sub.get(10)
                assert event is not None, types
                if event["execution_id"] == result.execution_id:
                    types.append(event["type"])
        assert types.count("module.completed") == 2
        assert hub.listening is False


class Pairs(NoOpListener):
    """Module starts and ends by (execution, node, attempt)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, int]] = []
        self.ended: dict[tuple[str, str, int], str | None] = {}
        self.lock = threading.Lock()

    def on_module_start(self, event: ModuleEvent) -> None:
        with self.lock:
            self.started.append((event.execution_id, event.node, event.attempt))

    def on_module_complete(self, event: ModuleEvent) -> None:
        with self.lock:
            self.ended[(event.execution_id, event.node, event.attempt)] = None

    def on_module_failed(self, event: ModuleEvent) -> None:
        with self.lock:
            self.ended[(event.execution_id, event.node, event.attempt)] = event.error


def test_a_call_abandoned_when_its_execution_ends_is_reported_ended() -> None:
    """Found (since fixed): a module call still running when its execution was cancelled
    or timed out got ``on_module_start`` and never an end: a listener counting calls in
    flight (a gauge, an open span) counted it for good."""
    release = threading.Event()

    @module("HoldsOn")
    def holds_on(x: int) -> int:
        release.wait(10)
        return x

    pairs = Pairs()
    source = "in x: Int\na = HoldsOn(x)\nout a\n"
    try:
        with Constellation([holds_on], backends=Backends(listener=pairs)) as engine:
            timed_out = engine.run(source, {"x": 1}, timeout=0.2)
            assert timed_out.status is ExecutionStatus.TIMED_OUT
            handle = engine.submit(source, {"x": 2})
            wait_for(lambda: len(pairs.started) == 2, timeout=10)
            handle.cancel()
            assert handle.result(timeout=10).status is ExecutionStatus.CANCELLED
            release.set()
            done = engine.run(source, {"x": 3}, timeout=10)
            assert done.status is ExecutionStatus.COMPLETED
    finally:
        release.set()
    # Shutdown delivered every event.
    assert sorted(pairs.ended) == sorted(pairs.started)
    assert pairs.ended[(timed_out.execution_id, "HoldsOn", 1)] == \
        "abandoned: the execution ended (timed_out)"
    assert pairs.ended[(handle.execution_id, "HoldsOn", 1)] == \
        "abandoned: the execution ended (cancelled)"
    assert pairs.ended[(done.execution_id, "HoldsOn", 1)] is None
