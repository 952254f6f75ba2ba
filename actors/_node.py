"""NodeActor: runs one module node of one execution.

Without call options (the common case) a node hands the call to the worker pool and
reports the outcome: two messages, no other state. A node whose call has options -- or
whose module takes ``ctx``, runs in a process, or has a circuit breaker -- goes through
the policy path, composed innermost first as in the original engine::

    on_error ( fallback ( retry ( timeout ( breaker ( module call ) ) ) ) )
      inside cache lookup/store, inside throttle and concurrency (the limiter actor)

Every wait on that path is a message: the limiter's grant, the breaker's answer, a
cache lookup done on a worker thread, the timer's retry-due and attempt-timed-out. No
thread sleeps through a backoff.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from constellation.actors import _pool
from constellation.actors._actor import PooledActor, _Inbox, _StopFlag
from constellation.actors._context import Attempt, CallContext
from constellation.actors._isolation import run_isolated
from constellation.actors._messages import CallFinished, NodeFinished
from constellation.actors._pool import SLOT_HELD, ThreadPool
from constellation.actors._resilience import (
    BreakerAnswer,
    BreakerAsk,
    BreakerReport,
    GateAcquire,
    GateGranted,
    GateRelease,
)
from constellation.core.errors import (
    CircuitOpenError,
    ConstellationError,
    InputTypeError,
    ModuleExecutionError,
    ModuleOutputTypeError,
    ModuleTimeoutError,
)
from constellation.core.types import INT64_MAX, INT64_MIN, from_json, to_json
from constellation.spi._cache import MISSING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from constellation.actors._execution import ExecutionActor
    from constellation.actors._handle import Execution
    from constellation.actors._plan import NodePlan
    from constellation.actors._resilience import CallPolicy, CircuitBreaker
    from constellation.actors._runtime import Runtime
    from constellation.actors._timer import TimerEntry
    from constellation.core.types import CType

__all__ = ["NodeActor"]

logger = logging.getLogger("constellation.runtime")


class AttemptFinished(NamedTuple):
    """Worker → node (policy path): attempt ``attempt`` returned or failed."""

    attempt: int
    value: Any
    error: ConstellationError | None
    duration_ms: float


class AttemptTimedOut(NamedTuple):
    """Timer → node: attempt ``attempt`` passed its timeout."""

    attempt: int


class RetryDue(NamedTuple):
    """Timer → node: start the next attempt."""

    attempt: int


class CacheLooked(NamedTuple):
    """Worker → node: the cache lookup's outcome (``value`` is MISSING on a miss)."""

    key: str
    value: Any


class NodeActor(PooledActor):
    """Runs one module node of one execution (see the module docstring).

    Args:
        parent: the ExecutionActor to report to.
        node: the node's plan.
        args: the module's arguments.
        handle: the execution.
        runtime: the engine's runtime.
    """

    # Policy path only (see begin()): class-level defaults, so that the fast path pays
    # nothing for them; the policy path sets them on the instance.
    policy: CallPolicy | None = None
    breaker: CircuitBreaker | None = None
    current: Attempt | None = None
    granted = False
    cache_key: str | None = None
    timer: TimerEntry | None = None
    first_started = 0.0

    def __init__(self, parent: ExecutionActor, node: NodePlan, args: dict[str, Any],
                 handle: Execution, runtime: Runtime) -> None:
        # Created already running, without PooledActor.__init__ and spawn_running's
        # indirections: one constructor per node is the whole cost of the actor.
        pool = runtime.dispatcher
        self.actor_inbox = _Inbox(self, pool)
        self.actor_stopped = _StopFlag()
        self._actor_started = True
        self._actor_pool = pool
        self.parent = parent
        self.node = node
        self.args = args
        self.handle = handle
        self.runtime = runtime
        self.attempts = 0
        self.kwargs: dict[str, Any] = args
        # Fast path: who came first, the call's end (2) or abandon() (1)? Both append
        # once; list.append is atomic, so race[0] decides without a lock.
        self.race: list[int] = []

    def begin(self) -> None:
        """The first step, done by the creator (see ``PooledActor.spawn_running``)."""
        node = self.node
        breakers = self.runtime.breakers
        if node.policy is None and not (breakers and node.module.name in breakers):
            self._call()
            return
        self.policy = node.policy or self.runtime.default_policy(node)
        self.breaker = breakers.get(node.module.name) if breakers else None
        self.first_started = time.perf_counter()
        limiter = self.policy.limiter
        if limiter is not None:
            priority = self.policy.priority
            limiter.post_and_run(GateAcquire(
                self, self.handle.priority if priority is None else priority))
        else:
            self._after_gate()

    # --- fast path: no options ------------------------------------------------------------

    def _call(self) -> None:
        self.attempts += 1
        node = self.node
        observer = self.runtime.observer
        if observer is not None:
            observer.module_started(self.handle, node.name, node.module.name, self.attempts)
        if not node.plain_args:
            self.kwargs = node.module.prepare_args(self.args)
        workers = self.runtime.workers
        if type(workers) is ThreadPool:
            if node.timing.fast:
                workers.schedule_local(self._run_call)
            else:
                workers.schedule(self._run_call)
        else:
            # The definition, not the bare function: it pickles by reference, so process
            # pools and dask can run it.
            future = workers.submit(node.module, **self.kwargs)
            started = time.perf_counter()
            future.add_done_callback(lambda f: _report(self, node, f, started))

    def _run_call(self) -> None:
        # Runs on a worker thread, outside any actor turn: the module may block.
        local = _pool._local
        race = self.race
        if race:  # abandoned before it started
            self._compensated_end()
            return
        local.slot = SLOT_HELD
        node = self.node
        started = time.perf_counter()
        failure: Exception | None = None
        try:
            value: Any = node.module.func(**self.kwargs)
        except Exception as exc:
            failure = exc
        local.slot = None
        race.append(2)
        if race[0] == 1:
            self._compensated_end()
            return
        elapsed = time.perf_counter() - started
        node.timing.record(elapsed)
        if failure is not None:
            _tell(self, CallFinished(None, _module_error(node, failure), elapsed * 1000.0))
            return
        # (The happy path below posts directly; _tell only adds a log line on a drop.)
        exact = node.exact_output
        if type(value) is exact and (exact is not int or INT64_MIN <= value <= INT64_MAX):  # type: ignore[operator]
            if not self.post_and_run(CallFinished(value, None, elapsed * 1000.0)):
                logger.debug("dropped the result of a finished node")
        else:
            _tell(self, _checked(node, value, started))

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is CallFinished:
            observer = self.runtime.observer
            if observer is not None:
                error = message.error
                observer.module_finished(self.handle, self.node.name, self.node.module.name,
                                         self.attempts, message.duration_ms,
                                         None if error is None else error.message)
            self.parent.post_and_run(NodeFinished(self.node.index, message.value,
                                                  message.error, self.attempts,
                                                  message.duration_ms))
            self._stop()
        elif kind is AttemptFinished:
            self._attempt_finished(message)
        elif kind is GateGranted:
            self.granted = True
            self._after_gate()
        elif kind is CacheLooked:
            if message.value is not MISSING:
                self._succeed(message.value, store=False)
            else:
                self.cache_key = message.key
                self._attempt()
        elif kind is BreakerAnswer:
            if message.attempt == self.attempts:
                if message.allowed:
                    self._start_attempt()
                else:
                    name = self.node.module.name
                    self._failed(CircuitOpenError(
                        f"circuit breaker of module {name} is open; not called",
                        details={"node": self.node.name, "module": name}), retry=False)
        elif kind is AttemptTimedOut:
            self._attempt_timed_out(message.attempt)
        elif kind is RetryDue:
            if message.attempt == self.attempts:
                self._attempt()
        else:
            return super().on_receive(message)
        return None

    def _compensated_end(self) -> None:
        # A fast-path call that abandon() gave up on has ended (or never started).
        if type(self.runtime.workers) is ThreadPool:
            self.runtime.workers.compensate(-1)

    # --- policy path ------------------------------------------------------------------------

    def _after_gate(self) -> None:
        policy = self.policy
        assert policy is not None
        if policy.cache is not None:
            self.runtime.workers_pool.schedule_queued(self._cache_lookup)
        else:
            self._attempt()

    def _cache_lookup(self) -> None:
        # On a worker thread: the backend may do I/O (Redis).
        policy = self.policy
        assert policy is not None
        assert policy.cache is not None
        mdef = self.node.module
        try:
            key = cache_key(mdef.name, mdef.version, mdef.inputs, self.args)
            stored = policy.cache.get(key)
            value = MISSING if stored is MISSING else from_json(policy.output, stored,
                                                               "cached value")
        except Exception:
            logger.exception("cache lookup for module %s failed; calling it", mdef.name)
            key, value = "", MISSING
        _tell(self, CacheLooked(key, value))

    def _attempt(self) -> None:
        self.attempts += 1
        if self.breaker is not None:
            self.breaker.post_and_run(BreakerAsk(self, self.attempts))
        else:
            self._start_attempt()

    def _start_attempt(self) -> None:
        node = self.node
        mdef = node.module
        policy = self.policy
        assert policy is not None
        runtime = self.runtime
        n = self.attempts
        if runtime.observer is not None:
            runtime.observer.module_started(self.handle, node.name, mdef.name, n)
        attempt = Attempt(n)
        self.current = attempt
        kwargs = mdef.prepare_args(self.args) if not node.plain_args else dict(self.args)
        if mdef.takes_ctx:
            kwargs["ctx"] = CallContext(self.handle, node.name, attempt)
        if policy.timeout is not None:
            self.timer = runtime.timer.call_later(
                policy.timeout, lambda: self.post(AttemptTimedOut(n)))
        if policy.isolation == "process":
            threading.Thread(target=self._run_attempt, args=(attempt, kwargs, True),
                             name=f"constellation-isolated-{mdef.name}", daemon=True).start()
        elif type(runtime.workers) is ThreadPool:
            runtime.workers.schedule(lambda: self._run_attempt(attempt, kwargs, False))
        else:
            started = time.perf_counter()
            future = runtime.workers.submit(mdef, **kwargs)
            future.add_done_callback(lambda f: self._future_done(attempt, f, started))

    def _run_attempt(self, attempt: Attempt, kwargs: dict[str, Any], isolated: bool) -> None:
        # On a worker thread (or, for an isolated call, a thread waiting for its process).
        node = self.node
        pool = None if isolated else self.runtime.workers_pool
        if pool is not None:
            _pool._local.slot = SLOT_HELD
            pool.release_backlog()  # nothing queued on this thread waits behind the call
        if attempt.abandoned:  # abandoned before it started
            if pool is not None:
                _pool._local.slot = None
                pool.compensate(-1)
            return
        started = time.perf_counter()
        error: ConstellationError | None = None
        value: Any = None
        try:
            if isolated:
                value = run_isolated(node.module, kwargs, attempt)
            else:
                value = node.module.func(**kwargs)
        except Exception as exc:
            error = _module_error(node, exc)
        if pool is not None:
            _pool._local.slot = None
        if not attempt.finish():
            if pool is not None:
                pool.compensate(-1)  # the pool had started a thread in this one's place
            return
        if error is None:
            msg = _checked(node, value, started)
            _tell(self, AttemptFinished(attempt.number, msg.value, msg.error, msg.duration_ms))
        else:
            _tell(self, AttemptFinished(attempt.number, None, error,
                                        (time.perf_counter() - started) * 1000.0))

    def _future_done(self, attempt: Attempt, future: Any, started: float) -> None:
        if not attempt.finish():
            return
        exc = future.exception()
        if exc is not None:
            _tell(self, AttemptFinished(attempt.number, None, _module_error(self.node, exc),
                                        (time.perf_counter() - started) * 1000.0))
        else:
            msg = _checked(self.node, future.result(), started)
            _tell(self, AttemptFinished(attempt.number, msg.value, msg.error, msg.duration_ms))

    def _end_attempt(self, ok: bool | None, duration_ms: float, error: str | None) -> None:
        if self.timer is not None:
            self.runtime.timer.cancel(self.timer)
            self.timer = None
        self.current = None
        if self.breaker is not None:
            self.breaker.post_and_run(BreakerReport(self, ok))
        observer = self.runtime.observer
        if observer is not None:
            observer.module_finished(self.handle, self.node.name, self.node.module.name,
                                     self.attempts, duration_ms, error)

    def _attempt_finished(self, msg: AttemptFinished) -> None:
        if msg.attempt != self.attempts or self.current is None:
            return  # an attempt that was already given up on
        error = msg.error
        self._end_attempt(error is None, msg.duration_ms,
                          None if error is None else error.message)
        if error is None:
            self._succeed(msg.value, store=True)
        else:
            self._failed(error, retry=True)

    def _attempt_timed_out(self, n: int) -> None:
        attempt = self.current
        if n != self.attempts or attempt is None:
            return
        self.timer = None
        policy = self.policy
        assert policy is not None
        if attempt.abandon():
            self._abandoned_thread()
        mdef = self.node.module
        error = ModuleTimeoutError(
            f"module {mdef.name} (node '{self.node.name}') did not finish attempt {n} "
            f"within {policy.timeout:g} s", details={"node": self.node.name,
                                                     "module": mdef.name, "attempt": n,
                                                     "timeout": policy.timeout})
        self._end_attempt(False, (policy.timeout or 0.0) * 1000.0, error.message)
        self._failed(error, retry=True)

    def _abandoned_thread(self) -> None:
        # The call cannot be stopped (a thread cannot be killed): its thread is left to
        # finish on its own; the pool may start another in its place meanwhile.
        policy = self.policy
        if policy is not None and policy.isolation == "process":
            return  # its process was killed
        runtime = self.runtime
        if type(runtime.workers) is ThreadPool:
            runtime.workers.compensate(1)
        runtime.abandoned += 1
        if runtime.observer is not None:
            runtime.observer.metric("counter", "constellation.module.abandoned", 1.0,
                                    {"module_name": self.node.module.name})

    def _failed(self, error: ConstellationError, *, retry: bool) -> None:
        policy = self.policy
        assert policy is not None
        if retry:
            delay = policy.retry.should_retry(error, self.attempts)
            if delay is not None:
                n = self.attempts
                if delay <= 0:
                    self._attempt()
                else:
                    self.timer = self.runtime.timer.call_later(
                        delay, lambda: self.post(RetryDue(n)))
                return
        if policy.has_fallback:
            self._succeed(policy.fallback, store=False)
            return
        mode = policy.on_error
        if mode == "propagate":
            self._report(None, error)
        elif mode == "wrap":
            self._report({"ok": False, "value": None, "error": error.message,
                          "code": error.code}, None)
        else:
            if mode == "log":
                logger.warning("execution %s: %s; using the zero value (on_error: log)",
                               self.handle.execution_id, error.message)
            self._report(policy.zero, None)

    def _succeed(self, value: Any, *, store: bool) -> None:
        policy = self.policy
        assert policy is not None
        if store and policy.cache is not None and self.cache_key:
            cache, key, ttl = policy.cache, self.cache_key, policy.cache_ttl
            encoded = to_json(policy.output, value)

            def put() -> None:
                try:
                    cache.set(key, encoded, ttl)
                except Exception:
                    logger.exception("storing a result of %s in the cache failed",
                                     self.node.module.name)

            self.runtime.workers_pool.schedule_queued(put)
        if policy.on_error == "wrap":
            value = {"ok": True, "value": value, "error": None, "code": None}
        self._report(value, None)

    def _report(self, value: Any, error: ConstellationError | None) -> None:
        policy = self.policy
        if self.granted and policy is not None and policy.limiter is not None:
            self.granted = False
            policy.limiter.post_and_run(GateRelease(self))
        self.parent.post_and_run(NodeFinished(
            self.node.index, value, error, self.attempts,
            (time.perf_counter() - self.first_started) * 1000.0))
        self._stop()

    def abandon(self) -> None:
        """The execution ended while this node ran (called from the execution actor's
        turn, after this actor was marked stopped): signal and kill the call, run its
        cleanups, and give back what it held at the limiter and the breaker."""
        policy = self.policy
        if policy is None:
            # Fast path: nothing to signal or give back. A call still running keeps its
            # thread (it cannot be killed): let the pool start another meanwhile.
            race = self.race
            race.append(1)
            if race[0] == 1 and type(self.runtime.workers) is ThreadPool:
                self._abandoned_thread()
            return
        attempt = self.current
        if attempt is not None and attempt.abandon():
            self._abandoned_thread()
        if self.timer is not None:
            self.runtime.timer.cancel(self.timer)
        if policy.limiter is not None:
            policy.limiter.post(GateRelease(self))
        if self.breaker is not None:
            self.breaker.post(BreakerReport(self, None))


def cache_key(module: str, version: str, inputs: Mapping[str, CType],
              args: Mapping[str, Any]) -> str:
    """``module:<name>:<version>:<sha256 of the arguments' canonical JSON>``."""
    canonical = json.dumps({p: to_json(inputs[p], args[p]) for p in sorted(args)},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"module:{module}:{version}:{digest}"


def _report(me: NodeActor, node: NodePlan, future: Any, started: float) -> None:
    exc = future.exception()
    if exc is not None:
        _tell(me, CallFinished(None, _module_error(node, exc),
                               (time.perf_counter() - started) * 1000.0))
    else:
        _tell(me, _checked(node, future.result(), started))


def _checked(node: NodePlan, value: Any, started: float) -> CallFinished:
    try:
        value = node.module.check_output(value)
    except InputTypeError as exc:
        err = ModuleOutputTypeError(
            f"module {node.module.name} (node '{node.name}') returned the wrong type: "
            f"{exc.message}", details={"node": node.name, "module": node.module.name,
                                       **exc.details})
        return CallFinished(None, err, (time.perf_counter() - started) * 1000.0)
    return CallFinished(value, None, (time.perf_counter() - started) * 1000.0)


def _module_error(node: NodePlan, exc: BaseException) -> ConstellationError:
    err = ModuleExecutionError(
        f"module {node.module.name} (node '{node.name}') raised {type(exc).__name__}: {exc}",
        details={"node": node.name, "module": node.module.name,
                 "exception": type(exc).__name__})
    err.__cause__ = exc
    return err


def _tell(actor: NodeActor, message: Any) -> None:
    if not actor.post_and_run(message):
        # The execution ended (cancelled, timed out or failed elsewhere) while this call
        # ran; its outcome is no longer wanted.
        logger.debug("dropped %s for a finished node", type(message).__name__)
