"""The record writer is a write-behind ExecutionStorage: the storage contract holds for
it over every backend, records waiting to be written included."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest

from constellation.actors._records import RecordWriter
from constellation.spi import InMemoryExecutionStorage, SqliteExecutionStorage
from tests.spi.contracts import StorageContract, record

if TYPE_CHECKING:
    from pathlib import Path


class TestRecordWriterInline(StorageContract):
    def make(self) -> Any:
        return RecordWriter(InMemoryExecutionStorage())


class TestRecordWriterOverSqlite(StorageContract):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> Any:
        self.tmp = tmp_path
        self.opened: list[tuple[RecordWriter, SqliteExecutionStorage]] = []
        yield
        for writer, storage in self.opened:
            writer.stop(5)
            storage.close()

    def make(self) -> Any:
        storage = SqliteExecutionStorage(self.tmp / f"db{len(self.opened)}.sqlite")
        writer = RecordWriter(storage)
        self.opened.append((writer, storage))
        return writer


class Gated(InMemoryExecutionStorage):
    """A storage whose writes wait for ``gate``."""

    save_deferred = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()  # a write is waiting at the gate
        self.batches: list[list[str]] = []

    def save_many(self, records: Any) -> None:
        self.entered.set()
        self.gate.wait(10)
        records = list(records)
        self.batches.append([r.execution_id for r in records])
        super().save_many(records)


def test_records_waiting_are_read_through_and_merged_into_lists() -> None:
    storage = Gated()
    storage.gate.set()
    writer = RecordWriter(storage)
    writer.save(record(1))
    assert writer.flush(5)
    storage.gate.clear()
    writer.save(record(1, status="failed"))  # replaces id-1, not written yet
    writer.save(record(2))
    writer.save(record(3, pipeline="other"))
    assert writer.load("id-1").status == "failed"  # type: ignore[union-attr]
    assert [r.execution_id for r in writer.list()] == ["id-3", "id-2", "id-1"]
    assert [r.execution_id for r in writer.list(status="failed")] == ["id-1"]
    assert [r.execution_id for r in writer.list(status="completed")] == ["id-3", "id-2"]
    assert [r.execution_id for r in writer.list(pipeline="other")] == ["id-3"]
    assert [r.execution_id for r in writer.list(limit=1, offset=1)] == ["id-2"]
    storage.gate.set()
    assert writer.flush(5)
    assert storage.load("id-1").status == "failed"  # type: ignore[union-attr]
    writer.stop(5)


def test_a_newer_record_replaces_one_not_written_yet_and_batches_are_written_whole() -> None:
    storage = Gated()
    writer = RecordWriter(storage)
    writer.save(record(0))  # the writer takes it and waits at the gate
    assert storage.entered.wait(5)
    for n in range(1, 50):
        writer.save(record(n).with_status("running"))
        writer.save(record(n))
    storage.gate.set()
    assert writer.flush(5)
    assert writer.stats()["written"] == 50
    assert len(storage.batches) <= 3
    assert {r.status for r in storage.list(limit=100)} == {"completed"}
    writer.stop(5)


def test_stop_is_bounded_and_later_records_are_dropped() -> None:
    storage = Gated()
    writer = RecordWriter(storage)
    writer.save(record(1))
    assert writer.stop(0.2) is False  # the gate never opens in time
    writer.save(record(2))
    assert writer.stats()["dropped"] == 1
    storage.gate.set()
    assert writer.stop(1) is True
    assert writer.stop(1) is True  # again: nothing


def test_concurrent_writers_lose_no_record() -> None:
    storage = Gated()
    storage.gate.set()
    writer = RecordWriter(storage)

    def save(base: int) -> None:
        for n in range(200):
            writer.save(record(base + n))

    threads = [threading.Thread(target=save, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert writer.flush(10)
    assert writer.stats()["written"] == 800
    assert len(writer.list(limit=1000)) == 800
    writer.stop(5)
