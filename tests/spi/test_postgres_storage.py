"""PostgresExecutionStorage against a real PostgreSQL, through the storage contract."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from constellation.spi._postgres import PostgresExecutionStorage
from tests.spi.contracts import StorageContract
from tests.spi.services import postgres_dsn


class TestPostgresStorage(StorageContract):
    @pytest.fixture(autouse=True)
    def _dsn(self) -> Any:
        self.dsn = postgres_dsn()
        self.opened: list[PostgresExecutionStorage] = []
        yield
        for s in self.opened:
            s.drop()
            s.close()

    def make(self) -> Any:
        storage = PostgresExecutionStorage(self.dsn, table=f"t_{uuid.uuid4().hex[:12]}")
        self.opened.append(storage)
        return storage


def test_bad_table_names_are_refused() -> None:
    from constellation import ConfigurationError

    with pytest.raises(ConfigurationError, match="invalid table name"):
        PostgresExecutionStorage("host=127.0.0.1", table="x; drop table y")
