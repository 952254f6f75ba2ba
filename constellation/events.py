"""EventHub: the listener SPI's events, fanned out to any number of live subscribers.

The daemon's ``GET /executions/events`` (Server-Sent Events) and anything else that
wants to *watch* executions subscribe here. The hub is an ordinary listener
(``Backends(listener=hub)``, or inside a ``CompositeListener``): the engine calls it on
its listener thread, the hub turns each event into a JSON-ready dict and appends it to
the buffer of every subscriber whose filter matches.

Bounded by construction: each subscriber has a buffer of ``max_buffer`` events; a
subscriber that falls that far behind is *dropped* (its buffer cleared, its stream told
why and ended), never the engine, never the other subscribers. A subscriber that goes
away unsubscribes (a ``with`` block, or ``close()``); one that never does costs at most
its buffer until it is dropped. Delivery is in order per subscriber.

Subscribers read from a thread (:meth:`Subscription.get`) or from asyncio
(:meth:`Subscription.next` -- awaiting it never blocks the loop: the listener thread
wakes the loop with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from constellation.spi._listener import ExecutionEvent, ModuleEvent

__all__ = ["EventHub", "Subscription"]

DROPPED = "dropped"
"""The ``type`` of the last event a dropped subscriber receives."""


class Subscription:
    """One subscriber's view of the hub: a bounded, filtered, ordered event buffer."""

    def __init__(self, hub: EventHub, execution_id: str | None, pipeline: str | None,
                 max_buffer: int, loop: asyncio.AbstractEventLoop | None) -> None:
        self.hub = hub
        self.execution_id = execution_id
        self.pipeline = pipeline
        self.max_buffer = max_buffer
        self.id = next(hub._ids)
        self._events: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._loop = loop
        self._wakeup: asyncio.Event | None = asyncio.Event() if loop is not None else None
        self.closed = False
        self.dropped = False

    # --- the hub's side (listener thread) -------------------------------------------------

    def _wants(self, event: dict[str, Any]) -> bool:
        if self.execution_id is not None and event["execution_id"] != self.execution_id:
            return False
        return self.pipeline is None or event.get("pipeline") == self.pipeline

    def _offer(self, event: dict[str, Any]) -> bool:
        """Append ``event``; False if this subscriber is (now) gone."""
        with self._cond:
            if self.closed:
                return False
            if len(self._events) >= self.max_buffer:
                self._events.clear()
                self._events.append({"type": DROPPED, "reason":
                                     f"more than {self.max_buffer} events waiting: this "
                                     "subscriber reads too slowly"})
                self.dropped = True
                self.closed = True
            else:
                self._events.append(event)
            self._cond.notify()
        self._wake()
        return not self.closed

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:  # its loop is closed: the subscriber is gone
                self.close()

    # --- the subscriber's side ------------------------------------------------------------

    def _take(self) -> dict[str, Any] | None:
        with self._cond:
            if self._events:
                return self._events.popleft()
            return None

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next event, waiting at most ``timeout`` seconds; None if there is none
        (yet, or any more: check :attr:`closed`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._events:
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return None
                self._cond.wait(left)
            return self._events.popleft()

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event from asyncio code, waiting at most ``timeout`` seconds without
        blocking the loop; None on timeout or when the subscription ended."""
        if self._wakeup is None:
            raise ConfigurationError("this subscription was made outside an event loop: "
                                     "use get()", details={"field": "loop"})
        deadline = time.monotonic() + timeout
        while True:
            event = self._take()
            if event is not None:
                return event
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._wakeup.clear()
            if self._events or self.closed:
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)

    def close(self) -> None:
        """Stop receiving events (idempotent)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """A listener that fans events out to subscribers (see the module docstring).

    Args:
        max_buffer: events a subscriber may have waiting before it is dropped.
        max_subscribers: subscriptions at once; past it ``subscribe`` raises.
    """

    def __init__(self, max_buffer: int = 1000, max_subscribers: int = 100) -> None:
        for name, value in (("max_buffer", max_buffer), ("max_subscribers", max_subscribers)):
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}",
                                         details={"field": name})
        self.max_buffer = max_buffer
        self.max_subscribers = max_subscribers
        self._subs: dict[int, Subscription] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pipelines: dict[str, str] = {}  # running execution -> pipeline name
        self.dropped = 0  # subscribers dropped for reading too slowly

    @property
    def subscribers(self) -> int:
        """Subscriptions open now."""
        return len(self._subs)

    @property
    def listening(self) -> bool:
        """Whether anyone is subscribed: while nobody is, the engine does not build
        module events for the hub (the listener SPI's ``listening``)."""
        return bool(self._subs)

    def subscribe(self, execution_id: str | None = None, pipeline: str | None = None,
                  max_buffer: int | None = None) -> Subscription:
        """A new subscription to the events of one execution, one pipeline, or all.

        Made inside a running event loop, it can be awaited (:meth:`Subscription.next`).

        Raises:
            ConfigurationError: ``max_subscribers`` subscriptions are open.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        size = self.max_buffer if max_buffer is None else max_buffer
        if type(size) is not int or size < 1:
            raise ConfigurationError(f"max_buffer must be an integer >= 1, got {size!r}",
                                     details={"field": "max_buffer"})
        sub = Subscription(self, execution_id, pipeline, size, loop)
        with self._lock:
            if len(self._subs) >= self.max_subscribers:
                raise ConfigurationError(
                    f"{self.max_subscribers} event subscribers already: try again later",
                    details={"field": "max_subscribers"})
            self._subs[sub.id] = sub
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.pop(sub.id, None)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every matching subscriber (the listener callbacks do)."""
        subs = list(self._subs.values())  # a snapshot: subscribers come and go meanwhile
        for sub in subs:
            if sub._wants(event) and not sub._offer(event):
                if sub.dropped:
                    self.dropped += 1
                self._remove(sub)

    # --- the listener SPI -----------------------------------------------------------------

    def _execution(self, kind: str, e: ExecutionEvent) -> dict[str, Any]:
        return {"type": kind, "execution_id": e.execution_id, "pipeline": e.pipeline,
                "structural_hash": e.structural_hash, "status": e.status,
                "duration_ms": e.duration_ms, "error": e.error, "timestamp": e.timestamp}

    def _module(self, kind: str, e: ModuleEvent, status: str) -> dict[str, Any]:
        return {"type": kind, "execution_id": e.execution_id,
                "pipeline": self._pipelines.get(e.execution_id), "node": e.node,
                "module": e.module, "attempt": e.attempt, "status": status,
                "duration_ms": e.duration_ms, "error": e.error, "timestamp": e.timestamp}

    def on_execution_start(self, event: ExecutionEvent) -> None:
        """An execution started."""
        self._pipelines[event.execution_id] = event.pipeline
        if self._subs:
            self.publish(self._execution("execution.started", event))

    def on_module_start(self, event: ModuleEvent) -> None:
        """A module call started."""
        if self._subs:
            self.publish(self._module("module.started", event, "running"))

    def on_module_complete(self, event: ModuleEvent) -> None:
        """A module call completed."""
        if self._subs:
            self.publish(self._module("module.completed", event, "completed"))

    def on_module_failed(self, event: ModuleEvent) -> None:
        """A module call failed."""
        if self._subs:
            self.publish(self._module("module.failed", event, "failed"))

    def on_execution_complete(self, event: ExecutionEvent) -> None:
        """An execution ended."""
        self._pipelines.pop(event.execution_id, None)
        if self._subs:
            self.publish(self._execution("execution.finished", event))

    def close(self) -> None:
        """End every subscription."""
        for sub in list(self._subs.values()):
            sub.close()

    def __enter__(self) -> EventHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
