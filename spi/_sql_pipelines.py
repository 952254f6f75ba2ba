"""SqlitePipelineStore, and the SQL the PostgreSQL store shares with it.

Five tables (names prefixed, so they can live in the execution storage's database):
``<p>pipelines`` (hash → name, time, msgpack body ``{"source", "spec"}``),
``<p>names`` (name → last version number given, current version), ``<p>versions``
(name, version → hash; unique per name and hash), ``<p>aliases`` and ``<p>canaries``.

Adding a version is one transaction that first locks the name's row (SQLite: ``BEGIN
IMMEDIATE`` takes the database's write lock; PostgreSQL: ``SELECT ... FOR UPDATE``),
then looks for the hash, then takes ``last + 1``: concurrent adds, also from other
processes, get distinct, consecutive numbers, and a hash gets one version per name.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from constellation.core.errors import ConfigurationError, PipelineStoreError
from constellation.spi._pipelines import (
    CanarySetting,
    PipelineVersion,
    StoredPipeline,
    _ContextManager,
)
from constellation.spi._sqlite import SqliteConnections

if TYPE_CHECKING:
    import builtins
    import sqlite3
    from collections.abc import Iterator

__all__ = ["SqlitePipelineStore"]


def check_prefix(prefix: str) -> str:
    """The table-name prefix, checked (it is put into SQL text).

    Raises:
        ConfigurationError: not letters, digits and underscores.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise ConfigurationError(f"invalid table prefix {prefix!r}",
                                 details={"field": "prefix"})
    return prefix


def encode_body(entry: StoredPipeline) -> bytes:
    """The entry's source and spec, msgpack-encoded."""
    return msgpack.packb({"source": entry.source,  # type: ignore[no-any-return]
                          "spec": None if entry.spec is None else dict(entry.spec)},
                         use_bin_type=True)


def decode_entry(row: tuple[Any, ...]) -> StoredPipeline:
    """A ``(hash, name, created_at, body)`` row as an entry.

    Raises:
        PipelineStoreError: the body does not decode (reason ``corrupt``).
    """
    structural_hash, name, created_at, body = row
    try:
        data = msgpack.unpackb(bytes(body), raw=False, strict_map_key=False)
        source, spec = data["source"], data["spec"]
        if not (source is None or isinstance(source, str)) or \
                not (spec is None or isinstance(spec, dict)) or (source is None and
                                                                 spec is None):
            raise ValueError("neither source text nor a spec")
    except Exception as exc:
        raise PipelineStoreError(
            f"the stored pipeline {structural_hash[:12]} is corrupt: {exc}",
            details={"reason": "corrupt", "structural_hash": structural_hash,
                     "operation": "load"}) from exc
    return StoredPipeline(structural_hash, name, source, spec, float(created_at))


class SqlPipelineStore(_ContextManager):
    """The queries, over a connection the subclass provides (``?`` placeholders; the
    PostgreSQL store turns them into ``%s``)."""

    prefix = "constellation_"
    lock_row = ""  # " FOR UPDATE" where the database locks rows

    def _tx(self) -> AbstractContextManager[Any]:
        """A transaction; yields ``q(sql, params) -> cursor``."""
        raise NotImplementedError

    def _q(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """One statement in its own transaction; returns the rows fetched (a list) for
        a SELECT, else the number of rows changed."""
        raise NotImplementedError

    def _t(self, name: str) -> str:
        return self.prefix + name

    def schema(self, blob: str, real: str) -> builtins.list[str]:
        """The CREATE statements (column types given by the dialect)."""
        t = self._t
        return [
            f"CREATE TABLE IF NOT EXISTS {t('pipelines')} (structural_hash TEXT PRIMARY KEY,"
            f" name TEXT NOT NULL, created_at {real} NOT NULL, body {blob} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t('names')} (name TEXT PRIMARY KEY, "
            "last_version INTEGER NOT NULL, current_version INTEGER)",
            f"CREATE TABLE IF NOT EXISTS {t('versions')} (name TEXT NOT NULL, "
            f"version INTEGER NOT NULL, structural_hash TEXT NOT NULL, created_at {real} "
            "NOT NULL, PRIMARY KEY (name, version), UNIQUE (name, structural_hash))",
            f"CREATE TABLE IF NOT EXISTS {t('aliases')} (alias TEXT PRIMARY KEY, "
            "structural_hash TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t('canaries')} (name TEXT PRIMARY KEY, "
            f"candidate TEXT NOT NULL, weight {real} NOT NULL, created_at {real} NOT NULL)",
        ]

    # --- pipelines -----------------------------------------------------------------------

    def save(self, entry: StoredPipeline) -> None:
        """Store it unless the hash is stored."""
        self._q(f"INSERT INTO {self._t('pipelines')} VALUES (?, ?, ?, ?) "
                "ON CONFLICT (structural_hash) DO NOTHING",
                (entry.structural_hash, entry.name, entry.created_at, encode_body(entry)))

    def load(self, structural_hash: str) -> StoredPipeline | None:
        """The entry, or None."""
        rows = self._q(f"SELECT structural_hash, name, created_at, body FROM "
                       f"{self._t('pipelines')} WHERE structural_hash = ?", (structural_hash,))
        return decode_entry(rows[0]) if rows else None

    def list(self, *, limit: int = 100, offset: int = 0) -> builtins.list[StoredPipeline]:
        """Entries, oldest first, paged."""
        rows = self._q(f"SELECT structural_hash, name, created_at, body FROM "
                       f"{self._t('pipelines')} ORDER BY created_at, structural_hash "
                       "LIMIT ? OFFSET ?", (int(limit), int(offset)))
        return [decode_entry(r) for r in rows]

    def delete(self, structural_hash: str) -> bool:
        """Remove the entry."""
        return bool(self._q(f"DELETE FROM {self._t('pipelines')} WHERE structural_hash = ?",
                            (structural_hash,)))

    # --- versions ------------------------------------------------------------------------

    def add_version(self, name: str, structural_hash: str, *, make_current: bool,
                    created_at: float) -> tuple[int, bool]:
        """One transaction: lock the name's row, find the hash, or add ``last + 1``."""
        names, versions = self._t("names"), self._t("versions")
        with self._tx() as q:
            q(f"INSERT INTO {names} VALUES (?, 0, NULL) ON CONFLICT (name) DO NOTHING",
              (name,))
            last, current = q(f"SELECT last_version, current_version FROM {names} "
                              f"WHERE name = ?{self.lock_row}", (name,)).fetchone()
            found = q(f"SELECT version FROM {versions} WHERE name = ? AND "
                      "structural_hash = ?", (name, structural_hash)).fetchone()
            if found is not None:
                return int(found[0]), False
            version = int(last) + 1
            q(f"INSERT INTO {versions} VALUES (?, ?, ?, ?)",
              (name, version, structural_hash, created_at))
            q(f"UPDATE {names} SET last_version = ?, current_version = ? WHERE name = ?",
              (version, version if make_current or current is None else current, name))
            return version, True

    def versions(self, name: str) -> builtins.list[PipelineVersion]:
        """Oldest first."""
        rows = self._q(f"SELECT name, version, structural_hash, created_at FROM "
                       f"{self._t('versions')} WHERE name = ? ORDER BY version", (name,))
        return [PipelineVersion(n, int(v), h, float(at)) for n, v, h, at in rows]

    def current(self, name: str) -> PipelineVersion | None:
        """The current version."""
        rows = self._q(f"SELECT v.name, v.version, v.structural_hash, v.created_at FROM "
                       f"{self._t('names')} n JOIN {self._t('versions')} v ON v.name = n.name"
                       " AND v.version = n.current_version WHERE n.name = ?", (name,))
        if not rows:
            return None
        n, v, h, at = rows[0]
        return PipelineVersion(n, int(v), h, float(at))

    def set_current(self, name: str, version: int) -> bool:
        """One conditional UPDATE."""
        return bool(self._q(
            f"UPDATE {self._t('names')} SET current_version = ? WHERE name = ? AND EXISTS "
            f"(SELECT 1 FROM {self._t('versions')} WHERE name = ? AND version = ?)",
            (version, name, name, version)))

    def delete_version(self, name: str, version: int) -> bool:
        """One conditional DELETE (never the current version)."""
        return bool(self._q(
            f"DELETE FROM {self._t('versions')} WHERE name = ? AND version = ? AND "
            f"version <> COALESCE((SELECT current_version FROM {self._t('names')} "
            "WHERE name = ?), -1)", (name, version, name)))

    def delete_name(self, name: str) -> bool:
        """One transaction."""
        with self._tx() as q:
            q(f"DELETE FROM {self._t('canaries')} WHERE name = ?", (name,))
            q(f"DELETE FROM {self._t('versions')} WHERE name = ?", (name,))
            return bool(q(f"DELETE FROM {self._t('names')} WHERE name = ?",
                          (name,)).rowcount)

    def names(self) -> builtins.list[str]:
        """Sorted."""
        return [r[0] for r in self._q(f"SELECT name FROM {self._t('names')} ORDER BY name")]

    # --- aliases and canaries ------------------------------------------------------------

    def set_alias(self, alias: str, structural_hash: str) -> None:
        """Insert or replace."""
        self._q(f"INSERT INTO {self._t('aliases')} VALUES (?, ?) ON CONFLICT (alias) "
                "DO UPDATE SET structural_hash = EXCLUDED.structural_hash",
                (alias, structural_hash))

    def alias(self, alias: str) -> str | None:
        """Its hash."""
        rows = self._q(f"SELECT structural_hash FROM {self._t('aliases')} WHERE alias = ?",
                       (alias,))
        return str(rows[0][0]) if rows else None

    def aliases(self) -> dict[str, str]:
        """Every alias."""
        return dict(self._q(f"SELECT alias, structural_hash FROM {self._t('aliases')} "
                            "ORDER BY alias"))

    def delete_alias(self, alias: str) -> bool:
        """Remove it."""
        return bool(self._q(f"DELETE FROM {self._t('aliases')} WHERE alias = ?", (alias,)))

    def set_canary(self, setting: CanarySetting) -> None:
        """Insert or replace."""
        self._q(f"INSERT INTO {self._t('canaries')} VALUES (?, ?, ?, ?) ON CONFLICT (name) "
                "DO UPDATE SET candidate = EXCLUDED.candidate, weight = EXCLUDED.weight, "
                "created_at = EXCLUDED.created_at",
                (setting.name, setting.candidate, float(setting.weight), setting.created_at))

    def canary(self, name: str) -> CanarySetting | None:
        """The name's canary."""
        rows = self._q(f"SELECT name, candidate, weight, created_at FROM "
                       f"{self._t('canaries')} WHERE name = ?", (name,))
        if not rows:
            return None
        n, candidate, weight, at = rows[0]
        return CanarySetting(n, candidate, float(weight), float(at))

    def delete_canary(self, name: str) -> bool:
        """Remove it."""
        return bool(self._q(f"DELETE FROM {self._t('canaries')} WHERE name = ?", (name,)))


class SqlitePipelineStore(SqlPipelineStore):
    """Pipelines, versions, aliases and canaries in a SQLite file (created if missing);
    it may be the execution storage's file. WAL mode, a connection per thread, a busy
    timeout bounding every wait for another writer (of this or another process).

    Args:
        path: the database file.
        timeout: seconds to wait for another connection's write lock.
        prefix: put before each table's name.
    """

    def __init__(self, path: str | Path, timeout: float = 10.0,
                 prefix: str = "constellation_") -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.prefix = check_prefix(prefix)
        self._db = SqliteConnections(self.path, timeout)
        conn = self._conn()
        for statement in self.schema("BLOB", "REAL"):
            conn.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn.execute
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _q(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        cur = self._conn().execute(sql, params)
        return cur.fetchall() if cur.description is not None else cur.rowcount

    def close(self) -> None:
        """Close every connection this object opened."""
        self._db.close()
