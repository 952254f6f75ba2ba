"""PostgresPipelineStore: the pipeline store in PostgreSQL (psycopg 3).

Needs the ``postgres`` extra. The same tables and queries as the SQLite store
(``constellation.spi._sql_pipelines``); adding a version locks the name's row with
``SELECT ... FOR UPDATE``, so concurrent adds from several processes get distinct,
consecutive numbers. One connection, used under a lock; every call is bounded: the
lock wait, the connection (``connect_timeout``) and each statement
(``statement_timeout``, ``lock_timeout``). A broken connection is replaced on the next
call.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError, PipelineStoreError
from constellation.spi._sql_pipelines import SqlPipelineStore, check_prefix

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["PostgresPipelineStore"]


class PostgresPipelineStore(SqlPipelineStore):
    """Pipelines, versions, aliases and canaries in PostgreSQL tables (created if
    missing).

    Args:
        dsn: a libpq connection string, e.g. ``"host=127.0.0.1 dbname=app user=app"``.
        prefix: put before each table's name (letters, digits and underscores).
        timeout: seconds any one call may wait: for this object's lock, to connect,
            for a statement and for a row lock.
    """

    lock_row = " FOR UPDATE"

    def __init__(self, dsn: str, prefix: str = "constellation_", timeout: float = 10.0
                 ) -> None:
        self.prefix = check_prefix(prefix)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
                not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, got "
                                     f"{timeout!r}", details={"field": "timeout"})
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                "the PostgreSQL pipeline store needs psycopg: pip install "
                "'constellation-engine[postgres]'", details={"field": "pipelines"}) from None
        self._psycopg = psycopg
        self.dsn = dsn
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._locked() as conn:
            for statement in self.schema("BYTEA", "DOUBLE PRECISION"):
                conn.execute(statement)

    def _connect(self) -> Any:
        ms = int(self.timeout * 1000)
        conn = self._psycopg.connect(self.dsn, autocommit=True,
                                     connect_timeout=max(1, int(self.timeout)))
        conn.execute(f"SET statement_timeout = {ms}")
        conn.execute(f"SET lock_timeout = {ms}")
        return conn

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        if not self._lock.acquire(timeout=self.timeout):
            raise PipelineStoreError(
                f"the PostgreSQL pipeline store was busy for {self.timeout} s",
                details={"reason": "backend", "operation": "lock"})
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                try:
                    self._conn = self._connect()
                except self._psycopg.Error as exc:
                    raise PipelineStoreError(
                        f"cannot connect to the PostgreSQL pipeline store: {exc}",
                        details={"reason": "backend", "operation": "connect"}) from exc
            yield self._conn
        finally:
            self._lock.release()

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._locked() as conn, conn.transaction():
            yield lambda sql, params=(): conn.execute(self._sql(sql), params)

    def _q(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self._locked() as conn:
            cur = conn.execute(self._sql(sql), params)
            return cur.fetchall() if cur.description is not None else cur.rowcount

    def drop(self) -> None:
        """Drop the tables (tests and tear-down)."""
        for table in ("pipelines", "names", "versions", "aliases", "canaries"):
            self._q(f"DROP TABLE IF EXISTS {self._t(table)}")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
