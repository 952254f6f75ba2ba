"""Observer: the runtime's link to the metrics, tracing and listener backends.

An engine with none of them configured has no observer at all, so instrumentation costs
one ``is None`` check per event site. Otherwise events go, fire-and-forget, to a
listener actor that runs on its own single thread: backends are called there, never on a
pipeline's threads, so a backend that raises is logged and counted and one that is slow
delays only the events. The backlog is bounded; events past the bound are dropped,
counted and logged.

Events travel in batches. An event site appends its event to the observer's buffer (a
deque: lock-free) and only the event that finds no wake-up on its way posts one,
:class:`EventsPosted`; the listener actor then takes every event in the buffer in one
turn. So the listener receives one message per batch, however many events a burst of
executions produces, and while it is behind, event sites pay an append. Within a batch,
counter increments are summed per (name, tags) and each gauge is set once, to its last
value: the totals and final values are those of one call per event (the gauges are read
from the scheduler when the listener runs, then as now); histogram observations, spans
and listener callbacks stay one per event, in order.

A listener's callbacks that it does not implement (inherited from
:class:`~constellation.spi.NoOpListener` unchanged) are never called, and their events
are not built: a listener with only ``on_execution_complete`` costs one event per
execution, not one per module call as well.

Spans are created by the listener actor after the fact, with the start and end times
recorded where the work happened, so every ``module(<name>)`` span is a child of its
``execute(<pipeline>)`` span whichever threads ran them.

A listener may say that it is not listening right now (``listener.listening`` false --
the daemon's :class:`~constellation.events.EventHub` while nobody is subscribed): its
module events are then not built for that batch (execution events still are; a durable
listener is always listening). Read once per batch; one that raises counts as listening.

A *durable* listener (``listener.durable`` is true: ``OutboxListener``, or a
``CompositeListener`` holding one) is exempt from the bound: its events are never
dropped (the backlog may then grow past ``max_pending``; metrics events still drop).
If it has ``on_batch``, the listener actor hands it every event that accumulated in one
call -- one transaction for the outbox (group commit) -- and an event counts as
delivered once that call returned. ``stop`` waits until everything posted before it
was handled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from constellation.actors._actor import PooledActor
from constellation.actors._messages import (
    CompiledEvent,
    EventsPosted,
    ExecutionFinishedEvent,
    ExecutionStartedEvent,
    FlushEvents,
    MetricEvent,
    ModuleFinishedEvent,
    ModuleStartedEvent,
    RejectedEvent,
)
from constellation.actors._pool import ThreadPool
from constellation.spi._listener import ExecutionEvent, ModuleEvent, NoOpListener
from constellation.spi._metrics import NoOpMetrics

if TYPE_CHECKING:
    from constellation.actors._handle import Execution
    from constellation.core.results import ExecutionResult
    from constellation.spi._listener import ExecutionListener
    from constellation.spi._metrics import MetricsProvider
    from constellation.spi._tracing import Span, TracerProvider

__all__ = ["Observer"]

logger = logging.getLogger("constellation.observer")


# Events that reach the listener: never dropped for a durable one.
_LISTENER_EVENTS = (ExecutionStartedEvent, ModuleStartedEvent, ModuleFinishedEvent,
                    ExecutionFinishedEvent)

# The most events handed to a durable listener's on_batch at once.
_BATCH = 2_000

# Seconds the listener lets events gather after each batch (see _ListenerActor._deliver):
# events reach the backends at most this much later.
_GATHER = 0.002


class Observer:
    """Reports runtime events to the configured backends (see the module docstring).

    Args:
        metrics: a MetricsProvider, or None.
        tracer: a TracerProvider, or None.
        listener: an ExecutionListener, or None.
        gauges: returns ``(active, queued)`` for the scheduler gauges.
        max_pending: events waiting past this are dropped.
    """

    def __init__(self, metrics: MetricsProvider | None, tracer: TracerProvider | None,
                 listener: ExecutionListener | None, gauges: Any,
                 max_pending: int = 10_000) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.listener = listener
        self.gauges = gauges
        self.max_pending = max_pending
        self.durable = bool(getattr(listener, "durable", False))
        # The listener's callbacks that do something (see implemented()).
        self.callbacks = implemented(listener)
        # Whether a ModuleStartedEvent has a taker (only metrics and the listener's
        # on_module_start use it).
        self.wants_module_start = metrics is not None or "on_module_start" in self.callbacks
        self.dropped = 0
        self._drop_lock = threading.Lock()
        self.failures = 0  # written by the listener thread only
        self.lost = 0  # events a durable listener's on_batch refused after retries
        # Events waiting for the listener actor, appended by any thread, taken only by
        # the listener.
        self.events: deque[Any] = deque()
        # The wake-up token: holds one item while no EventsPosted is on its way. Taking
        # it is list.pop(), giving it back list.append(); both are atomic in CPython.
        self._wake: list[bool] = [True]
        self._closed = False
        self.pool = ThreadPool(1, "constellation-listener")
        self.actor = _ListenerActor.spawn_running(self, _dispatcher=self.pool)
        self.actor.end_turn()

    @property
    def pending(self) -> int:
        """Events waiting for the listener actor."""
        return len(self.events)

    def _emit(self, event: Any) -> None:
        events = self.events
        if len(events) >= self.max_pending and not (
                self.durable and type(event) in _LISTENER_EVENTS):
            with self._drop_lock:  # emitted from many threads
                self.dropped += 1
                dropped = self.dropped
            if dropped == 1 or dropped % 1000 == 0:
                logger.warning("event backlog full (%d): %d event(s) dropped so far",
                               self.max_pending, dropped)
            return
        if self._closed:  # stopped: nobody will take it (a dead letter, as before)
            self.pool.dead_letter()
            return
        events.append(event)
        wake = self._wake
        if wake:
            try:
                wake.pop()
            except IndexError:  # another thread took it a moment ago: its message will do
                return
            self.actor.post(_EVENTS_POSTED)

    def take_events(self) -> list[Any]:
        """The listener's side: every event waiting (the wake-up token stays taken)."""
        events = self.events
        popleft = events.popleft
        return [popleft() for _ in range(len(events))]

    def rearm(self) -> list[Any]:
        """The listener's side, going idle: give the wake-up token back, then take what
        slipped in before. (In this order, an event appended after the take finds the
        token and posts a new wake-up: none is left behind.)"""
        self._wake.append(True)
        return self.take_events()

    # --- event sites (called on the runtime's threads; cheap) ------------------------------

    def execution_started(self, handle: Execution) -> None:
        """An execution left the queue."""
        self._emit(ExecutionStartedEvent(handle, time.time_ns()))

    def module_started(self, handle: Execution, node: str, module: str, attempt: int
                       ) -> None:
        """A module call is about to start."""
        if self.wants_module_start:
            self._emit(ModuleStartedEvent(handle, node, module, attempt))

    def module_finished(self, handle: Execution, node: str, module: str, attempt: int,
                        duration_ms: float, error: str | None) -> None:
        """A module call returned or failed."""
        started = time.time_ns() - int(duration_ms * 1e6)
        self._emit(ModuleFinishedEvent(handle, node, module, attempt, started, duration_ms, error))

    def execution_finished(self, handle: Execution, result: ExecutionResult) -> None:
        """An execution ended."""
        self._emit(ExecutionFinishedEvent(handle, result, time.time_ns()))

    def compiled(self, cache_hit: bool, duration_ms: float) -> None:
        """A pipeline was compiled (or found in the cache)."""
        self._emit(CompiledEvent(cache_hit, duration_ms,
                             time.time_ns() - int(duration_ms * 1e6)))

    def rejected(self) -> None:
        """A submission was rejected with QueueFullError."""
        self._emit(RejectedEvent())

    def metric(self, kind: str, name: str, value: float,
               tags: dict[str, str] | None = None) -> None:
        """Any other measurement (``kind`` is counter, gauge or histogram)."""
        self._emit(MetricEvent(kind, name, value, tags))

    def stop(self, timeout: float = 5.0) -> bool:
        """Deliver what is pending (within ``timeout``; at most 5 s unless the listener is
        durable), then stop the listener thread.

        Returns:
            Whether everything posted before was handled.
        """
        if not self.durable:
            timeout = min(timeout, 5.0)
        deadline = time.monotonic() + timeout
        done = threading.Event()
        flushed = self.actor.post(FlushEvents(done)) and done.wait(timeout)
        if not flushed:
            logger.warning("stopping with %d event(s) not delivered", self.pending)
        self._closed = True
        self.actor.actor_ref.stop(block=False)
        self.pool.shutdown(wait=False)
        self.pool.join(max(0.0, deadline - time.monotonic()))
        return flushed


class _Sums:
    """The metrics of one batch that can be combined without changing what the backend
    ends up holding: counter increments summed per (name, tags), gauges' last values."""

    __slots__ = ("counters", "gauges", "modules", "scheduler")

    def __init__(self) -> None:
        # (name, tags as a tuple of pairs or None) -> total
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...] | None], float] = {}
        # (name, module name) -> total: the per-call counters, tagged module_name only
        self.modules: dict[tuple[str, str], float] = {}
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...] | None], float] = {}
        self.scheduler = False  # set the scheduler gauges (read when the batch ends)

    def count(self, name: str, value: float, tags: dict[str, str] | None) -> None:
        key = (name, None if tags is None else tuple(tags.items()))
        counters = self.counters
        counters[key] = counters.get(key, 0.0) + value

    def count_module(self, name: str, module: str) -> None:
        key = (name, module)
        modules = self.modules
        modules[key] = modules.get(key, 0.0) + 1.0

    def gauge(self, name: str, value: float, tags: dict[str, str] | None) -> None:
        self.gauges[(name, None if tags is None else tuple(tags.items()))] = value


class _ListenerActor(PooledActor):
    """Calls the backends for each batch of events, on the observer's thread."""

    def __init__(self, observer: Observer) -> None:
        super().__init__()
        self.observer = observer
        self.exec_spans: dict[str, Span] = {}
        listener = observer.listener
        on_batch = getattr(listener, "on_batch", None) if observer.durable else None
        self.on_batch = on_batch if callable(on_batch) else None
        self.batch: list[tuple[str, Any]] = []
        # Whether the listener takes module events in the batch being handled.
        self.listening = True

    def _tell(self, listener: Any, callback: str, event: Any) -> None:
        # (The event sites call this only for a callback in observer.callbacks.)
        if self.on_batch is not None:
            self.batch.append((callback, event))
        else:
            self._safely(listener, callback, getattr(listener, callback), event)

    def _flush(self) -> None:
        """Hand the accumulated events to the durable listener in one call (retried)."""
        events, self.batch = self.batch, []
        assert self.on_batch is not None
        for attempt, pause in enumerate((0.01, 0.1, 0.5, None)):
            try:
                self.on_batch(events)
                return
            except BaseException as exc:  # a listener never stops the engine, whatever it raises
                self.observer.failures += 1
                logger.error("durable listener %s failed to take %d event(s) (attempt %d): "
                             "%s", type(self.observer.listener).__name__, len(events),
                             attempt + 1, exc, exc_info=attempt == 0)
                if pause is not None:
                    time.sleep(pause)
        self.observer.lost += len(events)
        logger.error("%d event(s) lost: the durable listener refused them 4 times",
                     len(events))

    def _safely(self, backend: Any, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException:  # a backend's SystemExit or KeyboardInterrupt included
            self.observer.failures += 1
            logger.exception("backend %s failed in %s", type(backend).__name__, what)

    def turn_failed(self, exc: BaseException) -> None:
        """Supervision: a failure outside the guarded backend calls loses that one
        event (logged, counted); the listener actor goes on with the next."""
        self.observer.failures += 1
        logger.error("the listener actor failed on an event; event dropped", exc_info=exc)

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is EventsPosted:
            self._deliver()
        elif kind is FlushEvents:
            self._handle(self.observer.take_events())
            if self.batch:
                self._flush()
            message.done.set()
        else:
            return super().on_receive(message)
        return None

    def _deliver(self) -> None:
        """Handle batches until the buffer stays empty for a gathering pause.

        After each batch the listener waits ``_GATHER`` seconds (holding no lock and not
        the GIL) before taking the next: events of that time arrive without any message
        or thread wake-up, and the runtime's threads are not made to hand the GIL over
        to the listener for every few events. Another message (a flush, a stop) ends
        the loop, so it waits at most one batch."""
        obs = self.observer
        inbox = self.actor_inbox._messages  # type: ignore[attr-defined]
        events = obs.take_events()
        while events and not inbox:
            self._handle(events)
            time.sleep(_GATHER)
            events = obs.take_events()
        self._handle(events)
        self._handle(obs.rearm())

    def _handle(self, events: list[Any]) -> None:
        """One batch: each event in order, then the combined metrics, then the durable
        listener's group commit."""
        if not events:
            return
        self.listening = _listening(self.observer)
        sums = _Sums()
        for event in events:
            try:
                self._event(event, sums)
            except BaseException as exc:
                self.turn_failed(exc)
            if len(self.batch) >= _BATCH:
                self._flush()
        if self.observer.metrics is not None:
            self._report(sums, self.observer.metrics)
        # Group commit: what accumulated while the listener was busy goes in one call.
        if self.batch:
            self._flush()

    def _report(self, sums: _Sums, metrics: MetricsProvider) -> None:
        for (name, module), total in sums.modules.items():
            self._safely(metrics, "counter", metrics.counter, name, total,
                         {"module_name": module})
        for (name, tags), total in sums.counters.items():
            self._safely(metrics, "counter", metrics.counter, name, total,
                         None if tags is None else dict(tags))
        for (name, tags), value in sums.gauges.items():
            self._safely(metrics, "gauge", metrics.gauge, name, value,
                         None if tags is None else dict(tags))
        if sums.scheduler:
            active, queued = self.observer.gauges()
            self._safely(metrics, "gauge", metrics.gauge, "constellation.scheduler.active",
                         float(active), None)
            self._safely(metrics, "gauge", metrics.gauge, "constellation.scheduler.queued",
                         float(queued), None)

    def _event(self, message: Any, sums: _Sums) -> None:
        obs = self.observer
        metrics = obs.metrics or _NOOP_METRICS
        listener = obs.listener
        tracer = obs.tracer
        kind = type(message)
        if kind is ModuleStartedEvent:
            h = message.handle
            if obs.metrics is not None:
                sums.count_module("constellation.module.started", message.module)
            if self.listening and "on_module_start" in obs.callbacks:
                self._tell(listener, "on_module_start",
                           ModuleEvent(h.execution_id, message.node, message.module,
                                       message.attempt, timestamp=time.time()))
        elif kind is ModuleFinishedEvent:
            h = message.handle
            if obs.metrics is not None:
                sums.count_module("constellation.module.failed" if message.error is not None
                                  else "constellation.module.completed", message.module)
                self._safely(metrics, "histogram", metrics.histogram,
                             "constellation.module.duration_ms", message.duration_ms,
                             {"module_name": message.module})
            callback = "on_module_failed" if message.error is not None \
                else "on_module_complete"
            if self.listening and callback in obs.callbacks:
                event = ModuleEvent(h.execution_id, message.node, message.module,
                                    message.attempt, message.duration_ms, message.error,
                                    time.time())
                self._tell(listener, callback, event)
            if tracer is not None:
                self._safely(tracer, "start_span", self._module_span, tracer, message)
        elif kind is ExecutionStartedEvent:
            h = message.handle
            sums.scheduler = True
            if "on_execution_start" in obs.callbacks:
                self._tell(listener, "on_execution_start",
                           ExecutionEvent(h.execution_id, h.plan.name,
                                          h.plan.structural_hash, "running",
                                          timestamp=message.time_ns / 1e9))
            if tracer is not None:
                self._safely(tracer, "start_span", self._execution_span, tracer, message)
        elif kind is ExecutionFinishedEvent:
            self._execution_finished(message, metrics, listener, sums)
        elif kind is CompiledEvent:
            sums.count("constellation.compilation.total", 1.0,
                       {"cache_hit": "true" if message.cache_hit else "false"})
            self._safely(metrics, "histogram", metrics.histogram,
                         "constellation.compilation.duration_ms", message.duration_ms, None)
            if tracer is not None and not message.cache_hit:
                def compile_span() -> None:
                    s = tracer.start_span("compile", None, None, message.started_ns)
                    s.end(message.started_ns + int(message.duration_ms * 1e6))

                self._safely(tracer, "start_span", compile_span)
        elif kind is MetricEvent:
            if message.kind == "counter":
                sums.count(message.name, message.value, message.tags)
            elif message.kind == "gauge":
                sums.gauge(message.name, message.value, message.tags)
            else:
                fn = getattr(metrics, message.kind)
                self._safely(metrics, message.kind, fn, message.name, message.value,
                             message.tags)
        elif kind is RejectedEvent:
            sums.count("constellation.scheduler.rejected", 1.0, None)
            sums.scheduler = True
        else:
            raise TypeError(f"not an event: {message!r}")

    def _execution_span(self, tracer: TracerProvider, message: ExecutionStartedEvent) -> None:
        h = message.handle
        self.exec_spans[h.execution_id] = tracer.start_span(
            f"execute({h.plan.name})", {"execution_id": h.execution_id,
                                        "pipeline": h.plan.name}, None, message.time_ns)

    def _module_span(self, tracer: TracerProvider, message: ModuleFinishedEvent) -> None:
        h = message.handle
        parent = self.exec_spans.get(h.execution_id)
        span = tracer.start_span(
            f"module({message.module})",
            {"module_name": message.module, "execution_id": h.execution_id,
             "attempt": message.attempt, "node": message.node},
            parent, message.started_ns)
        if message.error is not None:
            span.record_error(message.error)
        span.end(message.started_ns + int(message.duration_ms * 1e6))

    def _execution_finished(self, message: ExecutionFinishedEvent, metrics: MetricsProvider,
                            listener: ExecutionListener | None, sums: _Sums) -> None:
        h, result = message.handle, message.result
        status = result.status.value
        sums.count("constellation.execution.total", 1.0, {"status": status})
        self._safely(metrics, "histogram", metrics.histogram,
                     "constellation.execution.duration_ms", result.duration_ms,
                     {"dag_name": result.pipeline})
        sums.scheduler = True
        error = result.errors[0].message if result.errors else None
        if "on_execution_complete" in self.observer.callbacks:
            self._tell(listener, "on_execution_complete",
                       ExecutionEvent(h.execution_id, result.pipeline,
                                      result.structural_hash, status, result.duration_ms,
                                      error, message.time_ns / 1e9))
        span = self.exec_spans.pop(h.execution_id, None)
        if span is not None:
            def end_span() -> None:
                assert span is not None
                span.set_attribute("status", status)
                if status not in ("completed", "suspended"):
                    span.record_error(error or status)
                span.end(message.time_ns)

            self._safely(self.observer.tracer, "end", end_span)


_CALLBACKS = ("on_execution_start", "on_module_start", "on_module_complete",
              "on_module_failed", "on_execution_complete")


def _listening(observer: Observer) -> bool:
    """Whether the listener takes module events now (see the module docstring)."""
    listener = observer.listener
    if listener is None or observer.durable:
        return True
    try:
        return bool(getattr(listener, "listening", True))
    except BaseException:  # it raises when asked: give it the events, as before
        observer.failures += 1
        if observer.failures == 1 or observer.failures % 1000 == 0:  # not every batch
            logger.exception("listener %s failed to say whether it is listening "
                             "(%d failure(s) so far)", type(listener).__name__,
                             observer.failures)
        return True


def implemented(listener: Any) -> frozenset[str]:
    """The callbacks of ``listener`` that are worth calling: all but those it inherits
    unchanged from NoOpListener, and those it lacks. Read once, when the engine is
    built. A durable listener (its events are records) gets every callback, and one
    whose attribute lookup raises gets that callback (and its failure is counted)."""
    if listener is None:
        return frozenset()
    if getattr(listener, "durable", False):
        return frozenset(_CALLBACKS)
    found = set()
    for name in _CALLBACKS:
        try:
            fn = getattr(listener, name)
        except AttributeError:  # a duck-typed listener without this callback
            continue
        except BaseException:  # it raises when asked: let it raise where it is counted
            found.add(name)
            continue
        if getattr(fn, "__func__", None) is not getattr(NoOpListener, name):
            found.add(name)
    return frozenset(found)


_NOOP_METRICS = NoOpMetrics()
_EVENTS_POSTED = EventsPosted()
