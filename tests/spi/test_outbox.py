"""OutboxListener: durable at-least-once delivery, including across a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from constellation import Backends, Constellation, SchedulerConfig, module
from constellation.spi import CompositeListener, NoOpListener, OutboxListener
from tests.spi.test_contracts_all import Recorder
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_engine_events_reach_the_wrapped_listener(engine_factory: Any, tmp_path: Path
                                                  ) -> None:
    @module
    def Double(x: int) -> int:
        return x * 2

    recorder = Recorder()
    outbox = OutboxListener(recorder, tmp_path / "outbox.db", poll_interval=0.05)
    engine = engine_factory([Double], backends=Backends(listener=outbox))
    for i in range(3):
        engine.run("in x: Int\ny = Double(x)\nout y", {"x": i})
    wait_for(lambda: len(recorder.seen) == 12)
    kinds = [k for k, _ in recorder.seen]
    assert kinds.count("on_execution_complete") == 3
    assert kinds.count("on_module_complete") == 3
    wait_for(lambda: outbox.pending() == 0)
    outbox.close()


def test_a_failing_listener_gets_every_event_again_until_it_takes_it(tmp_path: Path) -> None:
    from tests.spi.contracts import _events

    class Flaky(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 0

        def on_module_complete(self, event: Any) -> None:
            if self.failures < 3:
                self.failures += 1
                raise ConnectionError("listener down")
            super().on_module_complete(event)

    flaky = Flaky()
    outbox = OutboxListener(flaky, tmp_path / "o.db", retry_initial=0.01, retry_max=0.05,
                            poll_interval=0.01)
    for kind, event in _events():
        getattr(outbox, kind)(event)
    wait_for(lambda: outbox.pending() == 0)
    assert flaky.failures == 3
    assert sorted(k for k, _ in flaky.seen) == sorted(k for k, _ in _events())
    assert outbox.failures == 3
    outbox.close()


CHILD = textwrap.dedent("""
    import sys, time
    from constellation import Backends, Constellation, module
    from constellation.spi import NoOpListener, OutboxListener

    class Unreachable(NoOpListener):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                raise ConnectionError("the listener's service is down")
            return object.__getattribute__(self, name)

    @module
    def Double(x: int) -> int:
        return x * 2

    outbox = OutboxListener(Unreachable(), sys.argv[1], retry_initial=60)
    engine = Constellation([Double], backends=Backends(listener=outbox))
    for i in range(int(sys.argv[2])):
        engine.run("in x: Int\\ny = Double(x)\\nout y", {"x": i})
    while outbox.pending() < 4 * int(sys.argv[2]):
        time.sleep(0.01)
    print("RECORDED", outbox.pending(), flush=True)
    time.sleep(60)  # killed here, before any delivery
""")


def test_events_recorded_before_a_sigkill_are_delivered_after_restart(tmp_path: Path
                                                                      ) -> None:
    db = tmp_path / "outbox.db"
    runs = 5
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(runs)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.startswith("RECORDED"), child.stderr.read() if child.stderr else line
        recorded = int(line.split()[1])
        assert recorded == 4 * runs
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)  # reaps it and closes the pipes
    assert child.returncode == -signal.SIGKILL

    recorder = Recorder()
    outbox = OutboxListener(recorder, db, poll_interval=0.05)
    wait_for(lambda: len(recorder.seen) == recorded)
    wait_for(lambda: outbox.pending() == 0)
    outbox.close()
    kinds = [k for k, _ in recorder.seen]
    assert kinds.count("on_execution_start") == runs
    assert kinds.count("on_module_start") == runs
    assert kinds.count("on_module_complete") == runs
    assert kinds.count("on_execution_complete") == runs
    assert len({e.execution_id for _, e in recorder.seen}) == runs


class Counter(NoOpListener):
    """Counts what reaches it (the relay thread is its only caller)."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def on_execution_start(self, event: Any) -> None:
        self._count("on_execution_start")

    def on_module_start(self, event: Any) -> None:
        self._count("on_module_start")

    def on_module_complete(self, event: Any) -> None:
        self._count("on_module_complete")

    def on_execution_complete(self, event: Any) -> None:
        self._count("on_execution_complete")

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


@module("Inc")
def inc(x: int) -> int:
    return x + 1


THREE_NODES = "in x: Int\na = Inc(x)\nb = Inc(a)\nc = Inc(b)\nout c\n"


def test_every_event_of_2000_executions_at_full_speed_is_delivered(tmp_path: Path) -> None:
    # Before: 5,226 of 16,000 delivered -- dropped at the listener backlog, and
    # abandoned at shutdown.
    counter = Counter()
    outbox = OutboxListener(counter, tmp_path / "load.db", poll_interval=0.05)
    engine = Constellation([inc], backends=Backends(listener=outbox),
                           scheduler=SchedulerConfig(max_concurrency=64,
                                                     max_queue_size=None))
    started = time.monotonic()
    try:
        pipeline = engine.compile(THREE_NODES)
        handles = [engine.submit(pipeline, {"x": i}) for i in range(2000)]
        assert all(h.result(60).ok for h in handles)
    finally:
        engine.shutdown(drain_timeout=60)
    # Shutdown returned: every event is committed to the outbox (or delivered).
    observer = engine._runtime.observer
    assert observer is not None
    assert observer.dropped == 0
    assert observer.lost == 0
    assert engine.health()["events"]["dropped"] == 0
    wait_for(lambda: counter.total == 16_000, timeout=60)
    outbox.close()
    assert counter.kinds == {"on_execution_start": 2000, "on_module_start": 6000,
                             "on_module_complete": 6000, "on_execution_complete": 2000}
    assert outbox.pending() == 0
    assert time.monotonic() - started < 90


def test_shutdown_waits_until_the_outbox_has_committed_every_event(tmp_path: Path) -> None:
    from tests.spi.contracts import _events

    db = tmp_path / "later.db"
    # Nothing is delivered in this process: the relay is not started.
    outbox = OutboxListener(NoOpListener(), db, start=False)
    engine = Constellation([inc], backends=Backends(listener=outbox))
    pipeline = engine.compile(THREE_NODES)
    for h in [engine.submit(pipeline, {"x": i}) for i in range(200)]:
        h.result(30)
    engine.shutdown(drain_timeout=30)
    assert outbox.pending() == 200 * 8
    outbox.close()
    later = Recorder()
    relay = OutboxListener(later, db, poll_interval=0.01)
    wait_for(lambda: len(later.seen) == 200 * 8)
    relay.close()
    assert len(_events()) == 5  # the kinds the contract knows


def test_on_batch_commits_all_or_nothing(tmp_path: Path) -> None:
    from tests.spi.contracts import _events

    outbox = OutboxListener(Recorder(), tmp_path / "b.db", start=False)
    events = _events()
    outbox.on_batch(events)
    assert outbox.pending() == 5
    with pytest.raises(ValueError, match="not an ExecutionListener callback"):
        outbox.on_batch([events[0], ("on_nothing", events[0][1])])
    assert outbox.pending() == 5
    outbox.on_batch([])
    assert outbox.pending() == 5
    outbox.close()


def test_a_durable_listener_whose_commit_fails_is_retried_then_counted(
        engine_factory: Any) -> None:
    class Flaky(NoOpListener):
        durable = True

        def __init__(self) -> None:
            self.batches: list[int] = []
            self.failures = 0

        def on_batch(self, events: Any) -> None:
            if self.failures < 2:
                self.failures += 1
                raise SystemExit("a BaseException from a listener")
            self.batches.append(len(events))

    listener = Flaky()
    engine = engine_factory([inc], backends=Backends(listener=listener))
    assert engine.run(THREE_NODES, {"x": 1}).ok
    wait_for(lambda: sum(listener.batches) == 8)
    assert engine.health()["events"]["failures"] == 2
    assert engine.run(THREE_NODES, {"x": 2}).ok  # the engine is fine

    class Down(NoOpListener):
        durable = True

        def on_batch(self, events: Any) -> None:
            raise OSError("disk full")

    down = engine_factory([inc], backends=Backends(listener=Down()))
    assert down.run(THREE_NODES, {"x": 1}).ok
    observer = down._runtime.observer
    wait_for(lambda: observer.lost == 8, timeout=20)


def test_a_composite_with_an_outbox_is_durable_and_batched(tmp_path: Path) -> None:
    counter = Counter()
    outbox = OutboxListener(counter, tmp_path / "c.db", poll_interval=0.01)
    plain = Recorder()
    composite = CompositeListener([plain, outbox])
    assert composite.durable is True
    assert CompositeListener([plain]).durable is False
    with Constellation([inc], backends=Backends(listener=composite)) as engine:
        for i in range(5):
            engine.run(THREE_NODES, {"x": i})
        assert engine._runtime.observer.durable  # type: ignore[union-attr]
    assert len(plain.seen) == 40
    wait_for(lambda: counter.total == 40)
    outbox.close()


def test_a_non_durable_listener_still_has_a_bounded_backlog(engine_factory: Any) -> None:
    import threading

    gate = threading.Event()

    class Slow(NoOpListener):
        def on_module_start(self, event: Any) -> None:
            gate.wait(10)

    engine = engine_factory([inc], backends=Backends(listener=Slow()))
    engine._runtime.observer.max_pending = 20
    try:
        for i in range(20):
            engine.run(THREE_NODES, {"x": i})
        assert engine.health()["events"]["dropped"] > 0
    finally:
        gate.set()
