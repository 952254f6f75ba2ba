"""``run()`` from a user's thread hands its execution to a free worker thread.

The supervisor's turn for the submission, and then the execution's first step (in that
thread's slot), run on the worker that goes on to run the execution's calls: one handoff
to the engine and one back, with no dispatcher thread in between. Only a *free* worker
takes it -- never one busy with module calls -- and the submission is queued in the
supervisor's inbox first, so messages keep their order. ``submit()`` is unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from constellation import SchedulerConfig, module
from constellation.actors import _supervisor
from constellation.actors._actor import PooledActor
from constellation.actors._messages import SubmitExecution
from constellation.actors._pool import Droppable, ThreadPool
from tests.faults import all_ended, start_threads
from tests.waiting import wait_for

WAIT = 10.0


@module
def Inc(x: int) -> int:
    """Quick."""
    return x + 1


@module
def Hold(x: int) -> int:
    """Blocks for ``x`` milliseconds."""
    time.sleep(x / 1000)
    return x


_DIAMOND = "in x: Int\na = Inc(x)\nb = Inc(a)\nc = Inc(a)\nout b\nout c\n"


def _where(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Record the threads that run the supervisor's SubmitExecution turns and the
    executions' first steps."""
    seen: dict[str, list[str]] = {"submit": [], "first": []}
    receive = _supervisor.Supervisor.on_receive
    first = _supervisor._first_step

    def on_receive(self: Any, message: Any) -> Any:
        if type(message) is SubmitExecution:
            seen["submit"].append(threading.current_thread().name)
        return receive(self, message)

    def first_step(actor: Any) -> None:
        seen["first"].append(threading.current_thread().name)
        first(actor)

    monkeypatch.setattr(_supervisor.Supervisor, "on_receive", on_receive)
    monkeypatch.setattr(_supervisor, "_first_step", first_step)
    return seen


def test_run_from_a_user_thread_is_handed_to_a_free_worker(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_factory([Inc], scheduler=SchedulerConfig(worker_threads=2))
    pipeline = engine.compile(_DIAMOND)
    seen = _where(monkeypatch)
    for k in range(20):
        r = engine.run(pipeline, {"x": k}, timeout=WAIT)
        assert r.outputs == {"b": k + 2, "c": k + 2}, r.errors
    assert len(seen["submit"]) == 20
    assert all(n.startswith("constellation-worker") for n in seen["submit"]), seen
    assert all(n.startswith("constellation-worker") for n in seen["first"]), seen


def test_submit_keeps_the_dispatcher(engine_factory: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_factory([Inc], scheduler=SchedulerConfig(worker_threads=2))
    pipeline = engine.compile(_DIAMOND)
    seen = _where(monkeypatch)
    for k in range(5):
        assert engine.submit(pipeline, {"x": k}, timeout=WAIT).result().ok
    assert seen["submit"]
    assert all(n.startswith("constellation-dispatcher") for n in seen["submit"])
    assert all(n.startswith("constellation-dispatcher") for n in seen["first"]), seen


def test_a_run_never_waits_behind_busy_workers(engine_factory: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The only worker is in a 2 s call: a run() that needs no worker
    # (no module call at all) goes the usual way, through a dispatcher, and ends at once.
    engine = engine_factory([Hold], scheduler=SchedulerConfig(worker_threads=1))
    blocker = engine.submit("in x: Int\ny = Hold(x)\nout y\n", {"x": 2000}, timeout=WAIT)
    wait_for(lambda: engine._runtime.workers._idle == 0 and
             engine._runtime.workers.thread_count == 1)
    time.sleep(0.1)  # the call is running
    seen = _where(monkeypatch)
    t0 = time.monotonic()
    r = engine.run("in x: Int\nout x\n", {"x": 1}, timeout=WAIT)
    took = time.monotonic() - t0
    assert r.outputs == {"x": 1}, r.errors
    assert took < 1.0, took
    assert seen["submit"], seen
    assert seen["submit"][0].startswith("constellation-dispatcher"), seen
    assert not blocker.done()
    assert blocker.result().outputs == {"y": 2000}


def test_many_callers_at_once_all_get_their_own_results(engine_factory: Any) -> None:
    engine = engine_factory([Inc], scheduler=SchedulerConfig(worker_threads=2,
                                                             max_concurrency=3))
    pipeline = engine.compile(_DIAMOND)
    wrong: list[Any] = []

    def caller(i: int) -> None:
        for k in range(150):
            x = i * 1000 + k
            r = engine.run(pipeline, {"x": x}, timeout=WAIT)
            if r.outputs != {"b": x + 2, "c": x + 2}:
                wrong.append((x, r.status, r.errors))

    threads = start_threads(caller, 8)
    assert all_ended(threads, 60.0)
    assert wrong == []


class _Recorder(PooledActor):
    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[Any, str]] = []

    def on_receive(self, message: Any) -> Any:
        self.got.append((message, threading.current_thread().name))
        return None


def test_post_turn_on_keeps_message_order_and_runs_on_the_free_pool() -> None:
    own = ThreadPool(1, "own")
    free = ThreadPool(1, "free")
    actor = _Recorder.start(_dispatcher=own)._actor_weakref()
    try:
        wait_for(lambda: actor.actor_inbox._token)  # idle
        for i in range(50):
            assert actor.post_turn_on(i, free)
            actor.post(("then", i))
        wait_for(lambda: len(actor.got) == 100)
        assert [m for m, _ in actor.got] == [x for i in range(50) for x in (i, ("then", i))]
        assert any(name.startswith("free") for _, name in actor.got)
    finally:
        actor.actor_ref.stop(timeout=WAIT)
        own.shutdown()
        free.shutdown()


def test_a_turn_dropped_by_the_free_pool_runs_on_the_actors_own() -> None:
    own = ThreadPool(1, "own")

    class Keeps(ThreadPool):
        def __init__(self) -> None:
            super().__init__(1, "keeps")
            self.kept: list[Droppable] = []

        def schedule_if_free(self, task: Any) -> bool:
            self.kept.append(task)  # taken, then dropped unrun (a pool shutting down)
            return True

    keeps = Keeps()
    actor = _Recorder.start(_dispatcher=own)._actor_weakref()
    try:
        wait_for(lambda: actor.actor_inbox._token)
        assert actor.post_turn_on("m", keeps)
        assert actor.post_turn_on("n", keeps)  # the turn is due already: queued only
        assert len(keeps.kept) == 1
        assert actor.got == []
        keeps.kept[0].on_drop()
        wait_for(lambda: len(actor.got) == 2)
        assert [m for m, _ in actor.got] == ["m", "n"]
        assert all(name.startswith("own") for _, name in actor.got)
    finally:
        actor.actor_ref.stop(timeout=WAIT)
        own.shutdown()


def test_post_turn_on_a_stopped_actor_is_a_dead_letter() -> None:
    own = ThreadPool(1, "own")
    free = ThreadPool(1, "free")
    actor = _Recorder.start(_dispatcher=own)._actor_weakref()
    actor.actor_ref.stop(timeout=WAIT)
    try:
        before = own.dead_letters
        assert actor.post_turn_on("late", free) is False
        assert own.dead_letters == before + 1
        assert actor.got == []
    finally:
        own.shutdown()
        free.shutdown()


def test_schedule_if_free() -> None:
    pool = ThreadPool(1, "free")
    release = threading.Event()
    ran: list[str] = []
    try:
        assert pool.schedule_if_free(lambda: ran.append("a"))  # a thread may start
        wait_for(lambda: ran == ["a"] and pool._idle == 1)
        assert pool.schedule_if_free(release.wait)  # the waiting thread takes it
        wait_for(lambda: pool._idle == 0)
        assert not pool.schedule_if_free(lambda: ran.append("b"))  # busy: not queued
        release.set()
        wait_for(lambda: pool._idle == 1)
        assert ran == ["a"]
    finally:
        release.set()
        pool.shutdown()
    assert not pool.schedule_if_free(lambda: ran.append("c"))  # shut down
    assert ran == ["a"]


def test_a_thread_that_cannot_start_leaves_no_dead_entry_and_nothing_queued(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pool = ThreadPool(2, "nostart")
    start = threading.Thread.start
    refuse = [True]

    def fake_start(self: threading.Thread) -> None:
        if refuse[0] and self.name.startswith("nostart"):
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", fake_start)
    ran: list[int] = []
    try:
        with pytest.raises(RuntimeError, match="can't start"):
            pool.schedule_queued(lambda: ran.append(1))
        assert not pool.schedule_if_free(lambda: ran.append(2))
        assert pool.thread_count == 0
        assert pool._queue.qsize() == 0
        refuse[0] = False
        pool.schedule_queued(lambda: ran.append(3))  # the pool works once threads start
        wait_for(lambda: ran == [3])
    finally:
        refuse[0] = False
        pool.shutdown()
    assert ran == [3]


def test_a_thread_that_cannot_start_leaves_the_task_to_a_busy_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pool = ThreadPool(2, "nostart")
    release = threading.Event()
    ran: list[int] = []
    try:
        pool.schedule_queued(release.wait)  # the one thread it has, busy
        wait_for(lambda: pool.thread_count == 1 and pool._idle == 0)
        start = threading.Thread.start

        def fake_start(self: threading.Thread) -> None:
            if self.name.startswith("nostart"):
                raise RuntimeError("can't start new thread")
            start(self)

        monkeypatch.setattr(threading.Thread, "start", fake_start)
        pool.schedule_queued(lambda: ran.append(1))  # accepted: no error
        assert pool.thread_count == 1
        assert not pool.schedule_if_free(lambda: ran.append(2))
        time.sleep(0.05)
        assert ran == []
        release.set()  # the busy thread is done: it takes the waiting task
        wait_for(lambda: ran == [1])
    finally:
        release.set()
        monkeypatch.undo()
        pool.shutdown()
    assert ran == [1]


def test_an_engine_starts_with_one_dispatcher_thread(engine_factory: Any) -> None:
    engine = engine_factory([Inc])
    assert engine._runtime.dispatcher.thread_count == 1


# --- the parked wait (Execution.park / wait_parked) ----------------------------------------


def test_a_parked_run_the_runtime_never_ends_returns_by_its_deadline(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The hand-over "succeeds" but the submission is lost (as if the worker died with
    # it): the parked caller still returns, TIMED_OUT by its waiter, at deadline + grace.
    from constellation.actors import _runtime
    from constellation.actors._handle import DEADLINE_GRACE

    engine = engine_factory([Inc], scheduler=SchedulerConfig(worker_threads=2))
    monkeypatch.setattr(_runtime.Runtime, "hand_over", lambda self, msg, parked: True)
    t0 = time.monotonic()
    r = engine.run("in x: Int\ny = Inc(x)\nout y\n", {"x": 1}, timeout=0.3)
    took = time.monotonic() - t0
    assert r.status.value == "timed_out", r
    assert r.errors, r
    assert r.errors[0].details.get("ended_by") == "waiter", r.errors
    assert 0.3 <= took < 0.3 + DEADLINE_GRACE + 1.0, took


def test_a_parked_run_waits_for_done_callbacks_like_result(engine_factory: Any) -> None:
    # result() returns once the done callbacks have run; wait_parked keeps that.
    from constellation.actors._handle import Execution

    engine = engine_factory([Inc], scheduler=SchedulerConfig(worker_threads=2))
    pipeline = engine.compile(_DIAMOND)
    ran: list[int] = []
    park = Execution.park

    def park_with_callback(self: Execution) -> None:
        park(self)
        self.add_done_callback(lambda r: (time.sleep(0.2), ran.append(1)))

    mp = pytest.MonkeyPatch()
    mp.setattr(Execution, "park", park_with_callback)
    try:
        r = engine.run(pipeline, {"x": 1}, timeout=WAIT)
    finally:
        mp.undo()
    assert r.ok, r.errors
    assert ran == [1]


def test_many_parked_callers_and_cancels_at_once(engine_factory: Any) -> None:
    # Parked run()s from 6 threads while 2 more cancel whatever is running: every run()
    # returns (completed or cancelled), none hangs, and the engine goes on.
    engine = engine_factory([Hold], scheduler=SchedulerConfig(worker_threads=2,
                                                              max_concurrency=4))
    pipeline = engine.compile("in x: Int\na = Hold(x)\nb = Hold(a)\nout b\n")
    bad: list[Any] = []
    stop = threading.Event()

    def caller(i: int) -> None:
        for _ in range(40):
            r = engine.run(pipeline, {"x": 1}, timeout=WAIT)
            if r.status.value not in ("completed", "cancelled"):
                bad.append(r)

    def canceller(i: int) -> None:
        while not stop.is_set():
            for h in list(engine._runtime.supervisor_actor.running.values()):
                h.handle.cancel()
            time.sleep(0.001)

    cancellers = start_threads(canceller, 2)
    callers = start_threads(caller, 6)
    assert all_ended(callers, 60.0)
    stop.set()
    assert all_ended(cancellers, 10.0)
    assert bad == []
    assert engine.run(pipeline, {"x": 1}, timeout=WAIT).outputs == {"b": 1}


# --- the wake at the end of the finishing turn ------------------------------------------


def test_a_parked_run_is_woken_after_the_rest_of_the_finishing_turn(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The thread that ends a parked run()'s execution sets the result, tells the
    # supervisor, and only then wakes the caller (woken earlier, it would wait for the
    # GIL that thread still holds). By the time run() returns, the supervisor's turn for
    # the end has run: with this order, never after.
    from constellation.actors._messages import ExecutionFinished

    engine = engine_factory([Inc], scheduler=SchedulerConfig(worker_threads=2))
    pipeline = engine.compile(_DIAMOND)
    told: list[str] = []
    receive = _supervisor.Supervisor.on_receive

    def on_receive(self: Any, message: Any) -> Any:
        if type(message) is ExecutionFinished:
            time.sleep(0.03)  # the GIL is free: a caller woken before this returns first
            told.append(message.handle.execution_id)
        return receive(self, message)

    monkeypatch.setattr(_supervisor.Supervisor, "on_receive", on_receive)
    for _ in range(10):
        execution = engine._submit(pipeline, {"x": 1}, WAIT, "normal", None, parked=True)
        r = execution.wait_parked()
        assert r.ok, r.errors
        assert told[-1:] == [execution.execution_id]


def test_a_parked_run_is_woken_when_the_rest_of_the_finishing_turn_raises(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever escapes the end of the finishing turn after the result was set (here the
    # supervisor's delivery raising SystemExit, as an injected exception would), the
    # caller is woken at once with the result -- not at the end of its 1 s wait slice.
    from constellation.actors import _runtime
    from constellation.actors._messages import ExecutionFinished

    engine = engine_factory([Inc], scheduler=SchedulerConfig(worker_threads=2))
    pipeline = engine.compile(_DIAMOND)
    post = _runtime.Runtime.post_to_supervisor

    def post_to_supervisor(self: Any, message: Any) -> bool:
        if type(message) is ExecutionFinished:
            raise SystemExit("injected")
        return post(self, message)  # type: ignore[no-any-return]

    monkeypatch.setattr(_runtime.Runtime, "post_to_supervisor", post_to_supervisor)
    t0 = time.monotonic()
    r = engine.run(pipeline, {"x": 1}, timeout=WAIT)
    took = time.monotonic() - t0
    monkeypatch.undo()
    assert r.ok, r.errors
    assert r.outputs == {"b": 3, "c": 3}
    assert took < 0.9, took  # woken by the finally, not by the slice's end (1 s)


def test_a_waiter_that_completed_it_first_is_not_woken_twice(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The waiter ends an overdue execution itself (the supervisor misses the deadline
    # here): its _complete wins and releases the parked lock. The execution actor's
    # _complete, when the call returns later, loses and must not release it again (a
    # second release of a Lock raises RuntimeError in the actor's turn: an internal
    # error).
    from constellation.actors._handle import DEADLINE_GRACE
    from constellation.actors._messages import DeadlineReached

    engine = engine_factory([Hold], scheduler=SchedulerConfig(worker_threads=2))
    pipeline = engine.compile("in x: Int\ny = Hold(x)\nout y\n")
    stop_one = _supervisor.Supervisor._stop_one

    def deaf(self: Any, message: Any) -> None:
        if type(message) is not DeadlineReached:
            stop_one(self, message)

    monkeypatch.setattr(_supervisor.Supervisor, "_stop_one", deaf)
    hold_ms = int((0.2 + DEADLINE_GRACE + 0.3) * 1000)
    t0 = time.monotonic()
    r = engine.run(pipeline, {"x": hold_ms}, timeout=0.2)
    assert time.monotonic() - t0 < 0.2 + DEADLINE_GRACE + 1.0
    assert r.status.value == "timed_out", r
    assert r.errors[0].details.get("ended_by") == "waiter", r.errors
    # The call returns, the actor finishes (and loses): the supervisor hears of it.
    wait_for(lambda: not engine._runtime.supervisor_actor.running, WAIT)
    monkeypatch.undo()
    assert engine.health()["runtime"]["internal_errors"] == 0
    assert engine.run(pipeline, {"x": 1}, timeout=WAIT).outputs == {"y": 1}
