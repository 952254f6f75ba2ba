"""SqliteExecutionStorage: execution records in a SQLite file.

Values (inputs, outputs, errors, node records, snapshots, owner) are msgpack-encoded.
The database runs in WAL mode with a busy timeout, so several processes may read and
write the same file; each thread gets its own connection. ``claim`` is one conditional
UPDATE, atomic across processes; ``save_many`` writes a batch in one transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from constellation.spi._storage import ExecutionRecord

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["SqliteExecutionStorage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    structural_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_started ON executions (started_at DESC);
CREATE INDEX IF NOT EXISTS executions_pipeline ON executions (pipeline, started_at DESC);
CREATE INDEX IF NOT EXISTS executions_status ON executions (status, started_at DESC);
"""


def _encode(record: ExecutionRecord) -> bytes:
    return msgpack.packb({  # type: ignore[no-any-return]
        "inputs": dict(record.inputs), "outputs": dict(record.outputs),
        "errors": [dict(e) for e in record.errors],
        "nodes": {k: dict(v) for k, v in record.nodes.items()},
        "snapshot": dict(record.snapshot) if record.snapshot is not None else None,
        "owner": dict(record.owner) if record.owner is not None else None,
    }, use_bin_type=True)


def _decode(row: tuple[Any, ...]) -> ExecutionRecord:
    execution_id, pipeline, structural_hash, status, started_at, ended_at, body = row
    data = msgpack.unpackb(body, raw=False, strict_map_key=False)
    return ExecutionRecord(execution_id, pipeline, structural_hash, status, data["inputs"],
                           data["outputs"], tuple(data["errors"]), data["nodes"],
                           started_at, ended_at, data["snapshot"], data.get("owner"))


def _row(record: ExecutionRecord) -> tuple[Any, ...]:
    return (record.execution_id, record.pipeline, record.structural_hash, record.status,
            record.started_at, record.ended_at, _encode(record))


class SqliteConnections:
    """A connection per thread to one SQLite file (WAL, a busy timeout bounding every
    wait for another writer), all closed by :meth:`close`. Shared by the SQLite
    backends that keep their tables in one file."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.get().execute("PRAGMA journal_mode=WAL")

    def get(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection opened so far."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()


class SqliteExecutionStorage:
    """Execution records in a SQLite file (created if missing).

    Args:
        path: the database file.
        timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._db = SqliteConnections(self.path, timeout)
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    def save(self, record: ExecutionRecord) -> None:
        """Insert or replace the record."""
        self._conn().execute("INSERT OR REPLACE INTO executions VALUES (?, ?, ?, ?, ?, ?, ?)",
                             _row(record))

    def save_many(self, records: Iterable[ExecutionRecord]) -> None:
        """Insert or replace several records in one transaction (one sync to disk)."""
        rows = [_row(r) for r in records]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO executions VALUES (?, ?, ?, ?, ?, ?, ?)",
                             rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def claim(self, record: ExecutionRecord, expected_status: str) -> bool:
        """Replace the record if its stored status is ``expected_status`` (one UPDATE:
        atomic, also against other processes)."""
        execution_id, *values = _row(record)
        cur = self._conn().execute(
            "UPDATE executions SET pipeline = ?, structural_hash = ?, status = ?, "
            "started_at = ?, ended_at = ?, body = ? WHERE execution_id = ? AND status = ?",
            (*values, execution_id, expected_status))
        return cur.rowcount == 1

    def load(self, execution_id: str) -> ExecutionRecord | None:
        """The record, or None."""
        row = self._conn().execute(
            "SELECT * FROM executions WHERE execution_id = ?", (execution_id,)).fetchone()
        return _decode(row) if row else None

    def list(self, *, pipeline: str | None = None, status: str | None = None,
             limit: int = 100, offset: int = 0) -> list[ExecutionRecord]:
        """Records, newest first, filtered and paged."""
        where, params = [], []
        if pipeline is not None:
            where.append("pipeline = ?")
            params.append(pipeline)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = "SELECT * FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC LIMIT ? OFFSET ?"
        rows = self._conn().execute(sql, (*params, int(limit), int(offset))).fetchall()
        return [_decode(r) for r in rows]

    def delete(self, execution_id: str) -> bool:
        """Remove the record."""
        cur = self._conn().execute("DELETE FROM executions WHERE execution_id = ?",
                                   (execution_id,))
        return cur.rowcount > 0

    def close(self) -> None:
        """Close every connection this object opened."""
        self._db.close()
