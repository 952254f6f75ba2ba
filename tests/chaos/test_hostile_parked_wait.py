"""Hostile attacks on the parked wait of ``run()`` (written by a hostile-testing helper).

Under attack:

- ``Execution.park()`` / ``wait_parked()`` (actors/_handle.py): a parked ``run()`` sleeps
  in ``lock.acquire(True, step)`` slices of at most 1 s on a lock ``_complete`` releases,
  ends the execution itself (TIMED_OUT, ``ended_by: waiter``) at deadline +
  DEADLINE_GRACE, then returns ``result()`` (which also waits for done callbacks).
- ``Constellation.run()`` (constellation/engine.py): ``_submit(..., parked=True)`` then
  ``wait_parked()``; any BaseException from the wait cancels the execution, re-raised.
- ``ExecutionActor._finish`` (actors/_execution.py) sets the result before it tells the
  supervisor. Telling it first (tried: one wake-up fewer per run) lost a completed result
  when that supervisor turn was slow (test_a_slow_supervisor_turn_at_the_end_...).
- ``ThreadPool.blocking()`` holds the thread's slot while it waits: a nested ``run()``
  from a module called inside a lambda no longer waits for its own first step
  (test_nested_runs_from_modules[lambda-*], which failed before).

The engine's rules: every public wait is bounded, nothing is lost, the runtime (not the
waiter) ends executions, an exception injected into a caller leaves the engine working,
and no thread or in-flight count is left behind.
"""

from __future__ import annotations

import ctypes
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from constellation import (
    Constellation,
    ExecutionStatus,
    SchedulerConfig,
    ShuttingDownError,
    module,
)
from constellation.actors import _supervisor
from constellation.actors._handle import DEADLINE_GRACE, Execution
from constellation.actors._messages import ExecutionFinished
from constellation.core.errors import EngineFailedError
from tests.faults import WAIT, Inc, all_ended, start_threads
from tests.waiting import reached, wait_for

ONE = "in x: Int\ny = Inc(x)\nout y\n"
NOTHING = "in x: Int\nout x\n"  # no module call at all
CHAIN = "in x: Int\na = Inc(x)\nb = Inc(a)\nc = Inc(b)\nout c\n"
SLACK = 1.5  # deadline + grace (1 s) + scheduling slack


@module
def Hold(x: int, ctx: Any) -> int:
    """Waits ``x`` milliseconds, or until cancelled."""
    ctx.cancel_event.wait(x / 1000)
    return x


@module
def Sleep(x: int) -> int:
    """Sleeps ``x`` milliseconds, not cooperatively."""
    time.sleep(x / 1000)
    return x


class Hostile(BaseException):
    pass


def _engine(factory: Any, modules: list[Any] | None = None, **scheduler: Any
            ) -> Constellation:
    engine: Constellation = factory(modules or [Inc, Hold, Sleep],
                                    scheduler=SchedulerConfig(**scheduler))
    return engine


def _by_waiter(r: Any) -> bool:
    """Whether the result was made by the waiter (the runtime lost the execution)."""
    return any(getattr(e, "details", {}).get("ended_by") == "waiter" for e in r.errors)


def _healthy(engine: Constellation) -> None:
    wait_for(lambda: engine.inflight_count == 0, WAIT)
    r = engine.run(CHAIN, {"x": 0}, timeout=WAIT)
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    assert r.outputs == {"c": 3}
    health = engine.health()
    assert health["runtime"]["internal_errors"] == 0, health["runtime"]
    assert health["runtime"]["failed"] is None
    assert health["status"] == "running"
    assert engine._runtime.inflight == 0


def _bounded(fn: Any, timeout: float) -> Any:
    """``fn()`` on a daemon thread; fail (not hang) if it takes more than ``timeout``."""
    out: list[Any] = []

    def body() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as exc:
            out.append(("raised", exc))

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} hangs (> {timeout} s)"
    kind, value = out[0]
    if kind == "raised":
        raise value
    return value


def _inject(thread: threading.Thread, exc: type[BaseException]) -> None:
    assert thread.ident is not None
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                   ctypes.py_object(exc))
    assert n == 1, n


def _engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t is not threading.main_thread()}


# --- many callers, cancellers ---------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_parked_runs_while_others_cancel_running_and_queued(
        engine_factory: Any, workers: int) -> None:
    engine = _engine(engine_factory, worker_threads=workers, max_concurrency=2)
    pipelines = [engine.compile(NOTHING), engine.compile(ONE), engine.compile(CHAIN),
                 engine.compile("in x: Int\nh = Hold(x)\na = Inc(h)\nout a\n")]
    expect = [lambda x: {"x": x}, lambda x: {"y": x + 1}, lambda x: {"c": x + 3},
              lambda x: {"a": x + 1}]
    bad: list[Any] = []
    seen: set[Any] = set()
    stop = threading.Event()

    def caller(i: int) -> None:
        rng = random.Random(i)
        while not stop.is_set():
            k = rng.randrange(4)
            x = rng.randrange(1, 4)
            t0 = time.monotonic()
            try:
                r = engine.run(pipelines[k], {"x": x}, timeout=2)
            except BaseException as exc:
                bad.append(exc)
                return
            took = time.monotonic() - t0
            seen.add(r.status)
            if took > 2 + SLACK or _by_waiter(r):
                bad.append(("slow or lost", took, r.status, r.errors))
            elif r.status is ExecutionStatus.COMPLETED:
                if r.outputs != expect[k](x):
                    bad.append(("wrong outputs", k, x, r.outputs))
            elif r.status is not ExecutionStatus.CANCELLED:
                bad.append((r.status, r.errors))

    def canceller(i: int) -> None:
        rng = random.Random(100 + i)
        sup = engine._runtime.supervisor_actor
        while not stop.is_set():
            handles = [a.handle for a in list(sup.running.values())]
            handles += list(sup.queued.values())
            for h in handles:
                if rng.random() < 0.5:
                    h.cancel()
            time.sleep(rng.uniform(0, 0.002))

    threads = start_threads(caller, 10) + start_threads(canceller, 2)
    time.sleep(2.5)
    stop.set()
    assert all_ended(threads, 2 + SLACK + 3), "a parked caller or a canceller hangs"
    assert bad == [], bad[:5]
    assert ExecutionStatus.CANCELLED in seen
    assert ExecutionStatus.COMPLETED in seen
    _healthy(engine)


def _interrupt_in(engine: Constellation, pipeline: Any, inputs: Any, timeout: float | None,
                  exc: type[BaseException], where: str, delay: float = 0.05
                  ) -> tuple[list[Any], float, float]:
    """run() on a user thread; once it is in ``where`` (a function name in its stack:
    profile hook on the C call of ``acquire`` from it, or on the call of it), wait
    ``delay`` and inject ``exc``. Returns (what the caller got, when injected, when it
    got it)."""
    got: list[Any] = []
    inside = threading.Event()
    ended: list[float] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if where == "_sleep_parked":
            if event == "c_call" and frame.f_code.co_name == "_sleep_parked":
                sys.setprofile(None)
                inside.set()
        elif event == "call" and frame.f_code.co_name == where and \
                frame.f_back is not None and frame.f_back.f_code.co_name == "wait_parked":
            sys.setprofile(None)
            inside.set()

    def caller() -> None:
        try:
            sys.setprofile(profile)
            try:
                got.append(engine.run(pipeline, inputs, timeout=timeout))
            finally:
                sys.setprofile(None)
        except BaseException as raised:
            got.append(raised)
        ended.append(time.monotonic())

    t = threading.Thread(target=caller, daemon=True)
    t.start()
    assert inside.wait(5), "the caller never reached " + where
    time.sleep(delay)
    sent = time.monotonic()
    _inject(t, exc)
    assert all_ended([t], 5), "the interrupted caller hangs"
    return got, sent, ended[0]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, Hostile, RuntimeError],
                         ids=lambda e: e.__name__)
@pytest.mark.parametrize("timeout", [None, 3.0], ids=["no-timeout", "timeout-3"])
def test_an_exception_injected_into_the_parked_acquire(
        engine_factory: Any, exc: type[BaseException], timeout: float | None) -> None:
    engine = _engine(engine_factory, worker_threads=2)
    pipeline = engine.compile("in x: Int\nh = Hold(x)\nout h\n")
    got, sent, ended = _interrupt_in(engine, pipeline, {"x": 4000}, timeout, exc,
                                     "_sleep_parked")
    assert len(got) == 1
    assert type(got[0]) is exc, got
    # A parked wait wakes up at least every second: the exception lands by then.
    assert ended - sent < 1.0 + 0.5, ended - sent
    # run() cancelled its execution: it ends now, not when Hold's 4 s are up.
    assert reached(lambda: engine.inflight_count == 0, 1.0), engine.inflight_count
    records = engine.executions(limit=1)
    assert records
    assert records[0].status in ("cancelled", ExecutionStatus.CANCELLED), records
    _healthy(engine)
    assert engine._runtime.workers.thread_count <= 2


@pytest.mark.parametrize("exc", [KeyboardInterrupt, Hostile], ids=lambda e: e.__name__)
def test_an_exception_injected_while_result_waits_for_done_callbacks(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, exc: type[BaseException]
        ) -> None:
    # The lock is released before the done callbacks run: wait_parked then waits in
    # result() for them. An exception landing there: cancel() is a no-op (the result is
    # set), the exception reaches the caller, the engine is not left with anything.
    ran: list[int] = []
    park = Execution.park

    def park_with_callback(self: Execution) -> None:
        park(self)
        self.add_done_callback(lambda r: (time.sleep(0.6), ran.append(1)))

    engine = _engine(engine_factory, worker_threads=2)
    pipeline = engine.compile(CHAIN)
    monkeypatch.setattr(Execution, "park", park_with_callback)
    got, sent, ended = _interrupt_in(engine, pipeline, {"x": 1}, 5.0, exc, "result",
                                     delay=0.1)
    assert type(got[0]) is exc, got
    assert ended - sent < 1.5, ended - sent
    wait_for(lambda: ran == [1], 3)
    monkeypatch.undo()
    records = engine.executions(limit=1)
    assert records
    assert records[0].status in ("completed", ExecutionStatus.COMPLETED), records
    _healthy(engine)


def test_interrupts_at_random_moments_of_many_short_parked_waits(
        engine_factory: Any) -> None:
    # An interrupt sent only while the caller is inside wait_parked (flag set around it),
    # at a random moment of short runs: the caller gets either a result or the
    # exception; the engine keeps going and nothing stays in flight.
    engine = _engine(engine_factory, worker_threads=2, max_concurrency=4)
    pipeline = engine.compile("in x: Int\nh = Hold(x)\na = Inc(h)\nout a\n")
    inside = threading.Event()
    outcomes: list[Any] = []
    stop = threading.Event()
    wait_parked = Execution.wait_parked

    def flagged(self: Execution) -> Any:
        inside.set()
        try:
            return wait_parked(self)
        finally:
            inside.clear()

    mp = pytest.MonkeyPatch()
    mp.setattr(Execution, "wait_parked", flagged)
    try:
        def caller() -> None:
            rng = random.Random(7)
            while not stop.is_set():
                try:
                    r = engine.run(pipeline, {"x": rng.choice([0, 1, 5, 30])}, timeout=3)
                    outcomes.append(r.status)
                except Hostile:
                    outcomes.append("interrupted")
                except BaseException as exc:  # the engine's own exception: a bug
                    outcomes.append(exc)
                    return

        t = threading.Thread(target=caller, daemon=True)
        t.start()
        rng = random.Random(3)
        end = time.monotonic() + 4.0
        sent = 0
        while time.monotonic() < end and t.is_alive():
            if inside.wait(0.5):
                time.sleep(rng.uniform(0, 0.03))
                if inside.is_set():
                    _inject(t, Hostile)
                    sent += 1
                    # let it land (a slice is at most 1 s) before the next one
                    reached(lambda n=sent: outcomes.count("interrupted") >= n, 1.5)
        stop.set()
        assert all_ended([t], 5)
    finally:
        mp.undo()
    assert sent > 0
    strange = [o for o in outcomes
               if o not in ("interrupted", ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED)]
    assert strange == [], strange
    _healthy(engine)


# --- done callbacks, base exceptions from modules, deadlines -------------------------


def test_a_done_callback_that_outlives_the_deadline(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # result() waits for the callbacks, but no longer than deadline + grace: the run
    # returns its real (COMPLETED) result then, not a TIMED_OUT made up by the waiter.
    park = Execution.park
    release = threading.Event()

    def park_with_callback(self: Execution) -> None:
        park(self)
        self.add_done_callback(lambda r: release.wait(3))

    engine = _engine(engine_factory, worker_threads=2)
    monkeypatch.setattr(Execution, "park", park_with_callback)
    try:
        t0 = time.monotonic()
        r = _bounded(lambda: engine.run(CHAIN, {"x": 1}, timeout=0.3), 5)
        took = time.monotonic() - t0
    finally:
        release.set()
        monkeypatch.undo()
    assert r.status is ExecutionStatus.COMPLETED, (r.status, r.errors)
    assert r.outputs == {"c": 4}
    assert took < 0.3 + SLACK, took
    _healthy(engine)


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, GeneratorExit, Hostile,
                                 StopIteration], ids=lambda e: e.__name__)
@pytest.mark.parametrize("shape", ["alone", "beside-a-running-call", "after-a-chain"])
def test_a_module_raising_a_base_exception_under_a_parked_run(
        engine_factory: Any, exc: type[BaseException], shape: str) -> None:
    @module
    def Boom(x: int) -> int:
        raise exc("hostile")

    engine = _engine(engine_factory, [Inc, Hold, Boom], worker_threads=2)
    source = {
        "alone": "in x: Int\nb = Boom(x)\nout b\n",
        # Hold still running when Boom fails: the old order (complete, then abandon)
        "beside-a-running-call": "in x: Int\nh = Hold(x)\nb = Boom(x)\nout h\nout b\n",
        "after-a-chain": "in x: Int\na = Inc(x)\nc = Inc(a)\nb = Boom(c)\nout b\n",
    }[shape]
    for _ in range(5):
        t0 = time.monotonic()
        try:
            r = _bounded(lambda: engine.run(source, {"x": 500}, timeout=3), 3 + SLACK + 1)
        except BaseException as raised:
            pytest.fail(f"run() raised {raised!r} instead of reporting the failure")
        assert time.monotonic() - t0 < 1.0
        assert r.status is ExecutionStatus.FAILED, (r.status, r.errors)
        assert not _by_waiter(r)
    _healthy(engine)


@pytest.mark.parametrize("module_name", ["Hold", "Sleep"])
def test_a_deadline_shorter_than_the_module(engine_factory: Any, module_name: str) -> None:
    engine = _engine(engine_factory, worker_threads=2)
    source = f"in x: Int\nh = {module_name}(x)\na = Inc(h)\nout a\n"
    for timeout in (0.05, 0.2):
        t0 = time.monotonic()
        r = _bounded(lambda t=timeout: engine.run(source, {"x": 1500}, timeout=t), 5)
        took = time.monotonic() - t0
        assert r.status is ExecutionStatus.TIMED_OUT, (r.status, r.errors)
        assert not _by_waiter(r), r.errors  # the runtime ended it, not the waiter
        assert took < timeout + 0.5, took
    # a blocked Sleep still holds a worker: other runs go on
    for i in range(20):
        r = engine.run(ONE, {"x": i}, timeout=3)
        assert r.outputs == {"y": i + 1}, (r.status, r.errors)
    _healthy(engine)


def test_tiny_timeouts(engine_factory: Any) -> None:
    engine = _engine(engine_factory, worker_threads=2)
    pipeline = engine.compile(CHAIN)
    for i in range(300):
        timeout = random.Random(i).choice([1e-9, 1e-6, 1e-4, 1e-3, 5e-3])
        t0 = time.monotonic()
        r = engine.run(pipeline, {"x": i}, timeout=timeout)
        took = time.monotonic() - t0
        assert r.status in (ExecutionStatus.COMPLETED, ExecutionStatus.TIMED_OUT), r
        assert not _by_waiter(r), (i, timeout, took, r.errors)
        assert took < 0.5, (i, timeout, took)
    _healthy(engine)


def test_queued_parked_runs_time_out_while_queued(engine_factory: Any) -> None:
    engine = _engine(engine_factory, worker_threads=2, max_concurrency=1)
    holder: list[Any] = []
    blocker = threading.Thread(target=lambda: holder.append(engine.run(
        "in x: Int\nh = Hold(x)\nout h\n", {"x": 2500}, timeout=5)), daemon=True)
    blocker.start()
    wait_for(lambda: engine.inflight_count == 1 and engine.queued_count == 0)
    results: list[Any] = []

    def queued(i: int) -> None:
        t0 = time.monotonic()
        r = engine.run(ONE if i % 2 else NOTHING, {"x": i}, timeout=0.2 + 0.05 * i)
        results.append((i, r, time.monotonic() - t0))

    threads = start_threads(queued, 10)
    assert all_ended(threads, 0.7 + SLACK + 1)
    assert len(results) == 10
    for i, r, took in results:
        assert r.status is ExecutionStatus.TIMED_OUT, (i, r.status, r.errors)
        assert not _by_waiter(r), (i, r.errors)  # the supervisor timed it out
        assert took < 0.2 + 0.05 * i + 0.5, (i, took)
    assert all_ended([blocker], 5)
    assert holder
    assert holder[0].outputs == {"h": 2500}
    _healthy(engine)


# --- pipelines with no module calls, nested runs, other threads -----------------------


def test_many_callers_of_a_pipeline_with_no_module_calls(engine_factory: Any) -> None:
    engine = _engine(engine_factory, worker_threads=2, max_concurrency=3)
    pipeline = engine.compile(NOTHING)
    lambdas = engine.compile("in xs: List<Int>\nys = map(xs, (v) => v + 1)\nout ys\n")
    wrong: list[Any] = []

    def caller(i: int) -> None:
        for k in range(300):
            try:
                if k % 3:
                    r = engine.run(pipeline, {"x": k}, timeout=3)
                    ok = r.outputs == {"x": k}
                else:
                    r = engine.run(lambdas, {"xs": [k, i]}, timeout=3)
                    ok = r.outputs == {"ys": [k + 1, i + 1]}
            except BaseException as exc:
                wrong.append(exc)
                return
            if not ok or r.status is not ExecutionStatus.COMPLETED:
                wrong.append((k, r.status, r.outputs, r.errors))

    threads = start_threads(caller, 8)
    assert all_ended(threads, 9), "a caller hangs"
    assert wrong == [], wrong[:3]
    _healthy(engine)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("where", ["call", "lambda"])
def test_nested_runs_from_modules(engine_factory: Any, workers: int, where: str) -> None:
    holder: dict[str, Any] = {}

    @module
    def Outer(x: int) -> int:
        r = holder["engine"].run("in x: Int\nm = Middle(x)\nout m\n", {"x": x}, timeout=4)
        return int(r.outputs["m"]) if r.ok else -1000

    @module
    def Middle(x: int) -> int:
        r1 = holder["engine"].run(CHAIN, {"x": x}, timeout=3)
        r2 = holder["engine"].run(NOTHING, {"x": x}, timeout=3)
        return int(r1.outputs["c"]) + int(r2.outputs["x"]) if r1.ok and r2.ok else -100

    engine = _engine(engine_factory, [Inc, Outer, Middle], worker_threads=workers,
                     max_concurrency=8)
    holder["engine"] = engine
    if where == "call":
        source, inputs = "in x: Int\no = Outer(x)\nout o\n", {"x": 1}
        expect = {"o": 1 + 3 + 1}
    else:
        source, inputs = "in xs: List<Int>\nys = map(xs, (v) => Outer(v))\nout ys\n", \
            {"xs": [1, 2]}
        expect = {"ys": [5, 7]}
    for _ in range(5):
        t0 = time.monotonic()
        r = _bounded(lambda: engine.run(source, inputs, timeout=5), 5 + SLACK + 1)
        assert r.status is ExecutionStatus.COMPLETED, (r.status, r.errors)
        assert r.outputs == expect
        assert time.monotonic() - t0 < 2.0
    _healthy(engine)


def test_nested_run_with_max_concurrency_one_is_bounded(engine_factory: Any) -> None:
    # The inner run waits behind its own outer execution: it cannot start. It must come
    # back TIMED_OUT by its deadline (ended by the supervisor), and the outer complete.
    holder: dict[str, Any] = {}

    @module
    def Outer(x: int) -> int:
        r = holder["engine"].run(ONE, {"x": x}, timeout=0.3)
        holder["inner"] = r
        return x

    engine = _engine(engine_factory, [Inc, Outer], worker_threads=1, max_concurrency=1)
    holder["engine"] = engine
    r = _bounded(lambda: engine.run("in x: Int\no = Outer(x)\nout o\n", {"x": 1},
                                    timeout=5), 5 + SLACK)
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    inner = holder["inner"]
    assert inner.status is ExecutionStatus.TIMED_OUT, inner
    assert not _by_waiter(inner), inner.errors
    _healthy(engine)


def test_run_from_a_done_callback_of_a_parked_run(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The callback thread runs its own parked run() while the outer run() waits in
    # result() for that very callback.
    engine = _engine(engine_factory, worker_threads=2)
    inner: list[Any] = []
    park = Execution.park

    def park_with_callback(self: Execution) -> None:
        park(self)
        if not inner:
            inner.append(None)
            self.add_done_callback(lambda r: inner.append(
                engine.run(CHAIN, {"x": r.outputs["c"]}, timeout=3)))

    monkeypatch.setattr(Execution, "park", park_with_callback)
    r = _bounded(lambda: engine.run(CHAIN, {"x": 0}, timeout=3), 3 + SLACK + 1)
    monkeypatch.undo()
    assert r.outputs == {"c": 3}
    assert len(inner) == 2
    assert inner[1].outputs == {"c": 6}, inner[1]
    _healthy(engine)


def test_shutdown_from_a_done_callback_of_a_parked_run(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(engine_factory, worker_threads=2)
    stopped: list[Any] = []
    park = Execution.park

    def park_with_callback(self: Execution) -> None:
        park(self)
        self.add_done_callback(lambda r: stopped.append(engine.shutdown(drain_timeout=1)))

    monkeypatch.setattr(Execution, "park", park_with_callback)
    r = _bounded(lambda: engine.run(CHAIN, {"x": 0}, timeout=3), 3 + SLACK + 3)
    monkeypatch.undo()
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    assert r.outputs == {"c": 3}
    assert reached(lambda: bool(stopped), 8), "shutdown from the callback hangs"
    with pytest.raises(ShuttingDownError):
        engine.run(ONE, {"x": 1}, timeout=1)


def test_parked_runs_on_an_engine_with_a_user_executor(engine_factory: Any) -> None:
    # No engine-owned worker pool: the hand-over is a plain post; the wait is parked.
    pool = ThreadPoolExecutor(3, thread_name_prefix="user")
    try:
        engine = engine_factory([Inc, Hold], executor=pool,
                                scheduler=SchedulerConfig(max_concurrency=3,
                                                          caller_helps=True))
        pipeline = engine.compile("in x: Int\nh = Hold(x)\na = Inc(h)\nout a\n")
        bad: list[Any] = []
        stop = threading.Event()

        def caller(i: int) -> None:
            for k in range(40):
                try:
                    r = engine.run(pipeline if k % 2 else CHAIN, {"x": k % 3}, timeout=3)
                except BaseException as exc:
                    bad.append(exc)
                    return
                if _by_waiter(r) or r.status not in (ExecutionStatus.COMPLETED,
                                                     ExecutionStatus.CANCELLED):
                    bad.append((r.status, r.errors))

        def canceller(_: int) -> None:
            while not stop.is_set():
                for a in list(engine._runtime.supervisor_actor.running.values()):
                    a.handle.cancel()
                time.sleep(0.003)

        cancel = start_threads(canceller, 1)
        threads = start_threads(caller, 6)
        assert all_ended(threads, 9)
        stop.set()
        assert all_ended(cancel, 2)
        assert bad == [], bad[:3]
        _healthy(engine)
    finally:
        pool.shutdown(wait=False)


# --- listeners that raise or block ----------------------------------------------------


@pytest.mark.parametrize("behaviour", ["raises", "blocks", "raises-base"])
def test_a_hostile_listener_does_not_touch_parked_runs(
        engine_factory: Any, behaviour: str) -> None:
    from constellation.spi import Backends, NoOpListener

    gate = threading.Event()

    class Listener(NoOpListener):
        def _hit(self) -> None:
            if behaviour == "raises":
                raise RuntimeError("listener")
            if behaviour == "raises-base":
                raise Hostile("listener")
            gate.wait(0.05)

        def on_execution_start(self, event: Any) -> None:
            self._hit()

        def on_module_complete(self, event: Any) -> None:
            self._hit()

        def on_execution_complete(self, event: Any) -> None:
            self._hit()

    engine = engine_factory([Inc], backends=Backends(listener=Listener()),
                            scheduler=SchedulerConfig(worker_threads=2))
    t0 = time.monotonic()
    for i in range(200):
        r = engine.run(CHAIN if i % 2 else NOTHING, {"x": i}, timeout=3)
        assert r.status is ExecutionStatus.COMPLETED, (i, r.errors)
    # A slow listener only delays its events (own thread): 200 runs, far less than 200 x 3 x 50 ms.
    assert time.monotonic() - t0 < 3.0
    _healthy(engine)
    t0 = time.monotonic()
    gate.set()
    engine.shutdown(drain_timeout=1)
    assert time.monotonic() - t0 < 8.0


# --- shutdown racing parked runs --------------------------------------------------------


@pytest.mark.parametrize("rnd", range(4))
def test_shutdown_racing_parked_runs_loses_none(engine_factory: Any, rnd: int) -> None:
    rng = random.Random(rnd)
    engine = engine_factory([Inc, Hold], default_timeout=3.0,
                            scheduler=SchedulerConfig(worker_threads=rng.choice([1, 2]),
                                                      max_concurrency=3))
    pipelines = [engine.compile(s) for s in
                 (NOTHING, ONE, "in x: Int\nh = Hold(x)\na = Inc(h)\nout a\n")]
    bad: list[Any] = []
    outcomes: list[Any] = []

    def caller(i: int) -> None:
        r_ = random.Random(i * 10 + rnd)
        while True:
            t0 = time.monotonic()
            try:
                r = engine.run(r_.choice(pipelines), {"x": r_.randrange(5)})
            except (ShuttingDownError, EngineFailedError):
                outcomes.append("refused")
                return
            except BaseException as exc:
                bad.append(exc)
                return
            took = time.monotonic() - t0
            outcomes.append(r.status)
            if _by_waiter(r):
                bad.append(("lost: ended by the waiter", took, r.errors))
            elif not r.status.is_final:
                bad.append(r.status)

    threads = start_threads(caller, 10)
    time.sleep(rng.uniform(0.05, 0.3))
    drain = rng.choice([0.0, 0.01, 0.2])
    t0 = time.monotonic()
    stoppers = [threading.Thread(target=engine.shutdown, kwargs={"drain_timeout": drain},
                                 daemon=True) for _ in range(2)]
    for s in stoppers:
        s.start()
    assert all_ended(stoppers, drain + 8), "shutdown hangs"
    assert time.monotonic() - t0 < drain + 6
    assert all_ended(threads, 3.0 + DEADLINE_GRACE + 2), "a parked caller hangs"
    assert bad == [], bad[:3]
    assert "refused" in outcomes


# --- 10,000 sequential runs ------------------------------------------------------------


def test_ten_thousand_sequential_tiny_runs_leave_nothing_behind(engine_factory: Any) -> None:
    before = _engine_threads()
    engine = _engine(engine_factory, worker_threads=2)
    one, nothing = engine.compile(ONE), engine.compile(NOTHING)
    engine.run(one, {"x": 0}, timeout=3)
    running = threading.active_count()
    t0 = time.monotonic()
    for i in range(10_000):
        if i % 2:
            r = engine.run(one, {"x": i}, timeout=3)
            assert r.outputs == {"y": i + 1}, (i, r.status, r.errors)
        else:
            r = engine.run(nothing, {"x": i}, timeout=3)
            assert r.outputs == {"x": i}, (i, r.status, r.errors)
        if i % 1000 == 999:
            assert threading.active_count() <= running + 2, (i, threading.enumerate())
    took = time.monotonic() - t0
    assert took < 9.0, took
    assert engine._runtime.inflight == 0
    assert engine.inflight_count == 0
    assert engine.queued_count == 0
    sup = engine._runtime.supervisor_actor
    assert not sup.running
    assert not sup.queued
    assert engine.health()["runtime"]["internal_errors"] == 0
    assert engine.shutdown(drain_timeout=2) is True
    assert reached(lambda: _engine_threads() <= before, 5.0), \
        sorted(t.name for t in _engine_threads() - before)


# --- the new order of an execution's end ----------------------------------------------


def test_a_slow_supervisor_turn_at_the_end_does_not_cost_a_completed_result(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The supervisor's ExecutionFinished turn (run inline by the thread that ends the
    # execution) is slow -- held here, as a preempted or starved thread would be. The
    # execution had completed: its caller must get COMPLETED and its outputs, not a
    # TIMED_OUT made up by the waiter at deadline + grace (at HEAD, which set the result
    # before telling the supervisor, it does).
    receive = _supervisor.Supervisor.on_receive

    def on_receive(self: Any, message: Any) -> Any:
        if type(message) is ExecutionFinished:
            time.sleep(0.3 + DEADLINE_GRACE + 0.3)
        return receive(self, message)

    engine = _engine(engine_factory, worker_threads=2)
    pipeline = engine.compile(ONE)
    monkeypatch.setattr(_supervisor.Supervisor, "on_receive", on_receive)
    r = _bounded(lambda: engine.run(pipeline, {"x": 1}, timeout=0.3), 5)
    monkeypatch.undo()
    assert r.status is ExecutionStatus.COMPLETED, (r.status, r.errors)
    assert r.outputs == {"y": 2}
    _healthy(engine)
