"""OutboxListener: durable at-least-once delivery, including across a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from constellation import Backends, module
from constellation.spi import OutboxListener
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
