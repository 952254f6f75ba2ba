"""The caller helps: a thread in ``engine.run()`` runs its own execution's work."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import pytest

from constellation import Constellation, ExecutionStatus, SchedulerConfig, module
from constellation.actors import _plan
from constellation.actors._actor import PooledActor, _Inbox
from tests.waiting import wait_for

WAIT = 10.0
HELPS = SchedulerConfig(caller_helps=True)
CHAIN = "in x: Int\n" + "".join(
    f"a{i} = Tag({'x' if i == 0 else f'a{i - 1}'})\n" for i in range(8)) + "out a7"

calls: collections.Counter[tuple[int, str]] = collections.Counter()
calls_lock = threading.Lock()


@module
def Tag(x: int) -> int:
    """Records (the run's tag, the thread) and passes the tag on."""
    with calls_lock:
        calls[(x, threading.current_thread().name)] += 1
    return x


def _warm(engine: Constellation, pipeline: Any) -> None:
    # Modules run on the caller only once they are measured quick.
    for _ in range(20):
        engine.run(pipeline, {"x": -1}, timeout=WAIT)


def test_a_sequential_run_of_quick_modules_runs_on_the_calling_thread(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # On a loaded machine one preempted call can lift Tag's average past the "quick"
    # threshold, and the adaptive placement then rightly sends it to a worker: this
    # test is about where quick calls run, so every measured module counts as quick.
    monkeypatch.setattr(_plan, "FAST_CALL_SECONDS", 1.0)
    engine = engine_factory([Tag], scheduler=HELPS)
    pipeline = engine.compile(CHAIN)
    _warm(engine, pipeline)
    calls.clear()
    for _ in range(50):
        assert engine.run(pipeline, {"x": 7}, timeout=WAIT).outputs == {"a7": 7}
    me = threading.current_thread().name
    assert calls == {(7, me): 400}


def test_without_caller_helps_the_pools_run_everything(engine_factory: Any) -> None:
    engine = engine_factory([Tag], scheduler=SchedulerConfig(caller_helps=False))
    pipeline = engine.compile(CHAIN)
    _warm(engine, pipeline)
    calls.clear()
    for _ in range(20):
        engine.run(pipeline, {"x": 8}, timeout=WAIT)
    assert all(thread != threading.current_thread().name for _, thread in calls)


def test_a_helping_caller_never_runs_another_executions_module_calls(
        engine_factory: Any) -> None:
    engine = engine_factory([Tag], scheduler=SchedulerConfig(max_concurrency=4,
                                                             caller_helps=True))
    pipeline = engine.compile(CHAIN)
    _warm(engine, pipeline)
    calls.clear()
    stop = threading.Event()
    helpers: dict[int, str] = {}

    def caller(tag: int) -> None:
        helpers[tag] = threading.current_thread().name
        while not stop.is_set():
            assert engine.run(pipeline, {"x": tag}, timeout=WAIT).outputs == {"a7": tag}

    threads = [threading.Thread(target=caller, args=(t,), name=f"caller-{t}")
               for t in (1, 2, 3)]
    for t in threads:
        t.start()
    background = [engine.submit(pipeline, {"x": 100 + i}) for i in range(300)]
    for e in background:
        assert e.result(timeout=WAIT).status is ExecutionStatus.COMPLETED
    stop.set()
    for t in threads:
        t.join(WAIT)
    for tag, thread in calls:
        if thread.startswith("caller-"):
            assert helpers.get(tag) == thread, (tag, thread)


def test_helped_actors_never_run_two_turns_at_once_and_keep_message_order(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    in_turn: set[int] = set()
    overlaps: list[str] = []
    guard = threading.Lock()
    original = PooledActor._receive_posted

    def watched(self: PooledActor, message: Any) -> None:
        with guard:
            if id(self) in in_turn:
                overlaps.append(type(self).__name__)
            in_turn.add(id(self))
        try:
            original(self, message)
        finally:
            with guard:
                in_turn.discard(id(self))

    monkeypatch.setattr(PooledActor, "_receive_posted", watched)
    # Every turn, also those that skip on_receive (post_and_run's handlers, a node's
    # last turn where its call returned): whoever takes an actor's turn token holds it
    # alone until end_turn gives it back.
    owned: set[int] = set()
    taken: list[bool] = []
    take_turn = _Inbox.take_turn
    end_turn = PooledActor.end_turn

    def taking(self: _Inbox) -> bool:
        took = take_turn(self)
        if took:
            taken.append(True)
            with guard:
                if id(self) in owned:
                    overlaps.append("token")
                owned.add(id(self))
        return took

    def ending(self: PooledActor) -> None:
        with guard:
            owned.discard(id(self.actor_inbox))
        end_turn(self)

    monkeypatch.setattr(_Inbox, "take_turn", taking)
    monkeypatch.setattr(PooledActor, "end_turn", ending)
    engine = engine_factory([Tag], scheduler=SchedulerConfig(max_concurrency=3,
                                                             caller_helps=True))
    pipeline = engine.compile(CHAIN)
    _warm(engine, pipeline)

    def caller(tag: int) -> None:
        for _ in range(40):
            assert engine.run(pipeline, {"x": tag}, timeout=WAIT).outputs == {"a7": tag}

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    subs = [engine.submit(pipeline, {"x": 50 + i}) for i in range(100)]
    for t in threads:
        t.join(30)
    assert all(e.result(timeout=WAIT).outputs == {"a7": 50 + i} for i, e in enumerate(subs))
    assert overlaps == []
    assert taken, "the token watch saw no turn"


def test_a_helping_caller_respects_max_concurrency(engine_factory: Any) -> None:
    release = threading.Event()
    order: list[str] = []

    @module
    def Hold(x: int) -> int:
        order.append(f"hold-{x}")
        release.wait(WAIT)
        return x

    @module
    def Mark(x: int) -> int:
        order.append(f"mark-{x}")
        return x

    engine = engine_factory([Hold, Mark], scheduler=SchedulerConfig(max_concurrency=1,
                                                                   caller_helps=True))
    held = engine.submit("in x: Int\na = Hold(x)\nout a", {"x": 1})
    wait_for(lambda: order == ["hold-1"])
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(
        engine.run("in x: Int\na = Mark(x)\nout a", {"x": 2}, timeout=WAIT)))
    t.start()
    time.sleep(0.2)
    assert order == ["hold-1"]  # the caller's execution waits for the one slot
    release.set()
    t.join(WAIT)
    assert done[0].outputs == {"a": 2}
    assert order == ["hold-1", "mark-2"]
    assert held.result(timeout=WAIT).status is ExecutionStatus.COMPLETED


def test_a_helping_caller_waiting_on_a_long_module_sees_its_deadline(
        engine_factory: Any) -> None:
    @module
    def Slow(x: int) -> int:
        time.sleep(3)
        return x

    engine = engine_factory([Slow], scheduler=HELPS)
    t0 = time.monotonic()
    r = engine.run("in x: Int\na = Slow(x)\nout a", {"x": 1}, timeout=0.3)
    assert time.monotonic() - t0 < 1.5
    assert r.status is ExecutionStatus.TIMED_OUT
    assert "ended_by" not in r.errors[0].details  # the engine ended it, not the waiter


def test_a_helping_caller_is_cancelled_from_another_thread(engine_factory: Any) -> None:
    started = threading.Event()

    @module
    def Wait(x: int, ctx: Any) -> int:
        started.set()
        ctx.cancel_event.wait(WAIT)
        return x

    engine = engine_factory([Wait], scheduler=HELPS)
    pipeline = engine.compile("in x: Int\na = Wait(x)\nout a")

    def cancel_when_started() -> None:
        assert started.wait(WAIT)
        engine.cancel_all()

    t = threading.Thread(target=cancel_when_started)
    t.start()
    t0 = time.monotonic()
    r = engine.run(pipeline, {"x": 1}, timeout=WAIT)
    t.join(WAIT)
    assert time.monotonic() - t0 < 2.0
    assert r.status is ExecutionStatus.CANCELLED


def test_a_quick_module_on_the_caller_may_run_a_nested_pipeline(
        engine_factory: Any) -> None:
    holder: dict[str, Constellation] = {}

    @module
    def Outer(x: int) -> int:
        inner = holder["engine"].run("in x: Int\na = Tag(x)\nout a", {"x": x}, timeout=WAIT)
        return int(inner.outputs["a"]) + 1

    engine = engine_factory([Outer, Tag], scheduler=HELPS)
    holder["engine"] = engine
    pipeline = engine.compile("in x: Int\na = Outer(x)\nout a")
    for i in range(30):
        assert engine.run(pipeline, {"x": i}, timeout=WAIT).outputs == {"a": i + 1}


def test_ctrl_c_while_the_caller_runs_a_module_ends_the_run_at_once(
        engine_factory: Any) -> None:
    import signal

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    spinning = threading.Event()

    @module
    def Spin(x: int) -> int:
        if x == 1:
            spinning.set()
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:  # busy: Python code sees the signal
                pass
        return x

    engine = engine_factory([Spin], scheduler=HELPS)
    pipeline = engine.compile("in x: Int\na = Spin(x)\nout a")
    for _ in range(20):
        engine.run(pipeline, {"x": 0}, timeout=WAIT)  # measured quick: runs on the caller
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        assert spinning.wait(WAIT)
        signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    t0 = time.monotonic()
    outcome: Any
    try:
        outcome = engine.run(pipeline, {"x": 1}, timeout=WAIT)
    except KeyboardInterrupt as exc:  # arrived outside the module's code
        outcome = exc
    t.join(WAIT)
    assert time.monotonic() - t0 < 5.0
    if not isinstance(outcome, KeyboardInterrupt):
        assert outcome.status is ExecutionStatus.FAILED
        assert outcome.errors[0].details["exception"] == "KeyboardInterrupt"
    wait_for(lambda: engine.inflight_count == 0)
    assert engine.run(pipeline, {"x": 2}, timeout=WAIT).outputs == {"a": 2}


@pytest.mark.parametrize(("how", "where", "owner"), [
    ("run", "_pump", "Supervisor"),               # the supervisor's turn, run inline
    ("run", "_node_outcome", "ExecutionActor"),   # an execution's turn, run inline
    ("run", "take_turn", "_Inbox"),               # taking an actor's turn token
    ("run", "end_turn", "Supervisor"),            # giving the supervisor's token back
    ("submit", "take_turn", "_Inbox"),            # submit() hands the turn to a thread
])
def test_ctrl_c_landing_in_the_runtimes_code_on_the_main_thread_leaves_it_intact(
        engine_factory: Any, where: str, owner: str, how: str) -> None:
    import _thread
    import signal
    import sys

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    if signal.getsignal(signal.SIGINT) not in (signal.default_int_handler,) and \
            getattr(signal.getsignal(signal.SIGINT), "__module__", "") != \
            "constellation.actors._interrupts":
        pytest.skip("the test runner set its own SIGINT handler")
    engine = engine_factory([Tag], scheduler=HELPS)
    pipeline = engine.compile(CHAIN)
    for _ in range(5):
        engine.run(pipeline, {"x": 1}, timeout=WAIT)
    fired: list[bool] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name == where and \
                type(frame.f_locals.get("self")).__name__ == owner:
            fired.append(True)
            sys.setprofile(None)
            _thread.interrupt_main()  # "Ctrl-C" as that runtime function starts

    raised = False
    try:
        sys.setprofile(profile)
        try:
            if how == "run":
                engine.run(pipeline, {"x": 2}, timeout=WAIT)
            else:
                engine.submit(pipeline, {"x": 2}, timeout=WAIT).result(timeout=WAIT)
        finally:
            sys.setprofile(None)
        time.sleep(0.05)  # an interrupt on its way lands here at the latest
    except KeyboardInterrupt:
        raised = True
    assert fired, f"{owner}.{where} never ran on the calling thread"
    assert raised  # the user's Ctrl-C reached the caller
    # ... and the runtime was not hurt by it: the engine runs the next execution.
    wait_for(lambda: engine.inflight_count == 0)
    r = engine.run(pipeline, {"x": 3}, timeout=3)
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    assert engine.health()["status"] == "running"
    assert engine.health()["runtime"]["internal_errors"] == 0


@pytest.mark.parametrize("helps", [True, False])
def test_a_caller_is_never_the_thread_a_users_executor_blocks(helps: bool) -> None:
    """Found (since fixed): with ``executor=`` a node's turn hands its call over with the
    executor's ``submit()``, which may block (a full queue); a helping caller ran that
    turn, so run() outlived its deadline. The caller helps only with the engine's own
    worker pool."""
    from concurrent.futures import Executor, Future

    release = threading.Event()

    class Blocking(Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            release.wait(WAIT)
            raise RuntimeError("released")

    engine = Constellation([Tag], executor=Blocking(),
                           scheduler=SchedulerConfig(caller_helps=helps))
    try:
        t0 = time.monotonic()
        r = engine.run("in x: Int\na = Tag(x)\nout a", {"x": 1}, timeout=0.5)
        assert r.status is ExecutionStatus.TIMED_OUT
        assert time.monotonic() - t0 < 2.5
    finally:
        release.set()
        engine.shutdown(drain_timeout=2)


def test_a_helping_caller_never_starts_another_execution(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found (since fixed): a helping caller that ran the supervisor's turn ran the
    first step of every execution that turn started -- queued ones of others included
    (their inline transforms, a lambda's module calls). Each execution's first step is
    now its own turn: on its own helper, or on a dispatcher."""
    from constellation.actors._execution import ExecutionActor
    from constellation.actors._messages import ExecutionFinished
    from constellation.actors._supervisor import Supervisor

    began: list[tuple[int, str]] = []
    begin = ExecutionActor.begin

    def watched(self: ExecutionActor) -> None:
        with calls_lock:
            began.append((self.handle.inputs["x"], threading.current_thread().name))
        begin(self)

    release = threading.Event()

    @module
    def Hold(x: int) -> int:
        release.wait(WAIT)
        return x

    # The slot a finished execution frees is not refilled at once: the next submission
    # -- the helping caller's -- starts the queued ones, in its supervisor turn.
    on_receive = Supervisor.on_receive

    def lazy(self: Supervisor, message: Any) -> Any:
        if type(message) is ExecutionFinished:
            self.running.pop(message.handle.execution_id, None)
            return None
        return on_receive(self, message)

    engine = engine_factory([Tag, Hold], scheduler=SchedulerConfig(max_concurrency=1,
                                                                  caller_helps=True))
    held = engine.submit("in x: Int\na = Hold(x)\nout a", {"x": 0})
    wait_for(lambda: engine.inflight_count == 1)
    queued = [engine.submit(CHAIN, {"x": 100 + i}) for i in range(3)]
    wait_for(lambda: engine.queued_count == 3)
    monkeypatch.setattr(Supervisor, "on_receive", lazy)
    monkeypatch.setattr(ExecutionActor, "begin", watched)
    release.set()
    assert held.result(timeout=WAIT).status is ExecutionStatus.COMPLETED
    supervisor = engine._runtime.supervisor_actor
    wait_for(lambda: not supervisor.running)  # the slot is free, nothing refilled it
    assert engine.queued_count == 3
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(
        engine.run(CHAIN, {"x": 7}, timeout=WAIT)), name="caller-7")
    t.start()
    wait_for(lambda: bool(began))
    monkeypatch.setattr(Supervisor, "on_receive", on_receive)  # refill slots again
    engine.submit(CHAIN, {"x": 200}).result(timeout=WAIT)  # a turn that pumps
    for e in queued:
        assert e.result(timeout=WAIT).status is ExecutionStatus.COMPLETED
    t.join(WAIT)
    assert done[0].outputs == {"a7": 7}
    assert began[0][0] == 100  # the caller's turn started the first queued one ...
    assert all(thread != "caller-7" for tag, thread in began if tag != 7), began
