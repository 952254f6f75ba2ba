"""Every execution is recorded in the configured storage; engine.executions() queries it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from constellation import (
    Backends,
    Constellation,
    ExecutionStatus,
    PipelineBuilder,
    module,
)
from constellation.spi import InMemoryExecutionStorage, SqliteExecutionStorage

if TYPE_CHECKING:
    from pathlib import Path

SOURCE = "in t: String\nin n: Int\nu = Uppercase(t)\nout u\nout n\n"


@module("Nope")
def nope(text: str) -> str:
    raise ValueError("nope")


def failing() -> PipelineBuilder:
    b = PipelineBuilder("failing")
    b.output("o", b.call("Nope", text=b.input("t", str)))
    return b


def test_records_hold_ids_status_values_errors_and_node_timings() -> None:
    with Constellation([nope]) as engine:
        ok = engine.run(SOURCE, {"t": "hi", "n": 3})
        bad = engine.run(failing(), {"t": "x"})
        rec = engine.execution(ok.execution_id)
        assert rec is not None
        assert (rec.pipeline, rec.status) == ("pipeline", "completed")
        assert rec.structural_hash == ok.structural_hash
        assert rec.inputs == {"t": "hi", "n": 3}
        assert rec.outputs == {"u": "HI", "n": 3}
        assert rec.nodes["Uppercase"]["status"] == "completed"
        assert rec.nodes["Uppercase"]["attempts"] == 1
        assert rec.ended_at >= rec.started_at > 0
        failed = engine.execution(bad.execution_id)
        assert failed is not None
        assert failed.status == "failed"
        assert failed.errors[0]["code"] == "E300"
        assert engine.execution("no-such-id") is None


def test_executions_are_listed_newest_first_with_filters_and_paging() -> None:
    with Constellation([nope]) as engine:
        ids = [engine.run(SOURCE, {"t": str(i), "n": i}).execution_id for i in range(5)]
        bad = engine.run(failing(), {"t": "x"}).execution_id
        suspended = engine.run(SOURCE, {"t": "only"}).execution_id
        listed = [r.execution_id for r in engine.executions()]
        assert listed[:2] == [suspended, bad]
        assert listed[2:] == ids[::-1]
        assert [r.execution_id for r in engine.executions(pipeline="failing")] == [bad]
        assert [r.execution_id for r in engine.executions(
            status=ExecutionStatus.SUSPENDED)] == [suspended]
        assert [r.execution_id for r in engine.executions(status="completed", limit=2,
                                                          offset=1)] == ids[::-1][1:3]


def test_a_configured_storage_receives_full_records() -> None:
    storage = InMemoryExecutionStorage()
    saved: list[str] = []

    class Recording(InMemoryExecutionStorage):
        # No save_deferred (nor save_many): the engine must hand over complete records.
        save_deferred = None  # type: ignore[assignment]
        save_many = None  # type: ignore[assignment]

        def save(self, record: object) -> None:
            saved.append(record.status)  # type: ignore[attr-defined]
            storage.save(record)  # type: ignore[arg-type]

    with Constellation(backends=Backends(storage=Recording())) as engine:
        result = engine.run(SOURCE, {"t": "a", "n": 1})
    # Written: the RUNNING record at the start, a RUNNING checkpoint after the one module
    # call, the final record; a record still waiting when the next one comes is replaced
    # by it (timing decides which), but the last is always the final one.
    assert saved[-1] == "completed"
    assert saved[:-1] == ["running"] * (len(saved) - 1)
    assert len(saved) <= 1 + 1 + 1  # started, one checkpoint per module call, final
    assert storage.load(result.execution_id).outputs == {"u": "A", "n": 1}  # type: ignore[union-attr]


def test_sqlite_records_survive_an_engine_restart(tmp_path: Path) -> None:
    db = tmp_path / "executions.sqlite"
    first = SqliteExecutionStorage(db)
    with Constellation(backends=Backends(storage=first)) as engine:
        ids = [engine.run(SOURCE, {"t": str(i), "n": i}).execution_id for i in range(3)]
    first.close()
    second = SqliteExecutionStorage(db)
    try:
        with Constellation(backends=Backends(storage=second)) as engine:
            assert [r.execution_id for r in engine.executions()] == ids[::-1]
            assert engine.execution(ids[0]).outputs == {"u": "0", "n": 0}  # type: ignore[union-attr]
    finally:
        second.close()


def test_executions_cancelled_while_queued_are_recorded() -> None:
    import threading

    gate = threading.Event()

    @module("Hold")
    def hold(text: str) -> str:
        gate.wait(10)
        return text

    from constellation import SchedulerConfig

    with Constellation([hold], scheduler=SchedulerConfig(max_concurrency=1)) as engine:
        b = PipelineBuilder("hold")
        b.output("o", b.call("Hold", text=b.input("t", str)))
        running = engine.submit(b, {"t": "1"})
        queued = engine.submit(b, {"t": "2"})
        queued.cancel()
        assert queued.result(5).status is ExecutionStatus.CANCELLED
        gate.set()
        running.result(5)
        rec = engine.execution(queued.execution_id)
        assert rec is not None
        assert rec.status == "cancelled"


def test_noop_storage_turns_recording_off() -> None:
    from constellation.spi import NoOpExecutionStorage

    with Constellation(backends=Backends(storage=NoOpExecutionStorage())) as engine:
        assert engine._runtime.storage is None
        result = engine.run(SOURCE, {"t": "a", "n": 1})
        assert result.ok
        assert engine.executions() == []
        assert engine.execution(result.execution_id) is None
