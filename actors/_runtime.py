"""Runtime: the threads, timer and counters one engine's actors share."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from constellation.actors._async import AsyncRunner
from constellation.actors._messages import StopActor
from constellation.actors._pool import RESCUE_AFTER, ThreadPool, current_pool
from constellation.actors._resilience import (
    CallLimiter,
    CallPolicy,
    CircuitBreaker,
    CircuitBreakerConfig,
    retry_when,
)
from constellation.actors._runners import PoolRunner, Runner, runner_for
from constellation.actors._timer import TimerService
from constellation.core.errors import ConfigurationError, QueueFullError
from constellation.core.types import zero_value
from constellation.spi._cache import InMemoryCacheBackend
from constellation.spi._retry import policy_for
from constellation.spi._secrets import EnvSecrets

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

    from pykka import ActorRef

    from constellation.actors._actor import PooledActor
    from constellation.actors._handle import Execution
    from constellation.actors._help import HelpState
    from constellation.actors._observer import Observer
    from constellation.actors._plan import NodePlan
    from constellation.core.errors import EngineFailedError
    from constellation.core.modules import ModuleDefinition
    from constellation.core.options import CallOptions
    from constellation.spi._cache import CacheBackend
    from constellation.spi._storage import ExecutionStorage

__all__ = ["Runtime"]

logger = logging.getLogger("constellation.runtime")

MAX_PENDING_STORES = 10_000
"""Cache stores that may wait for the store threads before more are dropped."""
STORES_AT_STOP = 2.0
"""At stop, how long (at most) queued cache stores may still run before the caches the
engine built itself are closed; what is still queued then is dropped (counted)."""


class _Store:
    """A cache store queued on the store threads (``Runtime.store_in_cache``)."""

    __slots__ = ("owned", "put", "runtime")

    def __init__(self, runtime: Runtime, put: Callable[[], None], owned: bool) -> None:
        self.runtime = runtime
        self.put = put
        self.owned = owned  # bound for a cache the engine built (and closes at stop)

    def __call__(self) -> None:
        try:
            self.put()
        finally:
            self.runtime._store_done(self.owned, dropped=False)

    def on_drop(self) -> None:  # not run: the engine stopped first (see Runtime.stop)
        self.runtime._store_done(self.owned, dropped=True)


class Runtime:
    """What one engine's actors share: dispatcher, workers, timer, supervisor, counters.

    Args:
        dispatcher_threads: threads running actor turns.
        worker_threads: most threads of the default worker pool.
        executor: run module code here instead of the default worker pool.
        max_queue_size: admission bound (``None`` = unbounded).
        clock: monotonic clock for deadlines and aging.
    """

    def __init__(self, *, dispatcher_threads: int, worker_threads: int,
                 executor: Executor | str | Any | None, max_queue_size: int | None,
                 clock: Callable[[], float] = time.monotonic, name: str = "constellation"
                 ) -> None:
        self.clock = clock
        self.dispatcher = ThreadPool(dispatcher_threads, f"{name}-dispatcher")
        # One dispatcher thread from the start: run() hands its executions to workers,
        # so the dispatcher may otherwise first need a thread at a moment when none can
        # be started (its turns would then have nowhere to run).
        self.dispatcher.prestart()
        if isinstance(executor, str) and executor.startswith("threads"):
            from constellation.executors import parse_executor

            worker_threads = parse_executor(executor).workers or worker_threads
            executor = None
        self.own_workers = executor is None
        # How module calls reach the executor (see _runners): the engine's threads, a
        # process pool, dask, any Executor; a string names one the engine owns.
        if executor is None:
            self.runner: Runner = PoolRunner(ThreadPool(worker_threads, f"{name}-worker"))
        else:
            self.runner = runner_for(executor)
        self.workers: Any = self.runner.executor if self.runner.pool is None \
            else self.runner.pool
        # Calls on the engine's own pool: nodes without options may run without a
        # NodeActor (see _node.PlainNode).
        self.plain_runner = type(self.runner) is PoolRunner
        # Actor turns may run in a worker thread's slot (the thread that finished a
        # module runs the next ready turn itself); module calls never run on dispatchers.
        if isinstance(self.workers, ThreadPool):
            self.dispatcher.also_runs_on(self.workers)
        # async def modules: awaited on an event loop of the engine's (started on use).
        self.async_runner = AsyncRunner()
        # Where ctx.secret() looks (the engine sets Backends.secrets; default: env).
        self.secrets: Any = EnvSecrets()
        self.dispatcher.on_dead_letter = self._dead_letter
        self.timer = TimerService(f"{name}-timer", clock=clock)
        self.supervisor: ActorRef[Any] | None = None
        self.supervisor_actor: PooledActor | None = None
        # Set by the engine when metrics, tracing or a listener is configured; None
        # otherwise, so that instrumentation costs one "is None" per event site.
        self.observer: Observer | None = None
        # Where finished executions are recorded (the engine sets it).
        self.storage: ExecutionStorage | None = None
        self.max_queue_size = max_queue_size
        # Resilience: shared per module across executions (see constellation.actors._resilience).
        self.breakers: dict[str, CircuitBreaker] = {}
        self.limiters: dict[tuple[str, tuple[int, float] | None, int | None],
                            CallLimiter] = {}
        self.cache: CacheBackend | None = None  # the default cache backend
        self.named_caches: dict[str, CacheBackend] = {}
        self._io_pool: ThreadPool | None = None
        self._stores_pool: ThreadPool | None = None
        self._stores_stopped = False  # under _lock: no store pool is made after stop()
        self._callbacks_pool: ThreadPool | None = None
        self._owned_caches: list[CacheBackend] = []
        self._lock = threading.Lock()
        self._stores_settled = threading.Condition(self._lock)  # pending_stores fell to 0
        self._pending_owned = 0  # of pending_stores: bound for a cache in _owned_caches
        # Written by several threads: only under _lock.
        self.abandoned = 0  # module calls given up on whose threads could not be stopped
        self.internal_errors = 0  # actor turns that raised (see count_internal_error)
        self.pending_stores = 0  # cache stores waiting or running (see store_in_cache)
        self.stores_dropped = 0  # cache stores not made: too many were waiting
        self._idle = threading.Condition(self._lock)
        self.queued = 0
        self.inflight = 0
        self.rejected = 0
        # Set when the supervisor failed (see supervisor_failed): the engine is FAILED.
        self.failed: EngineFailedError | None = None
        self._rescuing = False  # the backlog-rescue timer is armed (see _rescue_tick)
        self.helpers: set[HelpState] = set()  # callers helping their run() right now

    @property
    def dead_letters(self) -> int:
        """Messages dropped because their actor had stopped (see ``_messages``)."""
        return self.dispatcher.dead_letters

    def _dead_letter(self) -> None:
        observer = self.observer
        if observer is not None:
            observer.metric("counter", "constellation.runtime.dead_letters", 1.0, None)

    def count_internal_error(self, actor: str) -> None:
        """A turn of one of the runtime's actors raised (supervision reported it)."""
        with self._lock:
            self.internal_errors += 1
        if self.observer is not None:
            self.observer.metric("counter", "constellation.runtime.actor_failures", 1.0,
                                 {"actor": actor})

    def count_abandoned(self, module: str) -> None:
        """A module call was given up on while its thread still ran it."""
        with self._lock:
            self.abandoned += 1
        if self.observer is not None:
            self.observer.metric("counter", "constellation.module.abandoned", 1.0,
                                 {"module_name": module})

    @staticmethod
    def default_dispatcher_threads() -> int:
        """Two per core, at least 2, at most 8: turns are short and mostly hold the GIL."""
        return max(2, min(8, 2 * (os.cpu_count() or 1)))

    # --- resilience ------------------------------------------------------------------

    @property
    def workers_pool(self) -> ThreadPool:
        """A thread pool for short blocking work (cache I/O, the secrets of calls to
        other processes): the worker pool, or a small one of our own when module code
        runs on a user's executor (threads are started as needed, up to 8: a secrets
        backend of a few ms must not cap remote calls at a few hundred a second)."""
        if isinstance(self.workers, ThreadPool):
            return self.workers
        with self._lock:
            if self._io_pool is None:
                self._io_pool = ThreadPool(8, "constellation-io")
            return self._io_pool

    def store_in_cache(self, put: Callable[[], None], module: str,
                       cache: CacheBackend) -> None:
        """Run ``put`` (a result's cache store into ``cache``, which must not raise).

        Into the built-in in-memory cache (its own ``set``, which never blocks) at once,
        on the caller's thread: a run right after this one finds the result. Into any
        other backend on the engine's store threads, never on the module threads: a
        backend whose ``set`` blocks holds only those (nothing waits for a store). Past
        ``MAX_PENDING_STORES`` waiting, a store is dropped (logged, counted in
        ``health()``): a cache that stopped answering must not grow the engine's memory
        without bound. Stores bound for a backend the engine built itself are the ones
        ``stop`` waits for before closing it."""
        if type(cache).set is InMemoryCacheBackend.set:
            put()
            return
        owned = any(cache is c for c in self._owned_caches)
        with self._lock:
            if self._stores_stopped:  # the engine stopped: the store is not made
                self.stores_dropped += 1
                return
            if self._stores_pool is None:
                self._stores_pool = ThreadPool(2, "constellation-cache-stores")
            pool = self._stores_pool
            full = self.pending_stores >= MAX_PENDING_STORES
            if full:
                self.stores_dropped += 1
                dropped = self.stores_dropped
            else:
                self.pending_stores += 1
                self._pending_owned += owned
        if full:
            if dropped == 1 or dropped % 1000 == 0:
                logger.warning(
                    "%d cache stores are waiting (is the cache backend stuck?): a result "
                    "of %s was not stored (%d dropped so far)", MAX_PENDING_STORES, module,
                    dropped)
            return

        store = _Store(self, put, owned)
        try:
            pool.schedule_queued(store)
        except RuntimeError:  # the engine is stopping: the store is not made
            store.on_drop()

    def _store_done(self, owned: bool, dropped: bool) -> None:
        with self._lock:
            self.pending_stores -= 1
            self._pending_owned -= owned
            self.stores_dropped += dropped
            if self.pending_stores == 0 or (owned and self._pending_owned == 0):
                self._stores_settled.notify_all()

    def wait_for_stores(self, timeout: float, *, owned_only: bool = False) -> bool:
        """Wait (at most ``timeout`` seconds) until no cache store waits or runs (only
        those bound for a backend the engine built, if ``owned_only``)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while (self._pending_owned if owned_only else self.pending_stores) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._stores_settled.wait(min(left, 60.0))  # inf: wait in slices
            return True

    @property
    def callbacks_pool(self) -> ThreadPool:
        """One thread for executions' done callbacks (user code that may block), made on
        first use; stopped last, without dropping what is queued."""
        with self._lock:
            if self._callbacks_pool is None:
                self._callbacks_pool = ThreadPool(1, "constellation-callbacks")
            return self._callbacks_pool

    def set_breaker(self, module: str, config: CircuitBreakerConfig | None) -> None:
        """Give ``module`` a circuit breaker with ``config`` (a new one, closed), or
        remove its breaker (``None``)."""
        with self._lock:
            old = self.breakers.pop(module, None)
            breakers = dict(self.breakers)
            if config is not None:
                breaker = CircuitBreaker.spawn_running(module, config, self,
                                                       _dispatcher=self.dispatcher)
                breaker.end_turn()
                breakers[module] = breaker
            self.breakers = breakers  # replaced whole: readers need no lock
        if old is not None:
            old.post_and_run(StopActor())

    def make_policy(self, mdef: ModuleDefinition, options: CallOptions) -> CallPolicy | None:
        """The call policy of a node, or None when nothing needs applying.

        Raises:
            ConfigurationError: ``cache_backend`` names no registered backend, or the
                module cannot run on the engine's executor (``Runner.refuse``).
        """
        why = self.runner.refuse(mdef)
        if why is not None:
            raise ConfigurationError(why, details={"field": "executor", "module": mdef.name})
        if not (options.retry or options.timeout is not None or options.fallback is not None
                or options.cache is not None or options.throttle is not None
                or options.concurrency is not None
                or options.on_error not in (None, "propagate")
                or mdef.takes_ctx or mdef.isolation == "process"):
            return None
        return self.policy(mdef, options)

    def default_policy(self, node: NodePlan) -> CallPolicy:
        """The policy of a node without options whose module has a breaker."""
        return self.policy(node.module, node.options)

    def policy(self, mdef: ModuleDefinition, options: CallOptions) -> CallPolicy:
        """Resolve ``options`` for ``mdef`` (see :meth:`make_policy`)."""
        cache = None
        if options.cache is not None:
            cache = self.cache_backend(options.cache_backend)
        limiter = None
        if options.throttle is not None or options.concurrency is not None:
            key = (mdef.name, options.throttle, options.concurrency)
            with self._lock:
                limiter = self.limiters.get(key)
                if limiter is None:
                    limiter = CallLimiter.spawn_running(
                        mdef.name, options.throttle, options.concurrency, self,
                        _dispatcher=self.dispatcher)
                    limiter.end_turn()
                    self.limiters[key] = limiter
        return CallPolicy(
            retry=retry_when(policy_for(options.retry, options.delay, options.backoff),
                             options.retry_on, options.retry_if),
            timeout=options.timeout,
            has_fallback=options.fallback is not None,
            fallback=options.fallback,
            on_error=options.on_error or "propagate",
            zero=zero_value(mdef.output),
            cache=cache,
            cache_ttl=options.cache or 0.0,
            limiter=limiter,
            priority=options.priority,
            isolation=mdef.isolation,
            output=mdef.output,
        )

    def cache_backend(self, name: str | None) -> CacheBackend:
        """The default cache (``None``) or the one registered under ``name``.

        Raises:
            ConfigurationError: no cache backend has that name.
        """
        from constellation.spi._registry import create_backend

        with self._lock:
            if name is None:
                if self.cache is None:
                    self.cache = InMemoryCacheBackend()
                return self.cache
            backend = self.named_caches.get(name)
        if backend is not None:
            return backend
        if name == "memory" and (self.cache is None
                                 or isinstance(self.cache, InMemoryCacheBackend)):
            return self.cache_backend(None)  # the default cache is the in-memory one
        built: CacheBackend = create_backend("cache", name)
        with self._lock:
            kept = self.named_caches.setdefault(name, built)
            if kept is built:
                self._owned_caches.append(built)
                return kept
        # Another thread built the same one first (two compiles at once): this one is
        # not used, and it may hold a connection.
        close = getattr(built, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                logger.exception("closing an unused cache backend %s failed",
                                 type(built).__name__)
        return kept

    # --- admission ---------------------------------------------------------------------

    def admit(self) -> None:
        """Count a new execution in, or raise at once if the queue is full.

        Raises:
            QueueFullError: ``max_queue_size`` executions are already waiting.
        """
        with self._lock:
            if self.max_queue_size is not None and self.queued >= self.max_queue_size:
                self.rejected += 1
                raise QueueFullError(
                    f"scheduler queue is full ({self.max_queue_size} waiting); retry later",
                    details={"max_queue_size": self.max_queue_size})
            self.queued += 1
            self.inflight += 1
            arm = not self._rescuing
            self._rescuing = True
        if arm:
            self._arm_rescue()

    def _arm_rescue(self) -> None:
        try:
            self.timer.call_later(RESCUE_AFTER, self._rescue_tick)
        except RuntimeError:  # the timer is stopped: the engine is stopping
            with self._lock:
                self._rescuing = False

    def _rescue_tick(self) -> None:
        # On the timer thread, every RESCUE_AFTER seconds while executions are in flight.
        for pool in (self.workers, self.dispatcher):
            if isinstance(pool, ThreadPool):
                pool.rescue()
        now = time.monotonic()
        for helper in list(self.helpers):
            helper.rescue(now, RESCUE_AFTER)
        with self._lock:
            again = self._rescuing = self.inflight > 0
        if again:
            self._arm_rescue()

    def dequeued(self) -> None:
        """An execution left the queue (started, cancelled or timed out while waiting)."""
        with self._lock:
            self.queued -= 1

    def execution_done(self) -> None:
        """An execution ended."""
        with self._lock:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no execution is in flight; return whether that happened in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self.inflight == 0, timeout)

    def post_to_supervisor(self, message: Any) -> bool:
        """Deliver to the supervisor, running its turn on this thread if it is idle and
        this is an engine thread (see ``PooledActor.post_and_run``); from any other
        thread the turn is queued.

        Returns:
            False if the supervisor has stopped (the message is a dead letter).
        """
        if self.supervisor_actor is None:
            return False
        return self.supervisor_actor.post_and_run(message)

    def hand_over(self, message: Any, *, parked: bool) -> bool:
        """Deliver a ``SubmitExecution`` (see :meth:`post_to_supervisor`). ``parked``: the
        submitting thread, one of the user's, waits for the result (``run()``); then the
        supervisor's turn runs on a free worker of the engine's own pool, if one is
        free, where the execution goes on (see ``PooledActor.post_turn_on``)."""
        actor = self.supervisor_actor
        pool = self.runner.pool
        if parked and actor is not None and pool is not None and current_pool() is None:
            return actor.post_turn_on(message, pool)
        return self.post_to_supervisor(message)

    def supervisor_failed(self, exc: BaseException, handles: list[Execution]) -> None:
        """The supervisor's turn raised: the engine is FAILED. Every execution it held
        ends FAILED now, and so does any that reaches it later."""
        from constellation.actors._handle import bare_result
        from constellation.actors._internal import describe, internal_error
        from constellation.core.errors import EngineFailedError
        from constellation.core.results import ExecutionStatus

        logger.error("the supervisor failed (%s: %s); the engine accepts no more work",
                     type(exc).__name__, describe(exc), exc_info=exc)
        cause = internal_error("the engine's supervisor failed", exc)
        failed = EngineFailedError(
            f"the engine failed: {cause.message}; shut it down and create a new one",
            details={"cause": cause.to_dict()})
        self.failed = failed
        for h in handles:
            h._complete(bare_result(h, ExecutionStatus.FAILED, failed))

    def stop(self, join_timeout: float = 5.0) -> None:
        """Stop timer and pools (after the supervisor has stopped)."""
        for actor in [*self.breakers.values(), *self.limiters.values()]:
            actor.post(StopActor())
        with self._lock:
            self._stores_stopped = True
            stores = self._stores_pool
        if stores is not None:
            stores.shutdown(wait=False)  # queued stores still run ...
            if self._owned_caches:
                # ... but not on a cache closed under them: the stores bound for those
                # the engine built get a while, then what is left of them is dropped
                # (the others run on: the engine does not close those caches).
                # (Not when stopped from a store itself: it would wait for itself.)
                if current_pool() is not stores:
                    self.wait_for_stores(min(join_timeout, STORES_AT_STOP),
                                         owned_only=True)
                dropped = stores.drop_queued(
                    keep=lambda task: not (type(task) is _Store and task.owned))
                if dropped:
                    logger.warning("%d cache stores were still waiting at shutdown: not "
                                   "made", dropped)
        interrupted: BaseException | None = None
        for cache in self._owned_caches:  # built here from the registry: ours to close
            close = getattr(cache, "close", None)
            if callable(close):
                try:
                    close()
                except BaseException as exc:  # best effort; Ctrl-C after the rest
                    logger.exception("closing cache backend %s failed",
                                     type(cache).__name__)
                    if not isinstance(exc, Exception):
                        interrupted = interrupted or exc
        self._stop_threads(join_timeout)
        if interrupted is not None:
            raise interrupted

    def _stop_threads(self, join_timeout: float) -> None:
        self.timer.stop()
        self.async_runner.shutdown(min(join_timeout, 5.0))
        if self._io_pool is not None:
            self._io_pool.shutdown(wait=False)
        self.dispatcher.shutdown(wait=False)
        interrupted: BaseException | None = None
        try:
            if self.own_workers:
                # Dropped futures' done callbacks run here: one may raise (Ctrl-C).
                self.workers.shutdown(wait=False, cancel_futures=True)
            else:
                self.runner.shutdown()  # what the runner owns (an owned pool, a client)
        except BaseException as exc:  # the rest still stops; Ctrl-C goes on up after
            logger.exception("stopping the worker pool failed")
            if not isinstance(exc, Exception):
                interrupted = exc
        if self._callbacks_pool is not None:
            self._callbacks_pool.shutdown(wait=False)  # queued callbacks still run
        deadline = time.monotonic() + join_timeout
        # The engine's own pools: a user's executor (even one of our ThreadPools) is
        # left running, and joining it would wait for threads that never leave.
        for pool in (self.dispatcher, self.workers if self.own_workers else None,
                     self._callbacks_pool):
            if isinstance(pool, ThreadPool):
                pool.join(max(0.0, deadline - time.monotonic()))
        if interrupted is not None:
            raise interrupted
