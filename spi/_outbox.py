"""OutboxListener: durable, at-least-once delivery of events to another listener.

Each event is written (and committed) to a SQLite outbox before the callback returns:
only then does it count as emitted. The engine hands it events in batches
(:meth:`OutboxListener.on_batch`, one transaction for what accumulated -- a group
commit), and never drops its events at the listener backlog (``durable = True``). A
relay thread delivers the outbox, oldest first, to the wrapped listener and deletes
what it delivered, one transaction per pass; a listener that raises is retried with
exponential backoff. Events still in the outbox when the process dies -- even by
SIGKILL -- are delivered by the next OutboxListener opened on the same file. At least
once: events delivered just before a crash, whose deletion had not been committed, are
delivered again; listeners that must not see duplicates can key on ``(kind,
execution_id, node, attempt, timestamp)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

from constellation.core.errors import ConfigurationError
from constellation.spi._listener import ExecutionEvent, ModuleEvent

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from constellation.spi._listener import ExecutionListener

__all__ = ["OutboxListener"]

logger = logging.getLogger("constellation.listener")

_KINDS = {
    "on_execution_start": ExecutionEvent,
    "on_module_start": ModuleEvent,
    "on_module_complete": ModuleEvent,
    "on_module_failed": ModuleEvent,
    "on_execution_complete": ExecutionEvent,
}

_FIELDS = {kind: tuple(f.name for f in dataclasses.fields(cls)) for kind, cls in _KINDS.items()}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT
)
"""


class OutboxListener:
    """Wrap ``listener`` so that every event reaches it at least once, crashes included.

    Args:
        listener: the listener events are delivered to (on the relay thread).
        path: the SQLite outbox file (created if missing).
        retry_initial: seconds before the first redelivery of a failed event.
        retry_max: the longest wait between redeliveries.
        poll_interval: how often the relay looks for due events when not woken.
        start: start the relay thread now (else call :meth:`start` or
            :meth:`deliver_pending`).

    Raises:
        ConfigurationError: ``listener`` is not an ExecutionListener, or the file cannot
            be opened.
    """

    durable: ClassVar[bool] = True
    """The engine never drops this listener's events at its backlog."""

    def __init__(self, listener: ExecutionListener, path: str | Path, *,
                 retry_initial: float = 0.5, retry_max: float = 30.0,
                 poll_interval: float = 1.0, start: bool = True) -> None:
        from constellation.spi._listener import ExecutionListener as Protocol

        if not isinstance(listener, Protocol):
            raise ConfigurationError(f"OutboxListener needs an ExecutionListener, got "
                                     f"{type(listener).__name__}", details={"field": "listener"})
        self.listener = listener
        self.path = str(path)
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.poll_interval = poll_interval
        self.delivered = 0
        self.failures = 0
        self._local = threading.local()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._relay_lock = threading.Lock()  # one delivery pass at a time
        self._thread: threading.Thread | None = None
        try:
            conn = self._conn()
            conn.execute(_SCHEMA)
            # A new relay starts afresh: what an earlier process left (crashed, killed,
            # or backing off from a listener that was down) is due now.
            conn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE next_attempt_at > 0")
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the outbox {self.path}: {exc}",
                                     details={"field": "path"}) from exc
        if start:
            self.start()

    # --- storage -----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # committed means on disk
            self._local.conn = conn
        return conn

    def _record(self, kind: str, event: Any) -> None:
        self.on_batch([(kind, event)])

    def on_batch(self, events: Sequence[tuple[str, Any]]) -> None:
        """Record several events in one transaction; return once it is committed.

        Args:
            events: ``(callback name, event)`` pairs, e.g. ``("on_module_start",
                ModuleEvent(...))``.

        Raises:
            ValueError: an unknown callback name (nothing is recorded).
            sqlite3.Error: the outbox could not be written (nothing is recorded).
        """
        rows = []
        dumps = json.dumps
        for kind, event in events:
            names = _FIELDS.get(kind)
            if names is None:
                raise ValueError(f"not an ExecutionListener callback: {kind!r}")
            # Events are flat (their one mapping is JSON-ready): no asdict deep copy,
            # which cost a third of the listener thread's time.
            rows.append((kind, dumps({n: getattr(event, n) for n in names}, default=str)))
        if not rows:
            return
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO outbox (kind, payload) VALUES (?, ?)", rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._wake.set()

    def pending(self) -> int:
        """Events recorded and not delivered yet."""
        row = self._conn().execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(row[0])

    # --- ExecutionListener ---------------------------------------------------------------

    def on_execution_start(self, event: ExecutionEvent) -> None:
        """Record the event; the relay delivers it."""
        self._record("on_execution_start", event)

    def on_module_start(self, event: ModuleEvent) -> None:
        """Record the event; the relay delivers it."""
        self._record("on_module_start", event)

    def on_module_complete(self, event: ModuleEvent) -> None:
        """Record the event; the relay delivers it."""
        self._record("on_module_complete", event)

    def on_module_failed(self, event: ModuleEvent) -> None:
        """Record the event; the relay delivers it."""
        self._record("on_module_failed", event)

    def on_execution_complete(self, event: ExecutionEvent) -> None:
        """Record the event; the relay delivers it."""
        self._record("on_execution_complete", event)

    # --- relay -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the relay thread (if it is not running)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._relay, name="constellation-outbox",
                                            daemon=True)
            self._thread.start()

    def deliver_pending(self, batch: int = 500) -> int:
        """One delivery pass over the due events, on the calling thread.

        Returns:
            How many events were delivered.
        """
        with self._relay_lock:
            conn = self._conn()
            rows = conn.execute(
                "SELECT id, kind, payload, attempts FROM outbox WHERE next_attempt_at <= ? "
                "ORDER BY id LIMIT ?", (time.time(), batch)).fetchall()
            delivered: list[tuple[int]] = []
            failed: list[tuple[float, str, int]] = []
            try:
                for row_id, kind, payload, attempts in rows:
                    if self._stop.is_set() and threading.current_thread() is self._thread:
                        break
                    try:
                        event = _KINDS[kind](**json.loads(payload))
                        getattr(self.listener, kind)(event)
                    except Exception as exc:
                        self.failures += 1
                        delay = min(self.retry_initial * 2 ** attempts, self.retry_max)
                        failed.append((time.time() + delay, f"{type(exc).__name__}: {exc}",
                                       row_id))
                        if attempts == 0 or (attempts + 1) % 10 == 0:
                            logger.warning("outbox: %s failed on %s (attempt %d): %s; "
                                           "retrying in %.1f s", type(self.listener).__name__,
                                           kind, attempts + 1, exc, delay)
                        continue
                    delivered.append((row_id,))
            finally:
                # One transaction for the pass: what was delivered goes, what failed
                # waits for its retry (even if a BaseException cut the pass short).
                if delivered or failed:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany("DELETE FROM outbox WHERE id = ?", delivered)
                    conn.executemany("UPDATE outbox SET attempts = attempts + 1, "
                                     "next_attempt_at = ?, last_error = ? WHERE id = ?",
                                     failed)
                    conn.execute("COMMIT")
                self.delivered += len(delivered)
            return len(delivered)

    def _relay(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.deliver_pending()
            except Exception:
                logger.exception("outbox relay pass failed; trying again")
                delivered = 0
            if delivered == 0:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is due (within ``timeout``), then stop the relay. Events not
        delivered stay in the outbox for the next OutboxListener on this file."""
        deadline = time.monotonic() + timeout
        while self._thread is not None and time.monotonic() < deadline:
            due = self._conn().execute("SELECT COUNT(*) FROM outbox WHERE next_attempt_at "
                                       "<= ?", (time.time(),)).fetchone()[0]
            if not due:
                break
            self._wake.set()
            time.sleep(0.01)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
            self._thread = None
