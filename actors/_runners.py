"""Where a module call runs: one small adapter per kind of executor.

A :class:`Runner` starts one attempt of a module call and reports it back to its node
actor with :meth:`NodeActor.attempt_returned` (on the thread the call ran on). Three
kinds:

- :class:`PoolRunner` -- the engine's own :class:`ThreadPool` (the default): the call
  runs on a worker thread; quick modules stay on the thread that produced their inputs.
- :class:`ExecutorRunner` -- any ``concurrent.futures.Executor`` (a process pool,
  ``dask.distributed``'s ``Client.get_executor()`` ...): ``submit``, then a done callback.
- :class:`ProcessPoolRunner` -- ``executor="process"``: an engine-owned process pool,
  replaced when a worker process dies.
- :class:`IsolatedRunner` -- ``@module(isolation="process")``: a fresh interpreter per
  call, killed on abandon (see ``_isolation``).

Every fault of an executor is a failed call, never a failed actor: a ``submit`` that
raises (shut down, broken pool, an argument it cannot serialize) is an
:class:`ExecutorError` for that call only; a future that is cancelled was abandoned.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import BrokenExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from constellation.actors._context import RUNNING
from constellation.actors._internal import describe
from constellation.actors._isolation import run_isolated
from constellation.actors._pool import SLOT_HELD, ThreadPool
from constellation.actors._pool import _local as _pool_local
from constellation.core.errors import ExecutorError

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from constellation.actors._context import Attempt
    from constellation.actors._node import NodeActor

__all__ = ["ExecutorRunner", "IsolatedRunner", "PoolRunner", "ProcessPoolRunner", "Runner",
           "executor_error", "runner_for"]


class Runner:
    """Starts attempts of module calls (see the module docstring)."""

    pool: ThreadPool | None = None
    """The thread pool whose threads run the calls, if any (abandoned calls keep their
    thread: the pool may start another meanwhile, see ``ThreadPool.compensate``)."""

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        """Start ``attempt``; raise only if the executor refused it."""
        raise NotImplementedError


class PoolRunner(Runner):
    """Module calls on the engine's worker :class:`ThreadPool`."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        pool = self.pool
        assert pool is not None
        task = partial(_run_on_pool, actor, attempt, kwargs, pool, actor.policy is not None)
        policy = actor.policy
        if policy is not None and policy.timeout is not None:
            # A call with a timeout never waits in a thread's local backlog, where a
            # sibling that blocks would hold it past its timeout without it running.
            pool.schedule_queued(task)
        elif actor.node.timing.fast:
            # Quick: where it became ready -- or on the caller helping its execution.
            (actor.handle._help_workers or pool).schedule_local(task)
        else:
            pool.schedule(task)


def _run_on_pool(actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any],
                 pool: ThreadPool, release: bool) -> None:
    # On a worker thread, outside any actor turn: the module may block.
    if attempt.state != RUNNING or actor.handle._result is not None:
        # Never start a call whose execution is over (cancelled, timed out ...).
        if attempt.state == RUNNING and attempt.abandon():
            return  # ended here, before it started: nothing was compensated
        pool.compensate(-1)  # the node abandoned it and let the pool add a thread
        return
    local = _pool_local
    slot = getattr(local, "slot", None)  # None on a pool thread; SLOT_HELD on a helper
    local.slot = SLOT_HELD
    if release:
        pool.release_backlog()  # nothing queued on this thread waits behind the call
    attempt.started = True
    started = time.perf_counter()
    error: BaseException | None = None
    value: Any = None
    try:
        value = actor.node.module.func(**kwargs)
    except BaseException as exc:  # any exception is the module's failure
        error = exc
    local.slot = slot
    if not attempt.finish():
        pool.compensate(-1)  # abandoned meanwhile: the pool had started a thread for it
        return
    actor.attempt_returned(attempt, value, error, time.perf_counter() - started)


class ExecutorRunner(Runner):
    """Module calls on any ``concurrent.futures.Executor``.

    The definition is submitted, not the bare function: it pickles by reference, so
    process pools and dask can run it.
    """

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.name = type(executor).__name__

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        started = time.perf_counter()
        future = self.executor.submit(actor.node.module, **kwargs)
        attempt.future = future
        if attempt.abandoned:  # abandoned while submitting: abandon() may have missed it
            future.cancel()
        attempt.started = True
        future.add_done_callback(partial(_future_done, actor, attempt, started, self,
                                         self.executor))

    def broken(self, executor: Executor) -> None:
        """``executor`` reported a broken pool (only an owned one can be replaced)."""


def _future_done(actor: NodeActor, attempt: Attempt, started: float,
                 runner: ExecutorRunner, executor: Executor, future: Any) -> None:
    # On whatever thread completes the future (the executor's, or dask's event loop).
    error: BaseException | None = None
    value: Any = None
    try:
        if future.cancelled():
            if attempt.state != RUNNING:
                return  # cancelled on abandon: nobody waits for it
            # Cancelled by the executor itself (shutdown(cancel_futures=True)).
            error = executor_error(actor, runner.name, RuntimeError(
                "the executor cancelled the call before it started (shut down?)"))
        else:
            exc = future.exception()
            if exc is None:
                value = future.result()
            elif isinstance(exc, BrokenExecutor):
                error = executor_error(actor, runner.name, exc)
                runner.broken(executor)
            else:
                error = exc
    except BaseException as exc:  # a future that cannot even report
        error = executor_error(actor, runner.name, exc)
    if not attempt.finish():
        return
    actor.attempt_returned(attempt, value, error, time.perf_counter() - started)


class ProcessPoolRunner(ExecutorRunner):
    """``Constellation(executor="process")``: an engine-owned process pool, replaced
    when it breaks.

    A worker process that dies (a crash, ``os._exit``, the OOM killer) breaks a
    ``ProcessPoolExecutor`` for good: every later ``submit`` raises
    ``BrokenProcessPool``. The calls that were in it fail (``ExecutorError``); this
    runner then builds a fresh pool, so later calls run again. Processes are started
    with ``spawn``: forking the engine's multi-threaded process is unsafe.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._closed = False
        self.replaced = 0
        super().__init__(self._new_pool())

    def _new_pool(self) -> Executor:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(self._max_workers,
                                   mp_context=multiprocessing.get_context("spawn"))

    def replace(self, broken: Executor) -> None:
        """Swap in a new pool if ``broken`` is still the current one."""
        with self._lock:
            if self.executor is not broken or self._closed:
                return
            self.executor = self._new_pool()
            self.replaced += 1
        broken.shutdown(wait=False, cancel_futures=True)

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        executor = self.executor
        try:
            super().start(actor, attempt, kwargs)
        except BrokenExecutor:
            self.replace(executor)
            super().start(actor, attempt, kwargs)  # once, on the new pool

    def broken(self, executor: Executor) -> None:
        self.replace(executor)

    def shutdown(self) -> None:
        """Shut the current pool down (the engine is stopping)."""
        with self._lock:
            self._closed = True
            executor = self.executor
        executor.shutdown(wait=False, cancel_futures=True)


class IsolatedRunner(Runner):
    """``isolation="process"``: each call in a fresh interpreter, watched by a thread."""

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        threading.Thread(target=_run_isolated, args=(actor, attempt, kwargs),
                         name=f"constellation-isolated-{actor.node.module.name}",
                         daemon=True).start()


def _run_isolated(actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
    if attempt.state != RUNNING or actor.handle._result is not None:
        attempt.abandon()
        return
    attempt.started = True
    started = time.perf_counter()
    error: BaseException | None = None
    value: Any = None
    try:
        value = run_isolated(actor.node.module, kwargs, attempt)
    except BaseException as exc:
        error = exc
    if not attempt.finish():
        return  # killed on abandon
    actor.attempt_returned(attempt, value, error, time.perf_counter() - started)


ISOLATED = IsolatedRunner()


def runner_for(executor: Executor) -> Runner:
    """The runner for the engine's worker executor."""
    if type(executor) is ThreadPool:
        return PoolRunner(executor)
    return ExecutorRunner(executor)


def executor_error(actor: NodeActor, executor: str, exc: BaseException) -> ExecutorError:
    """The error of a call that the executor refused or lost."""
    node = actor.node
    error = ExecutorError(
        f"executor {executor} could not run module {node.module.name} (node "
        f"'{node.name}'): {type(exc).__name__}: {describe(exc)}",
        details={"node": node.name, "module": node.module.name, "executor": executor,
                 "exception": type(exc).__name__})
    error.__cause__ = exc
    return error
