"""PostgresExecutionStorage: execution records in PostgreSQL (psycopg 3).

Needs the ``postgres`` extra: ``pip install 'constellation-engine[postgres]'``. Values are
msgpack-encoded in a ``bytea`` column, as in the SQLite storage. ``claim`` is one
conditional UPDATE (atomic under PostgreSQL's row locks, also between processes);
``save_many`` writes a batch in one transaction.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError
from constellation.spi._sqlite import _decode, _row

if TYPE_CHECKING:
    from collections.abc import Iterable

    from constellation.spi._storage import ExecutionRecord

__all__ = ["PostgresExecutionStorage"]


class PostgresExecutionStorage:
    """Execution records in a PostgreSQL table (created if missing).

    Args:
        dsn: a libpq connection string, e.g. ``"host=127.0.0.1 dbname=app user=app"``.
        table: the table's name (letters, digits and underscores).
    """

    def __init__(self, dsn: str, table: str = "constellation_executions") -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ConfigurationError(f"invalid table name {table!r}",
                                     details={"field": "table"})
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                "the PostgreSQL storage needs psycopg: pip install "
                "'constellation-engine[postgres]'", details={"field": "storage"}) from None
        self.table = table
        self._lock = threading.Lock()
        # One connection, used under a lock: simple and safe from any thread.
        self._conn = psycopg.connect(dsn, autocommit=True)
        t = table
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (execution_id TEXT PRIMARY KEY, "
            "pipeline TEXT NOT NULL, structural_hash TEXT NOT NULL, status TEXT NOT NULL, "
            "started_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION NOT NULL, "
            "body BYTEA NOT NULL)")
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_started ON {t} (started_at DESC)")
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_status ON {t} "
                           "(status, started_at DESC)")

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self._lock:
            return self._conn.execute(sql, params)

    def _upsert(self) -> str:
        return (f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (execution_id) DO UPDATE SET pipeline = EXCLUDED.pipeline, "
                "structural_hash = EXCLUDED.structural_hash, status = EXCLUDED.status, "
                "started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, "
                "body = EXCLUDED.body")

    def save(self, record: ExecutionRecord) -> None:
        """Insert or replace the record."""
        self._run(self._upsert(), _row(record))

    def save_many(self, records: Iterable[ExecutionRecord]) -> None:
        """Insert or replace several records in one transaction."""
        rows = [_row(r) for r in records]
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(self._upsert(), rows)

    def claim(self, record: ExecutionRecord, expected_status: str) -> bool:
        """Replace the record if its stored status is ``expected_status`` (one UPDATE:
        a concurrent claim waits for the row lock, then finds the new status)."""
        execution_id, *values = _row(record)
        cur = self._run(
            f"UPDATE {self.table} SET pipeline = %s, structural_hash = %s, status = %s, "
            "started_at = %s, ended_at = %s, body = %s "
            "WHERE execution_id = %s AND status = %s",
            (*values, execution_id, expected_status))
        return bool(cur.rowcount == 1)

    def load(self, execution_id: str) -> ExecutionRecord | None:
        """The record, or None."""
        with self._lock:
            row = self._conn.execute(f"SELECT * FROM {self.table} WHERE execution_id = %s",
                                     (execution_id,)).fetchone()
        return _decode((*tuple(row[:6]), bytes(row[6]))) if row else None

    def list(self, *, pipeline: str | None = None, status: str | None = None,
             limit: int = 100, offset: int = 0) -> list[ExecutionRecord]:
        """Records, newest first, filtered and paged."""
        where, params = [], []
        if pipeline is not None:
            where.append("pipeline = %s")
            params.append(pipeline)
        if status is not None:
            where.append("status = %s")
            params.append(status)
        sql = f"SELECT * FROM {self.table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC LIMIT %s OFFSET %s"
        with self._lock:
            rows = self._conn.execute(sql, (*params, int(limit), int(offset))).fetchall()
        return [_decode((*tuple(r[:6]), bytes(r[6]))) for r in rows]

    def delete(self, execution_id: str) -> bool:
        """Remove the record."""
        cur = self._run(f"DELETE FROM {self.table} WHERE execution_id = %s", (execution_id,))
        return bool(cur.rowcount)

    def drop(self) -> None:
        """Drop the table (tests and tear-down)."""
        self._run(f"DROP TABLE IF EXISTS {self.table}")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
