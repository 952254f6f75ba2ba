"""Hostile attacks on a caller in ``engine.run()``: parked (the default) and helping
(``caller_helps=True``: it runs its own execution's actor turns and quick module calls).

Written against a ``caller_helps="turns"`` default that ran the execution's turns on the
caller with every call on the workers; the attacks below showed that those turns run
user code (inline transforms over user data, modules called inside lambdas), so that
mode did not become the default.

The engine's rules under attack: every public wait is bounded by the execution's deadline
(timeout + ~1 s grace), every failure becomes a result or a clear error, no hang, no lost
work, ``internal_errors`` stays 0 and the next run still succeeds.

Tests marked ``xfail(strict=True, reason="FOUND: ...")`` are real failures found here.
"""

from __future__ import annotations

import asyncio
import ctypes
import random
import signal
import sys
import threading
import time
from typing import Any

import pytest

from constellation import (
    CircuitBreakerConfig,
    Constellation,
    ExecutionStatus,
    Priority,
    SchedulerConfig,
    ShuttingDownError,
    module,
)
from constellation.spi._cache import MISSING
from tests.faults import WAIT, Inc, all_ended, start_threads
from tests.waiting import reached, wait_for

SLACK = 1.5  # deadline + grace (1 s) + scheduling slack: the most run() may take
TURNS = SchedulerConfig()  # the default (parked) under attack
PARKED = SchedulerConfig(caller_helps=False)
BOTH = pytest.mark.parametrize("helps", [True, False], ids=["helps", "parked"])
CHAIN = "in x: Int\n" + "".join(
    f"a{i} = Inc({'x' if i == 0 else f'a{i - 1}'})\n" for i in range(8)) + "out a7"


def _healthy(engine: Constellation) -> None:
    """The engine took no internal damage and still runs a pipeline."""
    wait_for(lambda: engine.inflight_count == 0, WAIT)
    r = engine.run(CHAIN, {"x": 0}, timeout=WAIT)
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    assert r.outputs == {"a7": 8}
    health = engine.health()
    assert health["runtime"]["internal_errors"] == 0, health["runtime"]
    assert health["runtime"]["failed"] is None
    assert health["status"] == "running"


def _timed_run(engine: Constellation, pipeline: Any, inputs: Any, timeout: float
               ) -> tuple[Any, float]:
    t0 = time.monotonic()
    r = engine.run(pipeline, inputs, timeout=timeout)
    return r, time.monotonic() - t0


# --- the deadline --------------------------------------------------------------------


def _transform_chain(n: int) -> str:
    # Inline transforms (map over a list with a lambda) are computed by the execution
    # actor in its own turn -- which a helping caller runs.
    return "in xs: List<Int>\na0 = map(xs, (x) => x + 1)\n" + "".join(
        f"a{i} = map(a{i - 1}, (x) => x + 1)\n" for i in range(1, n)) + \
        f"n = Inc(list-length(a{n - 1}))\nout n\n"


@pytest.mark.parametrize("helps", [
    pytest.param(True, marks=pytest.mark.xfail(strict=True, reason=(
        "KNOWN LIMITATION of caller_helps=True (opt-in, documented in SchedulerConfig "
        "and docs/performance-tuning.md): the helping caller runs its execution's turns, "
        "and the first one computes the inline transforms over the inputs; a user-sized "
        "input makes it run for seconds, and the helper looks at the deadline only "
        "between tasks, so run(timeout=0.3) returns after the whole turn. Found when "
        "these turns were meant to run on the caller by default (caller_helps='turns'), "
        "which therefore did not become the default. A parked caller returns TIMED_OUT "
        "at ~1.3 s."))),
    pytest.param(False, id="parked"),
])
def test_heavy_inline_transforms_in_the_first_turn_keep_the_deadline(
        engine_factory: Any, helps: Any) -> None:
    engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile(_transform_chain(40))
    xs = list(range(100_000))
    r, took = _timed_run(engine, pipeline, {"xs": xs}, 0.3)
    assert took < 0.3 + SLACK, (took, r.status)
    assert r.status is ExecutionStatus.TIMED_OUT
    _healthy(engine)


@pytest.mark.parametrize("helps", [
    pytest.param(True, marks=pytest.mark.xfail(strict=True, reason=(
        "KNOWN LIMITATION of caller_helps=True (opt-in, documented): a module called "
        "inside a lambda (map(xs, (x) => Slow(x))) is not a node; the lambda calls it "
        "inside the execution actor's turn (ExecutionActor._eval), which the helping "
        "caller runs, so a blocking one holds run(timeout=0.3) for its whole 2.5 s. "
        "Found when these turns were meant to run on the caller by default "
        "(caller_helps='turns'). A parked caller returns TIMED_OUT at ~1.3 s."))),
    pytest.param(False, id="parked"),
])
def test_a_module_called_in_a_lambda_never_holds_the_caller_past_its_deadline(
        engine_factory: Any, helps: Any) -> None:
    where: list[str] = []

    @module
    def Slow(x: int) -> int:
        where.append(threading.current_thread().name)
        if x < 0:
            time.sleep(2.5)
        return x

    engine = engine_factory([Slow, Inc], scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile("in xs: List<Int>\nys = map(xs, (x) => Slow(x))\nout ys\n")
    engine.run(CHAIN, {"x": 1}, timeout=WAIT)  # the supervisor idle: the caller helps
    r, took = _timed_run(engine, pipeline, {"xs": [-1]}, 0.3)
    assert took < 0.3 + SLACK, (took, r.status, where)
    assert r.status is ExecutionStatus.TIMED_OUT
    assert threading.current_thread().name not in where, where
    time.sleep(2.6 - took if took < 2.6 else 0)  # let the stuck call end
    _healthy(engine)


@pytest.mark.parametrize("helps", [True, False], ids=["helps", "parked"])
def test_a_base_exception_from_a_module_in_a_lambda_is_the_modules_failure(
        engine_factory: Any, helps: Any) -> None:
    """Found (since fixed): a module inside a lambda raising a BaseException escaped
    ExecutionActor._eval (it caught only Exception): the run ended E311 "failed in the
    runtime" and counted an internal error. Now it is the transform's failure (E310)."""
    @module
    def Boom(x: int) -> int:
        raise KeyboardInterrupt("hostile")

    engine = engine_factory([Boom, Inc], scheduler=SchedulerConfig(caller_helps=helps))
    r = engine.run("in xs: List<Int>\nys = map(xs, (x) => Boom(x))\nout ys\n",
                   {"xs": [1]}, timeout=5)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code in ("E300", "E310"), r.errors
    _healthy(engine)


@pytest.mark.parametrize("helps", [True, False], ids=["helps", "parked"])
def test_heavy_transforms_of_one_execution_do_not_stall_the_others(
        engine_factory: Any, helps: Any) -> None:
    """Found (since fixed): the supervisor ran each execution's first step (the
    transforms over its inputs) inside its own turn, so one heavy start stalled every
    other execution: trivial runs submitted meanwhile with timeout=0.5 ended "by the
    waiter" at ~1.5 s. The first step is now the execution's own turn, after the
    supervisor's."""
    engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=helps))
    heavy = engine.compile(_transform_chain(40))
    engine.run(CHAIN, {"x": 1}, timeout=WAIT)
    xs = list(range(100_000))
    t = threading.Thread(target=lambda: engine.run(heavy, {"xs": xs}, timeout=WAIT),
                         daemon=True)
    t.start()
    time.sleep(0.3)
    results = []
    for _ in range(3):
        t0 = time.monotonic()
        r = engine.submit("in x: Int\na = Inc(x)\nout a", {"x": 1}, timeout=0.5).result()
        results.append((r.status, time.monotonic() - t0))
    t.join(WAIT)
    assert all(status is ExecutionStatus.COMPLETED for status, _ in results), results
    _healthy(engine)


@pytest.mark.parametrize("how", ["sleep", "event", "lock", "busy", "ctx"])
def test_run_with_a_blocking_module_returns_by_its_deadline(
        engine_factory: Any, how: str) -> None:
    forever = threading.Event()
    lock = threading.Lock()
    lock.acquire()

    @module
    def Block(x: int, ctx: Any) -> int:
        if how == "sleep":
            time.sleep(4)
        elif how == "event":
            forever.wait(4)
        elif how == "lock":
            lock.acquire(timeout=4)
        elif how == "busy":
            end = time.monotonic() + 2
            while time.monotonic() < end:
                pass
        else:
            ctx.cancel_event.wait(4)
        return x

    engine = engine_factory([Block, Inc], scheduler=TURNS)
    pipeline = engine.compile("in x: Int\nb = Block(x)\nc = Inc(b)\nout c")
    for timeout in (0.05, 0.3):
        r, took = _timed_run(engine, pipeline, {"x": 1}, timeout)
        assert took < timeout + SLACK, (how, timeout, took)
        assert r.status is ExecutionStatus.TIMED_OUT, r.errors
    forever.set()
    lock.release()
    _healthy(engine)


def test_a_2000_wide_fan_out_completes_and_a_blocked_one_keeps_its_deadline(
        engine_factory: Any) -> None:
    release = threading.Event()

    @module
    def Nap(x: int) -> int:
        if x < 0:
            release.wait(5)
        return x

    engine = engine_factory([Inc, Nap], scheduler=SchedulerConfig(worker_threads=4))
    wide = 2000
    fan = "in x: Int\n" + "".join(f"b{i} = Inc(x + {i})\n" for i in range(wide)) + \
        "".join(f"out b{i}\n" for i in range(wide))
    r, took = _timed_run(engine, fan, {"x": 0}, WAIT)
    assert r.status is ExecutionStatus.COMPLETED, r.errors[:3]
    assert r.outputs == {f"b{i}": i + 1 for i in range(wide)}
    blocked = "in x: Int\n" + "".join(f"b{i} = Nap(x - {i})\n" for i in range(wide)) + \
        "".join(f"out b{i}\n" for i in range(wide))
    r, took = _timed_run(engine, blocked, {"x": -1}, 0.3)
    assert took < 0.3 + SLACK, took
    assert r.status is ExecutionStatus.TIMED_OUT
    release.set()
    _healthy(engine)


def test_a_2000_deep_chain_completes(engine_factory: Any) -> None:
    engine = engine_factory([Inc])
    deep = 2000
    chain = "in x: Int\n" + "".join(
        f"a{i} = Inc({'x' if i == 0 else f'a{i - 1}'})\n" for i in range(deep)) + \
        f"out a{deep - 1}"
    r, _ = _timed_run(engine, chain, {"x": 0}, WAIT)
    assert r.outputs == {f"a{deep - 1}": deep}, r.errors
    _healthy(engine)


def test_executor_string_pool_also_keeps_the_deadline(engine_factory: Any) -> None:
    # executor="threads:N" is the engine's own ThreadPool: the caller helps there too.
    @module
    def Sleep(x: int) -> int:
        time.sleep(3)
        return x

    engine = engine_factory([Sleep, Inc], executor="threads:2")
    assert engine._runtime.runner.pool is not None
    for _ in range(3):
        r, took = _timed_run(engine, "in x: Int\ns = Sleep(x)\nout s", {"x": 1}, 0.2)
        assert took < 0.2 + SLACK, took
        assert r.status is ExecutionStatus.TIMED_OUT
    r = engine.run(CHAIN, {"x": 0}, timeout=WAIT)
    assert r.outputs == {"a7": 8}, r.errors


# --- many callers, mixed with submit, racing shutdown and cancel_all ------------------


def test_many_helping_callers_mixed_with_submit_all_get_their_own_results(
        engine_factory: Any) -> None:
    @module
    def Jitter(x: int) -> int:
        if x % 7 == 0:
            time.sleep(0.002)
        return x

    engine = engine_factory([Inc, Jitter], scheduler=SchedulerConfig(max_concurrency=4))
    pipeline = engine.compile("in x: Int\nj = Jitter(x)\na = Inc(j)\nb = Inc(a)\nout b")
    errors: list[Any] = []

    def caller(tag: int) -> None:
        try:
            for i in range(40):
                x = tag * 1000 + i
                r = engine.run(pipeline, {"x": x}, timeout=WAIT)
                if r.outputs != {"b": x + 2}:
                    errors.append((x, r.status, r.errors))
        except BaseException as exc:
            errors.append(exc)

    threads = start_threads(caller, 10)
    subs = [engine.submit(pipeline, {"x": -i - 1}) for i in range(300)]
    assert all_ended(threads, 14)
    assert errors == []
    for i, e in enumerate(subs):
        assert e.result(timeout=WAIT).outputs == {"b": -i + 1}
    _healthy(engine)


def test_run_racing_shutdown_from_another_thread_never_hangs(engine_factory: Any) -> None:
    @module
    def Nap(x: int) -> int:
        time.sleep(0.01)
        return x

    engine = engine_factory([Nap])
    pipeline = engine.compile("in x: Int\na = Nap(x)\nb = Nap(a)\nout b")
    outcomes: list[Any] = []
    slow: list[float] = []
    stop = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = engine.run(pipeline, {"x": 1}, timeout=2)
                outcomes.append(r.status)
            except ShuttingDownError:
                outcomes.append("refused")
                return
            except BaseException as exc:
                outcomes.append(exc)
                return
            finally:
                if time.monotonic() - t0 > 2 + SLACK:
                    slow.append(time.monotonic() - t0)

    threads = start_threads(lambda _: caller(), 8)
    time.sleep(0.3)
    t0 = time.monotonic()
    engine.shutdown(drain_timeout=0.3)
    assert time.monotonic() - t0 < 5
    stop.set()
    assert all_ended(threads, 8), "a caller hangs after shutdown"
    assert slow == []
    allowed = {ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED, ExecutionStatus.FAILED,
               "refused"}
    assert all(o in allowed for o in outcomes), [o for o in outcomes if o not in allowed]
    assert ExecutionStatus.COMPLETED in outcomes
    assert engine.health()["runtime"]["internal_errors"] == 0


def test_run_racing_cancel_all_from_another_thread(engine_factory: Any) -> None:
    @module
    def Wait(x: int, ctx: Any) -> int:
        ctx.cancel_event.wait(0.005)
        return x

    engine = engine_factory([Wait, Inc])
    pipeline = engine.compile("in x: Int\nw = Wait(x)\na = Inc(w)\nout a")
    stop = threading.Event()
    bad: list[Any] = []
    seen: set[Any] = set()

    def caller() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = engine.run(pipeline, {"x": 1}, timeout=1)
            except BaseException as exc:
                bad.append(exc)
                return
            seen.add(r.status)
            if time.monotonic() - t0 > 1 + SLACK or r.status not in (
                    ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED):
                bad.append((r.status, r.errors, time.monotonic() - t0))
            elif r.status is ExecutionStatus.COMPLETED and r.outputs != {"a": 2}:
                bad.append(r.outputs)

    def canceller() -> None:
        while not stop.is_set():
            engine.cancel_all()
            time.sleep(random.uniform(0, 0.004))

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(6)]
    threads.append(threading.Thread(target=canceller, daemon=True))
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    assert all_ended(threads, 5)
    assert bad == []
    assert ExecutionStatus.CANCELLED in seen
    _healthy(engine)


def test_a_module_that_shuts_the_engine_down_under_a_helping_caller(
        engine_factory: Any) -> None:
    holder: dict[str, Any] = {}

    @module
    def Quit(x: int) -> int:
        holder["ok"] = holder["engine"].shutdown(drain_timeout=0.5)
        return x

    engine = engine_factory([Quit, Inc])
    holder["engine"] = engine
    r, took = _timed_run(engine, "in x: Int\nq = Quit(x)\na = Inc(q)\nout a", {"x": 1}, 3)
    assert took < 3 + SLACK, took
    assert r.status in (ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED,
                        ExecutionStatus.FAILED), r.status
    assert r.errors or r.outputs == {"a": 2}
    with pytest.raises(ShuttingDownError):
        engine.run(CHAIN, {"x": 0}, timeout=1)


# --- BaseException from modules ----------------------------------------------------------


class Hostile(BaseException):
    pass


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, GeneratorExit, Hostile,
                                 MemoryError, RecursionError],
                         ids=lambda e: e.__name__)
@pytest.mark.parametrize("options", ["", " with retry: 2", " with on_error: skip",
                                     " with timeout: 1s"])
def test_a_module_raising_a_base_exception_fails_its_call_only(
        engine_factory: Any, exc: type[BaseException], options: str) -> None:
    calls: list[int] = []

    @module
    def Boom(x: int) -> int:
        calls.append(x)
        raise exc("hostile")

    engine = engine_factory([Boom, Inc])
    pipeline = engine.compile(f"in x: Int\nb = Boom(x){options}\na = Inc(b)\nout a")
    t0 = time.monotonic()
    try:
        r = engine.run(pipeline, {"x": 1}, timeout=5)
    except BaseException as raised:
        pytest.fail(f"run() raised {raised!r} instead of reporting the module's failure")
    assert time.monotonic() - t0 < 5
    if "skip" in options:
        assert r.status is ExecutionStatus.COMPLETED, r.errors
        assert r.outputs == {"a": 1}
    else:
        assert r.status is ExecutionStatus.FAILED
        assert r.errors[0].details.get("exception") == exc.__name__, r.errors
    assert len(calls) == (3 if "retry" in options else 1)
    _healthy(engine)


# --- nested runs, callbacks, listeners, asyncio --------------------------------------


def test_nested_runs_from_modules_keep_the_inner_deadline(engine_factory: Any) -> None:
    holder: dict[str, Any] = {}

    @module
    def Forever(x: int) -> int:
        time.sleep(3)
        return x

    @module
    def Outer(x: int) -> int:
        eng = holder["engine"]
        t0 = time.monotonic()
        inner = eng.run("in x: Int\nf = Forever(x)\nout f", {"x": x}, timeout=0.2)
        holder.setdefault("inner", []).append((inner.status, time.monotonic() - t0))
        if x > 0:
            deeper = eng.run("in x: Int\no = Outer(x)\nout o", {"x": x - 1}, timeout=WAIT)
            assert deeper.status is ExecutionStatus.COMPLETED, deeper.errors
        return x

    engine = engine_factory([Outer, Forever, Inc],
                            scheduler=SchedulerConfig(worker_threads=16))
    holder["engine"] = engine
    r, _took = _timed_run(engine, "in x: Int\no = Outer(x)\nout o", {"x": 3}, WAIT)
    assert r.outputs == {"o": 3}, r.errors
    assert len(holder["inner"]) == 4
    for status, inner_took in holder["inner"]:
        assert status is ExecutionStatus.TIMED_OUT
        assert inner_took < 0.2 + SLACK
    _healthy(engine)


def run_from_a_done_callback(engine: Constellation) -> None:
    """``engine.run()`` of CHAIN from a done callback of a submitted one: it completes."""
    got: list[Any] = []
    done = threading.Event()

    def callback(result: Any) -> None:
        try:
            got.append(engine.run(CHAIN, {"x": result.outputs["a7"]}, timeout=5))
        except BaseException as exc:
            got.append(exc)
        done.set()

    e = engine.submit(CHAIN, {"x": 0})
    e.add_done_callback(callback)
    assert done.wait(WAIT)
    assert got[0].outputs == {"a7": 16}


def test_run_from_a_done_callback(engine_factory: Any) -> None:
    engine = engine_factory([Inc])
    run_from_a_done_callback(engine)
    # ... and from the callback of an execution a helping caller ran
    r = engine.run(CHAIN, {"x": 1}, timeout=5)
    assert r.outputs == {"a7": 9}
    _healthy(engine)


def test_run_from_a_listener_callback(engine_factory: Any) -> None:
    from constellation.spi import Backends
    from constellation.spi._listener import NoOpListener

    holder: dict[str, Any] = {}
    got: list[Any] = []

    class Nested(NoOpListener):
        def on_execution_complete(self, event: Any) -> None:
            if len(got) < 3 and holder.get("engine") is not None:
                try:
                    got.append(holder["engine"].run(CHAIN, {"x": 100}, timeout=3))
                except BaseException as exc:
                    got.append(exc)

    engine = engine_factory([Inc], backends=Backends(listener=Nested()))
    holder["engine"] = engine
    r, _took = _timed_run(engine, CHAIN, {"x": 0}, 5)
    assert r.outputs == {"a7": 8}
    assert reached(lambda: len(got) >= 3, 10)
    holder["engine"] = None
    assert all(getattr(g, "outputs", None) == {"a7": 108} for g in got), got
    _healthy(engine)


def test_run_from_an_asyncio_event_loop_thread(engine_factory: Any) -> None:
    @module
    def Sleep(x: int) -> int:
        time.sleep(3)
        return x

    engine = engine_factory([Inc, Sleep])

    async def main() -> list[Any]:
        # Blocking the loop is the user's choice; run() must still work and be bounded.
        out = [engine.run(CHAIN, {"x": i}, timeout=5) for i in range(5)]
        t0 = time.monotonic()
        out.append(engine.run("in x: Int\ns = Sleep(x)\nout s", {"x": 1}, timeout=0.2))
        out.append(time.monotonic() - t0)
        out.append(await engine.run_async(CHAIN, {"x": 7}, timeout=5))
        return out

    out = asyncio.run(main())
    assert [r.outputs for r in out[:5]] == [{"a7": i + 8} for i in range(5)]
    assert out[5].status is ExecutionStatus.TIMED_OUT
    assert out[6] < 0.2 + SLACK
    assert out[7].outputs == {"a7": 15}
    _healthy(engine)


def test_run_from_an_async_module_on_the_engines_loop(engine_factory: Any) -> None:
    holder: dict[str, Any] = {}

    @module
    async def Nest(x: int) -> int:
        r = holder["engine"].run(CHAIN, {"x": x}, timeout=3)
        return int(r.outputs["a7"])

    engine = engine_factory([Inc, Nest])
    holder["engine"] = engine
    r, took = _timed_run(engine, "in x: Int\nn = Nest(x)\nout n", {"x": 0}, 5)
    assert took < 5 + SLACK
    assert r.outputs == {"n": 8}, r.errors
    _healthy(engine)


def test_a_daemon_caller_left_blocked_does_not_hold_the_engine(engine_factory: Any) -> None:
    release = threading.Event()

    @module
    def Hold(x: int) -> int:
        release.wait(5)
        return x

    engine = engine_factory([Hold, Inc])
    t = threading.Thread(target=lambda: engine.run("in x: Int\nh = Hold(x)\nout h",
                                                   {"x": 1}, timeout=30), daemon=True)
    t.start()
    wait_for(lambda: engine.inflight_count == 1)
    # the helping caller is parked; others still run
    for i in range(20):
        assert engine.run(CHAIN, {"x": i}, timeout=5).outputs == {"a7": i + 8}
    t0 = time.monotonic()
    engine.cancel_all()
    t.join(3)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 3
    release.set()
    _healthy(engine)


# The injected exception may also land in Python's own code (a WeakSet's weakref
# callback during collection: "Exception ignored in"); that is the attack's noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("helps", [False], ids=["parked"])  # helping: see the next test
def test_a_helping_thread_killed_by_an_async_exception_leaves_the_engine_intact(
        engine_factory: Any, helps: Any) -> None:
    # A thread "killed" from outside (PyThreadState_SetAsyncExc, what thread-killing
    # libraries do) while it helps: the exception may land anywhere in the runtime's
    # code it runs. The engine must go on.
    engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile(CHAIN)

    class Killed(BaseException):
        pass

    rng = random.Random(7)
    stuck = 0
    for _ in range(80):
        stop = threading.Event()

        def loop(stop: threading.Event = stop) -> None:
            try:
                while not stop.is_set():
                    engine.run(pipeline, {"x": 1}, timeout=3)
            except Killed:
                pass

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        time.sleep(rng.uniform(0.0005, 0.01))
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident),
                                                   ctypes.py_object(Killed))
        t.join(0.5)
        if t.is_alive():  # the exception was swallowed somewhere: end it gently
            stuck += 1
            stop.set()
            t.join(5)
            assert not t.is_alive()
    _healthy(engine)


@pytest.mark.xfail(strict=True, reason=(
    "KNOWN LIMITATION of caller_helps=True (opt-in): a helping caller runs the "
    "supervisor's turn itself when the supervisor is idle (admission and start of its "
    "execution); an exception injected into that thread from outside "
    "(PyThreadState_SetAsyncExc, what thread-killing timeout libraries do) lands in "
    "the supervisor's turn, which then fails, and a failed supervisor fails the engine "
    "(E404). Ctrl-C is guarded (actors/_interrupts.py: it only marks the helper in the "
    "runtime's code), an injected exception cannot be. A parked caller is only ever "
    "in its wait: the test above holds for it."))
def test_an_exception_injected_into_a_helper_in_the_supervisors_turn(
        engine_factory: Any) -> None:
    engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=True))
    pipeline = engine.compile(CHAIN)
    engine.run(pipeline, {"x": 1}, timeout=WAIT)

    class Killed(BaseException):
        pass

    me = threading.get_ident()
    fired: list[bool] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name == "_pump" and not fired:
            fired.append(True)
            sys.setprofile(None)
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(me),
                                                       ctypes.py_object(Killed))

    try:
        sys.setprofile(profile)
        try:
            engine.run(pipeline, {"x": 2}, timeout=WAIT)
        finally:
            sys.setprofile(None)
    except Killed:
        pass
    assert fired
    _healthy(engine)


# --- resilience options --------------------------------------------------------------


class _BlockingCache:
    def __init__(self, how: str) -> None:
        self.how = how
        self.release = threading.Event()
        self.data: dict[str, Any] = {}

    def _act(self) -> None:
        if self.how == "block":
            self.release.wait(5)
        elif self.how == "raise":
            raise RuntimeError("cache down")
        elif self.how == "base":
            raise Hostile("cache exploded")

    def get(self, key: str) -> Any:
        self._act()
        return self.data.get(key, MISSING)

    def set(self, key: str, value: Any, ttl: float) -> None:
        self._act()
        self.data[key] = value

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def clear(self) -> None:
        self.data.clear()

    def stats(self) -> Any:
        from constellation.spi._cache import CacheStats

        return CacheStats(0, 0, 0, len(self.data))


@pytest.mark.parametrize("how", ["block", "raise", "base"])
def test_a_hostile_cache_backend(engine_factory: Any, how: str) -> None:
    cache = _BlockingCache(how)
    engine = engine_factory([Inc], cache_backends={"bad": cache})
    pipeline = engine.compile(
        'in x: Int\na = Inc(x) with cache: 1min, cache_backend: "bad"\nout a')
    for i in range(3):
        r, took = _timed_run(engine, pipeline, {"x": i}, 0.3)
        assert took < 0.3 + SLACK, took
        if how == "block":
            assert r.status is ExecutionStatus.TIMED_OUT
        else:
            assert r.outputs == {"a": i + 1}, r.errors  # a failing cache is a miss
    cache.release.set()
    _healthy(engine)


def test_retries_module_timeouts_and_breakers_under_a_helping_caller(
        engine_factory: Any) -> None:
    attempts: list[int] = []

    @module
    def Flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) % 3:
            time.sleep(0.3)  # past its timeout
        return x

    @module
    def Broken(x: int) -> int:
        raise ValueError("down")

    engine = engine_factory([Flaky, Broken, Inc], circuit_breakers={
        "Broken": CircuitBreakerConfig(failure_threshold=2, reset_timeout=60.0)})
    r, took = _timed_run(engine, "in x: Int\nf = Flaky(x) with retry: 3, delay: 10ms, "
                         "timeout: 100ms\nout f", {"x": 4}, 5)
    assert r.outputs == {"f": 4}, r.errors
    assert took < 2
    # every attempt times out: FAILED E303, not hung
    r, took = _timed_run(engine, "in x: Int\nf = Flaky(x) with timeout: 50ms\nout f",
                         {"x": 5}, 5)
    for _ in range(3):
        r2, took = _timed_run(engine, "in x: Int\nb = Broken(x)\nout b", {"x": 1}, 5)
        assert r2.status is ExecutionStatus.FAILED
    assert engine.circuit_breakers()["Broken"]["state"] == "open"
    r3, took = _timed_run(engine, "in x: Int\nb = Broken(x) with fallback: 9\nout b",
                          {"x": 1}, 5)
    assert r3.outputs == {"b": 9}
    assert took < 1
    _healthy(engine)


def _callers_at_once(engine: Constellation, pipeline: Any, n: int, timeout: float
                     ) -> list[tuple[Any, float]]:
    """``n`` threads each run ``pipeline`` once, at the same time: (result, seconds)."""
    results: list[tuple[Any, float]] = []

    def caller(i: int) -> None:
        results.append(_timed_run(engine, pipeline, {"x": i}, timeout))

    threads = start_threads(caller, n)
    assert all_ended(threads, 10)
    assert len(results) == n
    return results


def test_a_throttle_queue_with_many_callers_keeps_every_deadline(
        engine_factory: Any) -> None:
    engine = engine_factory([Inc])
    pipeline = engine.compile("in x: Int\na = Inc(x) with throttle: 5/1s\nout a")
    results = _callers_at_once(engine, pipeline, 30, 0.5)
    assert all(took < 0.5 + SLACK for _, took in results), [t for _, t in results]
    statuses = {r.status for r, _ in results}
    assert statuses <= {ExecutionStatus.COMPLETED, ExecutionStatus.TIMED_OUT}
    assert ExecutionStatus.TIMED_OUT in statuses
    assert ExecutionStatus.COMPLETED in statuses
    _healthy(engine)


def test_a_concurrency_limit_with_blocking_calls_and_many_callers(
        engine_factory: Any) -> None:
    @module
    def Slow(x: int) -> int:
        time.sleep(0.05)
        return x

    engine = engine_factory([Slow, Inc])
    pipeline = engine.compile("in x: Int\ns = Slow(x) with concurrency: 1\nout s")
    results = _callers_at_once(engine, pipeline, 24, 0.6)
    assert all(took < 0.6 + SLACK for _, took in results)
    assert {r.status for r, _ in results} == {ExecutionStatus.COMPLETED,
                                              ExecutionStatus.TIMED_OUT}
    _healthy(engine)


# --- the scheduler: max_concurrency=1, queues, priorities ----------------------------


def test_max_concurrency_1_with_a_queue_of_helping_runs(engine_factory: Any) -> None:
    @module
    def Slow(x: int) -> int:
        time.sleep(0.02)
        return x

    engine = engine_factory([Slow, Inc], scheduler=SchedulerConfig(max_concurrency=1))
    pipeline = engine.compile("in x: Int\ns = Slow(x)\na = Inc(s)\nout a")
    results: dict[int, Any] = {}

    def caller(i: int) -> None:
        # half with room to wait their turn, half that time out in the queue
        timeout = WAIT if i % 2 == 0 else 0.1
        results[i] = _timed_run(engine, pipeline, {"x": i}, timeout)

    threads = start_threads(caller, 40)
    assert all_ended(threads, 12)
    for i, (r, took) in results.items():
        if i % 2 == 0:
            assert r.outputs == {"a": i + 1}, (i, r.status, r.errors)
        else:
            assert took < 0.1 + SLACK
            assert r.status in (ExecutionStatus.COMPLETED, ExecutionStatus.TIMED_OUT)
    assert len(results) == 40
    _healthy(engine)


def test_helping_callers_start_in_priority_order(engine_factory: Any) -> None:
    release = threading.Event()
    order: list[int] = []

    @module
    def Hold(x: int) -> int:
        release.wait(WAIT)
        return x

    @module
    def Mark(x: int) -> int:
        order.append(x)
        return x

    engine = engine_factory([Hold, Mark, Inc], scheduler=SchedulerConfig(max_concurrency=1))
    held = engine.submit("in x: Int\nh = Hold(x)\nout h", {"x": 0})
    wait_for(lambda: engine.inflight_count == 1 and engine.queued_count == 0)
    prios = [Priority.BACKGROUND, Priority.LOW, Priority.NORMAL, Priority.HIGH,
             Priority.CRITICAL]
    threads = []
    for n, p in enumerate(prios):
        t = threading.Thread(target=lambda p=p: engine.run(
            "in x: Int\nm = Mark(x)\nout m", {"x": int(p)}, timeout=WAIT, priority=p),
            daemon=True)
        t.start()
        threads.append(t)
        wait_for(lambda n=n: engine.queued_count == n + 1)
    release.set()
    assert all_ended(threads, WAIT)
    assert held.result(timeout=WAIT).status is ExecutionStatus.COMPLETED
    assert order == sorted((int(p) for p in prios), reverse=True)
    _healthy(engine)


# --- failures in the first turns, run on the caller ---------------------------------


def test_a_transform_that_fails_in_the_callers_turn(engine_factory: Any) -> None:
    engine = engine_factory([Inc])
    # an inline operation (a lambda's division) fails in the execution actor's turn
    r = engine.run("in xs: List<Int>\nd = map(xs, (x) => 10 / x)\nn = Inc(list-sum(d))\n"
                   "out n", {"xs": [1, 0]}, timeout=5)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code == "E310", r.errors
    r = engine.run("in xs: List<Int>\nf = list-first(xs)\nout f", {"xs": []}, timeout=5)
    assert r.status is ExecutionStatus.FAILED
    _healthy(engine)


def test_a_hostile_inputs_mapping_under_a_helping_caller(engine_factory: Any) -> None:
    # The inputs mapping is user code that runs in run() before anything is queued.
    from collections.abc import Mapping

    class Exploding(Mapping[str, Any]):
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def __getitem__(self, key: str) -> Any:
            raise self.exc

        def __iter__(self) -> Any:
            raise self.exc

        def __len__(self) -> int:
            return 1

    engine = engine_factory([Inc])
    for exc in (RuntimeError("x"), Hostile("y"), SystemExit(3)):
        with pytest.raises(type(exc)):
            engine.run(CHAIN, Exploding(exc), timeout=2)
    _healthy(engine)


# --- Ctrl-C on the main thread ---------------------------------------------------------


def _main_thread_with_default_sigint() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    handler = signal.getsignal(signal.SIGINT)
    if handler is not signal.default_int_handler and \
            getattr(handler, "__module__", "") != "constellation.actors._interrupts":
        pytest.skip("the test runner set its own SIGINT handler")


@pytest.mark.parametrize("helps", [
    pytest.param(True, id="helps"),
    pytest.param(False, id="parked"),
])
def test_ctrl_c_just_as_the_helper_sees_its_result_is_not_lost(
        engine_factory: Any, helps: Any) -> None:
    """Found (since fixed): a Ctrl-C landing after the helper's last look at
    ``state.interrupted`` (its result was in) only marked the helper, which had stopped
    looking: run() returned normally and the KeyboardInterrupt was lost. Helper.run now
    looks again once it is no longer marked as helping."""
    import _thread

    _main_thread_with_default_sigint()
    engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile(CHAIN)
    engine.run(pipeline, {"x": 1}, timeout=WAIT)
    fired: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        # "Ctrl-C" as the wait for the result returns: the helper's loop, or the parked
        # caller's Execution._sleep_parked (run()'s wait_parked).
        if event == "return" and frame.f_code.co_name in ("_help", "_sleep_parked") and \
                "constellation" in frame.f_code.co_filename.replace("actors", "constellation"):
            fired.append(frame.f_code.co_name)
            sys.setprofile(None)
            _thread.interrupt_main()

    raised = False
    try:
        sys.setprofile(profile)
        try:
            engine.run(pipeline, {"x": 2}, timeout=WAIT)
        finally:
            sys.setprofile(None)
        for _ in range(200):  # an interrupt on its way lands here at the latest
            time.sleep(0.001)
    except KeyboardInterrupt:
        raised = True
    assert fired, "the wait never returned through the hook"
    assert raised, "the user's Ctrl-C was lost"
    _healthy(engine)


def test_a_storm_of_ctrl_c_while_the_main_thread_runs_and_helps(
        engine_factory: Any) -> None:
    _main_thread_with_default_sigint()

    @module
    def Nap(x: int) -> int:
        time.sleep(0.001)
        return x

    engine = engine_factory([Inc, Nap])
    pipeline = engine.compile("in x: Int\nn = Nap(x)\n" + "".join(
        f"a{i} = Inc({'n' if i == 0 else f'a{i - 1}'})\n" for i in range(6)) + "out a5")
    main = threading.main_thread().ident
    assert main is not None
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            time.sleep(random.uniform(0.001, 0.01))
            signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=storm, daemon=True)
    completed = interrupted = 0
    bad: list[Any] = []
    t.start()
    end = time.monotonic() + 3
    try:
        while time.monotonic() < end:
            try:
                t0 = time.monotonic()
                r = engine.run(pipeline, {"x": 1}, timeout=2)
                if time.monotonic() - t0 > 2 + SLACK:
                    bad.append(("slow", time.monotonic() - t0))
                if r.status is ExecutionStatus.COMPLETED:
                    completed += 1
                    if r.outputs != {"a5": 7}:
                        bad.append(r.outputs)
                elif r.status is not ExecutionStatus.FAILED:  # a module's KeyboardInterrupt
                    bad.append((r.status, r.errors))
            except KeyboardInterrupt:
                interrupted += 1
    finally:
        stop.set()
        while True:  # a last SIGINT on its way
            try:
                t.join(WAIT)
                time.sleep(0.05)
                break
            except KeyboardInterrupt:
                continue
    assert bad == []
    assert interrupted > 0
    _healthy(engine)
