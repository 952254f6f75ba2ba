"""The fault model: every fault becomes a result or a clear error, and the engine goes on.

One regression test per failure measured on e1d31f3 (issue 11), as a user hits it.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pykka
import pytest

from constellation import (
    Backends,
    Constellation,
    ExecutionStatus,
    LifecycleState,
    SchedulerConfig,
    module,
)
from constellation.actors._execution import ExecutionActor
from constellation.actors._node import NodeActor, PlainNode
from constellation.actors._supervisor import Supervisor
from constellation.core.errors import EngineFailedError
from constellation.spi import InMemoryMetrics
from tests.constellation import process_modules
from tests.faults import WAIT, Deep, Inc, NastyStr, fresh_run_works
from tests.waiting import wait_for


@module
def Nap(x: int) -> int:
    time.sleep(0.002)
    return x


CHAIN = "in x: Int\na = Inc(x)\nb = Inc(a)\nc = Inc(b)\nout c"


def _fresh_run_works(engine: Constellation) -> None:
    fresh_run_works(engine, CHAIN, {"c": 4})


# --- cancel and deadlines racing an execution's end ----------------------------------------

def test_cancel_racing_the_end_of_each_execution_never_breaks_the_engine(
        engine_factory: Any) -> None:
    engine = engine_factory([Inc])
    pipeline = engine.compile(CHAIN)
    statuses: set[ExecutionStatus] = set()
    for i in range(1500):
        execution = engine.submit(pipeline, {"x": i})
        execution.cancel()
        statuses.add(execution.result(timeout=WAIT).status)
    assert statuses <= {ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED}
    _fresh_run_works(engine)
    assert engine.shutdown(drain_timeout=WAIT)


def test_cancel_from_four_threads_at_once_strands_no_execution(engine_factory: Any) -> None:
    engine = engine_factory([Nap, Inc], scheduler=SchedulerConfig(max_concurrency=4))
    pipeline = engine.compile("in x: Int\na = Nap(x)\nb = Nap(a)\nout b")
    executions = [engine.submit(pipeline, {"x": i}) for i in range(100)]
    barrier = threading.Barrier(4)

    def cancel_all() -> None:
        barrier.wait(WAIT)
        for e in executions:
            e.cancel()

    threads = [threading.Thread(target=cancel_all) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    results = [e.result(timeout=WAIT) for e in executions]
    assert all(r.status.is_final for r in results)
    assert len(results) == 100
    _fresh_run_works(engine)


def test_a_run_timeout_equal_to_the_module_time_never_breaks_the_engine(
        engine_factory: Any) -> None:
    @module
    def Sleep5ms(x: int) -> int:
        time.sleep(0.005)
        return x

    engine = engine_factory([Sleep5ms, Inc])
    pipeline = engine.compile("in x: Int\na = Sleep5ms(x)\nout a")
    for i in range(200):
        r = engine.submit(pipeline, {"x": i}, timeout=0.005).result(timeout=WAIT)
        assert r.status in (ExecutionStatus.COMPLETED, ExecutionStatus.TIMED_OUT)
    _fresh_run_works(engine)
    assert engine.shutdown(drain_timeout=WAIT)


def test_a_message_to_an_ended_execution_is_a_counted_dead_letter(
        engine_factory: Any) -> None:
    engine = engine_factory([Inc])
    pipeline = engine.compile(CHAIN)
    before = engine._runtime.dead_letters
    for i in range(300):
        e = engine.submit(pipeline, {"x": i})
        e.cancel()
        e.result(timeout=WAIT)
    # Every cancel reached an ended execution or was applied; none raised anywhere.
    assert engine._runtime.dead_letters >= before
    _fresh_run_works(engine)


# --- hostile modules -----------------------------------------------------------------------

class CustomBase(BaseException):
    pass


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit,
                                      CustomBase])
def test_a_module_raising_a_base_exception_fails_its_call_at_once(
        engine_factory: Any, exc_type: type[BaseException]) -> None:
    @module
    def Hostile(x: int) -> int:
        raise exc_type("from the module")

    engine = engine_factory([Hostile, Inc], default_timeout=60.0)
    t0 = time.monotonic()
    result = engine.run("in x: Int\na = Hostile(x)\nout a", {"x": 1})
    assert time.monotonic() - t0 < 2.0
    assert result.status is ExecutionStatus.FAILED
    (error,) = result.errors
    assert error.code == "E300"
    assert error.details["exception"] == exc_type.__name__
    assert exc_type.__name__ in error.message
    _fresh_run_works(engine)


def test_options_apply_to_a_module_raising_system_exit(engine_factory: Any) -> None:
    calls: list[int] = []

    @module
    def ExitTwice(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise SystemExit(1)
        return x * 10

    engine = engine_factory([ExitTwice])
    r = engine.run("in x: Int\na = ExitTwice(x) with retry: 2\nout a", {"x": 4},
                   timeout=WAIT)
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    assert r.outputs == {"a": 40}
    r = engine.run("in x: Int\na = ExitTwice(x) with on_error: skip\nout a", {"x": 1},
                   timeout=WAIT)
    assert r.outputs == {"a": 10}  # the third call: succeeded


def test_base_exceptions_leak_no_thread_allowance(engine_factory: Any) -> None:
    @module
    def Hostile(x: int) -> int:
        raise KeyboardInterrupt

    engine = engine_factory([Hostile], scheduler=SchedulerConfig(worker_threads=2))
    pipeline = engine.compile("in x: Int\na = Hostile(x)\nout a")
    for i in range(50):
        assert engine.run(pipeline, {"x": i}, timeout=WAIT).status is ExecutionStatus.FAILED
    workers = engine._runtime.workers
    assert workers._blocked == 0
    assert workers.thread_count <= 2


def test_a_value_whose_check_raises_is_an_output_type_error(engine_factory: Any) -> None:
    @module
    def Weird(x: int) -> int:
        return NastyStr("boom")  # type: ignore[return-value]

    engine = engine_factory([Deep, Weird], default_timeout=60.0)
    for name in ("Deep", "Weird"):
        t0 = time.monotonic()
        r = engine.run(f"in x: Int\na = {name}(x)\nout a", {"x": 1})
        assert time.monotonic() - t0 < 5.0
        assert r.status is ExecutionStatus.FAILED
        assert r.errors[0].code == "E302", r.errors[0]


def test_an_exception_whose_str_raises_is_still_reported(engine_factory: Any) -> None:
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise ValueError("nope")

    @module
    def Raises(x: int) -> int:
        raise UnprintableError

    engine = engine_factory([Raises])
    r = engine.run("in x: Int\na = Raises(x)\nout a", {"x": 1}, timeout=WAIT)
    assert r.status is ExecutionStatus.FAILED
    assert "UnprintableError" in r.errors[0].message


# --- executor faults -----------------------------------------------------------------------

def test_an_executor_that_is_shut_down_fails_calls_at_once_naming_it(
        engine_factory: Any) -> None:
    executor = ThreadPoolExecutor(2)
    engine = engine_factory([Inc], executor=executor)
    pipeline = engine.compile(CHAIN)
    assert engine.run(pipeline, {"x": 1}, timeout=WAIT).outputs == {"c": 4}
    executor.shutdown()
    t0 = time.monotonic()
    r = engine.run(pipeline, {"x": 1}, timeout=WAIT)
    assert time.monotonic() - t0 < 2.0
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code == "E312"
    assert "ThreadPoolExecutor" in r.errors[0].message
    # The engine itself is fine: the next execution fails the same clear way, at once.
    assert engine.run(pipeline, {"x": 2}, timeout=WAIT).errors[0].code == "E312"


def test_a_broken_process_pool_fails_the_call_not_the_engine(engine_factory: Any) -> None:
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
    engine = engine_factory([process_modules.double, process_modules.die], executor=executor)
    try:
        r = engine.run("in x: Int\na = Die(x)\nout a", {"x": 1}, timeout=60)
        assert r.status is ExecutionStatus.FAILED
        assert r.errors[0].code in ("E300", "E312")
        # The user's pool is broken for good; the engine goes on on a pool of its own.
        r = engine.run("in x: Int\na = Double(x)\nout a", {"x": 1}, timeout=60)
        assert r.status is ExecutionStatus.COMPLETED, r.errors
        assert r.outputs == {"a": 2}
        assert engine._runtime.runner.replaced == 1
        assert engine._runtime.runner.executor is not executor
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def test_cancel_cancels_queued_calls_of_a_user_executor(engine_factory: Any) -> None:
    executor = ThreadPoolExecutor(1)
    release = threading.Event()
    started: list[int] = []

    @module
    def Block(x: int) -> int:
        started.append(x)
        release.wait(WAIT)
        return x

    engine = engine_factory([Block], executor=executor)
    try:
        first = engine.submit("in x: Int\na = Block(x)\nout a", {"x": 1})
        wait_for(lambda: started == [1])
        queued = engine.submit("in x: Int\na = Block(x)\nout a", {"x": 2})
        time.sleep(0.05)  # its call is queued in the executor behind the first one
        queued.cancel()
        assert queued.result(timeout=WAIT).status is ExecutionStatus.CANCELLED
        release.set()
        assert first.result(timeout=WAIT).status is ExecutionStatus.COMPLETED
        time.sleep(0.1)
        assert started == [1]  # the cancelled call never started
    finally:
        release.set()
        executor.shutdown()


def test_a_call_waiting_on_a_slow_cache_lookup_never_starts_after_cancel(
        engine_factory: Any) -> None:
    from constellation.spi import InMemoryCacheBackend

    class SlowCache(InMemoryCacheBackend):
        def get(self, key: str) -> Any:
            time.sleep(0.5)
            return super().get(key)

    calls: list[int] = []

    @module
    def Cached(x: int) -> int:
        calls.append(x)
        return x

    engine = engine_factory([Cached], backends=Backends(cache=SlowCache()))
    e = engine.submit("in x: Int\na = Cached(x) with cache: 1min\nout a", {"x": 1})
    time.sleep(0.1)
    e.cancel()
    assert e.result(timeout=WAIT).status is ExecutionStatus.CANCELLED
    time.sleep(0.8)
    assert calls == []


# --- backends ------------------------------------------------------------------------------

def test_a_listener_raising_keyboard_interrupt_silences_nothing_and_stops_no_actor(
        engine_factory: Any) -> None:
    class Embedder(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return "alive"

    theirs = Embedder.start()

    class Rude:
        def __init__(self) -> None:
            self.completed: list[str] = []
            self.raised = False

        def on_execution_start(self, event: Any) -> None:
            if not self.raised:
                self.raised = True
                raise KeyboardInterrupt

        def on_module_start(self, event: Any) -> None:
            raise SystemExit(3)

        def on_module_complete(self, event: Any) -> None:
            pass

        def on_module_failed(self, event: Any) -> None:
            pass

        def on_execution_complete(self, event: Any) -> None:
            self.completed.append(event.execution_id)

    listener = Rude()
    engine = engine_factory([Inc], backends=Backends(listener=listener))
    ids = [engine.run(CHAIN, {"x": i}, timeout=WAIT).execution_id for i in range(5)]
    wait_for(lambda: len(listener.completed) == 5)
    assert listener.completed == ids
    assert theirs.ask("ping", timeout=WAIT) == "alive"
    theirs.stop()


# --- supervision ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["message", "here", "plain"])
def test_a_node_turn_that_raises_fails_its_execution_with_an_internal_error(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    # "message": the turn that handles AttemptFinished raises; "here": the last turn of
    # a node without options, run where its call returned (NodeActor._completed_here),
    # raises while it reports its value (ExecutionActor.node_completed); "plain": the
    # same report from a node run without an actor (PlainNode), outside any turn.
    engine = engine_factory([Inc])
    if path != "plain":  # a NodeActor for every node
        monkeypatch.setattr(PlainNode, "applies", staticmethod(lambda *_: False))
    if path == "message":
        original = NodeActor._attempt_finished

        def broken(self: NodeActor, msg: Any) -> None:
            if self.node.index == 1:
                raise RuntimeError("bug in the runtime")
            original(self, msg)

        monkeypatch.setattr(NodeActor, "_completed_here", lambda *_: False)
        monkeypatch.setattr(NodeActor, "_attempt_finished", broken)
    else:
        completed = ExecutionActor.node_completed

        def reporting(self: ExecutionActor, j: int, *rest: Any) -> None:
            if j == 1:
                raise RuntimeError("bug in the runtime")
            completed(self, j, *rest)

        monkeypatch.setattr(ExecutionActor, "node_completed", reporting)
    t0 = time.monotonic()
    r = engine.run(CHAIN, {"x": 1}, timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert r.status is ExecutionStatus.FAILED
    (error,) = r.errors
    assert error.code == "E311"
    assert f"node '{error.details['node']}'" in error.message
    assert "RuntimeError: bug in the runtime" in error.details["traceback"]
    assert engine.health()["runtime"]["internal_errors"] == 1
    monkeypatch.undo()
    _fresh_run_works(engine)


def test_an_execution_turn_that_raises_fails_it_and_the_engine_goes_on(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_factory([Inc])
    original = ExecutionActor._node_outcome

    def broken(self: ExecutionActor, *_: Any) -> None:
        # what the execution does with a node's outcome, whether it came as a message
        # (NodeFinished) or was handed over in the node's last turn (node_completed)
        raise SystemExit("inside the execution actor")

    monkeypatch.setattr(ExecutionActor, "_node_outcome", broken)
    r = engine.run(CHAIN, {"x": 1}, timeout=30)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[-1].code == "E311"
    monkeypatch.setattr(ExecutionActor, "_node_outcome", original)
    _fresh_run_works(engine)
    assert engine.shutdown(drain_timeout=WAIT)


def test_a_failed_supervisor_fails_the_engine_and_every_waiter_at_once(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    @module
    def Hold(x: int) -> int:
        release.wait(WAIT)
        return x

    engine = engine_factory([Hold], scheduler=SchedulerConfig(max_concurrency=1),
                            default_timeout=120.0)
    pipeline = engine.compile("in x: Int\na = Hold(x)\nout a")
    running = engine.submit(pipeline, {"x": 1})
    queued = engine.submit(pipeline, {"x": 2})
    wait_for(lambda: running.status is ExecutionStatus.RUNNING)

    def explode(self: Supervisor) -> None:
        raise RuntimeError("supervisor bug")

    monkeypatch.setattr(Supervisor, "_pump", explode)
    engine.submit(pipeline, {"x": 3})  # its turn raises
    t0 = time.monotonic()
    for e in (running, queued):
        r = e.result(timeout=WAIT)
        assert r.status is ExecutionStatus.FAILED
        assert r.errors[0].code == "E404"
    assert time.monotonic() - t0 < 2.0
    assert engine.state is LifecycleState.FAILED
    health = engine.health()
    assert health["status"] == "failed"
    assert "supervisor bug" in health["runtime"]["failed"]
    with pytest.raises(EngineFailedError):
        engine.submit(pipeline, {"x": 4})
    release.set()
    engine.shutdown(drain_timeout=2)
    assert engine.state is LifecycleState.FAILED


def test_result_returns_by_the_deadline_even_if_the_runtime_threads_died(
        engine_factory: Any) -> None:
    @module
    def Slow(x: int) -> int:
        time.sleep(0.3)
        return x

    engine = engine_factory([Slow])
    e = engine.submit("in x: Int\na = Slow(x)\nout a", {"x": 1}, timeout=0.5)
    # Simulate dead runtime threads: the timer (deadlines) and dispatcher stop now.
    engine._runtime.timer.stop()
    engine._runtime.dispatcher.shutdown(wait=False, cancel_futures=True)
    t0 = time.monotonic()
    r = e.result()  # no timeout: bounded by the deadline plus the grace
    assert time.monotonic() - t0 < 0.5 + 1.0 + 1.0
    assert r.status in (ExecutionStatus.TIMED_OUT, ExecutionStatus.COMPLETED)


# --- shutdown ------------------------------------------------------------------------------

def test_concurrent_shutdown_calls_all_return_the_same_answer_once_stopped(
        engine_factory: Any) -> None:
    release = threading.Event()

    @module
    def Hold(x: int) -> int:
        release.wait(WAIT)
        return x

    engine = engine_factory([Hold])
    e = engine.submit("in x: Int\na = Hold(x)\nout a", {"x": 1})
    wait_for(lambda: e.status is ExecutionStatus.RUNNING)
    answers: list[tuple[bool, LifecycleState]] = []
    lock = threading.Lock()

    def stop() -> None:
        answer = engine.shutdown(drain_timeout=0.3)
        with lock:
            answers.append((answer, engine.state))

    threads = [threading.Thread(target=stop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    release.set()
    assert answers == [(False, LifecycleState.STOPPED)] * 4
    assert e.result(timeout=WAIT).status is ExecutionStatus.CANCELLED


def test_dead_letters_are_reported_as_a_metric(engine_factory: Any) -> None:
    metrics = InMemoryMetrics()
    engine = engine_factory([Inc], backends=Backends(metrics=metrics))
    pipeline = engine.compile(CHAIN)
    for i in range(200):
        e = engine.submit(pipeline, {"x": i})
        e.cancel()
        e.result(timeout=WAIT)
    engine.shutdown(drain_timeout=WAIT)
    assert metrics.counter_value("constellation.runtime.dead_letters") == \
        engine._runtime.dead_letters


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process pools")
def test_modules_used_here_pickle(engine_factory: Any) -> None:
    # The process-pool test above needs importable modules.
    assert process_modules.double.func.__module__.startswith("tests.")


def test_an_engine_owned_process_pool_that_breaks_is_replaced(engine_factory: Any) -> None:
    engine = engine_factory([process_modules.double, process_modules.die],
                            executor="process")
    assert engine.run("in x: Int\na = Double(x)\nout a", {"x": 2},
                      timeout=60).outputs == {"a": 4}
    r = engine.run("in x: Int\na = Die(x)\nout a", {"x": 1}, timeout=60)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code == "E312"
    assert "BrokenProcessPool" in r.errors[0].message
    r = engine.run("in x: Int\na = Double(x)\nout a", {"x": 5}, timeout=60)
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    assert r.outputs == {"a": 10}
    assert engine._runtime.runner.replaced == 1


def test_executor_accepts_only_an_executor_or_process(engine_factory: Any) -> None:
    from constellation import ConfigurationError

    with pytest.raises(ConfigurationError, match="is not one of 'threads'"):
        engine_factory(executor="thread-pool")
    with pytest.raises(ConfigurationError, match="executor must be"):
        engine_factory(executor=object())



def test_quick_calls_queued_behind_a_call_that_blocks_run_on_other_threads(
        engine_factory: Any) -> None:
    finished: dict[str, float] = {}

    @module
    def Usually(x: int) -> int:
        if x == 100:
            time.sleep(1.0)  # quick on average, blocks this once
        return x

    @module
    def Quick(x: int) -> int:
        finished["quick"] = time.monotonic()
        return x * 2

    engine = engine_factory([Inc, Usually, Quick], scheduler=SchedulerConfig(worker_threads=8),
                            executor=None)
    pipeline = engine.compile("in x: Int\na = Inc(x)\nb = Usually(a)\nc = Quick(a)\n"
                              "out b\nout c")
    for i in range(30):  # every module is measured quick: calls stay on their thread
        engine.submit(pipeline, {"x": i}).result(timeout=WAIT)
        engine.run(pipeline, {"x": i}, timeout=WAIT)
    for run in (lambda: engine.submit(pipeline, {"x": 99}).result(timeout=WAIT),
                lambda: engine.run(pipeline, {"x": 99}, timeout=WAIT)):  # the caller helps
        t0 = time.monotonic()
        r = run()  # b blocks for 1 s
        assert r.outputs == {"b": 100, "c": 200}
        assert finished["quick"] - t0 < 0.5  # rescued from behind the blocked call


def test_an_isolated_module_raising_system_exit_reports_it(engine_factory: Any) -> None:
    from tests.constellation.isolated_modules import IsolatedExit

    engine = engine_factory([IsolatedExit])
    r = engine.run("in x: Int\na = IsolatedExit(x)\nout a", {"x": 3}, timeout=60)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].details["exception"] == "SystemExit"
    assert "exit from the child with 3" in r.errors[0].message
