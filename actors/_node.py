"""NodeActor: runs one module node of one execution.

One call path serves every node. A node without call options (the common case) goes
straight to its attempt: the policy steps below are skipped, not duplicated. A node
whose call has options -- or whose module takes ``ctx``, runs in a process, or has a
circuit breaker -- applies them, composed innermost first as in the original engine::

    on_error ( fallback ( retry ( timeout ( breaker ( module call ) ) ) ) )
      inside cache lookup/store, inside throttle and concurrency (the limiter actor)

Every wait is a message: the limiter's grant, the breaker's answer, a cache lookup done
on a worker thread, the timer's retry-due and attempt-timed-out, the attempt's end. No
thread sleeps through a backoff. Where the call runs is the runner's business (see
``_runners``); the node only starts attempts and hears how they ended.

Abandonment is a message too (:class:`Abandon`, from the execution actor when the
execution ends): the node abandons its attempt in its own turn (the call is signalled,
its future cancelled, its process killed), gives back a limiter slot or breaker probe,
and stops; later messages to it are dead letters. A worker never starts a call whose
execution is over, whether or not the node has handled its Abandon yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import partial
from logging import ERROR, WARNING
from typing import TYPE_CHECKING, Any

from constellation.actors._actor import PooledActor, _Inbox, _StopFlag
from constellation.actors._context import Attempt, CallContext
from constellation.actors._internal import describe, internal_error
from constellation.actors._log import MODULE, log
from constellation.actors._messages import (
    Abandon,
    AttemptFinished,
    AttemptTimedOut,
    BreakerAnswer,
    BreakerAsk,
    BreakerReport,
    CacheLooked,
    GateAcquire,
    GateGranted,
    GateRelease,
    NodeFinished,
    RetryDue,
    ServiceFailed,
)
from constellation.actors._pool import Borrowed
from constellation.actors._runners import ISOLATED, executor_error
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
    from collections.abc import Iterable, Mapping

    from constellation.actors._execution import ExecutionActor
    from constellation.actors._handle import Execution
    from constellation.actors._plan import NodePlan
    from constellation.actors._resilience import CallPolicy, CircuitBreaker
    from constellation.actors._runtime import Runtime
    from constellation.actors._timer import TimerEntry
    from constellation.core.types import CType

__all__ = ["NodeActor", "PlainNode", "cache_key"]

logger = logging.getLogger("constellation.runtime")


class NodeActor(PooledActor):
    """Runs one module node of one execution (see the module docstring).

    Args:
        parent: the ExecutionActor to report to (its supervisor).
        node: the node's plan.
        args: the module's arguments.
        handle: the execution.
        runtime: the engine's runtime.
    """

    # Set only on nodes that apply a policy (see begin()): class-level defaults, so
    # that a node without options pays nothing for them.
    policy: CallPolicy | None = None
    breaker: CircuitBreaker | None = None
    granted = False
    cache_key: str | None = None
    timer: TimerEntry | None = None
    lookup: Borrowed | None = None  # a cache lookup in flight on a worker thread
    first_started = 0.0
    attempt_started = 0.0  # perf_counter of the running attempt's start, when observed

    def __init__(self, parent: ExecutionActor, node: NodePlan, args: dict[str, Any],
                 handle: Execution, runtime: Runtime) -> None:
        # Created already running, without PooledActor.__init__ and spawn_running's
        # indirections: one constructor per node is the whole cost of the actor.
        pool = parent._actor_pool  # the dispatcher, or a helping caller's stand-in
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
        self.current: Attempt | None = None

    def begin(self) -> None:
        """The first step, done by the creator (see ``PooledActor.spawn_running``)."""
        node = self.node
        breakers = self.runtime.breakers
        if node.policy is None and not (breakers and node.module.name in breakers):
            self.attempts = 1  # _attempt() without a breaker to ask
            self._start_attempt()
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

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is AttemptFinished:
            self._attempt_finished(message)
        elif kind is Abandon:
            self._release()
            self._stop()
        elif kind is GateGranted:
            self.granted = True
            self._after_gate()
        elif kind is CacheLooked:
            self.lookup = None
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
            if message.attempt == self.attempts + 1:
                self._attempt()
        elif kind is ServiceFailed:
            self._report(None, message.error)
        else:
            return super().on_receive(message)
        return None

    def turn_failed(self, exc: BaseException) -> None:
        """Supervision: a turn of this node raised. The execution is told (it ends
        FAILED with an InternalError naming the node), what the node holds is given
        back, and the node stops."""
        node = self.node
        error = node_internal_error(self.runtime, node, exc)
        try:
            self._release()
        except BaseException:
            logger.exception("releasing what node %s held failed", node.name)
        self.parent.post(NodeFinished(node.index, None, error, self.attempts, 0.0))
        self._stop()

    # --- the attempt (every node) ------------------------------------------------------

    def _attempt(self) -> None:
        self.attempts += 1
        if self.breaker is not None:
            self.breaker.post_and_run(BreakerAsk(self, self.attempts))
        else:
            self._start_attempt()

    def _start_attempt(self) -> None:
        handle = self.handle
        if handle._result is not None:
            return  # the execution is over: its Abandon is on the way; never start
        node = self.node
        mdef = node.module
        runtime = self.runtime
        n = self.attempts
        if runtime.observer is not None:
            self.attempt_started = time.perf_counter()
            runtime.observer.module_started(handle, node.name, mdef.name, n)
        attempt = Attempt(n, mdef.takes_ctx)
        self.current = attempt
        policy = self.policy
        runner = runtime.async_runner if mdef.is_async else runtime.runner
        try:
            if policy is None:
                kwargs = self.args if node.plain_args else mdef.prepare_args(self.args)
            else:
                kwargs = mdef.prepare_args(self.args) if not node.plain_args \
                    else dict(self.args)
                if mdef.takes_ctx:
                    kwargs["ctx"] = CallContext(handle, node.name, attempt)
                if policy.timeout is not None:
                    self.timer = runtime.timer.call_later(
                        policy.timeout, lambda: self.post(AttemptTimedOut(attempt)))
                if policy.isolation == "process" and not runner.remote:
                    runner = ISOLATED  # on an executor, its worker starts the child
        except BaseException as exc:
            self._refused(attempt, module_error(node, exc))
            return
        try:
            runner.start(self, attempt, kwargs)
        except BaseException as exc:
            name = getattr(runner, "name", type(runtime.workers).__name__)
            self._refused(attempt, executor_error(self, name, exc))

    def unstarted(self) -> None:
        """The worker gave the call up unstarted (its execution was over): this node's
        Abandon, on its way, tells its end (see _release)."""

    def report_lost(self, exc: BaseException) -> None:
        """The call's report was cut short on its thread (``exc``, injected there):
        the node fails with an InternalError, in its own turn."""
        self.post(ServiceFailed(node_internal_error(self.runtime, self.node, exc)))

    def _refused(self, attempt: Attempt, error: ConstellationError) -> None:
        # The attempt never started: it fails like any attempt (options apply).
        if attempt.finish():
            self._attempt_finished(AttemptFinished(attempt, None, error, 0.0))

    def attempt_returned(self, attempt: Attempt, value: Any, exc: BaseException | None,
                         elapsed: float) -> None:
        """The call of ``attempt`` returned ``value`` or raised ``exc`` (called by the
        runner, on the thread the call ran on, outside any turn)."""
        node = self.node
        node.timing.record(elapsed)
        if exc is not None:
            msg = AttemptFinished(attempt, None, module_error(node, exc), elapsed * 1000.0)
        else:
            exact = node.exact_output
            if type(value) is exact and (exact is not int or INT64_MIN <= value <= INT64_MAX):  # type: ignore[operator]
                if self.policy is None and self._completed_here(attempt, value,
                                                                elapsed * 1000.0):
                    return
                msg = AttemptFinished(attempt, value, None, elapsed * 1000.0)
            else:
                msg = checked(node, attempt, value, elapsed)
        self.post_and_run(msg, self._attempt_finished)  # a dead letter if it stopped

    def _completed_here(self, attempt: Attempt, value: Any, duration_ms: float) -> bool:
        """A node without options whose call returned a checked value: its last turn,
        run right here when ``post_and_run`` would run it here (an engine thread, the
        node idle, nothing queued before it) -- what ``_attempt_finished`` and
        ``_report`` do for that case, without the message. False: nothing was done,
        the message goes the usual way (queued, or a dead letter)."""
        if not self.take_turn_here():
            return False
        try:
            if attempt is self.current:
                self.current = None
                node = self.node
                observer = self.runtime.observer
                if observer is not None:
                    observer.module_finished(self.handle, node.name, node.module.name,
                                             self.attempts, duration_ms, None)
                self.parent.node_completed(node.index, value, self.attempts, duration_ms)
                self._stop()
        except BaseException as exc:  # as in post_and_run: this node's failure
            self._turn_failed_safely(exc)
        self.end_turn()
        return True

    def _attempt_finished(self, msg: AttemptFinished) -> None:
        if msg.attempt is not self.current:
            return  # an attempt that was already given up on
        error = msg.error
        secrets = self.handle._secrets
        if error is not None and secrets:
            error = redacted(error, secrets)
        self._end_attempt(error is None, msg.duration_ms,
                          None if error is None else error.message)
        if self.policy is None:
            self._report(msg.value, error, msg.duration_ms)
        elif error is None:
            self._succeed(msg.value, store=True)
        else:
            self._failed(error, retry=True)

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

    def _report(self, value: Any, error: ConstellationError | None,
                duration_ms: float | None = None) -> None:
        if error is not None and MODULE.isEnabledFor(ERROR):
            self._log(ERROR, "%s; failed after %d attempt(s)", error.message,
                      self.attempts, attempt=self.attempts, code=error.code)
        policy = self.policy
        if self.granted and policy is not None and policy.limiter is not None:
            self.granted = False
            policy.limiter.post_and_run(GateRelease(self))
        if duration_ms is None:
            duration_ms = (time.perf_counter() - self.first_started) * 1000.0
        parent = self.parent
        parent.post_and_run(NodeFinished(self.node.index, value, error, self.attempts,
                                         duration_ms), parent._node_finished)
        self._stop()

    def _log(self, level: int, message: str, *args: Any, **fields: Any) -> None:
        handle = self.handle
        log(MODULE, level, message, *args, execution_id=handle.execution_id,
            pipeline=handle.plan.name, node=self.node.name,
            module_name=self.node.module.name, **fields)

    def _release(self) -> None:
        """Abandon the running attempt and give back what the node holds."""
        attempt = self.current
        self.current = None
        if attempt is not None:
            if attempt.abandon():
                self._abandoned_thread(attempt)
            observer = self.runtime.observer
            if observer is not None:  # its start was reported: so is its end
                result = self.handle._result
                why = f" ({result.status.value})" if result is not None else ""
                observer.module_finished(
                    self.handle, self.node.name, self.node.module.name, self.attempts,
                    (time.perf_counter() - self.attempt_started) * 1000.0,
                    f"abandoned: the execution ended{why}")
        if self.timer is not None:
            self.runtime.timer.cancel(self.timer)
            self.timer = None
        policy = self.policy
        lookup = self.lookup
        if lookup is not None:
            lookup.give_up()  # its thread may be stuck in the cache
        if policy is not None and policy.limiter is not None:
            policy.limiter.post(GateRelease(self))  # a held slot, or a place in line
        if self.breaker is not None:
            self.breaker.post(BreakerReport(self, None))

    def _abandoned_thread(self, attempt: Attempt) -> None:
        # The call cannot be stopped (a thread cannot be killed): its thread is left to
        # finish on its own; the pool may start another in its place meanwhile.
        policy = self.policy
        if policy is not None and policy.isolation == "process" \
                and not self.runtime.runner.remote:
            return  # its process was killed
        pool = self.runtime.runner.pool
        if pool is not None:
            pool.compensate(1)
        if attempt.started:
            self.runtime.count_abandoned(self.node.module.name)

    # --- the policy steps ----------------------------------------------------------------

    def _after_gate(self) -> None:
        policy = self.policy
        assert policy is not None
        if policy.cache is not None:
            # Tracked like a call: a lookup that blocks is abandoned with the node, and
            # the pool may start a thread in its place meanwhile.
            pool = self.runtime.workers_pool
            lookup = self.lookup = Borrowed(pool)
            pool.schedule_queued(partial(self._cache_lookup, lookup))
        else:
            self._attempt()

    def _cache_lookup(self, lookup: Borrowed) -> None:
        # On a worker thread: the backend may do I/O (Redis).
        policy = self.policy
        assert policy is not None
        assert policy.cache is not None
        if not lookup.start():
            return  # given up while it waited in the queue: it holds no thread
        if self.handle._result is not None:
            lookup.done()
            return  # the execution ended while the lookup waited
        mdef = self.node.module
        try:
            key = cache_key(mdef.name, mdef.version, mdef.inputs, self.args)
            stored = policy.cache.get(key)
            value = MISSING if stored is MISSING else from_json(policy.output, stored,
                                                               "cached value")
        except BaseException:  # a failing cache is a miss
            logger.exception("cache lookup for module %s failed; calling it", mdef.name)
            key, value = "", MISSING
        if not lookup.done():
            return  # given up while it waited for the cache
        self.post_and_run(CacheLooked(key, value))

    def _attempt_timed_out(self, attempt: Attempt) -> None:
        if attempt is not self.current:
            return
        self.timer = None
        policy = self.policy
        assert policy is not None
        if attempt.abandon():
            self._abandoned_thread(attempt)
        mdef = self.node.module
        n = attempt.number
        error = ModuleTimeoutError(
            f"module {mdef.name} (node '{self.node.name}') did not finish attempt {n} "
            f"within {policy.timeout:g} s", details={"node": self.node.name,
                                                     "module": mdef.name, "attempt": n,
                                                     "timeout": policy.timeout})
        self._log(WARNING, "%s", error.message, attempt=n, timeout=policy.timeout,
                  code=error.code)
        self._end_attempt(False, (policy.timeout or 0.0) * 1000.0, error.message)
        self._failed(error, retry=True)

    def _failed(self, error: ConstellationError, *, retry: bool) -> None:
        policy = self.policy
        assert policy is not None
        if retry and self.handle._result is None:
            delay = policy.retry.should_retry(error, self.attempts)
            if delay is not None:
                n = self.attempts + 1
                self._log(WARNING, "%s; attempt %d failed, retrying in %.3g s",
                          error.message, self.attempts, delay, attempt=self.attempts,
                          delay=delay, code=error.code)
                if delay <= 0:
                    self._attempt()
                else:
                    self.timer = self.runtime.timer.call_later(
                        delay, lambda: self.post(RetryDue(n)))
                return
        if policy.has_fallback:
            self._log(WARNING, "%s; using its fallback after %d attempt(s)", error.message,
                      self.attempts, attempt=self.attempts, code=error.code)
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
                self._log(WARNING, "execution %s: %s; using the zero value (on_error: log)",
                          self.handle.execution_id, error.message, attempt=self.attempts)
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
                except BaseException:
                    logger.exception("storing a result of %s in the cache failed",
                                     self.node.module.name)

            self.runtime.store_in_cache(put, self.node.module.name, cache)
        if policy.on_error == "wrap":
            value = {"ok": True, "value": value, "error": None, "code": None}
        self._report(value, None)


class PlainNode:
    """A node with nothing to apply around its call, run without an actor of its own.

    For a node whose call has no options (``NodePlan.policy is None``), whose module is
    a plain synchronous function (no ``ctx``, no dataclass parameters) without a circuit
    breaker, on the engine's own worker pool, all a NodeActor does is start the call
    and pass its value on; its turns (an inbox, a turn token, a stop flag per call) were
    most of the cost of a quick call. The execution actor creates one of these instead (see
    ``ExecutionActor._launch``); the runner calls :meth:`attempt_returned` on the thread
    the call ran on, exactly as for a NodeActor. The observer (metrics, tracing, a
    listener) is told of the call's start and end as a NodeActor tells it.

    Who ends the call is decided by the :class:`Attempt`'s token, as for any node: the
    call returning (``finish``) or the execution ending (:meth:`post` of an
    ``Abandon``, from the execution's turn) -- never both, so no turn is needed. A
    returned value that fits the declared type goes straight to the execution
    (``ExecutionActor.node_completed``). A failure -- an exception, a value of the
    wrong type, a call the executor refused -- is handed to a NodeActor made for it
    then, which reports it exactly as it reports any node's (the error, its log record,
    secrets redacted).
    """

    __slots__ = ("_fallback", "args", "attempt", "handle", "node", "parent", "runtime",
                 "started")

    policy = None  # read by the runner: no options

    def __init__(self, parent: ExecutionActor, node: NodePlan, args: dict[str, Any],
                 handle: Execution, runtime: Runtime) -> None:
        self.parent = parent
        self.node = node
        self.args = args
        self.handle = handle
        self.runtime = runtime
        self.attempt = Attempt(1)
        self._fallback: NodeActor | None = None
        self.started = 0.0  # perf_counter of the call's start, when observed

    @staticmethod
    def applies(node: NodePlan, runtime: Runtime) -> bool:
        """Whether ``node`` may run as a PlainNode on ``runtime`` now."""
        mdef = node.module
        return node.policy is None and node.plain_args and not mdef.is_async \
            and runtime.plain_runner \
            and not (runtime.breakers and mdef.name in runtime.breakers)

    def begin(self) -> None:
        """Start the call (the first step, in the execution's turn)."""
        runtime = self.runtime
        observer = runtime.observer
        if observer is not None:
            self.started = time.perf_counter()
            observer.module_started(self.handle, self.node.name, self.node.module.name, 1)
        try:
            runtime.runner.start(self, self.attempt, self.args)  # type: ignore[arg-type]
        except BaseException as exc:  # refused: it fails as any refused attempt does
            if self.attempt.finish():
                name = getattr(runtime.runner, "name", type(runtime.workers).__name__)
                actor = self.actor
                actor.post_and_run(AttemptFinished(self.attempt, None, executor_error(
                    actor, name, exc), 0.0), actor._attempt_finished)

    @property
    def actor(self) -> NodeActor:
        """The NodeActor that reports what is not a plain value (made on first use)."""
        actor = self._fallback
        if actor is None:
            actor = NodeActor(self.parent, self.node, self.args, self.handle, self.runtime)
            actor.attempts = 1
            actor.current = self.attempt
            actor.attempt_started = self.started
            actor.end_turn()  # created owned (see NodeActor.__init__): idle now
            self._fallback = actor
        return actor

    def attempt_returned(self, attempt: Attempt, value: Any, exc: BaseException | None,
                         elapsed: float) -> None:
        """The call returned ``value`` or raised ``exc`` (see NodeActor.attempt_returned;
        the attempt was finished by the caller: nobody else may end it now).

        Outside any turn, on the thread the call ran on: what escapes the reporting (a
        bug, an exception injected into this thread while it reports) fails the
        execution with an InternalError naming the node, as a NodeActor's failed turn
        does -- not a task error the execution would wait on until its deadline. (One
        injected between the call's end and this method is caught by the runner's task,
        which calls :meth:`report_lost`.)"""
        node = self.node
        try:
            node.timing.record(elapsed)
            if exc is None:
                exact = node.exact_output
                if type(value) is not exact or \
                        (exact is int and not INT64_MIN <= value <= INT64_MAX):  # type: ignore[operator]
                    msg = checked(node, attempt, value, elapsed)
                    value = msg.value
                else:
                    msg = None
                if msg is None or msg.error is None:
                    observer = self.runtime.observer
                    if observer is not None:
                        observer.module_finished(self.handle, node.name, node.module.name,
                                                 1, elapsed * 1000.0, None)
                    self.parent.node_completed(node.index, value, 1, elapsed * 1000.0)
                    return
            else:
                msg = AttemptFinished(attempt, None, module_error(node, exc),
                                      elapsed * 1000.0)
            actor = self.actor  # a failure: reported as a NodeActor reports one
            actor.post_and_run(msg, actor._attempt_finished)
        except BaseException as failure:
            self.report_lost(failure)

    def report_lost(self, exc: BaseException) -> None:
        """The report of the call failed (``exc``): the execution fails with an
        InternalError naming the node."""
        error = node_internal_error(self.runtime, self.node, exc)
        self.parent.post(NodeFinished(self.node.index, None, error, 1, 0.0))

    def unstarted(self) -> None:
        """The worker that took the call found the execution over and gave it up
        unstarted (it won the attempt's token): its start was told, so is its end."""
        self._told_abandoned()

    def post(self, message: Any) -> bool:
        """``Abandon`` (the execution ended): give up on the call, as a NodeActor does.
        Anything else (a refusal, see ``PoolRunner.spread``) goes to the NodeActor."""
        if type(message) is Abandon:
            attempt = self.attempt
            if not attempt.abandon():
                # Whoever won the attempt's token tells the call's end: its thread (the
                # call returned, or it found the execution over: see ``unstarted``).
                return True
            # The call cannot be stopped: its thread is left to finish on its own, and
            # the pool may start another in its place meanwhile.
            runtime = self.runtime
            pool = runtime.runner.pool
            if pool is not None:
                pool.compensate(1)
            if attempt.started:
                runtime.count_abandoned(self.node.module.name)
            self._told_abandoned()
            return True
        return self.actor.post(message)

    def _told_abandoned(self) -> None:
        observer = self.runtime.observer
        if observer is not None:  # its start was told: so is its end
            result = self.handle._result
            why = f" ({result.status.value})" if result is not None else ""
            observer.module_finished(
                self.handle, self.node.name, self.node.module.name, 1,
                (time.perf_counter() - self.started) * 1000.0,
                f"abandoned: the execution ended{why}")


def node_internal_error(runtime: Runtime, node: NodePlan, exc: BaseException
                        ) -> ConstellationError:
    """The InternalError (E311) of a node whose runtime code raised ``exc``, counted."""
    runtime.count_internal_error("NodeActor")
    return internal_error(f"node '{node.name}' (module {node.module.name}) failed in the "
                          "runtime", exc, node=node.name, module=node.module.name)


def cache_key(module: str, version: str, inputs: Mapping[str, CType],
              args: Mapping[str, Any]) -> str:
    """``module:<name>:<version>:<sha256 of the arguments' canonical JSON>``."""
    canonical = json.dumps({p: to_json(inputs[p], args[p]) for p in sorted(args)},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"module:{module}:{version}:{digest}"


def checked(node: NodePlan, attempt: Attempt, value: Any, elapsed: float
            ) -> AttemptFinished:
    """The outcome of an attempt that returned ``value``: checked against the module's
    output type. A value whose check itself raises (a list nested too deep, a ``str``
    subclass whose ``repr`` raises) is a ModuleOutputTypeError too."""
    ms = elapsed * 1000.0
    try:
        value = node.module.check_output(value)
    except InputTypeError as exc:
        reason = exc.message
        details: dict[str, Any] = dict(exc.details)
    except BaseException as exc:
        reason = f"its value could not be checked ({type(exc).__name__}: {describe(exc)})"
        details = {"exception": type(exc).__name__}
    else:
        return AttemptFinished(attempt, value, None, ms)
    err = ModuleOutputTypeError(
        f"module {node.module.name} (node '{node.name}') returned the wrong type: {reason}",
        details={"node": node.name, "module": node.module.name, **details})
    return AttemptFinished(attempt, None, err, ms)


def module_error(node: NodePlan, exc: BaseException) -> ConstellationError:
    """The error of a call that raised ``exc`` (any exception, ``BaseException`` too)."""
    if isinstance(exc, ConstellationError) and exc.code in ("E312", "E320"):
        return exc  # the executor's own failure, or a missing secret: already described
    err = ModuleExecutionError(
        f"module {node.module.name} (node '{node.name}') raised {type(exc).__name__}: "
        f"{describe(exc)}",
        details={"node": node.name, "module": node.module.name,
                 "exception": type(exc).__name__})
    err.__cause__ = exc
    return err


def redacted(error: ConstellationError, secrets: Iterable[str]) -> ConstellationError:
    """``error`` with the execution's secret values replaced by ``***`` in its message
    and details (same class and code; the original stays its ``__cause__`` chain's
    concern: it never leaves the process)."""
    from constellation.spi._secrets import redact

    message = redact(error.message, secrets)
    details = redact(dict(error.details), secrets)
    if message == error.message and details == error.details:
        return error
    copy = type(error)(message, code=error.code, details=details)
    copy.__cause__ = error.__cause__
    return copy
