"""Every message between the runtime's actors, in one shape: an immutable NamedTuple.

NamedTuples are as immutable as frozen slotted dataclasses and have no ``__dict__``,
but cost 0.44 µs to build against 1.07 µs for a frozen dataclass of five fields on
these machines, and a module call sends two or three of them.

A message posted to an actor that has stopped is a *dead letter*: dropped and counted
(``ThreadPool.dead_letters``, metric ``constellation.runtime.dead_letters``), never an
exception in the sender.

Who sends what::

    engine      -> supervisor  SubmitExecution, CancelExecution, CancelAll
    timer       -> supervisor  DeadlineReached
    supervisor  -> execution   CancelExecution, DeadlineReached
    execution   -> supervisor  ExecutionFinished
    execution   -> node        Abandon
    node        -> execution   NodeFinished (also for a node whose own turn failed)
    worker      -> node        AttemptFinished
    timer       -> node        AttemptTimedOut, RetryDue
    worker      -> node        CacheLooked
    node        -> breaker     BreakerAsk, BreakerReport;  breaker -> node BreakerAnswer
    node        -> limiter     GateAcquire, GateRelease;   limiter -> node GateGranted
    breaker/limiter -> node    ServiceFailed (its turn for the node's request raised)
    runtime     -> breaker/limiter  StopActor
    any thread  -> listener    EventsPosted: events are waiting in the observer's buffer
                               (one message per batch of ExecutionStartedEvent,
                               ModuleStartedEvent, ModuleFinishedEvent, ExecutionFinishedEvent,
                               CompiledEvent, RejectedEvent, MetricEvent; see ``_observer``)
    engine      -> listener    FlushEvents
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import threading

    from constellation.actors._actor import PooledActor
    from constellation.actors._context import Attempt
    from constellation.actors._handle import Execution
    from constellation.core.errors import ConstellationError
    from constellation.core.results import ExecutionResult

__all__ = [
    "Abandon",
    "AttemptFinished",
    "AttemptTimedOut",
    "BreakerAnswer",
    "BreakerAsk",
    "BreakerReport",
    "CacheLooked",
    "CancelAll",
    "CancelExecution",
    "CompiledEvent",
    "DeadlineReached",
    "ExecutionFinished",
    "ExecutionFinishedEvent",
    "ExecutionStartedEvent",
    "EventsPosted",
    "FlushEvents",
    "GateAcquire",
    "GateGranted",
    "GateRelease",
    "MetricEvent",
    "ModuleFinishedEvent",
    "ModuleStartedEvent",
    "NodeFinished",
    "Refill",
    "RejectedEvent",
    "RetryDue",
    "ServiceFailed",
    "StopActor",
    "SubmitExecution",
]

# --- supervisor and executions ----------------------------------------------------------


class SubmitExecution(NamedTuple):
    """Engine → supervisor: queue this admitted execution."""

    handle: Execution


class ExecutionFinished(NamedTuple):
    """Execution actor → supervisor: release the slot of this execution."""

    handle: Execution


class CancelExecution(NamedTuple):
    """Anyone → supervisor → execution actor: stop this execution as CANCELLED."""

    execution_id: str


class DeadlineReached(NamedTuple):
    """Timer → supervisor → execution actor: the execution's deadline has passed."""

    execution_id: str


class CancelAll(NamedTuple):
    """Engine → supervisor (shutdown): cancel everything queued or running."""


# --- nodes ------------------------------------------------------------------------------


class NodeFinished(NamedTuple):
    """Node actor → execution actor: the node's outcome."""

    node_index: int
    value: Any
    error: ConstellationError | None
    attempts: int
    duration_ms: float


class Abandon(NamedTuple):
    """Execution actor → node actor: the execution ended; stop the call, give back what
    it holds (limiter slot, breaker probe) and stop."""


class AttemptFinished(NamedTuple):
    """Worker → node: ``attempt`` returned (``error`` None, value checked) or failed."""

    attempt: Attempt
    value: Any
    error: ConstellationError | None
    duration_ms: float


class AttemptTimedOut(NamedTuple):
    """Timer → node: ``attempt`` passed its timeout."""

    attempt: Attempt


class RetryDue(NamedTuple):
    """Timer → node: start attempt number ``attempt``."""

    attempt: int


class CacheLooked(NamedTuple):
    """Worker → node: the cache lookup's outcome (``value`` is MISSING on a miss)."""

    key: str
    value: Any


# --- circuit breaker and limiter --------------------------------------------------------


class BreakerAsk(NamedTuple):
    """Node → breaker: may attempt ``attempt`` call the module?"""

    node: PooledActor
    attempt: int


class BreakerAnswer(NamedTuple):
    """Breaker → node: the answer."""

    attempt: int
    allowed: bool


class BreakerReport(NamedTuple):
    """Node → breaker: how the allowed call went (``ok`` None: abandoned, no outcome)."""

    node: PooledActor
    ok: bool | None


class GateAcquire(NamedTuple):
    """Node → limiter: a slot and a token, please."""

    node: PooledActor
    priority: int


class GateGranted(NamedTuple):
    """Limiter → node: go."""


class GateRelease(NamedTuple):
    """Node → limiter: done with the slot, or no longer waiting for one."""

    node: PooledActor


class Refill(NamedTuple):
    """Timer → limiter: tokens may be back."""


class ServiceFailed(NamedTuple):
    """Breaker or limiter → node: handling the node's request raised (the breaker or
    limiter goes on); the node fails its call with ``error`` (an InternalError)."""

    error: ConstellationError


class StopActor(NamedTuple):
    """Runtime → breaker or limiter: stop (the engine is stopping, or it was replaced)."""


# --- events for the listener actor (see _observer) ----------------------------------------


class ExecutionStartedEvent(NamedTuple):
    """An execution left the queue."""

    handle: Execution
    time_ns: int


class ModuleStartedEvent(NamedTuple):
    """A module call is about to start."""

    handle: Execution
    node: str
    module: str
    attempt: int


class ModuleFinishedEvent(NamedTuple):
    """A module call returned or failed (``error`` is its message)."""

    handle: Execution
    node: str
    module: str
    attempt: int
    started_ns: int
    duration_ms: float
    error: str | None


class ExecutionFinishedEvent(NamedTuple):
    """An execution ended."""

    handle: Execution
    result: ExecutionResult
    time_ns: int


class CompiledEvent(NamedTuple):
    """A pipeline was compiled (or found in the compile cache)."""

    cache_hit: bool
    duration_ms: float
    started_ns: int


class RejectedEvent(NamedTuple):
    """A submission was rejected with QueueFullError."""


class EventsPosted(NamedTuple):
    """Any thread → listener: events wait in the observer's buffer; take every one.

    Sent by the thread whose event found no such message on its way (see
    ``Observer._emit``): while the listener is behind, events only go into the buffer,
    and the listener handles all that accumulated as one batch."""


class FlushEvents(NamedTuple):
    """Engine → listener (shutdown): set ``done`` once every earlier event is handled."""

    done: threading.Event


class MetricEvent(NamedTuple):
    """Any other measurement (``kind`` is counter, gauge or histogram)."""

    kind: str
    name: str
    value: float
    tags: dict[str, str] | None
