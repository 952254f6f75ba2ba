"""Hostile tests of two runtime changes: ca62df7 (``NodeActor._completed_here``: a node
without call options whose call returned a value of the exact output type does its last
turn where the call returned, without an AttemptFinished message; ``Attempt.finish``
inlined) and f1ad697 (``Borrowed`` in actors/_pool.py: the cache and secrets lookups a
node may give up on, with the worker pool compensated).

As in test_found.py: a test whose docstring starts "Found (since fixed)" recorded a bug
(what happened, what should, where it came from) and now guards its fix; the others are
attacks the engine withstood, kept because they drive the new paths (the ones that need
an exact interleaving get it by wrapping the runtime function where it must happen).
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from typing import Any

import pytest

from constellation import (
    Backends,
    Constellation,
    ExecutionStatus,
    LifecycleState,
    PipelineBuilder,
    SchedulerConfig,
    module,
)
from constellation.actors._node import NodeActor, PlainNode
from constellation.core.errors import ShuttingDownError
from constellation.core.results import NodeStatus
from constellation.spi import InMemoryCacheBackend, InMemoryMetrics, NoOpListener
from tests.chaos.test_found import _ctrl_c_at
from tests.constellation import process_modules as pm
from tests.faults import WAIT, GatedCache, Inc, fresh_run_works
from tests.waiting import reached, wait_for

CHAIN = "in x: Int\na = Inc(x)\nb = Inc(a)\nout b"
CACHED = "in x: Int\na = Inc(x) with cache: 1min\nb = Inc(a)\nout b"
SECRET = "hunter2-the-vault-value"


_PLAIN_APPLIES = PlainNode.__dict__["applies"]


@pytest.fixture(autouse=True)
def _node_actors(monkeypatch: pytest.MonkeyPatch) -> None:
    """These attacks drive NodeActor's own paths (``_completed_here`` ...): every node
    gets a NodeActor here, as nodes with options, ``async def`` modules and calls on a
    user's executor do. (A node without any runs as a PlainNode otherwise: its attacks
    are in test_plain_nodes.py.) A test's ``monkeypatch.undo()`` undoes this too."""
    monkeypatch.setattr(PlainNode, "applies", staticmethod(lambda *_: False))


def _fresh(engine: Constellation) -> None:
    fresh_run_works(engine, CHAIN, {"b": 3}, timeout=5)


class Events(NoOpListener):
    """Counts module events per (execution, node, attempt)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.finished: collections.Counter[tuple[str, str, int]] = collections.Counter()
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
        with self.lock:
            self.finished[(event.execution_id, event.node, event.attempt)] += 1


def _settled(pool: Any, timeout: float = WAIT) -> None:
    """Wait until ``pool`` counts no thread as lent and holds no more than its size."""
    deadline = time.monotonic() + timeout
    while pool._blocked != 0 or pool.thread_count > pool.max_threads:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{pool.name}: blocked={pool._blocked} threads={pool.thread_count} "
                f"max={pool.max_threads} idle={pool._idle} "
                f"unassigned={pool._unassigned} queued={pool._queue.qsize()}")
        time.sleep(0.005)


def _spy_fast_path(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record what every NodeActor._completed_here returns (True: the new path ran)."""
    original = NodeActor._completed_here
    seen: list[bool] = []

    def spy(self: NodeActor, attempt: Any, value: Any, duration_ms: float) -> bool:
        done = original(self, attempt, value, duration_ms)
        seen.append(done)
        return done

    monkeypatch.setattr(NodeActor, "_completed_here", spy)
    return seen


# --- ca62df7: the last turn where the call returned --------------------------------------


@pytest.mark.parametrize("nodes", ["actors", "plain"])
@pytest.mark.parametrize("helps", [False, True])
def test_concurrent_runs_submits_and_cancels_lose_and_duplicate_nothing(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, helps: bool,
        nodes: str) -> None:
    """Six threads run(), submit() and cancel() a diamond of quick modules: every
    completed execution has the right outputs, every module call that completed has
    exactly one module_finished event, with the duration of its record; nothing is
    counted in flight or lent to the pool afterwards. With NodeActors (the fast path
    of their last turn) and with PlainNodes (nodes without an actor)."""
    seen = _spy_fast_path(monkeypatch)
    if nodes == "plain":
        monkeypatch.setattr(PlainNode, "applies", _PLAIN_APPLIES)

    @module
    def Jitter(x: int) -> int:
        if x % 3 == 0:
            time.sleep(0.001)
        return x + 1

    events = Events()
    engine = engine_factory([Inc, Jitter], backends=Backends(listener=events),
                            scheduler=SchedulerConfig(caller_helps=helps, worker_threads=4))
    pipeline = engine.compile("in x: Int\na = Inc(x)\nb = Jitter(a)\nc = Inc(a)\n"
                              "d = Inc(b)\nout d\nout c")
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        try:
            for i in range(50):
                x = k * 1000 + i
                if i % 2:
                    r = engine.run(pipeline, {"x": x}, timeout=WAIT)
                else:
                    h = engine.submit(pipeline, {"x": x}, timeout=WAIT)
                    if i % 4 == 0:
                        threading.Thread(target=h.cancel).start()
                        h.cancel()
                    r = h.result(timeout=WAIT)
                with lock:
                    results.append((x, r))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 300
    for x, r in results:
        if r.status is ExecutionStatus.COMPLETED:
            assert r.outputs == {"d": x + 3, "c": x + 2}
        else:
            assert r.status is ExecutionStatus.CANCELLED, (r.status, r.errors)
    assert (True in seen) if nodes == "actors" else (seen == [])  # the path meant ran
    engine.shutdown(drain_timeout=5)  # delivers every event
    assert set(events.finished.values()) == {1}, "a module_finished event twice"
    assert set(events.started.values()) == {1}, "a module_started event twice"
    for _, r in results:
        for name, record in r.modules.items():
            if record.status is NodeStatus.COMPLETED:
                key = (r.execution_id, name, record.attempts)
                assert events.finished[key] == 1, key
                assert events.durations[key] == record.duration_ms
    runtime = engine._runtime
    assert runtime.internal_errors == 0
    assert runtime.workers._blocked == 0
    assert engine.inflight_count == 0


@pytest.mark.parametrize("helps", [False, True])
@pytest.mark.parametrize("how", ["cancel", "deadline", "sibling"])
def test_a_call_returning_after_its_execution_ended_is_a_dead_letter(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, how: str, helps: bool) -> None:
    """The call returned (Attempt.finish won), then -- before _completed_here looks --
    the execution ends (cancel() from another thread, its deadline, a sibling failing)
    and the node handles its Abandon and stops. _completed_here must decline (False):
    the result is a dead letter, the execution keeps the status it ended with, the
    node is CANCELLED, nothing is lent to the pool and the engine goes on."""
    original = NodeActor._completed_here
    seen: list[bool] = []
    sibling_may_fail = threading.Event()

    @module
    def Fails(x: int) -> int:
        sibling_may_fail.wait(WAIT)
        raise ValueError("the sibling failed")

    def late(self: NodeActor, attempt: Any, value: Any, duration_ms: float) -> bool:
        if self.node.name == "Inc" and not seen:
            if how == "cancel":
                threading.Thread(target=self.handle.cancel).start()
            elif how == "sibling":
                sibling_may_fail.set()
            reached(self.actor_stopped.is_set, WAIT)  # its Abandon was handled
            done = original(self, attempt, value, duration_ms)
            seen.append(done)
            return done
        return original(self, attempt, value, duration_ms)

    monkeypatch.setattr(NodeActor, "_completed_here", late)
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
    wait_for(lambda: seen == [False], timeout=WAIT)
    wait_for(lambda: runtime.dead_letters > dead, timeout=WAIT)
    assert runtime.internal_errors == 0
    assert runtime.workers._blocked == 0
    monkeypatch.undo()
    sibling_may_fail.clear()
    _fresh(engine)


@pytest.mark.parametrize("helps", [False, True])
@pytest.mark.parametrize("how", ["cancel", "deadline", "sibling"])
def test_an_execution_ending_while_the_last_turn_runs_where_the_call_returned(
        engine_factory: Any, how: str, helps: bool) -> None:
    """The worst moment: _completed_here holds the node's turn (it is emitting
    module_finished) when the execution ends on another thread. Its NodeFinished and
    the node's Abandon become dead letters; the result is the ending's, the call's
    module_finished event is emitted once, and the engine goes on."""
    sibling_may_fail = threading.Event()

    @module
    def Fails(x: int) -> int:
        sibling_may_fail.wait(WAIT)
        raise ValueError("the sibling failed")

    events = Events()
    engine = engine_factory([Inc, Fails], backends=Backends(listener=events),
                            scheduler=SchedulerConfig(caller_helps=helps))
    observer = engine._runtime.observer
    original = observer.module_finished
    fired: list[str] = []

    def in_the_turn(handle: Any, node: str, mod: str, attempt: int, duration_ms: float,
                    error: str | None) -> None:
        if node == "Inc" and error is None and not fired:
            fired.append(threading.current_thread().name)
            if how == "cancel":
                threading.Thread(target=handle.cancel).start()
            elif how == "sibling":
                sibling_may_fail.set()
            reached(handle.done, WAIT)
        original(handle, node, mod, attempt, duration_ms, error)

    observer.module_finished = in_the_turn  # type: ignore[method-assign]
    source = "in x: Int\na = Inc(x)\nc = Fails(x)\nb = Inc(a)\nout b\nout c" \
        if how == "sibling" else CHAIN
    pipeline = engine.compile(source)
    runtime = engine._runtime
    dead = runtime.dead_letters
    r = engine.run(pipeline, {"x": 1}, timeout=0.3 if how == "deadline" else WAIT)
    expected = {"cancel": ExecutionStatus.CANCELLED, "deadline": ExecutionStatus.TIMED_OUT,
                "sibling": ExecutionStatus.FAILED}[how]
    assert fired
    assert r.status is expected, (r.status, r.errors)
    assert r.modules["Inc"].status is NodeStatus.CANCELLED
    wait_for(lambda: runtime.dead_letters >= dead + 2, timeout=WAIT)
    observer.module_finished = original  # type: ignore[method-assign]
    key = (r.execution_id, "Inc", 1)
    wait_for(lambda: events.finished[key] == 1, timeout=WAIT)
    assert runtime.internal_errors == 0
    assert runtime.workers._blocked == 0
    _fresh(engine)
    engine.shutdown(drain_timeout=5)
    assert events.finished[key] == 1


@pytest.mark.parametrize("helps", [False, True])
def test_module_finished_is_emitted_once_with_the_calls_duration(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, helps: bool) -> None:
    seen = _spy_fast_path(monkeypatch)

    @module
    def Sleepy(x: int) -> int:
        time.sleep(0.02)
        return x + 1

    events = Events()
    metrics = InMemoryMetrics()
    engine = engine_factory([Sleepy], backends=Backends(listener=events, metrics=metrics),
                            scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile("in x: Int\na = Sleepy(x)\nout a")
    results = [engine.run(pipeline, {"x": i}, timeout=WAIT) for i in range(3)]
    assert all(r.status is ExecutionStatus.COMPLETED for r in results)
    assert seen == [True, True, True]
    engine.shutdown(drain_timeout=5)
    tags = {"module_name": "Sleepy"}
    assert metrics.counter_value("constellation.module.completed", tags) == 3
    durations = [r.modules["Sleepy"].duration_ms for r in results]
    assert all(d >= 20.0 for d in durations), durations
    assert metrics.observations("constellation.module.duration_ms", tags) == durations
    for r, d in zip(results, durations, strict=True):
        key = (r.execution_id, "Sleepy", 1)
        assert events.started[key] == 1
        assert events.finished[key] == 1
        assert events.durations[key] == d


class Color(enum.IntEnum):
    RED = 1


class MyInt(int):
    pass


@pytest.mark.parametrize("value", [True, Color.RED, MyInt(5), 2**63, -(2**63) - 1],
                         ids=["bool", "IntEnum", "int-subclass", "2**63", "-2**63-1"])
def test_an_int_output_that_is_not_exactly_an_int64_goes_the_checked_path(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, value: Any) -> None:
    seen = _spy_fast_path(monkeypatch)

    @module
    def Returns(x: int) -> int:
        return value if x == 0 else x  # type: ignore[no-any-return]

    engine = engine_factory([Returns])
    r = engine.run("in x: Int\na = Returns(x)\nout a", {"x": 0}, timeout=WAIT)
    assert r.status is ExecutionStatus.FAILED, r.outputs
    assert r.errors[0].code == "E302"
    assert seen == []
    ok = engine.run("in x: Int\na = Returns(x)\nout a", {"x": -(2**63)}, timeout=WAIT)
    assert ok.status is ExecutionStatus.COMPLETED
    assert type(ok.outputs["a"]) is int
    assert seen == [True]


@pytest.mark.parametrize("helps", [False, True])
@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_base_exception_from_a_quick_module_fails_only_its_call(
        engine_factory: Any, helps: bool, exc: type[BaseException]) -> None:
    """Raised by the module itself (not a signal): on a worker thread, and -- once the
    module is measured quick -- on the caller that helps."""
    @module
    def Sometimes(x: int) -> int:
        if x == 99:
            raise exc("from the module")
        return x

    engine = engine_factory([Inc, Sometimes], scheduler=SchedulerConfig(caller_helps=helps))
    pipeline = engine.compile("in x: Int\na = Inc(x)\nb = Sometimes(a)\nout b")
    for i in range(30):
        assert engine.run(pipeline, {"x": i}, timeout=WAIT).status is ExecutionStatus.COMPLETED
    r = engine.run(pipeline, {"x": 98}, timeout=WAIT)
    assert r.status is ExecutionStatus.FAILED
    assert r.errors[0].code == "E300"
    assert exc.__name__ in r.errors[0].message
    assert engine.state is LifecycleState.RUNNING
    assert engine._runtime.internal_errors == 0
    _fresh(engine)


def test_ctrl_c_landing_in_the_last_turn_run_where_the_call_returned(
        engine_factory: Any) -> None:
    """A Ctrl-C while the helping caller runs _completed_here (runtime code): run()
    raises KeyboardInterrupt, the engine stays RUNNING, nothing is lent to the pool."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=True))
    pipeline = engine.compile(CHAIN)
    for i in range(30):  # Inc measured quick: the caller runs it, and its last turn
        assert engine.run(pipeline, {"x": i}, timeout=5).status is ExecutionStatus.COMPLETED
    fired, raised, _ = _ctrl_c_at("_completed_here",
                                  lambda: engine.run(pipeline, {"x": 1}, timeout=5))
    assert fired
    assert raised
    assert engine.state is LifecycleState.RUNNING
    assert engine._runtime.internal_errors == 0
    _fresh(engine)
    assert engine._runtime.workers._blocked == 0


@module
def Nap(x: int) -> int:
    time.sleep(0.0005 * (x % 5))
    return x + 1


def _shutdown_while_clients_run(helps: bool, rep: int) -> None:
    engine = Constellation([Inc, Nap], backends=Backends(listener=Events()),
                           scheduler=SchedulerConfig(caller_helps=helps, worker_threads=3))
    pipeline = engine.compile("in x: Int\na = Nap(x)\nb = Inc(a)\nc = Nap(b)\n"
                              "d = Inc(x)\nout c\nout d")
    handles: list[Any] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(k: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if (i + k) % 2:
                    assert engine.run(pipeline, {"x": i}, timeout=3).status.is_final
                else:
                    handles.append(engine.submit(pipeline, {"x": i}, timeout=3))
            except ShuttingDownError:
                return
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.01 + 0.005 * rep)
    t0 = time.monotonic()
    engine.shutdown(drain_timeout=(0.0, 0.01, 0.05)[rep % 3])
    assert time.monotonic() - t0 < 8.0
    stop.set()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    for h in handles:
        assert h.result(timeout=1).status.is_final
    assert engine.inflight_count == 0
    assert engine._runtime.internal_errors == 0


@pytest.mark.parametrize("helps", [False, True])
def test_shutdown_while_quick_calls_are_returning(helps: bool) -> None:
    """shutdown() (drain 0-50 ms) while four threads run() and submit() chains of
    quick modules whose calls keep returning: every handle ends, nothing stays in
    flight, submit raises nothing but ShuttingDownError."""
    for rep in range(8):
        _shutdown_while_clients_run(helps, rep)


# --- f1ad697: Borrowed lookups ---------------------------------------------------------------


@pytest.mark.parametrize("helps", [False, True])
@pytest.mark.parametrize("backend", ["blocks", "KeyboardInterrupt", "SystemExit"])
def test_many_executions_sharing_a_blocking_cache_leave_the_pool_as_it_was(
        engine_factory: Any, helps: bool, backend: str) -> None:
    """Executions on five threads share a cache whose get() blocks (then answers, or
    raises a BaseException), while they time out and are cancelled: once everything
    has ended, no thread is counted as lent (_blocked == 0) and the pool is back to
    worker_threads."""
    gate = threading.Event()

    class Hostile(InMemoryCacheBackend):
        def get(self, key: str) -> Any:
            gate.wait(WAIT)
            if backend == "KeyboardInterrupt":
                raise KeyboardInterrupt("from the cache")
            if backend == "SystemExit":
                raise SystemExit("from the cache")
            return super().get(key)

    engine = engine_factory([Inc], backends=Backends(cache=Hostile()),
                            scheduler=SchedulerConfig(worker_threads=2, caller_helps=helps))
    pipeline = engine.compile(CACHED)
    workers = engine._runtime.workers
    handles: list[Any] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(12):
            h = engine.submit(pipeline, {"x": i % 4},
                              timeout=(0.05, 0.1, 0.3, WAIT)[(i + k) % 4])
            if (i + k) % 3 == 0:
                h.cancel()
            with lock:
                handles.append(h)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.35)
    gate.set()
    for t in threads:
        t.join(WAIT)
    statuses = collections.Counter(h.result(timeout=WAIT).status for h in handles)
    assert set(statuses) <= {ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED,
                             ExecutionStatus.TIMED_OUT}, statuses
    wait_for(lambda: workers._blocked == 0, timeout=WAIT)
    r = engine.run(pipeline, {"x": 100}, timeout=WAIT)
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    assert r.outputs == {"b": 102}
    # Threads started in place of given-up lookups retire when they next finish a task
    # (idle ones only then: see test_surplus_threads_retire_when_the_lent_thread_returns).
    plain = engine.compile(CHAIN)
    for i in range(40):
        assert engine.submit(plain, {"x": i}).result(timeout=WAIT).outputs == {"b": i + 2}
    _settled(workers)
    assert engine._runtime.internal_errors == 0


def test_a_lookup_given_up_before_its_task_started_never_reaches_the_cache(
        engine_factory: Any) -> None:
    release = threading.Event()
    entered = threading.Event()
    asked: list[str] = []

    @module
    def Hold(x: int) -> int:
        entered.set()
        release.wait(WAIT)
        return x

    class Counting(InMemoryCacheBackend):
        def get(self, key: str) -> Any:
            asked.append(key)
            return super().get(key)

    engine = engine_factory([Hold, Inc], backends=Backends(cache=Counting()),
                            scheduler=SchedulerConfig(worker_threads=1))
    workers = engine._runtime.workers
    try:
        hold = engine.submit("in x: Int\na = Hold(x)\nout a", {"x": 1}, timeout=WAIT)
        assert entered.wait(WAIT)  # the only worker thread is taken
        cached = engine.submit(CACHED, {"x": 1}, timeout=WAIT)
        wait_for(lambda: workers._queue.qsize() == 1, timeout=WAIT)  # its lookup waits
        cached.cancel()
        assert cached.result(timeout=WAIT).status is ExecutionStatus.CANCELLED
    finally:
        release.set()
    assert hold.result(timeout=WAIT).status is ExecutionStatus.COMPLETED
    wait_for(lambda: workers._blocked == 0 and workers._queue.qsize() == 0
             and workers.thread_count <= 1, timeout=WAIT)
    assert asked == []
    assert engine.run(CACHED, {"x": 1}, timeout=WAIT).outputs == {"b": 3}
    assert len(asked) == 1
    assert workers._blocked == 0


def test_giving_up_a_queued_lookup_lends_no_thread(engine_factory: Any) -> None:
    """Found (since fixed): Borrowed.give_up (actors/_pool.py) counts a thread as lent
    (compensate(+1)) even when the lookup's task has not started -- it only waits in the
    pool's queue and holds no thread. The pool then starts a thread it does not need,
    which takes the next queued lookup of an execution that is still running and goes
    into the hung backend: with worker_threads=1, cancelling one queued lookup makes a
    second lookup enter the blocked cache and the pool run 2 threads. At scale
    (worker_threads=2, 800 executions on a hung cache, cancel_all) the pool peaks at
    ~186 threads, ~183 of them stuck in the backend. Expected: +1 only for a lookup
    given up while it runs (a queued one is just skipped when its task starts)."""
    hung = GatedCache(hang_get=True)
    gate, asked = hung.gate, hung.asked

    engine = engine_factory([Inc], backends=Backends(cache=hung),
                            scheduler=SchedulerConfig(worker_threads=1))
    workers = engine._runtime.workers
    try:
        pipeline = engine.compile(CACHED)
        running = engine.submit(pipeline, {"x": 1}, timeout=WAIT)  # its lookup hangs
        wait_for(lambda: len(asked) == 1, timeout=WAIT)
        queued = engine.submit(pipeline, {"x": 2}, timeout=WAIT)
        wait_for(lambda: workers._queue.qsize() == 1, timeout=WAIT)
        behind = engine.submit(pipeline, {"x": 3}, timeout=WAIT)
        wait_for(lambda: workers._queue.qsize() == 2, timeout=WAIT)
        queued.cancel()  # its lookup never started: no thread of the pool was lost
        assert queued.result(timeout=WAIT).status is ExecutionStatus.CANCELLED
        # The lookup behind it must wait for the pool's one thread, not get a new one.
        entered = reached(lambda: len(asked) > 1, 1.0)
        assert not entered, "a lookup entered the hung cache on a thread lent for nothing"
        assert workers.thread_count <= workers.max_threads
    finally:
        gate.set()
    for h in (running, behind):
        assert h.result(timeout=WAIT).status is ExecutionStatus.COMPLETED


def test_a_cache_whose_set_blocks_does_not_starve_other_pipelines(
        engine_factory: Any) -> None:
    """Found (since fixed): a cache backend whose set() blocks starves the engine:
    NodeActor._succeed (actors/_node.py) stores each result with
    runtime.workers_pool.schedule_queued(put), an untracked task on the module threads
    -- unlike the lookup (Borrowed), nothing ever compensates it. With worker_threads=2,
    two stores hanging in set() leave no thread for module calls: a pipeline without any
    cache ends TIMED_OUT (E502) although its executions are otherwise idle. Same bug
    class as the fixed blocking get()
    (test_found.py::test_a_blocking_cache_backend_does_not_starve_other_pipelines)."""
    stuck = GatedCache(hang_set=True)
    gate, storing = stuck.gate, stuck.storing

    engine = engine_factory([Inc], backends=Backends(cache=stuck),
                            scheduler=SchedulerConfig(worker_threads=2, caller_helps=False))
    try:
        cached = engine.compile("in x: Int\na = Inc(x) with cache: 1min\nout a")
        for i in range(2):
            r = engine.run(cached, {"x": i}, timeout=WAIT)
            assert r.status is ExecutionStatus.COMPLETED
        wait_for(lambda: len(storing) == 2, timeout=WAIT)  # both stores hang
        r = engine.run("in x: Int\na = Inc(x)\nout a", {"x": 1}, timeout=1.0)
        assert r.status is ExecutionStatus.COMPLETED, [e.code for e in r.errors]
    finally:
        gate.set()


def test_surplus_threads_retire_when_the_lent_thread_returns(engine_factory: Any) -> None:
    """Found (since fixed): the worker pool keeps more threads than worker_threads for
    good once a lent thread comes back. ThreadPool._worker (actors/_pool.py) retires a
    surplus thread only when that thread finishes a task (len(threads) > max_threads +
    _blocked and nothing queued), so threads started while _blocked was raised that are
    idle when compensate(-1) lowers it are never retired (until more work arrives): here
    a quick module run by the helping caller (caller_helps) is abandoned at its deadline
    -- NodeActor._abandoned_thread (actors/_node.py) compensates the worker pool +1
    although the call holds none of its threads -- a second worker thread is started
    meanwhile, and the -1 comes from the caller's thread when the module returns: the
    pool of worker_threads=1 stays at 2 idle threads, _blocked == 0. The same happens
    with Borrowed cache lookups under load (a thread that runs several given-up lookups
    does several -1 but retires once): e.g. blocked=0, 3 idle threads for
    worker_threads=2 after test_many_executions_sharing_a_blocking_cache... on a loaded
    machine."""
    hold_in, hold_release = threading.Event(), threading.Event()
    quick_in, quick_release = threading.Event(), threading.Event()
    ran_on: list[str] = []

    @module
    def Hold(x: int) -> int:
        hold_in.set()
        hold_release.wait(WAIT)
        return x

    @module
    def Mostly(x: int) -> int:
        if x == 99:  # quick on average, blocks this once (on the helping caller)
            ran_on.append(threading.current_thread().name)
            quick_in.set()
            quick_release.wait(WAIT)
        return x

    engine = engine_factory([Hold, Mostly, Inc],
                            scheduler=SchedulerConfig(caller_helps=True, worker_threads=1))
    workers = engine._runtime.workers
    quick = engine.compile("in x: Int\na = Mostly(x)\nout a")
    for i in range(30):  # measured quick: the caller runs it itself from now on
        assert engine.run(quick, {"x": i}, timeout=WAIT).status is ExecutionStatus.COMPLETED
    failures: list[BaseException] = []

    def meanwhile() -> None:
        try:
            hold = engine.submit("in x: Int\na = Hold(x)\nout a", {"x": 1}, timeout=WAIT)
            assert hold_in.wait(WAIT)  # the pool's one thread is busy
            assert quick_in.wait(WAIT)
            wait_for(lambda: workers._blocked == 1, timeout=WAIT)  # abandoned: +1
            # A call now gets a second thread (max_threads + _blocked = 2).
            plain = engine.submit(CHAIN, {"x": 1}, timeout=WAIT)
            assert plain.result(timeout=WAIT).status is ExecutionStatus.COMPLETED
            hold_release.set()
            assert hold.result(timeout=WAIT).status is ExecutionStatus.COMPLETED
            wait_for(lambda: workers._idle == 2 == workers.thread_count, timeout=WAIT)
        except BaseException as exc:
            failures.append(exc)
        finally:
            hold_release.set()
            quick_release.set()  # the call returns on the caller's thread: -1 there

    helper = threading.Thread(target=meanwhile)
    helper.start()
    r = engine.run(quick, {"x": 99}, timeout=0.3)
    helper.join(WAIT)
    assert not failures, failures
    assert ran_on == [threading.current_thread().name]
    assert r.status is ExecutionStatus.TIMED_OUT
    wait_for(lambda: workers._blocked == 0, timeout=WAIT)
    _settled(workers, timeout=1.0)


def test_stores_past_the_bound_are_dropped_counted_and_logged(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A cache that stopped answering: stores wait on the store threads up to a bound
    (MAX_PENDING_STORES, 2 here), then results are not stored -- counted in
    health()["runtime"]["cache_stores_dropped"] and logged -- and the pipelines run on."""
    import constellation.actors._runtime as runtime_module

    monkeypatch.setattr(runtime_module, "MAX_PENDING_STORES", 2)
    stuck = GatedCache(hang_set=True)
    gate, storing = stuck.gate, stuck.storing

    engine = engine_factory([Inc], backends=Backends(cache=stuck))
    try:
        cached = engine.compile("in x: Int\na = Inc(x) with cache: 1min\nout a")
        for i in range(5):
            r = engine.run(cached, {"x": i}, timeout=WAIT)
            assert r.status is ExecutionStatus.COMPLETED
            assert r.outputs == {"a": i + 1}
        assert engine.health()["runtime"]["cache_stores_dropped"] == 3
        assert "cache stores are waiting" in caplog.text
        assert engine._runtime.pending_stores == 2
    finally:
        gate.set()
    wait_for(lambda: engine._runtime.pending_stores == 0, timeout=WAIT)
    assert len(storing) == 2


class RaisingBase:
    """A secrets backend that raises a BaseException quoting what it read."""

    def __init__(self, exc: type[BaseException]) -> None:
        self.exc = exc

    def get(self, name: str) -> str | None:
        raise self.exc(f"vault said: token {SECRET} expired")

    def close(self) -> None:
        pass


@module("Hostile.Sec")
def _sec(x: int, ctx: Any) -> str:
    return ctx.secret("payments_key")[:1]


@pytest.mark.parametrize("where", ["ctx", "process"])
@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
def test_a_secrets_backend_raising_a_base_exception_fails_with_e320_and_no_message(
        where: str, exc: type[BaseException]) -> None:
    """Found (since fixed): a secrets backend raising a BaseException (SystemExit,
    KeyboardInterrupt) is not a secrets failure: lookup_secret (actors/_context.py,
    `except Exception as exc`) lets it through, so ctx.secret() -- and, on a process
    pool, the Borrowed lookup in RemoteRunner._look_up_and_launch (actors/_runners.py)
    -- turns it into E300 'module ... raised SystemExit: <the backend's message>' (the
    module never ran on the process pool) instead of E320, and the backend's message,
    which lookup_secret deliberately never repeats because it may quote what it read,
    reaches the error, records and events unredacted. A backend raising RuntimeError
    gets E320 without its message."""
    backends = Backends(secrets=RaisingBase(exc))
    if where == "ctx":
        with Constellation([_sec], backends=backends) as engine:
            r = engine.run("in x: Int\na = Hostile.Sec(x)\nout a", {"x": 1}, timeout=WAIT)
    else:
        b = PipelineBuilder("remote")
        b.output("o", b.call(pm.remote_charge, amount=1, ran=""))
        with Constellation([pm.remote_charge], executor="process:1",
                           backends=backends) as engine:
            r = engine.run(b, {}, timeout=30)
    assert r.status is ExecutionStatus.FAILED
    assert SECRET not in r.errors[0].message
    assert r.errors[0].code == "E320", r.errors[0]


class Blocking:
    """A secrets backend whose lookups block until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def get(self, name: str) -> str | None:
        self.entered.set()
        self.release.wait(WAIT)
        return SECRET

    def close(self) -> None:
        self.release.set()


def test_blocked_secret_lookups_given_up_on_a_process_pool_leave_the_io_pool_as_it_was(
) -> None:
    """More hung secrets lookups (Borrowed, on the engine's I/O pool of 8 threads) than
    threads, ended by attempt timeouts, deadlines and cancels: once the backend answers,
    the I/O pool counts nothing as lent and is back to its size, and calls run again."""
    backend = Blocking()
    b = PipelineBuilder("remote")
    b.output("o", b.call(pm.remote_charge, amount=1, ran=""))
    t = PipelineBuilder("remote-timeout")
    t.output("o", t.call(pm.remote_charge, options={"timeout": 0.1}, amount=1, ran=""))
    try:
        with Constellation([pm.remote_charge], executor="process:1",
                           backends=Backends(secrets=backend)) as engine:
            plain, timed = engine.compile(b), engine.compile(t)
            handles = []
            for i in range(12):
                h = engine.submit(timed if i % 3 == 0 else plain, {},
                                  timeout=(0.1, 0.3, 30.0)[i % 3])
                if i % 3 == 2:
                    h.cancel()
                handles.append(h)
            statuses = {h.result(timeout=WAIT).status for h in handles}
            assert ExecutionStatus.COMPLETED not in statuses
            io = engine._runtime._io_pool
            assert io is not None
            backend.release.set()
            wait_for(lambda: io._blocked == 0 and io.thread_count <= io.max_threads,
                     timeout=WAIT)
            r = engine.run(b, {}, timeout=30)
            assert r.status is ExecutionStatus.COMPLETED, r.errors
            assert io._blocked == 0
    finally:
        backend.release.set()
