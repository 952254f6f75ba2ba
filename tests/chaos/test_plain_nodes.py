"""Attacks on nodes run without an actor of their own (``actors._node.PlainNode``).

A node whose call has no options, whose module is a plain synchronous function without
a circuit breaker, on the engine's own worker pool, is a PlainNode: its call's end and
its abandonment are decided by the Attempt's token, a value that fits goes straight to
the execution, anything else is reported by a NodeActor made for it then. These drive
the moments where that could go wrong: the execution ending between the call's return
and its report, an abandoned call that is still running or still queued, failures of
every kind, a bug in the report, a refusal, and a Ctrl-C in the runtime's code.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import pytest

from constellation import (
    Backends,
    CallOptions,
    ExecutionStatus,
    LifecycleState,
    PipelineBuilder,
    SchedulerConfig,
    module,
)
from constellation.actors import _node
from constellation.actors._node import NodeActor, PlainNode
from constellation.actors._pool import ThreadPool
from constellation.core.results import NodeStatus
from constellation.spi import NoOpListener
from tests.chaos.test_found import _ctrl_c_at
from tests.faults import WAIT, Inc, count_inits, fresh_run_works
from tests.waiting import reached, wait_for

CHAIN = "in x: Int\na = Inc(x)\nb = Inc(a)\nout b"


class Events(NoOpListener):
    """Module events per (execution, node, attempt), with the failure texts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.finished: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.errors: dict[tuple[str, str, int], str | None] = {}
        self.durations: dict[tuple[str, str, int], float] = {}

    def on_module_start(self, event: Any) -> None:
        with self.lock:
            self.started[(event.execution_id, event.node, event.attempt)] += 1

    def on_module_complete(self, event: Any) -> None:
        key = (event.execution_id, event.node, event.attempt)
        with self.lock:
            self.finished[key] += 1
            self.durations[key] = event.duration_ms

    def on_module_failed(self, event: Any) -> None:
        key = (event.execution_id, event.node, event.attempt)
        with self.lock:
            self.finished[key] += 1
            self.errors[key] = event.error


def _count_node_actors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return count_inits(monkeypatch, NodeActor)


def _settled(engine: Any) -> None:
    pool = engine._runtime.workers
    wait_for(lambda: pool._blocked == 0 and pool.thread_count <= pool.max_threads,
             timeout=WAIT)


@pytest.mark.parametrize("helps", [False, True])
def test_nodes_without_options_run_without_node_actors(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, helps: bool) -> None:
    made = _count_node_actors(monkeypatch)
    engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=helps))
    plain = engine.compile(CHAIN)
    for x in range(20):
        assert engine.run(plain, {"x": x}, timeout=WAIT).outputs == {"b": x + 2}
    assert made == []
    # A node with an option (a retry) still gets its NodeActor; its plain neighbour not.
    b = PipelineBuilder("mixed")
    x = b.input("x", int)
    a = b.call(Inc, x=x, options=CallOptions(retry=2))
    b.output("b", b.call(Inc, x=a))
    r = engine.run(b.build(), {"x": 1}, timeout=WAIT)
    assert r.outputs == {"b": 3}, r.errors
    assert len(made) == 1


@pytest.mark.parametrize("helps", [False, True])
@pytest.mark.parametrize("how", ["cancel", "deadline", "sibling"])
def test_a_call_returning_after_its_execution_ended_is_a_dead_letter(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, how: str, helps: bool) -> None:
    """The call returned (the Attempt is finished: the node can no longer abandon it),
    then -- before its report -- the execution ends. The report is a dead letter, the
    execution keeps the status it ended with, the node is CANCELLED, nothing is lent
    to the pool and the engine goes on."""
    sibling_may_fail = threading.Event()
    reported: list[str] = []

    @module
    def Fails(x: int) -> int:
        sibling_may_fail.wait(WAIT)
        raise ValueError("the sibling failed")

    original = PlainNode.attempt_returned

    def late(self: PlainNode, attempt: Any, value: Any, exc: Any, elapsed: float) -> None:
        if self.node.name == "Inc" and not reported:
            reported.append(threading.current_thread().name)
            if how == "cancel":
                threading.Thread(target=self.handle.cancel).start()
            elif how == "sibling":
                sibling_may_fail.set()
            reached(self.parent.actor_stopped.is_set, WAIT)  # the execution ended
        original(self, attempt, value, exc, elapsed)

    monkeypatch.setattr(PlainNode, "attempt_returned", late)
    engine = engine_factory([Inc, Fails], scheduler=SchedulerConfig(caller_helps=helps))
    source = "in x: Int\na = Inc(x)\nc = Fails(x)\nb = Inc(a)\nout b\nout c" \
        if how == "sibling" else CHAIN
    pipeline = engine.compile(source)
    runtime = engine._runtime
    dead = runtime.dead_letters
    t0 = time.monotonic()
    r = engine.run(pipeline, {"x": 1}, timeout=0.3 if how == "deadline" else WAIT)
    assert time.monotonic() - t0 < 0.3 + 1.0
    expected = {"cancel": ExecutionStatus.CANCELLED, "deadline": ExecutionStatus.TIMED_OUT,
                "sibling": ExecutionStatus.FAILED}[how]
    assert r.status is expected, (r.status, r.errors)
    if how == "sibling":
        assert "the sibling failed" in r.errors[0].message
    assert r.modules["Inc"].status is NodeStatus.CANCELLED
    assert r.outputs == {}
    wait_for(lambda: runtime.dead_letters > dead, timeout=WAIT)
    assert runtime.internal_errors == 0
    _settled(engine)
    monkeypatch.undo()
    sibling_may_fail.clear()
    fresh_run_works(engine, CHAIN, {"b": 3})


@pytest.mark.parametrize("helps", [False, True])
def test_an_abandoned_running_call_lends_its_thread_and_takes_it_back(
        engine_factory: Any, helps: bool) -> None:
    release = threading.Event()
    calls: list[int] = []

    @module
    def Stuck(x: int) -> int:
        calls.append(x)
        if x == 7:
            release.wait(WAIT)
        return x

    events = Events()
    engine = engine_factory([Stuck], backends=Backends(listener=events),
                            scheduler=SchedulerConfig(caller_helps=helps, worker_threads=1))
    pipeline = engine.compile("in x: Int\na = Stuck(x)\nout a")
    assert engine.run(pipeline, {"x": 1}, timeout=WAIT).ok
    h = engine.submit(pipeline, {"x": 7}, timeout=WAIT)
    wait_for(lambda: 7 in calls)
    t0 = time.monotonic()
    assert h.cancel()
    r = h.result(timeout=WAIT)
    assert time.monotonic() - t0 < 1.0
    assert r.status is ExecutionStatus.CANCELLED
    pool = engine._runtime.workers
    wait_for(lambda: pool._blocked == 1)  # lent while the call is stuck ...
    assert engine._runtime.abandoned == 1
    # ... so another execution still gets a thread meanwhile.
    assert engine.run(pipeline, {"x": 2}, timeout=WAIT).outputs == {"a": 2}
    release.set()
    _settled(engine)  # ... and taken back when it returns
    engine.shutdown(drain_timeout=5)
    key = (r.execution_id, "Stuck", 1)
    assert events.started[key] == 1
    assert events.finished[key] == 1  # the abandoned call's end, told once
    assert "abandoned" in (events.errors[key] or "")


def test_an_abandoned_queued_call_never_starts(engine_factory: Any) -> None:
    release = threading.Event()
    calls: list[int] = []

    @module
    def Held(x: int) -> int:
        calls.append(x)
        if x == 0:
            release.wait(WAIT)
        return x

    engine = engine_factory([Held], scheduler=SchedulerConfig(worker_threads=1))
    pipeline = engine.compile("in x: Int\na = Held(x)\nout a")
    blocker = engine.submit(pipeline, {"x": 0}, timeout=WAIT)
    wait_for(lambda: calls == [0])
    queued = engine.submit(pipeline, {"x": 5}, timeout=WAIT)  # waits for the one thread
    time.sleep(0.1)
    assert queued.cancel()
    assert queued.result(timeout=WAIT).status is ExecutionStatus.CANCELLED
    release.set()
    assert blocker.result(timeout=WAIT).outputs == {"a": 0}
    _settled(engine)
    time.sleep(0.1)
    assert calls == [0]  # the cancelled execution's call never ran
    assert engine._runtime.abandoned == 0  # given up on while queued: no thread lost
    fresh_run_works(engine, "in x: Int\na = Held(x)\nout a", {"a": 1})


@pytest.mark.parametrize("helps", [False, True])
@pytest.mark.parametrize("bad", [True, 2**63, "text", None], ids=["bool", "2**63", "str",
                                                                  "None"])
def test_a_value_of_the_wrong_type_is_reported_by_a_node_actor(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any, helps: bool,
        bad: Any) -> None:
    made = _count_node_actors(monkeypatch)

    @module
    def Returns(x: int) -> int:
        return bad if x == 0 else x  # type: ignore[no-any-return]

    engine = engine_factory([Returns], scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile("in x: Int\na = Returns(x)\nout a")
    assert engine.run(pipeline, {"x": 3}, timeout=WAIT).outputs == {"a": 3}
    assert made == []
    with caplog.at_level(logging.ERROR, logger="constellation.module"):
        r = engine.run(pipeline, {"x": 0}, timeout=WAIT)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code == "E302"
    assert r.modules["Returns"].status is NodeStatus.FAILED
    assert r.modules["Returns"].attempts == 1
    assert made == ["Returns"]
    records = [rec for rec in caplog.records if rec.name == "constellation.module"]
    assert len(records) == 1
    assert records[0].node == "Returns"  # type: ignore[attr-defined]
    assert engine._runtime.internal_errors == 0


@pytest.mark.parametrize("helps", [False, True])
@pytest.mark.parametrize("exc", [ValueError, SystemExit, KeyboardInterrupt, GeneratorExit])
def test_an_exception_from_the_call_is_its_failure(
        engine_factory: Any, helps: bool, exc: type[BaseException]) -> None:
    @module
    def Sometimes(x: int) -> int:
        if x == 99:
            raise exc("from the module")
        return x

    events = Events()
    engine = engine_factory([Inc, Sometimes], backends=Backends(listener=events),
                            scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile("in x: Int\na = Inc(x)\nb = Sometimes(a)\nout b")
    for i in range(20):  # measured quick: on the caller too, when it helps
        assert engine.run(pipeline, {"x": i}, timeout=WAIT).ok
    r = engine.run(pipeline, {"x": 98}, timeout=WAIT)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code == "E300"
    assert exc.__name__ in r.errors[0].message
    assert r.modules["Inc"].status is NodeStatus.COMPLETED
    assert r.modules["Sometimes"].status is NodeStatus.FAILED
    assert engine.state is LifecycleState.RUNNING
    assert engine._runtime.internal_errors == 0
    engine.shutdown(drain_timeout=5)
    key = (r.execution_id, "Sometimes", 1)
    assert events.started[key] == 1
    assert events.finished[key] == 1
    assert exc.__name__ in (events.errors[key] or "")


@pytest.mark.parametrize("helps", [False, True])
def test_every_plain_call_is_told_once_with_its_duration(engine_factory: Any,
                                                         helps: bool) -> None:
    @module
    def Sleepy(x: int) -> int:
        time.sleep(0.01)
        return x + 1

    events = Events()
    engine = engine_factory([Inc, Sleepy], backends=Backends(listener=events),
                            scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile("in x: Int\na = Sleepy(x)\nb = Inc(a)\nout b")
    results = [engine.run(pipeline, {"x": i}, timeout=WAIT) for i in range(5)]
    assert all(r.ok for r in results)
    engine.shutdown(drain_timeout=5)
    for r in results:
        for name in ("Sleepy", "Inc"):
            key = (r.execution_id, name, 1)
            assert events.started[key] == 1, key
            assert events.finished[key] == 1, key
            assert events.durations[key] == r.modules[name].duration_ms
        assert r.modules["Sleepy"].duration_ms >= 10.0


def test_a_bug_in_the_report_fails_the_execution_with_an_internal_error(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_factory([Inc])
    pipeline = engine.compile(CHAIN)

    def broken(*_: Any) -> Any:
        raise RuntimeError("bug in the runtime")

    monkeypatch.setattr(_node, "checked", broken)  # the report of a non-exact value
    big = engine.compile("in x: Int\na = Inc(x)\nout a")
    t0 = time.monotonic()
    r = engine.run(big, {"x": 2**63 - 1}, timeout=30)  # 2**63: not an Int64, checked
    assert time.monotonic() - t0 < 2.0
    assert r.status is ExecutionStatus.FAILED
    (error,) = r.errors
    assert error.code == "E311"
    assert error.details["node"] == "Inc"
    assert "RuntimeError: bug in the runtime" in error.details["traceback"]
    assert engine._runtime.internal_errors == 1
    monkeypatch.undo()
    assert engine.run(pipeline, {"x": 1}, timeout=WAIT).outputs == {"b": 3}


def test_a_refused_call_fails_with_an_executor_error(engine_factory: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_factory([Inc])
    pipeline = engine.compile(CHAIN)
    assert engine.run(pipeline, {"x": 1}, timeout=WAIT).ok

    def refuse(*_: Any) -> None:
        raise RuntimeError("constellation-worker is shut down")

    monkeypatch.setattr(engine._runtime.runner, "start", refuse)
    r = engine.submit(pipeline, {"x": 1}, timeout=WAIT).result(timeout=WAIT)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code == "E312"
    assert r.modules["Inc"].status is NodeStatus.FAILED
    monkeypatch.undo()
    assert engine.run(pipeline, {"x": 1}, timeout=WAIT).outputs == {"b": 3}


def test_a_wide_launch_refused_by_a_stopped_pool_fails_each_call(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_factory([Inc], scheduler=SchedulerConfig(worker_threads=2))
    source = "in x: Int\n" + "".join(f"b{i} = Inc(x + {i})\nout b{i}\n" for i in range(50))
    pipeline = engine.compile(source)
    for _ in range(3):  # Inc measured quick: the launch is gathered and spread
        assert engine.submit(pipeline, {"x": 1}, timeout=WAIT).result().ok

    def stopped(self: ThreadPool, tasks: Any) -> None:
        raise RuntimeError(f"{self.name} is shut down")

    monkeypatch.setattr(ThreadPool, "schedule_spread", stopped)
    r = engine.submit(pipeline, {"x": 1}, timeout=WAIT).result(timeout=WAIT)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code == "E312"
    assert engine._runtime.internal_errors == 0
    monkeypatch.undo()
    assert engine.submit(pipeline, {"x": 1}, timeout=WAIT).result().ok


def test_ctrl_c_landing_in_the_report_of_a_helped_call(engine_factory: Any) -> None:
    """A Ctrl-C while the helping caller reports a plain call's value (runtime code):
    run() raises KeyboardInterrupt, the engine stays RUNNING, nothing is lent."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=True))
    pipeline = engine.compile(CHAIN)
    for i in range(30):  # Inc measured quick: the caller runs it and reports it
        assert engine.run(pipeline, {"x": i}, timeout=5).ok
    fired, raised, _ = _ctrl_c_at("attempt_returned",
                                  lambda: engine.run(pipeline, {"x": 1}, timeout=5),
                                  owner="PlainNode")
    assert fired
    assert raised
    assert engine.state is LifecycleState.RUNNING
    assert engine._runtime.internal_errors == 0
    _settled(engine)
    fresh_run_works(engine, CHAIN, {"b": 3})
