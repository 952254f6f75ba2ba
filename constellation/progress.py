"""Live progress for ``constellation run --progress``: a listener that shows each node.

Two views of the same events (the listener SPI's: a call starting, finishing, failing;
a retry is a start with attempt 2, 3 ...):

- :class:`PlainProgress` -- one line per event, for logs and pipes (what you get when
  standard error is not a terminal, or when ``rich`` is not installed);
- :class:`RichProgress` -- a table redrawn in place on a terminal, one row per node
  with its status, attempts and duration (needs ``rich``: ``pip install
  'constellation-engine[cli]'``).

Both write to standard error, so the result on standard output stays machine-readable.
They run on the engine's listener thread; a failure to write is ignored (the engine
counts a listener that raises and goes on anyway).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from constellation.spi._listener import NoOpListener

if TYPE_CHECKING:
    from constellation.spi._listener import ExecutionEvent, ModuleEvent

__all__ = ["PlainProgress", "RichProgress", "progress_listener"]


def _ms(duration_ms: float | None) -> str:
    if duration_ms is None:
        return ""
    if duration_ms >= 1000:
        return f"{duration_ms / 1000:.2f} s"
    if duration_ms < 1:
        return f"{duration_ms * 1000:.0f} µs"
    return f"{duration_ms:.1f} ms"


class PlainProgress(NoOpListener):
    """One line per event on ``stream`` (standard error by default)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: progress is optional
                pass

    def on_execution_start(self, event: ExecutionEvent) -> None:
        self._line(f"[{event.pipeline}] started ({event.execution_id})")

    def on_module_start(self, event: ModuleEvent) -> None:
        if event.attempt > 1:
            self._line(f"  retry    {event.node} (attempt {event.attempt})")
        else:
            self._line(f"  start    {event.node}")

    def on_module_complete(self, event: ModuleEvent) -> None:
        self._line(f"  done     {event.node} in {_ms(event.duration_ms)}")

    def on_module_failed(self, event: ModuleEvent) -> None:
        self._line(f"  failed   {event.node} (attempt {event.attempt}, "
                   f"{_ms(event.duration_ms)}): {event.error}")

    def on_execution_complete(self, event: ExecutionEvent) -> None:
        error = f": {event.error}" if event.error else ""
        self._line(f"[{event.pipeline}] {event.status} in {_ms(event.duration_ms)}{error}")

    def close(self) -> None:
        """Nothing to release."""


_STYLES = {"running": "cyan", "retrying": "yellow", "completed": "green", "failed": "red"}


class RichProgress(NoOpListener):
    """A live table on a terminal (``rich``), one row per node of the execution."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console if console is not None else Console(stderr=True)
        self._rows: dict[str, dict[str, Any]] = {}
        self._title = ""
        self._lock = threading.Lock()
        self._live = Live(self._table(), console=self.console, refresh_per_second=12,
                          transient=False)
        self._started = False

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self._title or None, title_justify="left", expand=False)
        table.add_column("node")
        table.add_column("status")
        table.add_column("attempt", justify="right")
        table.add_column("time", justify="right")
        table.add_column("error", overflow="fold", max_width=60)
        for node, row in self._rows.items():
            status = row["status"]
            elapsed = row["ms"] if row["ms"] is not None else \
                (time.perf_counter() - row["since"]) * 1000.0
            table.add_row(node, f"[{_STYLES.get(status, 'white')}]{status}[/]",
                          str(row["attempt"]), _ms(elapsed), row["error"] or "")
        return table

    def _update(self) -> None:
        try:
            if not self._started:
                self._live.start()
                self._started = True
            self._live.update(self._table(), refresh=True)
        except Exception:  # a terminal that went away: progress is optional
            pass

    def on_execution_start(self, event: ExecutionEvent) -> None:
        with self._lock:
            self._title = f"{event.pipeline} ({event.execution_id})"
            self._update()

    def on_module_start(self, event: ModuleEvent) -> None:
        with self._lock:
            self._rows[event.node] = {"status": "retrying" if event.attempt > 1 else
                                      "running", "attempt": event.attempt, "ms": None,
                                      "since": time.perf_counter(), "error": None}
            self._update()

    def _ended(self, event: ModuleEvent, status: str) -> None:
        with self._lock:
            self._rows[event.node] = {"status": status, "attempt": event.attempt,
                                      "ms": event.duration_ms, "since": 0.0,
                                      "error": event.error}
            self._update()

    def on_module_complete(self, event: ModuleEvent) -> None:
        self._ended(event, "completed")

    def on_module_failed(self, event: ModuleEvent) -> None:
        self._ended(event, "failed")

    def on_execution_complete(self, event: ExecutionEvent) -> None:
        with self._lock:
            error = f": {event.error}" if event.error else ""
            self._title = (f"{event.pipeline} {event.status} in "
                           f"{_ms(event.duration_ms)}{error}")
            self._update()

    def close(self) -> None:
        """Stop redrawing (the last table stays on the terminal)."""
        with self._lock:
            if self._started:
                with contextlib.suppress(Exception):  # the terminal went away
                    self._live.stop()
                self._started = False


def progress_listener(stream: IO[str] | None = None) -> PlainProgress | RichProgress:
    """The live table when ``stream`` (standard error) is a terminal and ``rich`` is
    installed, else plain lines."""
    stream = stream if stream is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty:
        try:
            import rich  # noqa: F401
        except ImportError:
            pass
        else:
            return RichProgress()
    return PlainProgress(stream)
