"""Every PipelineStore through one contract: in memory, SQLite, PostgreSQL (real server);
plus the no-op store, corrupt rows, and two store objects sharing one database."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from constellation.core.errors import ConfigurationError, PipelineStoreError
from constellation.spi import (
    InMemoryPipelineStore,
    NoOpPipelineStore,
    PipelineStore,
    PostgresPipelineStore,
    SqlitePipelineStore,
    create_backend,
    list_backends,
)
from tests.spi.contracts import PipelineStoreContract, stored
from tests.spi.services import postgres_dsn

if TYPE_CHECKING:
    from pathlib import Path


class TestInMemoryPipelineStore(PipelineStoreContract):
    def make(self) -> Any:
        return InMemoryPipelineStore()


class TestSqlitePipelineStore(PipelineStoreContract):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> Any:
        self.path = tmp_path / "pipelines.sqlite"
        self.opened: list[SqlitePipelineStore] = []
        yield
        for s in self.opened:
            s.close()

    def make(self) -> Any:
        store = SqlitePipelineStore(self.path)
        self.opened.append(store)
        return store

    def test_two_objects_on_one_file_share_versions_and_add_them_atomically(self) -> None:
        a, b = self.make(), self.make()
        got: list[int] = []

        def add(store: SqlitePipelineStore, n: int) -> None:
            got.extend(store.add_version("p", f"{n}{j}".ljust(64, "0"), make_current=True,
                                         created_at=0.0)[0] for j in range(10))

        threads = [threading.Thread(target=add, args=(s, n)) for n, s in
                   enumerate([a, b, a, b])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(got) == list(range(1, 41))
        assert [v.version for v in b.versions("p")] == list(range(1, 41))

    def test_a_corrupt_row_raises_a_store_error_naming_it(self) -> None:
        store = self.make()
        store.save(stored(1))
        store.save(stored(2))
        with sqlite3.connect(self.path) as conn:
            conn.execute("UPDATE constellation_pipelines SET body = ? WHERE "
                         "structural_hash = ?", (b"\xc1 not msgpack", f"{1:064x}"))
        with pytest.raises(PipelineStoreError) as info:
            store.load(f"{1:064x}")
        assert info.value.code == "E701"
        assert info.value.details["reason"] == "corrupt"
        assert info.value.details["structural_hash"] == f"{1:064x}"
        assert store.load(f"{2:064x}") == stored(2)  # the others are intact

    def test_a_write_lock_held_elsewhere_fails_the_call_within_its_timeout(self) -> None:
        import time

        store = SqlitePipelineStore(self.path, timeout=0.5)
        self.opened.append(store)
        other = sqlite3.connect(self.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.add_version("p", "a" * 64, make_current=True, created_at=0.0)
        assert time.monotonic() - started < 3
        other.execute("ROLLBACK")
        other.close()
        assert store.add_version("p", "a" * 64, make_current=True, created_at=0.0) == (
            1, True)

    def test_it_can_share_the_execution_storages_file(self) -> None:
        from constellation.spi import SqliteExecutionStorage

        executions = SqliteExecutionStorage(self.path)
        store = self.make()
        store.save(stored(1))
        assert executions.list() == []
        assert store.load(f"{1:064x}") == stored(1)
        executions.close()


class TestPostgresPipelineStore(PipelineStoreContract):
    @pytest.fixture(autouse=True)
    def _dsn(self) -> Any:
        self.dsn = postgres_dsn()
        self.prefix = f"t_{uuid.uuid4().hex[:12]}_"
        self.opened: list[PostgresPipelineStore] = []
        yield
        if self.opened:
            self.opened[0].drop()
        for s in self.opened:
            s.close()

    def make(self) -> Any:
        store = PostgresPipelineStore(self.dsn, prefix=self.prefix)
        self.opened.append(store)
        return store

    def test_two_connections_add_versions_atomically(self) -> None:
        a, b = self.make(), self.make()
        got: list[int] = []
        barrier = threading.Barrier(4)

        def add(store: PostgresPipelineStore, n: int) -> None:
            barrier.wait(10)
            for j in range(10):
                got.append(store.add_version("p", f"{n}{j}".ljust(64, "0"),
                                             make_current=True, created_at=0.0)[0])
                got.append(store.add_version("p", "s" * 64, make_current=True,
                                             created_at=0.0)[0])

        threads = [threading.Thread(target=add, args=(s, n)) for n, s in
                   enumerate([a, b, a, b])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(set(got)) == list(range(1, 42))
        assert [v.version for v in a.versions("p")] == list(range(1, 42))

    def test_a_corrupt_row_raises_a_store_error(self) -> None:
        store = self.make()
        store.save(stored(1))
        store._q(f"UPDATE {self.prefix}pipelines SET body = ?", (b"\xc1",))
        with pytest.raises(PipelineStoreError) as info:
            store.load(f"{1:064x}")
        assert info.value.details["reason"] == "corrupt"

    def test_a_row_locked_by_another_session_fails_the_call_within_its_timeout(
            self) -> None:
        import time

        import psycopg

        store = PostgresPipelineStore(self.dsn, prefix=self.prefix, timeout=1)
        self.opened.append(store)
        store.add_version("p", "a" * 64, make_current=True, created_at=0.0)
        with psycopg.connect(self.dsn) as other:
            other.execute(f"SELECT * FROM {self.prefix}names WHERE name = 'p' FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError):  # lock or statement timeout
                store.add_version("p", "b" * 64, make_current=True, created_at=0.0)
            assert time.monotonic() - started < 5
        assert store.add_version("p", "b" * 64, make_current=True, created_at=0.0) == (
            2, True)

    def test_a_broken_connection_is_replaced(self) -> None:
        store = self.make()
        store.save(stored(1))
        store._conn.close()
        assert store.load(f"{1:064x}") == stored(1)


def test_postgres_refuses_bad_prefixes_and_timeouts() -> None:
    with pytest.raises(ConfigurationError, match="invalid table prefix"):
        PostgresPipelineStore("host=127.0.0.1", prefix="x; drop table y")
    with pytest.raises(ConfigurationError, match="timeout"):
        PostgresPipelineStore("host=127.0.0.1", timeout=0)


def test_an_unreachable_postgres_fails_within_its_timeout() -> None:
    import time

    started = time.monotonic()
    with pytest.raises(PipelineStoreError) as info:
        PostgresPipelineStore("host=10.255.255.1 port=5432 dbname=x", timeout=1)
    assert time.monotonic() - started < 5
    assert info.value.details == {"reason": "backend", "operation": "connect"}


def test_the_no_op_store_keeps_nothing() -> None:
    store = NoOpPipelineStore()
    assert isinstance(store, PipelineStore)
    store.save(stored(1))
    assert store.load(f"{1:064x}") is None
    assert store.list() == []
    assert store.add_version("p", "a" * 64, make_current=True, created_at=0.0) == (1, False)
    assert store.versions("p") == []
    assert store.current("p") is None
    assert store.names() == []
    store.set_alias("a", "b")
    assert store.alias("a") is None
    with store:
        pass


def test_pipeline_stores_are_registered_by_name(tmp_path: Path) -> None:
    assert {b.name for b in list_backends("pipelines")} >= {"memory", "noop", "sqlite",
                                                            "postgres"}
    assert isinstance(create_backend("pipelines", "memory"), InMemoryPipelineStore)
    store = create_backend("pipelines", "sqlite", path=tmp_path / "p.sqlite")
    assert isinstance(store, SqlitePipelineStore)
    store.close()
