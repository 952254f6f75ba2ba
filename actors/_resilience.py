"""What module calls share across executions, and the policy of one call.

- :class:`CircuitBreaker` -- one actor per module name with a configured breaker:
  closed → open after ``failure_threshold`` consecutive failures → half-open after
  ``reset_timeout`` (one probe call) → closed on its success, open again on its failure.
- :class:`CallLimiter` -- one actor per (module, throttle, concurrency) setting: a token
  bucket and a concurrency limit; waiting calls are served by priority, then in order.
- :class:`CallPolicy` -- a call's options, resolved once per compiled pipeline.

Node actors talk to the breaker and the limiter only through messages. A node that is
abandoned (its execution was cancelled or timed out) tells them, so a probe or a slot
it held is never lost; one that asks after it was abandoned is refused.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import math
from dataclasses import dataclass
from logging import INFO, WARNING
from typing import TYPE_CHECKING, Any

from constellation.actors._actor import PooledActor
from constellation.actors._internal import internal_error
from constellation.actors._log import BREAKER, log
from constellation.actors._messages import (
    BreakerAnswer,
    BreakerAsk,
    BreakerReport,
    GateAcquire,
    GateGranted,
    GateRelease,
    Refill,
    ServiceFailed,
    StopActor,
)
from constellation.core.errors import ConfigurationError, ModuleExecutionError

if TYPE_CHECKING:
    from constellation.actors._runtime import Runtime
    from constellation.actors._timer import TimerEntry
    from constellation.core.types import CType
    from constellation.spi._cache import CacheBackend
    from constellation.spi._retry import RetryPolicy

logger = logging.getLogger("constellation.runtime")

__all__ = [
    "BreakerState",
    "CallLimiter",
    "CallPolicy",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "RetryWhen",
    "retry_when",
]


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """How a module's circuit breaker trips and recovers.

    Attributes:
        failure_threshold: consecutive failed calls that open the breaker.
        reset_timeout: seconds the breaker stays open before letting one probe through.
    """

    failure_threshold: int = 5
    reset_timeout: float = 30.0

    def __post_init__(self) -> None:
        if type(self.failure_threshold) is not int or self.failure_threshold < 1:
            raise ConfigurationError(
                f"failure_threshold must be an integer >= 1, got {self.failure_threshold!r}",
                details={"field": "failure_threshold"})
        if (isinstance(self.reset_timeout, bool)
                or not isinstance(self.reset_timeout, int | float) or self.reset_timeout <= 0):
            raise ConfigurationError(
                f"reset_timeout must be a positive number of seconds, got "
                f"{self.reset_timeout!r}", details={"field": "reset_timeout"})


class BreakerState(enum.Enum):
    """A circuit breaker's state; ``gauge`` is its value in the state gauge."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge(self) -> float:
        """0 closed, 1 open, 2 half-open (``constellation.circuit_breaker.state``)."""
        return {"closed": 0.0, "open": 1.0, "half_open": 2.0}[self.value]


# --- circuit breaker --------------------------------------------------------------------


class CircuitBreaker(PooledActor):
    """The breaker of one module (see the module docstring).

    Args:
        module: the module's name.
        config: thresholds.
        runtime: the engine's runtime (clock, observer).
    """

    def __init__(self, module: str, config: CircuitBreakerConfig, runtime: Runtime) -> None:
        super().__init__()
        self.module = module
        self.config = config
        self.runtime = runtime
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probe_owner: PooledActor | None = None
        self.rejected = 0
        self.current_request: Any = None  # the message being handled (see turn_failed)

    def turn_failed(self, exc: BaseException) -> None:
        """A failure handling one message: the node that asked is failed with an
        InternalError (see ``_Shared``); the breaker keeps its state and goes on."""
        _service_failed(self, exc)

    def snapshot(self) -> dict[str, Any]:
        """State for health pages (read without a turn: may be a moment old)."""
        return {"state": self.state.value, "consecutive_failures": self.failures,
                "failure_threshold": self.config.failure_threshold,
                "reset_timeout": self.config.reset_timeout, "rejected": self.rejected}

    def on_receive(self, message: Any) -> Any:
        self.current_request = message
        kind = type(message)
        if kind is BreakerAsk:
            allowed, probe = self._admit(message.node)
            if not allowed:
                self.rejected += 1
                self._metric("counter", "constellation.circuit_breaker.rejected", 1.0)
            answered = message.node.post_and_run(BreakerAnswer(message.attempt, allowed))
            if probe and not answered:
                self.probe_owner = None
        elif kind is BreakerReport:
            self._report(message.node, message.ok)
        elif kind is StopActor:
            self._stop()
        else:
            return super().on_receive(message)
        return None

    def _admit(self, node: PooledActor) -> tuple[bool, bool]:
        if node.actor_stopped.is_set():
            return False, False
        if self.state is BreakerState.CLOSED:
            return True, False
        if self.state is BreakerState.OPEN:
            if self.runtime.clock() - self.opened_at < self.config.reset_timeout:
                return False, False
            self._set(BreakerState.HALF_OPEN, node)
        if self.probe_owner is not None:
            return False, False
        self.probe_owner = node
        return True, True

    def _report(self, node: PooledActor, ok: bool | None) -> None:
        if self.probe_owner is not None and node is self.probe_owner:
            self.probe_owner = None
            if ok is True:
                self.failures = 0
                self._set(BreakerState.CLOSED, node)
            elif ok is False:
                self.opened_at = self.runtime.clock()
                self._set(BreakerState.OPEN, node, probe=True)
            return
        if self.state is not BreakerState.CLOSED or ok is None:
            return  # a call that started before the breaker opened
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.config.failure_threshold:
            self.opened_at = self.runtime.clock()
            self._set(BreakerState.OPEN, node)

    def _set(self, state: BreakerState, node: Any = None, *, probe: bool = False) -> None:
        self.state = state
        self._metric("gauge", "constellation.circuit_breaker.state", state.gauge)
        level = INFO if state is BreakerState.HALF_OPEN else WARNING
        if not BREAKER.isEnabledFor(level):
            return
        if state is BreakerState.OPEN:
            why = "the probe call failed" if probe else \
                f"{self.failures} consecutive failed calls"
            message = (f"circuit breaker of module {self.module} opened ({why}); calls "
                       f"fail at once for {self.config.reset_timeout:g} s")
        elif state is BreakerState.CLOSED:
            message = f"circuit breaker of module {self.module} closed: the probe call succeeded"
        else:
            message = f"circuit breaker of module {self.module} lets one probe call through"
        handle = getattr(node, "handle", None)  # the call that moved it, for context
        log(BREAKER, level, "%s", message, module_name=self.module,
            execution_id=None if handle is None else handle.execution_id,
            pipeline=None if handle is None else handle.plan.name,
            node=None if node is None or not hasattr(node, "node") else node.node.name,
            state=state.value)

    def _metric(self, kind: str, name: str, value: float) -> None:
        observer = self.runtime.observer
        if observer is not None:
            observer.metric(kind, name, value, {"module_name": self.module})


# --- throttle and concurrency -----------------------------------------------------------


class CallLimiter(PooledActor):
    """Token bucket (``throttle``: count per seconds) and concurrency limit of a module.

    Args:
        module: the module's name.
        throttle: ``(count, per_seconds)`` or None.
        concurrency: most calls at once, or None.
        runtime: the engine's runtime (clock, timer).
    """

    def __init__(self, module: str, throttle: tuple[int, float] | None,
                 concurrency: int | None, runtime: Runtime) -> None:
        super().__init__()
        self.module = module
        self.runtime = runtime
        self.concurrency = concurrency
        self.capacity = float(throttle[0]) if throttle else math.inf
        self.rate = throttle[0] / throttle[1] if throttle else math.inf
        self.tokens = self.capacity
        self.refilled_at = runtime.clock()
        self.active: set[int] = set()
        self.waiting: list[tuple[int, int, PooledActor]] = []
        self._seq = itertools.count()
        self._refill_timer: TimerEntry | None = None
        self.current_request: Any = None  # the message being handled (see turn_failed)

    def turn_failed(self, exc: BaseException) -> None:
        """See :meth:`CircuitBreaker.turn_failed`."""
        _service_failed(self, exc)

    def on_receive(self, message: Any) -> Any:
        self.current_request = message
        kind = type(message)
        if kind is GateAcquire:
            if not message.node.actor_stopped.is_set():
                heapq.heappush(self.waiting, (-message.priority, next(self._seq),
                                              message.node))
                self._grant()
        elif kind is GateRelease:
            node = message.node
            if id(node) in self.active:
                self.active.discard(id(node))
            else:
                self.waiting = [w for w in self.waiting if w[2] is not node]
                heapq.heapify(self.waiting)
            self._grant()
        elif kind is Refill:
            self._refill_timer = None
            self._grant()
        elif kind is StopActor:
            self._stop()
        else:
            return super().on_receive(message)
        return None

    def _grant(self) -> None:
        while self.waiting:
            if self.concurrency is not None and len(self.active) >= self.concurrency:
                return
            if self.rate != math.inf:
                now = self.runtime.clock()
                self.tokens = min(self.capacity,
                                  self.tokens + (now - self.refilled_at) * self.rate)
                self.refilled_at = now
                if self.tokens < 1.0:
                    if self._refill_timer is None:
                        wait = (1.0 - self.tokens) / self.rate
                        self._refill_timer = self.runtime.timer.call_later(
                            wait, lambda: self.post_and_run(Refill()))
                    return
                self.tokens -= 1.0
            _, _, node = heapq.heappop(self.waiting)
            if node.post_and_run(GateGranted()):
                self.active.add(id(node))
            elif self.rate != math.inf:
                self.tokens += 1.0  # nobody took it

    @property
    def queued(self) -> int:
        """Calls waiting (read without a turn)."""
        return len(self.waiting)


def _service_failed(actor: CircuitBreaker | CallLimiter, exc: BaseException) -> None:
    # Supervision for the shared actors: one bad message must neither stop the actor
    # (every later call of the module would wait forever) nor leave the asking node
    # waiting for an answer. The node is failed; the actor is not stopped.
    error = internal_error(f"the {type(actor).__name__} of module {actor.module} failed",
                           exc)
    node = getattr(actor.current_request, "node", None)
    if isinstance(node, PooledActor):
        node.post(ServiceFailed(error))
    actor.runtime.count_internal_error(type(actor).__name__)


# --- call policy ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """A call's options resolved for the runtime (built once per compiled pipeline).

    Attributes:
        retry: decides retries and their delays.
        timeout: seconds per attempt, or None.
        has_fallback: whether ``fallback`` is set.
        fallback: the value when every attempt failed.
        on_error: propagate, skip, log or wrap.
        zero: the output type's zero value (skip and log).
        cache: where results are cached, or None.
        cache_ttl: seconds.
        limiter: the shared throttle/concurrency limiter, or None.
        priority: the call's priority at the limiter (None: the execution's).
        isolation: ``thread`` or ``process``.
        output: the module's output type (cache encoding).
    """

    retry: RetryPolicy
    timeout: float | None
    has_fallback: bool
    fallback: Any
    on_error: str
    zero: Any
    cache: CacheBackend | None
    cache_ttl: float
    limiter: CallLimiter | None
    priority: int | None
    isolation: str
    output: CType


# --- retry conditions -------------------------------------------------------------------


class RetryWhen:
    """A retry policy that retries only failures that match (``retry_on``/``retry_if``).

    The exception tested is the module's own when it raised (a ``ConnectionError``), else
    the engine's error for the attempt (a ModuleTimeoutError for a timeout, a
    ModuleOutputTypeError for a wrong return type). A predicate that raises means "do
    not retry" (logged).
    """

    __slots__ = ("inner", "retry_if", "retry_on")

    def __init__(self, inner: RetryPolicy, retry_on: tuple[type[BaseException], ...] | None,
                 retry_if: Any) -> None:
        self.inner = inner
        self.retry_on = retry_on
        self.retry_if = retry_if

    def should_retry(self, error: BaseException, attempt: int) -> float | None:
        """The inner policy's delay, for a failure that matches; else None."""
        cause = error.__cause__ if isinstance(error, ModuleExecutionError) \
            and error.__cause__ is not None else error
        if self.retry_on is not None and not isinstance(cause, self.retry_on):
            return None
        if self.retry_if is not None:
            try:
                wanted = bool(self.retry_if(cause))
            except Exception:
                logger.exception("retry_if %r raised; not retrying", self.retry_if)
                return None
            if not wanted:
                return None
        return self.inner.should_retry(error, attempt)


def retry_when(inner: RetryPolicy, retry_on: tuple[type[BaseException], ...] | None,
               retry_if: Any) -> RetryPolicy:
    """``inner``, restricted by the conditions when there are any."""
    if retry_on is None and retry_if is None:
        return inner
    return RetryWhen(inner, retry_on, retry_if)
