"""ExecutionListener: lifecycle events of executions and module calls.

Listeners are told, fire-and-forget, from the engine's listener actor: a listener that
raises or is slow is logged and counted and never fails or delays a pipeline.

Two optional members make a listener *durable* (see ``OutboxListener``): a true
``durable`` attribute -- the engine then never drops its events at the listener
backlog -- and ``on_batch(events)``, which takes ``(callback name, event)`` pairs that
accumulated, in one call (one transaction), returning once they are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "CompositeListener",
    "ExecutionEvent",
    "ExecutionListener",
    "LoggingListener",
    "ModuleEvent",
    "NoOpListener",
]

logger = logging.getLogger("constellation.listener")


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """An execution started or ended.

    Attributes:
        execution_id: the execution.
        pipeline: the pipeline's name.
        structural_hash: the pipeline's structural hash.
        status: ``running`` at start; the final status at the end.
        duration_ms: at the end, the execution's duration.
        error: at the end, the first error's message, if any.
        timestamp: seconds since the epoch.
    """

    execution_id: str
    pipeline: str
    structural_hash: str
    status: str
    duration_ms: float = 0.0
    error: str | None = None
    timestamp: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModuleEvent:
    """A module call started, completed or failed.

    Attributes:
        execution_id: the execution.
        node: the node's name.
        module: the module's name.
        attempt: 1 for the first call.
        duration_ms: for completed and failed calls.
        error: for failed calls, the error's message.
        timestamp: seconds since the epoch.
    """

    execution_id: str
    node: str
    module: str
    attempt: int = 1
    duration_ms: float = 0.0
    error: str | None = None
    timestamp: float = 0.0


@runtime_checkable
class ExecutionListener(Protocol):
    """Receives lifecycle events.

    Optionally, a listener has a ``listening`` attribute (or property): while it is
    false, the engine does not build module events for it (``on_module_start``,
    ``on_module_complete``, ``on_module_failed`` are not called); execution events
    still come. It is read once per batch of events (every few milliseconds at most), so
    events of a batch that began before it turned true may be missed. Durable listeners
    are always given everything.
    """

    def on_execution_start(self, event: ExecutionEvent) -> None:
        """An execution left the queue and started."""

    def on_module_start(self, event: ModuleEvent) -> None:
        """A module call started."""

    def on_module_complete(self, event: ModuleEvent) -> None:
        """A module call returned a value."""

    def on_module_failed(self, event: ModuleEvent) -> None:
        """A module call failed."""

    def on_execution_complete(self, event: ExecutionEvent) -> None:
        """An execution ended, whatever its status."""


class NoOpListener:
    """All operations are no-op. The default."""

    def on_execution_start(self, event: ExecutionEvent) -> None:
        """Do nothing."""

    def on_module_start(self, event: ModuleEvent) -> None:
        """Do nothing."""

    def on_module_complete(self, event: ModuleEvent) -> None:
        """Do nothing."""

    def on_module_failed(self, event: ModuleEvent) -> None:
        """Do nothing."""

    def on_execution_complete(self, event: ExecutionEvent) -> None:
        """Do nothing."""


_CALLBACKS = ("on_execution_start", "on_module_start", "on_module_complete",
              "on_module_failed", "on_execution_complete")


class CompositeListener:
    """Tells several listeners, in order; one that raises does not stop the others.

    Args:
        listeners: the listeners.
    """

    def __init__(self, listeners: Iterable[ExecutionListener]) -> None:
        self.listeners = list(listeners)
        self.failures = 0

    @property
    def durable(self) -> bool:
        """Whether one of the listeners is durable (then no event is dropped for any)."""
        return any(getattr(listener, "durable", False) for listener in self.listeners)

    @property
    def listening(self) -> bool:
        """Whether one of the listeners takes module events now (see
        ``ExecutionListener``; a listener without ``listening`` always does)."""
        return any(bool(getattr(listener, "listening", True)) for listener in self.listeners)

    def on_batch(self, events: Sequence[tuple[str, Any]]) -> None:
        """Hand the events to every listener: whole, to those with ``on_batch`` (a
        durable one's exception propagates, so that the engine retries the batch), one
        by one to the others.

        Args:
            events: ``(callback name, event)`` pairs.
        """
        for listener in self.listeners:
            batch = getattr(listener, "on_batch", None)
            if callable(batch):
                if getattr(listener, "durable", False):
                    batch(events)
                    continue
                try:
                    batch(events)
                except Exception:
                    self.failures += 1
                    logger.exception("listener %s failed in on_batch",
                                     type(listener).__name__)
                continue
            for callback, event in events:
                try:
                    getattr(listener, callback)(event)
                except Exception:
                    self.failures += 1
                    logger.exception("listener %s failed in %s", type(listener).__name__,
                                     callback)

    def _each(self, callback: str, event: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, callback)(event)
            except Exception:
                self.failures += 1
                logger.exception("listener %s failed in %s", type(listener).__name__,
                                 callback)

    def on_execution_start(self, event: ExecutionEvent) -> None:
        """Tell every listener."""
        self._each("on_execution_start", event)

    def on_module_start(self, event: ModuleEvent) -> None:
        """Tell every listener."""
        self._each("on_module_start", event)

    def on_module_complete(self, event: ModuleEvent) -> None:
        """Tell every listener."""
        self._each("on_module_complete", event)

    def on_module_failed(self, event: ModuleEvent) -> None:
        """Tell every listener."""
        self._each("on_module_failed", event)

    def on_execution_complete(self, event: ExecutionEvent) -> None:
        """Tell every listener."""
        self._each("on_execution_complete", event)


class LoggingListener:
    """Logs every event to ``constellation.events`` (INFO for executions, DEBUG for
    module calls, WARNING for failures).

    Args:
        logger: the logger to use instead.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("constellation.events")

    def on_execution_start(self, event: ExecutionEvent) -> None:
        """Log it."""
        self._logger.info("execution %s of %s started", event.execution_id, event.pipeline)

    def on_module_start(self, event: ModuleEvent) -> None:
        """Log it."""
        self._logger.debug("%s: %s (%s) attempt %d started", event.execution_id,
                           event.node, event.module, event.attempt)

    def on_module_complete(self, event: ModuleEvent) -> None:
        """Log it."""
        self._logger.debug("%s: %s completed in %.3f ms", event.execution_id, event.node,
                           event.duration_ms)

    def on_module_failed(self, event: ModuleEvent) -> None:
        """Log it."""
        self._logger.warning("%s: %s failed: %s", event.execution_id, event.node,
                             event.error)

    def on_execution_complete(self, event: ExecutionEvent) -> None:
        """Log it."""
        self._logger.info("execution %s of %s ended %s in %.3f ms", event.execution_id,
                          event.pipeline, event.status, event.duration_ms)
