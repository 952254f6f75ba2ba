"""Cancellation, deadlines, circuit breakers, drain, backpressure, suspension/resume."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from constellation import (
    CircuitBreakerConfig,
    Constellation,
    ExecutionStatus,
    LifecycleState,
    QueueFullError,
    ResumeError,
    SchedulerConfig,
    ShuttingDownError,
    module,
)
from constellation.testing import ManualClock
from tests.constellation.isolated_modules import IsolatedSquare, WritePidAndSleep
from tests.waiting import wait_for

if TYPE_CHECKING:
    from pathlib import Path


# --- cancellation ----------------------------------------------------------------------

def test_cancel_stops_a_cooperative_module_and_runs_its_cleanup(engine_factory: Any) -> None:
    started = threading.Event()
    cleaned: list[str] = []
    saw_cancel: list[bool] = []

    @module
    def LongJob(x: int, ctx: Any) -> int:
        ctx.on_cleanup(lambda: cleaned.append(ctx.execution_id))
        started.set()
        for _ in range(3000):  # would run 30 s
            if ctx.cancelled:
                saw_cancel.append(True)
                return -1
            time.sleep(0.01)
        return x

    @module
    def Quick(x: int) -> int:
        return x + 1

    engine = engine_factory([LongJob, Quick])
    execution = engine.submit("in x: Int\na = Quick(x)\nb = LongJob(a)\nc = Quick(x)\n"
                              "out a\nout b\nout c", {"x": 1})
    assert started.wait(5)
    t0 = time.monotonic()
    assert execution.cancel()
    result = execution.result(timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert result.status is ExecutionStatus.CANCELLED
    assert result.outputs == {"a": 2, "c": 2}  # computed so far
    assert result.errors[0].code == "E501"
    assert cleaned == [execution.execution_id]  # ran before the result was visible
    wait_for(lambda: saw_cancel == [True])
    assert result.modules["LongJob"].status.value == "cancelled"
    assert execution.cancel() is False  # already over


def test_cancel_kills_a_process_isolated_module(engine_factory: Any, tmp_path: Path) -> None:
    engine = engine_factory([WritePidAndSleep])
    pid_file = tmp_path / "pid"
    execution = engine.submit("in p: String\ny = WritePidAndSleep(p, 30.0)\nout y",
                              {"p": str(pid_file)})
    wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    pid = int(pid_file.read_text())
    os.kill(pid, 0)  # alive
    execution.cancel()
    assert execution.result(timeout=5).status is ExecutionStatus.CANCELLED

    wait_for(lambda: not _alive(pid), timeout=5)


def test_process_isolated_module_returns_and_raises(engine_factory: Any) -> None:
    engine = engine_factory([IsolatedSquare])
    assert engine.run("in x: Int\ny = IsolatedSquare(x)\nout y", {"x": 7}).outputs == {"y": 49}


def test_process_isolated_timeout_kills_the_process(engine_factory: Any, tmp_path: Path
                                                    ) -> None:
    engine = engine_factory([WritePidAndSleep])
    pid_file = tmp_path / "pid"
    result = engine.run("in p: String\ny = WritePidAndSleep(p, 30.0) with timeout: 2s, "
                        "on_error: skip\nout y", {"p": str(pid_file)})
    assert result.outputs == {"y": 0}
    pid = int(pid_file.read_text())
    wait_for(lambda: not _alive(pid), timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_isolated_module_must_be_importable() -> None:
    from constellation import ConfigurationError

    with pytest.raises(ConfigurationError, match="cannot take ctx"):
        @module(isolation="process")
        def WithCtx(x: int, ctx: Any) -> int:
            return x


def test_deadline_abandons_a_non_cooperating_thread(engine_factory: Any) -> None:
    release = threading.Event()

    @module
    def Stubborn(x: int) -> int:
        release.wait(30)
        return x

    @module
    def Quick(x: int) -> int:
        return x * 3

    engine = engine_factory([Stubborn, Quick], scheduler=SchedulerConfig(worker_threads=2))
    try:
        result = engine.run("in x: Int\ny = Stubborn(x)\nz = Quick(x)\nout y\nout z",
                            {"x": 2}, timeout=0.2)
        assert result.status is ExecutionStatus.TIMED_OUT
        assert result.outputs == {"z": 6}
        again = engine.run("in x: Int\ny = Stubborn(x)\nout y", {"x": 2}, timeout=0.2)
        assert again.status is ExecutionStatus.TIMED_OUT
        # Both worker threads are stuck, yet other executions still run.
        assert engine.run("in x: Int\ny = Quick(x)\nout y", {"x": 5}).outputs == {"y": 15}
        assert engine._runtime.abandoned == 2
    finally:
        release.set()


# --- circuit breaker -------------------------------------------------------------------

def test_breaker_opens_rejects_and_lets_exactly_one_probe_through(engine_factory: Any
                                                                  ) -> None:
    clock = ManualClock()
    calls: list[int] = []
    healthy = threading.Event()
    probe_gate = threading.Event()

    @module
    def Remote(x: int) -> int:
        calls.append(x)
        if not healthy.is_set():
            raise ConnectionError("down")
        probe_gate.wait(10)
        return x

    engine = engine_factory([Remote], clock=clock, circuit_breakers={
        "Remote": CircuitBreakerConfig(failure_threshold=5, reset_timeout=30.0)})
    src = "in x: Int\ny = Remote(x)\nout y"
    for i in range(5):
        result = engine.run(src, {"x": i})
        assert result.errors[0].code == "E300"
    assert engine.circuit_breakers()["Remote"]["state"] == "open"
    sixth = engine.run(src, {"x": 6})
    assert sixth.status is ExecutionStatus.FAILED
    assert sixth.errors[0].code == "E403"
    assert len(calls) == 5  # the 6th call never reached the module

    clock.advance(29.0)
    assert engine.run(src, {"x": 7}).errors[0].code == "E403"
    clock.advance(1.0)  # reset time reached: half-open
    healthy.set()
    probe = engine.submit(src, {"x": 8})
    wait_for(lambda: len(calls) == 6)
    others = [engine.run(src, {"x": 9 + i}) for i in range(3)]
    assert all(r.errors[0].code == "E403" for r in others)
    assert len(calls) == 6  # exactly one probe
    probe_gate.set()
    assert probe.result(timeout=5).outputs == {"y": 8}
    wait_for(lambda: engine.circuit_breakers()["Remote"]["state"] == "closed")
    assert engine.run(src, {"x": 20}).outputs == {"y": 20}


def test_failed_probe_opens_the_breaker_again(engine_factory: Any) -> None:
    clock = ManualClock()

    @module
    def Down(x: int) -> int:
        raise ConnectionError("still down")

    engine = engine_factory([Down], clock=clock)
    engine.set_circuit_breaker("Down", CircuitBreakerConfig(failure_threshold=2,
                                                            reset_timeout=5.0))
    src = "in x: Int\ny = Down(x)\nout y"
    codes = [engine.run(src, {"x": i}).errors[0].code for i in range(3)]
    assert codes == ["E300", "E300", "E403"]
    clock.advance(5.0)
    assert engine.run(src, {"x": 1}).errors[0].code == "E300"  # the probe failed
    wait_for(lambda: engine.circuit_breakers()["Down"]["state"] == "open")
    assert engine.run(src, {"x": 1}).errors[0].code == "E403"


def test_breaker_counts_each_retry_and_fallback_covers_an_open_breaker(engine_factory: Any
                                                                       ) -> None:
    calls: list[int] = []

    @module
    def Bad(x: int) -> int:
        calls.append(x)
        raise RuntimeError("nope")

    engine = engine_factory([Bad], circuit_breakers={
        "Bad": CircuitBreakerConfig(failure_threshold=3, reset_timeout=60)})
    result = engine.run("in x: Int\ny = Bad(x) with retry: 5, fallback: 0\nout y", {"x": 1})
    assert result.outputs == {"y": 0}
    assert len(calls) == 3  # the breaker opened after 3; the 4th attempt was refused


def test_breaker_state_gauge(engine_factory: Any) -> None:
    from constellation.spi import Backends, InMemoryMetrics

    metrics = InMemoryMetrics()

    @module
    def Fails(x: int) -> int:
        raise RuntimeError("x")

    engine = engine_factory([Fails], backends=Backends(metrics=metrics),
                            circuit_breakers={"Fails": CircuitBreakerConfig(1, 10.0)})
    engine.run("in x: Int\ny = Fails(x)\nout y", {"x": 1})
    wait_for(lambda: metrics.gauge_value("constellation.circuit_breaker.state",
                                         {"module_name": "Fails"}) == 1.0)


# --- drain -----------------------------------------------------------------------------

def test_drain_keeps_finished_results_cancels_the_rest_and_stops_cleanly() -> None:
    before = {t.ident for t in threading.enumerate()}
    block = threading.Event()

    @module
    def Fast(x: int) -> int:
        time.sleep(0.05)
        return x

    @module
    def Blocked(x: int, ctx: Any) -> int:
        ctx.cancel_event.wait(30)
        block.wait(0)
        return x

    engine = Constellation([Fast, Blocked], scheduler=SchedulerConfig(max_concurrency=20))
    fast = [engine.submit("in x: Int\ny = Fast(x)\nout y", {"x": i}) for i in range(10)]
    slow = [engine.submit("in x: Int\ny = Blocked(x)\nout y", {"x": i}) for i in range(10)]
    wait_for(lambda: engine.inflight_count == 20 or all(f.done() for f in fast))
    rejected: list[BaseException] = []

    def late_submit() -> None:
        wait_for(lambda: engine.state is not LifecycleState.RUNNING)
        try:
            engine.submit("in x: Int\ny = Fast(x)\nout y", {"x": 99})
        except ShuttingDownError as exc:
            rejected.append(exc)

    t = threading.Thread(target=late_submit)
    t.start()
    t0 = time.monotonic()
    drained = engine.shutdown(drain_timeout=1.0)
    elapsed = time.monotonic() - t0
    t.join(5)
    assert drained is False
    assert 1.0 <= elapsed < 5.0
    assert [f.result(0).outputs for f in fast] == [{"y": i} for i in range(10)]
    assert all(s.result(0).status is ExecutionStatus.CANCELLED for s in slow)
    assert len(rejected) == 1
    assert engine.state is LifecycleState.STOPPED
    assert engine.inflight_count == 0
    with pytest.raises(ShuttingDownError):
        engine.submit("in x: Int\ny = Fast(x)\nout y", {"x": 1})
    wait_for(lambda: not [th for th in threading.enumerate()
                          if th.ident not in before and th.is_alive()], timeout=5)


def test_drain_waits_for_executions_that_finish_in_time() -> None:
    @module
    def Slowish(x: int) -> int:
        time.sleep(0.2)
        return x

    engine = Constellation([Slowish])
    executions = [engine.submit("in x: Int\ny = Slowish(x)\nout y", {"x": i})
                  for i in range(5)]
    assert engine.shutdown(drain_timeout=10) is True
    assert [e.result(0).outputs["y"] for e in executions] == list(range(5))
    assert [r.status for r in engine.executions(limit=10)] == ["completed"] * 5


def test_signal_handlers_drain_on_sigterm() -> None:
    import signal

    from constellation import install_signal_handlers

    engine = Constellation()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        restore = install_signal_handlers(engine, drain_timeout=5)
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: engine.state is LifecycleState.STOPPED)
        restore()
        assert signal.getsignal(signal.SIGTERM) == previous
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.shutdown()


# --- backpressure ----------------------------------------------------------------------

def test_ten_thousand_submissions_against_a_bounded_queue(engine_factory: Any) -> None:
    @module
    def Work(x: int) -> int:
        return x + 1

    engine = engine_factory([Work], scheduler=SchedulerConfig(max_concurrency=4,
                                                              max_queue_size=100))
    pipeline = engine.compile("in x: Int\ny = Work(x)\nout y")
    accepted = []
    rejected = 0
    for i in range(10_000):
        try:
            accepted.append((i, engine.submit(pipeline, {"x": i})))
        except QueueFullError:
            rejected += 1
    assert rejected + len(accepted) == 10_000
    assert rejected > 0
    for i, e in accepted:
        assert e.result(timeout=30).outputs == {"y": i + 1}
    assert engine.rejected_count == rejected
    assert engine.inflight_count == 0


# --- suspension and resume ------------------------------------------------------------

def test_suspended_run_resumed_gives_the_same_outputs(engine_factory: Any) -> None:
    calls: list[str] = []

    @module
    def Prepare(text: str) -> str:
        calls.append("prepare")
        return text.upper()

    @module
    def Combine(a: str, b: int) -> str:
        calls.append("combine")
        return f"{a}:{b}"

    engine = engine_factory([Prepare, Combine])
    src = "in text: String\nin n: Int\np = Prepare(text)\nc = Combine(p, n)\nout p\nout c"
    full = engine.run(src, {"text": "hi", "n": 3})
    calls.clear()
    first = engine.run(src, {"text": "hi"})
    assert first.status is ExecutionStatus.SUSPENDED
    assert first.missing_inputs == {"n": "Int"}
    record = engine.execution(first.execution_id)
    assert record.status == "suspended"
    assert record.snapshot == {"nodes": {"Prepare": "HI"}}
    resumed = engine.resume(first.execution_id, {"n": 3}).result(timeout=5)
    assert resumed.status is ExecutionStatus.COMPLETED
    assert resumed.outputs == full.outputs
    assert resumed.execution_id == first.execution_id
    assert calls == ["prepare", "combine"]  # Prepare did not run again
    assert engine.execution(first.execution_id).status == "completed"


def test_resume_rejects_bad_requests(engine_factory: Any) -> None:
    from constellation import InputTypeError

    @module
    def Join(a: str, b: int) -> str:
        return f"{a}{b}"

    engine = engine_factory([Join])
    src = "in a: String\nin b: Int\nc = Join(a, b)\nout c"
    suspended = engine.run(src, {"a": "x"})
    eid = suspended.execution_id
    with pytest.raises(InputTypeError):
        engine.resume(eid, {"b": "not an int"})
    with pytest.raises(ResumeError) as info:
        engine.resume(eid, {"a": "again", "b": 1})
    assert info.value.details["reason"] == "input_already_given"
    with pytest.raises(ResumeError) as info:
        engine.resume("no-such-id", {"b": 1})
    assert info.value.details["reason"] == "not_found"
    with pytest.raises(ResumeError) as info:
        engine.resume(eid, {"b": 1}, pipeline=src.replace("out c", "d = Join(a, b)\nout c\n"
                                                                   "out d"))
    assert info.value.details["reason"] == "pipeline_changed"
    engine.compile(src + "\nout a")  # same name, new structure
    with pytest.raises(ResumeError) as info:
        engine.resume(eid, {"b": 1})
    assert info.value.details["reason"] == "pipeline_changed"
    assert engine.resume(eid, {"b": 1}, pipeline=src).result(5).outputs == {"c": "x1"}
    with pytest.raises(ResumeError) as info:
        engine.resume(eid, {"b": 1}, pipeline=src)
    assert info.value.details["reason"] == "not_suspended"


def test_module_without_arguments_runs(engine_factory: Any) -> None:
    @module
    def Seven() -> int:
        return 7

    engine = engine_factory([Seven])
    assert engine.run("y = Seven()\nout y").outputs == {"y": 7}
