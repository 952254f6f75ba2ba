"""The in-memory execution storage against the storage contract."""

from __future__ import annotations

from typing import Any

from constellation.spi import InMemoryExecutionStorage
from tests.spi.contracts import StorageContract, record


class TestInMemoryStorage(StorageContract):
    def make(self) -> Any:
        return InMemoryExecutionStorage()


def test_the_oldest_records_go_past_the_bound() -> None:
    storage = InMemoryExecutionStorage(max_records=3)
    for n in range(5):
        storage.save(record(n))
    assert [r.execution_id for r in storage.list()] == ["id-4", "id-3", "id-2"]
