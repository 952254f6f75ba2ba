"""EventHub: the listener's events fanned out to bounded, filtered subscribers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from constellation import Backends, ConfigurationError, Constellation, PipelineBuilder, module
from constellation.events import DROPPED, EventHub

SOURCE = "in t: String\nu = Uppercase(Trim(t))\nout u\n"


def _drain(sub, until: str = "execution.finished", timeout: float = 5.0) -> list[dict]:
    events = []
    while True:
        event = sub.get(timeout)
        assert event is not None, f"no {until} event within {timeout} s: {events}"
        events.append(event)
        if event["type"] in (until, DROPPED):
            return events


def test_a_subscriber_sees_one_executions_events_in_order() -> None:
    hub = EventHub()
    with Constellation(backends=Backends(listener=hub)) as engine:
        with hub.subscribe() as everything:
            first = engine.run(SOURCE, {"t": " a "})
            events = _drain(everything)
        assert [e["type"] for e in events] == [
            "execution.started", "module.started", "module.completed", "module.started",
            "module.completed", "execution.finished"]
        assert {e["execution_id"] for e in events} == {first.execution_id}
        assert [e.get("node") for e in events[1:5]] == ["Trim", "Trim", "Uppercase",
                                                        "Uppercase"]
        assert {e["pipeline"] for e in events} == {"pipeline"}
        assert events[-1]["status"] == "completed"
        assert hub.subscribers == 0  # the with block unsubscribed


def test_filters_by_execution_and_pipeline() -> None:
    hub = EventHub()
    with Constellation(backends=Backends(listener=hub)) as engine:
        a = engine.compile(SOURCE, name="a")
        b = engine.compile(SOURCE, name="b")
        with hub.subscribe(pipeline="b") as only_b:
            engine.run(a, {"t": "x"})
            rb = engine.run(b, {"t": "y"})
            events = _drain(only_b)
        assert {e["pipeline"] for e in events} == {"b"}
        assert {e["execution_id"] for e in events} == {rb.execution_id}
        handle = engine.submit(a, {"t": "z"})
        with hub.subscribe(execution_id=handle.execution_id) as one:
            handle.result(5)
            engine.run(a, {"t": "other"})
            got = []
            while (event := one.get(0.5)) is not None:
                got.append(event)
        assert got
        assert {e["execution_id"] for e in got} == {handle.execution_id}


@module("hub.Step")
def step(x: int) -> int:
    return x + 1


def test_a_slow_subscriber_is_dropped_and_nobody_else_notices() -> None:
    hub = EventHub(max_buffer=10)
    b = PipelineBuilder("many")
    ref = b.input("x", int)
    for _ in range(20):
        ref = b.call(step, x=ref)
    b.output("r", ref)
    with Constellation([step], backends=Backends(listener=hub)) as engine:
        slow = hub.subscribe()  # never reads
        fast = hub.subscribe(max_buffer=10_000)
        result = engine.run(b, {"x": 0})
        assert result.outputs == {"r": 20}
        events = _drain(fast)
        assert len(events) == 42  # start, 20 x (start, complete), end
        engine.shutdown()
    assert slow.dropped
    assert slow.closed
    assert hub.dropped == 1
    last = [slow.get(0.1)]
    assert last[0] is not None
    assert last[0]["type"] == DROPPED
    assert slow.get(0.1) is None
    assert hub.subscribers == 1
    fast.close()
    fast.close()  # idempotent
    assert hub.subscribers == 0


def test_an_asyncio_subscriber_awaits_without_blocking_its_loop() -> None:
    hub = EventHub()
    engine = Constellation(backends=Backends(listener=hub))

    async def watch() -> tuple[list[dict], int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(ticker())
        with hub.subscribe() as sub:
            loop = asyncio.get_running_loop()
            runner = loop.run_in_executor(None, engine.run, SOURCE, {"t": "q"})
            events = []
            while not events or events[-1]["type"] != "execution.finished":
                event = await sub.next(5.0)
                assert event is not None
                events.append(event)
            await runner
            assert await sub.next(0.05) is None  # nothing more: a timeout, not a hang
        stop.set()
        await task
        return events, ticks

    try:
        events, ticks = asyncio.run(watch())
    finally:
        engine.shutdown()
    assert events[0]["type"] == "execution.started"
    assert len(events) == 6
    assert ticks >= 1


def test_subscribers_are_bounded_and_a_closed_loop_unsubscribes() -> None:
    hub = EventHub(max_subscribers=2)
    first, second = hub.subscribe(), hub.subscribe()
    with pytest.raises(ConfigurationError, match="2 event subscribers already"):
        hub.subscribe()
    first.close()

    async def make() -> object:
        return hub.subscribe()

    orphan = asyncio.run(make())  # its loop is closed once asyncio.run returns
    assert hub.subscribers == 2
    with Constellation(backends=Backends(listener=hub)) as engine:
        engine.run(SOURCE, {"t": "x"})
    assert second.get(2) is not None
    assert orphan.closed  # type: ignore[attr-defined]
    assert hub.subscribers == 1  # the orphan went with the first event it could not wake
    hub.close()
    assert hub.subscribers == 0
    assert second.closed


def test_bad_sizes_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        EventHub(max_buffer=0)
    with pytest.raises(ConfigurationError):
        EventHub(max_subscribers=-1)
    with pytest.raises(ConfigurationError):
        EventHub().subscribe(max_buffer=0)


def test_many_threads_subscribe_and_leave_while_events_flow() -> None:
    hub = EventHub(max_buffer=50, max_subscribers=1000)
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn() -> None:
        try:
            while not stop.is_set():
                with hub.subscribe() as sub:
                    sub.get(0.001)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with Constellation(backends=Backends(listener=hub)) as engine:
            for _ in range(50):
                assert engine.run(SOURCE, {"t": "x"}).ok
            observer = engine._runtime.observer
            assert observer is not None
            engine.shutdown()
            assert observer.failures == 0
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert errors == []
    assert hub.subscribers == 0
