"""Durable records: RUNNING at start, INTERRUPTED when the process died, and saving a
record never delays a result (a locked SQLite file, a storage that raises or blocks)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from constellation import Backends, Constellation, ExecutionStatus, module
from constellation.spi import ExecutionRecord, InMemoryExecutionStorage, SqliteExecutionStorage
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "in x: Int\na = Inc(x)\nb = Hold(a)\nout b\n"


@module("Inc")
def inc(x: int) -> int:
    return x + 1


@module("Hold")
def hold(x: int) -> int:
    return x * 10


def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The child's next stdout line, failing the test after ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            raise AssertionError(f"no line from the child in {timeout} s")
    return proc.stdout.readline()


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes the pipes


KILLED_MID_EXECUTION = """
    import sys, time
    from constellation import Backends, Constellation, module
    from constellation.spi import SqliteExecutionStorage

    @module("Inc")
    def inc(x: int) -> int:
        return x + 1

    @module("Hold")
    def hold(x: int) -> int:
        time.sleep(120)
        return x

    engine = Constellation([inc, hold],
                           backends=Backends(storage=SqliteExecutionStorage(sys.argv[1])))
    execution = engine.submit("in x: Int\\na = Inc(x)\\nb = Hold(a)\\nout b\\n", {"x": 4})
    probe = SqliteExecutionStorage(sys.argv[1])  # the file, not the engine's backlog
    while (r := probe.load(execution.execution_id)) is None or r.status != "running":
        time.sleep(0.01)
    print("RUNNING", execution.execution_id, flush=True)
    time.sleep(120)  # SIGKILLed here, Hold still running
"""


def test_an_execution_killed_mid_run_is_recorded_and_the_next_engine_marks_it_interrupted(
        tmp_path: Path) -> None:
    db = tmp_path / "records.sqlite"
    child = spawn(KILLED_MID_EXECUTION, str(db))
    try:
        line = read_line(child)
        assert line.startswith("RUNNING"), child.stderr.read() if child.stderr else line
        eid = line.split()[1]
    finally:
        kill(child)
    raw = SqliteExecutionStorage(db)
    try:
        left = raw.load(eid)
        assert left is not None
        assert left.status == "running"
        assert left.inputs == {"x": 4}
        assert left.owner is not None
        assert left.owner["pid"] == child.pid
    finally:
        raw.close()

    storage = SqliteExecutionStorage(db)
    try:
        with Constellation([inc, hold], backends=Backends(storage=storage)) as engine:
            record = engine.execution(eid)
            assert record is not None
            assert record.status == ExecutionStatus.INTERRUPTED.value == "interrupted"
            assert record.errors[-1]["code"] == "E503"
            assert str(child.pid) in record.errors[-1]["message"]
            assert record.ended_at >= record.started_at > 0
            assert engine.health()["records"]["interrupted"] == 1
            assert [r.execution_id for r in engine.executions(
                status=ExecutionStatus.INTERRUPTED)] == [eid]
            # Its snapshot (nothing finished was kept) makes it resumable: it runs again.
            engine.compile(SOURCE)
            result = engine.resume(eid).result(30)
            assert result.status is ExecutionStatus.COMPLETED
            assert result.outputs == {"b": 50}
        again = SqliteExecutionStorage(db)
        try:
            done = again.load(eid)
            assert done is not None
            assert done.status == "completed"
        finally:
            again.close()
    finally:
        storage.close()


def _running(eid: str, owner: dict[str, Any] | None) -> ExecutionRecord:
    return ExecutionRecord(eid, "p", "h" * 64, "running", inputs={"x": 1},
                           started_at=time.time(), owner=owner, snapshot={"nodes": {}})


def test_only_records_of_processes_known_to_be_gone_are_marked_interrupted() -> None:
    from constellation.spi._owner import process_owner

    me = dict(process_owner())
    storage = InMemoryExecutionStorage()
    storage.save(_running("mine", me))
    storage.save(_running("restarted", {**me, "token": "another incarnation"}))
    storage.save(_running("elsewhere", {**me, "host": "another-host", "pid": 1}))
    storage.save(_running("no-owner", None))
    parent = os.getppid()
    from constellation.spi._owner import _start_time

    storage.save(_running("alive", {**me, "pid": parent, "start": _start_time(parent),
                                    "token": "x"}))
    with Constellation(backends=Backends(storage=storage)) as engine:
        status = {eid: engine.execution(eid).status  # type: ignore[union-attr]
                  for eid in ("mine", "restarted", "elsewhere", "no-owner", "alive")}
    assert status == {"mine": "running", "restarted": "interrupted",
                      "elsewhere": "running", "no-owner": "running", "alive": "running"}


def test_a_running_execution_is_recorded_running_with_its_owner(engine_factory: Any) -> None:
    gate = threading.Event()

    @module("Hold")
    def held(x: int) -> int:
        gate.wait(10)
        return x

    engine = engine_factory([inc, held])
    execution = engine.submit(SOURCE, {"x": 1})
    try:
        wait_for(lambda: engine.execution(execution.execution_id) is not None)
        record = engine.execution(execution.execution_id)
        assert record.status == "running"
        assert record.owner["pid"] == os.getpid()
        assert [r.execution_id for r in engine.executions(status="running")] == [
            execution.execution_id]
    finally:
        gate.set()
    assert execution.result(10).ok
    assert engine.execution(execution.execution_id).status == "completed"


HOLD_EXCLUSIVE_LOCK = """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("LOCKED", flush=True)
    time.sleep(120)
"""


def test_a_sqlite_file_locked_by_another_process_delays_no_run_and_failures_are_counted(
        tmp_path: Path) -> None:
    db = tmp_path / "locked.sqlite"
    storage = SqliteExecutionStorage(db, timeout=0.3)
    locker = spawn(HOLD_EXCLUSIVE_LOCK, str(db))
    engine = Constellation([inc, hold], backends=Backends(storage=storage))
    try:
        assert read_line(locker).startswith("LOCKED")
        pipeline = engine.compile(SOURCE)
        started = time.perf_counter()
        results = [engine.run(pipeline, {"x": i}) for i in range(20)]
        elapsed = time.perf_counter() - started
        assert all(r.ok for r in results)
        # Before: each run waited for the lock (0.3 s here, 10 s by default).
        assert elapsed < 0.3 * 5
        # Not written yet, but visible.
        assert engine.execution(results[0].execution_id).status == "completed"  # type: ignore[union-attr]
        assert len(engine.executions(limit=100)) == 20
        wait_for(lambda: engine.health()["records"]["failed"] >= 20, timeout=30)
        records = engine.health()["records"]
        assert records["errors"] >= 1
        assert "locked" in records["last_error"]
        assert records["written"] == 0
    finally:
        kill(locker)
        started = time.perf_counter()
        engine.shutdown(drain_timeout=2)
        assert time.perf_counter() - started < 10
        storage.close()


def test_a_save_that_fails_for_a_while_is_retried_and_written(engine_factory: Any) -> None:
    class Flaky(InMemoryExecutionStorage):
        save_deferred = None  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.failures = 2

        def save_many(self, records: Any) -> None:
            if self.failures:
                self.failures -= 1
                raise OSError("disk unavailable")
            super().save_many(records)

    storage = Flaky()
    engine = engine_factory([inc, hold], backends=Backends(storage=storage))
    result = engine.run(SOURCE, {"x": 1})
    wait_for(lambda: storage.load(result.execution_id) is not None
             and storage.load(result.execution_id).status == "completed")  # type: ignore[union-attr]
    health = engine.health()["records"]
    assert health["errors"] == 2
    assert health["failed"] == 0
    assert health["last_error"] == "OSError: disk unavailable"


def test_a_storage_that_raises_even_base_exceptions_fails_no_execution(
        engine_factory: Any) -> None:
    class Broken(InMemoryExecutionStorage):
        save_deferred = None  # type: ignore[assignment]

        def save_many(self, records: Any) -> None:
            raise RuntimeError("storage is broken")

    engine = engine_factory([inc, hold], backends=Backends(storage=Broken()))
    engine._records.retries = 0
    results = [engine.run(SOURCE, {"x": i}) for i in range(5)]
    assert all(r.ok for r in results)
    wait_for(lambda: engine.health()["records"]["failed"] >= 5)
    assert engine.health()["records"]["pending"] == 0


def test_a_storage_that_blocks_delays_no_result_and_shutdown_stays_bounded() -> None:
    release = threading.Event()

    class Blocking(InMemoryExecutionStorage):
        save_deferred = None  # type: ignore[assignment]

        def save_many(self, records: Any) -> None:
            release.wait(30)
            super().save_many(records)

    storage = Blocking()
    engine = Constellation([inc, hold], backends=Backends(storage=storage))
    try:
        started = time.perf_counter()
        results = [engine.run(SOURCE, {"x": i}) for i in range(50)]
        assert time.perf_counter() - started < 5
        assert {engine.execution(r.execution_id).status for r in results} == {  # type: ignore[union-attr]
            "completed"}
        assert engine.health()["records"]["pending"] >= 49
        started = time.perf_counter()
        engine.shutdown(drain_timeout=0.5)
        assert time.perf_counter() - started < 3
    finally:
        release.set()


def test_a_full_record_backlog_drops_new_records_and_counts_them() -> None:
    release = threading.Event()

    class Blocking(InMemoryExecutionStorage):
        save_deferred = None  # type: ignore[assignment]

        def save_many(self, records: Any) -> None:
            release.wait(30)
            super().save_many(records)

    engine = Constellation([inc, hold], backends=Backends(storage=Blocking()))
    engine._records.max_pending = 5
    try:
        results = [engine.run(SOURCE, {"x": i}) for i in range(20)]
        assert all(r.ok for r in results)
        assert engine.health()["records"]["dropped"] >= 10
    finally:
        release.set()
        engine.shutdown(drain_timeout=5)


def test_shutdown_writes_every_record_still_waiting(tmp_path: Path) -> None:
    db = tmp_path / "flush.sqlite"
    storage = SqliteExecutionStorage(db)
    with Constellation([inc, hold], backends=Backends(storage=storage)) as engine:
        pipeline = engine.compile(SOURCE)
        handles = [engine.submit(pipeline, {"x": i}) for i in range(300)]
        for h in handles:
            h.result(30)
    storage.close()
    fresh = SqliteExecutionStorage(db)
    try:
        records = fresh.list(limit=1000)
        assert len(records) == 300
        assert {r.status for r in records} == {"completed"}
    finally:
        fresh.close()


@pytest.mark.parametrize("status", ["running", "resuming"])
def test_marking_interrupted_is_idempotent_across_engines(status: str) -> None:
    storage = InMemoryExecutionStorage()
    gone = {"host": "x", "boot": None, "pid": 1, "start": None, "token": "t"}
    from constellation.spi._owner import process_owner

    gone["host"] = process_owner()["host"]
    gone["pid"] = 2 ** 22 + 12345  # above pid_max's default: no such process
    storage.save(_running("e", gone).with_status(status))
    for _ in range(2):
        with Constellation(backends=Backends(storage=storage)):
            pass
    record = storage.load("e")
    assert record is not None
    assert record.status == "interrupted"
    assert [e["code"] for e in record.errors] == ["E503"]


def test_a_suspended_execution_is_resumed_right_after_run_before_its_record_is_written(
        tmp_path: Path) -> None:
    storage = SqliteExecutionStorage(tmp_path / "soon.sqlite")
    try:
        with Constellation(backends=Backends(storage=storage)) as engine:
            src = "in a: String\nin b: String\nj = concat(a, b)\nout j"
            for i in range(20):
                waiting = engine.run(src, {"a": f"{i}-"})
                resumed = engine.resume(waiting.execution_id, {"b": "x"}).result(10)
                assert resumed.outputs == {"j": f"{i}-x"}
    finally:
        storage.close()


def test_a_storage_that_cannot_be_read_at_start_does_not_stop_the_engine() -> None:
    class Unreadable(InMemoryExecutionStorage):
        def list(self, **kwargs: Any) -> Any:
            raise ConnectionError("database unreachable")

    with Constellation([inc, hold], backends=Backends(storage=Unreadable())) as engine:
        assert engine.health()["records"]["errors"] == 1
        assert engine.run(SOURCE, {"x": 1}).ok


def test_a_storage_raising_a_base_exception_does_not_stop_the_record_writer(
        engine_factory: Any) -> None:
    class Exiting(InMemoryExecutionStorage):
        save_deferred = None  # type: ignore[assignment]
        calls = 0

        def save_many(self, records: Any) -> None:
            Exiting.calls += 1
            if Exiting.calls == 1:
                raise SystemExit("a storage calling sys.exit")
            super().save_many(records)

    storage = Exiting()
    engine = engine_factory([inc, hold], backends=Backends(storage=storage))
    result = engine.run(SOURCE, {"x": 1})
    wait_for(lambda: storage.load(result.execution_id) is not None
             and storage.load(result.execution_id).status == "completed")  # type: ignore[union-attr]
    assert engine.run(SOURCE, {"x": 2}).ok
    assert engine._records.flush(5)


def test_mark_interrupted_can_be_called_again_for_processes_that_died_later(
        tmp_path: Path) -> None:
    db = tmp_path / "later.sqlite"
    storage = SqliteExecutionStorage(db)
    try:
        with Constellation([inc, hold], backends=Backends(storage=storage)) as engine:
            assert engine.mark_interrupted() == []
            child = spawn(KILLED_MID_EXECUTION, str(db))
            try:
                line = read_line(child)
                assert line.startswith("RUNNING"), child.stderr.read() if child.stderr \
                    else line
                eid = line.split()[1]
                assert engine.mark_interrupted() == []  # alive
            finally:
                kill(child)
            assert engine.mark_interrupted() == [eid]
            assert engine.execution(eid).status == "interrupted"  # type: ignore[union-attr]
            assert engine.mark_interrupted() == []
    finally:
        storage.close()


KILLED_AFTER_TWO_CALLS = """
    import sys, time
    from constellation import Backends, Constellation, module
    from constellation.spi import SqliteExecutionStorage

    @module("Inc")
    def inc(x: int) -> int:
        with open(sys.argv[2], "a") as f:
            f.write(f"Inc {x}\\n")
        return x + 1

    @module("Hold")
    def hold(x: int) -> int:
        time.sleep(120)
        return x

    engine = Constellation([inc, hold],
                           backends=Backends(storage=SqliteExecutionStorage(sys.argv[1])))
    execution = engine.submit("in x: Int\\na = Inc(x)\\nb = Inc(a)\\nc = Hold(b)\\nout c\\n",
                              {"x": 1})
    probe = SqliteExecutionStorage(sys.argv[1])  # the file, not the engine's backlog
    while (r := probe.load(execution.execution_id)) is None \\
            or len((r.snapshot or {}).get("nodes", {})) < 2:
        time.sleep(0.01)
    print("CHECKPOINT", execution.execution_id, flush=True)
    time.sleep(120)  # SIGKILLed here, Hold still running
"""


def test_calls_completed_before_a_kill_are_checkpointed_and_not_run_again_on_resume(
        tmp_path: Path) -> None:
    db = tmp_path / "records.sqlite"
    calls = tmp_path / "calls.txt"
    child = spawn(KILLED_AFTER_TWO_CALLS, str(db), str(calls))
    try:
        line = read_line(child)
        assert line.startswith("CHECKPOINT"), child.stderr.read() if child.stderr else line
        eid = line.split()[1]
    finally:
        kill(child)
    assert calls.read_text().splitlines() == ["Inc 1", "Inc 2"]

    ran: list[int] = []

    @module("Inc")
    def counted_inc(x: int) -> int:
        ran.append(x)
        return x + 1

    storage = SqliteExecutionStorage(db)
    try:
        with Constellation([counted_inc, hold], backends=Backends(storage=storage)) as engine:
            record = engine.execution(eid)
            assert record is not None
            assert record.status == "interrupted"
            engine.compile("in x: Int\na = Inc(x)\nb = Inc(a)\nc = Hold(b)\nout c\n")
            result = engine.resume(eid).result(30)
            assert result.status is ExecutionStatus.COMPLETED, result.errors
            assert result.outputs == {"c": 30}
            assert ran == []  # both Inc calls came from the checkpoint
    finally:
        storage.close()
