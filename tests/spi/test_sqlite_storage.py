"""SqliteExecutionStorage: the storage contract, and records shared between processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from constellation.spi._sqlite import SqliteExecutionStorage
from tests.spi.contracts import StorageContract, record


class TestSqliteStorage(StorageContract):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> Any:
        self.tmp = tmp_path
        self.opened: list[SqliteExecutionStorage] = []
        yield
        for s in self.opened:
            s.close()

    def make(self) -> Any:
        storage = SqliteExecutionStorage(self.tmp / f"db{len(self.opened)}.sqlite")
        self.opened.append(storage)
        return storage


def test_records_written_by_one_process_are_read_by_another(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    root = Path(__file__).resolve().parents[2]
    code = (
        f"import sys; sys.path.insert(0, {str(root)!r})\n"
        "from spi._sqlite import SqliteExecutionStorage\n"
        "from tests.spi.contracts import record\n"
        f"s = SqliteExecutionStorage({str(db)!r})\n"
        "for n in range(5): s.save(record(n))\n"
        "s.close()\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    fresh = SqliteExecutionStorage(db)
    try:
        assert [r.execution_id for r in fresh.list()] == [f"id-{n}" for n in range(4, -1, -1)]
        assert fresh.load("id-3") == record(3)
    finally:
        fresh.close()


def test_the_file_uses_wal_mode(tmp_path: Path) -> None:
    storage = SqliteExecutionStorage(tmp_path / "wal.sqlite")
    try:
        mode = storage._conn().execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        storage.close()
