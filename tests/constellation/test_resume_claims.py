"""Resume claims an execution atomically: of two resumes at once -- two threads, two
engines on one PostgreSQL table, two processes on one SQLite file -- exactly one runs
it, and its modules run once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from constellation import (
    Backends,
    Constellation,
    ExecutionStatus,
    ResumeError,
    ShuttingDownError,
    module,
)
from constellation.spi import InMemoryExecutionStorage, SqliteExecutionStorage
from tests.constellation.test_durable_records import read_line
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "in a: String\nin b: String\nj = Join(a, b)\nout j\n"


def join_module(runs: list[str], gate: threading.Event | None = None) -> Any:
    @module("Join")
    def join(a: str, b: str) -> str:
        runs.append(b)
        if gate is not None:
            gate.wait(10)
        return a + b

    return join


def race(engine_for: Any, eid: str, n: int = 2) -> tuple[list[Any], list[ResumeError]]:
    """``n`` threads resume ``eid`` at the same moment, each on ``engine_for(i)``."""
    barrier = threading.Barrier(n)
    handles: list[Any] = []
    refused: list[ResumeError] = []
    errors: list[BaseException] = []

    def resume(i: int) -> None:
        try:
            barrier.wait(10)
            handles.append(engine_for(i).resume(eid, {"b": f"-{i}"}))
        except ResumeError as exc:
            refused.append(exc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=resume, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    return handles, refused


def test_of_two_threads_resuming_at_once_exactly_one_runs_it(engine_factory: Any) -> None:
    for _ in range(10):
        runs: list[str] = []
        gate = threading.Event()
        engine = engine_factory([join_module(runs, gate)])
        eid = engine.run(SOURCE, {"a": "x"}).execution_id
        handles, refused = race(lambda _i, engine=engine: engine, eid)
        gate.set()
        assert len(handles) == 1
        assert [e.details["reason"] for e in refused] == ["already_resuming"]
        assert handles[0].result(10).status is ExecutionStatus.COMPLETED
        assert len(runs) == 1


def test_resuming_twice_from_one_process_runs_it_once(engine_factory: Any) -> None:
    runs: list[str] = []
    gate = threading.Event()
    engine = engine_factory([join_module(runs, gate)])
    eid = engine.run(SOURCE, {"a": "x"}).execution_id
    first = engine.resume(eid, {"b": "y"})
    wait_for(lambda: engine.execution(eid).status == "running")  # type: ignore[union-attr]
    with pytest.raises(ResumeError) as info:
        engine.resume(eid, {"b": "z"})
    assert info.value.details["reason"] == "already_resuming"
    gate.set()
    assert first.result(10).outputs == {"j": "xy"}
    with pytest.raises(ResumeError) as info:
        engine.resume(eid, {"b": "z"})
    assert info.value.details["reason"] == "not_suspended"
    assert runs == ["y"]


def test_a_resume_that_cannot_be_submitted_gives_its_claim_back() -> None:
    runs: list[str] = []
    engine = Constellation([join_module(runs)])
    eid = engine.run(SOURCE, {"a": "x"}).execution_id
    engine.compile(SOURCE)
    storage = engine._storage
    engine.shutdown()
    with pytest.raises(ShuttingDownError):
        engine.resume(eid, {"b": "y"})
    assert storage.load(eid).status == "suspended"  # type: ignore[union-attr]
    assert runs == []


def test_a_refused_resume_claims_nothing(engine_factory: Any) -> None:
    runs: list[str] = []
    engine = engine_factory([join_module(runs)])
    eid = engine.run(SOURCE, {"a": "x"}).execution_id
    with pytest.raises(ResumeError) as info:
        engine.resume(eid, {"a": "again"})
    assert info.value.details["reason"] == "input_already_given"
    assert engine.execution(eid).status == "suspended"
    assert engine.resume(eid, {"b": "y"}).result(10).outputs == {"j": "xy"}


def test_a_storage_without_claim_still_resumes_with_claims_atomic_in_the_engine(
        engine_factory: Any) -> None:
    class Plain:
        """A storage of the four original methods only."""

        def __init__(self) -> None:
            self.inner = InMemoryExecutionStorage()

        def save(self, record: Any) -> None:
            self.inner.save(record)

        def load(self, execution_id: str) -> Any:
            return self.inner.load(execution_id)

        def list(self, **kwargs: Any) -> Any:
            return self.inner.list(**kwargs)

        def delete(self, execution_id: str) -> bool:
            return self.inner.delete(execution_id)

        def close(self) -> None:
            pass

    runs: list[str] = []
    gate = threading.Event()
    engine = engine_factory([join_module(runs, gate)], backends=Backends(storage=Plain()))
    eid = engine.run(SOURCE, {"a": "x"}).execution_id
    handles, refused = race(lambda _i: engine, eid)
    gate.set()
    assert len(handles) == 1
    assert len(refused) == 1
    assert handles[0].result(10).ok
    assert len(runs) == 1


def test_two_engines_on_one_postgres_table_resume_it_once() -> None:
    import uuid

    from constellation.spi import PostgresExecutionStorage
    from tests.spi.services import postgres_dsn

    dsn = postgres_dsn()
    table = f"t_resume_{uuid.uuid4().hex[:10]}"
    storages = [PostgresExecutionStorage(dsn, table=table) for _ in range(2)]
    runs: list[str] = []
    gate = threading.Event()
    engines = [Constellation([join_module(runs, gate)], backends=Backends(storage=s))
               for s in storages]
    try:
        eid = engines[0].run(SOURCE, {"a": "x"}).execution_id
        engines[1].compile(SOURCE)
        wait_for(lambda: storages[1].load(eid) is not None
                 and storages[1].load(eid).status == "suspended")  # type: ignore[union-attr]
        handles, refused = race(lambda i: engines[i], eid)
        gate.set()
        assert len(handles) == 1
        assert [e.details["reason"] for e in refused] == ["already_resuming"]
        assert handles[0].result(10).ok
        assert len(runs) == 1
    finally:
        gate.set()
        for e in engines:
            e.shutdown(drain_timeout=5)
        storages[0].drop()
        for s in storages:
            s.close()


RESUMER = """
    import sys, time
    from constellation import Backends, Constellation, ResumeError, module

    from constellation.spi import SqliteExecutionStorage

    @module("Join")
    def join(a: str, b: str) -> str:
        with open(sys.argv[2], "a") as f:
            f.write(f"ran in {sys.argv[3]}\\n")
        time.sleep(0.5)  # still running when the other process tries
        return a + b

    engine = Constellation([join], backends=Backends(storage=SqliteExecutionStorage(sys.argv[1])))
    engine.compile("in a: String\\nin b: String\\nj = Join(a, b)\\nout j\\n")
    print("READY", flush=True)
    sys.stdin.readline()  # "go", to both at once
    try:
        result = engine.resume(sys.argv[4], {"b": sys.argv[3]}).result(30)
        print("RAN", result.status.value, result.outputs["j"], flush=True)
    except ResumeError as exc:
        print("REFUSED", exc.details["reason"], flush=True)
    engine.shutdown()
"""


def test_of_two_processes_resuming_one_sqlite_record_at_once_exactly_one_runs_it(
        tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    runs = tmp_path / "runs.txt"
    runs.touch()
    storage = SqliteExecutionStorage(db)
    with Constellation([join_module([])], backends=Backends(storage=storage)) as engine:
        eid = engine.run(SOURCE, {"a": "x"}).execution_id
    storage.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RESUMER), str(db), str(runs), f"p{i}", eid],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env) for i in range(2)]
    for child in children:
        assert read_line(child) == "READY\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(out.strip())
    assert sorted(o.split()[0] for o in outputs) == ["RAN", "REFUSED"], outputs
    assert any(o == "REFUSED already_resuming" for o in outputs), outputs
    assert len(runs.read_text().splitlines()) == 1
    check = SqliteExecutionStorage(db)
    try:
        record = check.load(eid)
        assert record is not None
        assert record.status == "completed"
    finally:
        check.close()


def test_an_interrupted_resumed_execution_keeps_what_ran_before_its_suspension() -> None:
    from dataclasses import replace

    from constellation.spi._owner import process_owner

    runs: list[str] = []

    @module("Prep")
    def prep(a: str) -> str:
        runs.append("Prep")
        return a.upper()

    @module("Join")
    def join(a: str, b: str) -> str:
        runs.append("Join")
        return a + b

    src = "in a: String\nin b: String\np = Prep(a)\nj = Join(p, b)\nout j\n"
    storage = InMemoryExecutionStorage()
    with Constellation([prep, join], backends=Backends(storage=storage)) as engine:
        suspended = engine.run(src, {"a": "x"})
    assert runs == ["Prep"]
    record = storage.load(suspended.execution_id)
    assert record is not None
    assert record.snapshot == {"nodes": {"Prep": "X"}}
    # What a resumed run leaves when its process is killed mid-way: RUNNING, every input,
    # the outputs it started with, an owner that is gone.
    dead = {**process_owner(), "pid": 2 ** 22 + 4321, "token": "killed"}
    storage.save(replace(record, status="running", inputs={"a": "x", "b": "y"}, owner=dead,
                         snapshot={"nodes": {"Prep": "X"}, "resumed": True}))
    with Constellation([prep, join], backends=Backends(storage=storage)) as engine:
        assert engine.execution(suspended.execution_id).status == "interrupted"  # type: ignore[union-attr]
        engine.compile(src)
        result = engine.resume(suspended.execution_id).result(10)
    assert result.outputs == {"j": "Xy"}
    assert runs == ["Prep", "Join"]
