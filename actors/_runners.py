"""Where a module call runs: one small adapter per kind of executor.

A :class:`Runner` starts one attempt of a module call and reports it back to its node
actor with :meth:`NodeActor.attempt_returned` (on the thread the call ran on). Kinds:

- :class:`PoolRunner` -- the engine's own :class:`ThreadPool` (the default): the call
  runs on a worker thread; quick modules stay on the thread that produced their inputs.
- :class:`LocalExecutorRunner` -- a user's ``ThreadPoolExecutor`` (same process: the
  module gets the real ``ctx``).
- :class:`ProcessRunner` -- a ``ProcessPoolExecutor``: the engine's own
  (``executor="process"`` or ``"process:N"``) or a user's; replaced by a fresh
  engine-owned pool when a worker process dies (``BrokenProcessPool``).
- :class:`DaskRunner` -- ``dask.distributed`` (``client.get_executor()``, a ``Client``,
  or ``executor="tcp://host:port"``): each attempt is a task of its own (a unique key,
  ``pure=False``), cancelled with ``force=True`` when abandoned.
- :class:`RemoteRunner` -- any other ``concurrent.futures.Executor`` (deadlines only:
  modules taking ``ctx`` are refused when a pipeline is compiled).
- :class:`IsolatedRunner` -- ``@module(isolation="process")`` on the engine's threads:
  a fresh interpreter per call, its process group killed on abandon (see
  ``_isolation``). On the other runners an isolated call's child is started by the
  worker running the call.

Calls to other processes travel as ONE packed argument (``_remote.Call``): module
arguments never become keywords of ``submit``. See ``_remote`` for the worker side. A
module's declared secrets (``@module(secrets=...)``) are looked up for each attempt just
before it is shipped, off the node's turn (a backend may do I/O, or block): a missing
one fails the attempt with E320 before anything is sent, and every value found joins the
execution's redaction set before the call can fail with it.

Every fault of an executor is a failed call, never a failed actor: a ``submit`` that
raises (shut down, broken pool, an argument it cannot serialize), a lost worker, a lost
scheduler, code that cannot be loaded on the worker, are an :class:`ExecutorError`
(E312) for that call only; a future that is cancelled was abandoned.
"""

from __future__ import annotations

import logging
import pickle
import sys
import threading
import time
import uuid
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import Future as CFuture
from functools import partial
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from constellation.actors._context import DONE, RUNNING, lookup_secret
from constellation.actors._internal import describe
from constellation.actors._isolation import run_isolated
from constellation.actors._messages import AttemptFinished
from constellation.actors._pool import SLOT_HELD, Borrowed, Gathered, ThreadPool
from constellation.actors._pool import _local as _pool_local
from constellation.actors._remote import (
    Call,
    CallAbandoned,
    DaskToken,
    Flags,
    NoToken,
    NotStarted,
    ShipError,
    by_value,
    can_ship_by_value,
    dumps_by_value,
    run_call,
)
from constellation.core.errors import ConfigurationError, ExecutorError

if TYPE_CHECKING:
    from collections.abc import Callable

    from constellation.actors._context import Attempt
    from constellation.actors._node import NodeActor
    from constellation.core.modules import ModuleDefinition

__all__ = ["DaskRunner", "ExecutorRunner", "IsolatedRunner", "LocalExecutorRunner",
           "PoolRunner", "ProcessPoolRunner", "ProcessRunner", "RemoteRunner", "Runner",
           "executor_error", "is_dask", "runner_for"]

logger = logging.getLogger("constellation.runtime")


class Runner:
    """Starts attempts of module calls (see the module docstring)."""

    pool: ThreadPool | None = None
    """The thread pool whose threads run the calls, if any (abandoned calls keep their
    thread: the pool may start another meanwhile, see ``ThreadPool.compensate``)."""

    name = "threads"
    executor: Any = None
    """What runs the calls (the pool, the executor, the dask client)."""

    remote = False
    """Calls run in other processes (isolated calls go through the executor too)."""

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        """Start ``attempt``; raise only if the executor refused it."""
        raise NotImplementedError

    def refuse(self, mdef: ModuleDefinition) -> str | None:
        """Why ``mdef`` cannot run here (checked when a pipeline is compiled), or None."""
        return None

    def gather(self) -> Gathered | None:
        """Start gathering the calls this thread starts, to hand them over at once with
        :meth:`spread`; ``None`` where that does not apply (only the engine's own pool
        gathers)."""
        return None

    def spread(self, gathered: Gathered) -> None:
        """Hand over the calls :meth:`gather` collected."""

    def shutdown(self) -> None:
        """The engine is stopping: release what this runner owns (never blocks long)."""


class PoolRunner(Runner):
    """Module calls on the engine's worker :class:`ThreadPool`."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool
        self.executor = pool

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        pool = self.pool
        assert pool is not None
        task = _new(_PoolCall)  # what _PoolCall(...) does, without an __init__ frame
        task.actor = actor
        task.attempt = attempt
        task.kwargs = kwargs
        task.pool = pool
        task.release = actor.policy is not None
        policy = actor.policy
        if policy is not None and policy.timeout is not None:
            # A call with a timeout never waits in a thread's local backlog, where a
            # sibling that blocks would hold it past its timeout without it running.
            pool.schedule_queued(task)
        elif actor.node.timing.fast:
            # Quick: where it became ready -- or on the caller helping its execution.
            # (Launched with others off the pool: gathered, see ExecutionActor._launch.)
            (actor.handle._help_workers or pool).schedule_local(task)
        else:
            pool.schedule(task)

    def gather(self) -> Gathered | None:
        """Gather the quick calls this thread starts (see ThreadPool.gather)."""
        assert self.pool is not None
        return self.pool.gather()

    def spread(self, gathered: Gathered) -> None:
        """Hand the gathered calls to the pool in a few slices (ThreadPool.spread),
        instead of a queue put, the pool's lock and a thread wake-up per call. On a pool
        that is shut down each call is refused, as ``start`` would have been."""
        pool = gathered.pool
        try:
            pool.spread(gathered)
        except RuntimeError as exc:
            for call in gathered:  # each a _PoolCall
                if call.attempt.finish():
                    actor = call.actor
                    actor.post(AttemptFinished(call.attempt, None,
                                               executor_error(actor, pool.name, exc), 0.0))


_new = object.__new__


class _PoolCall:
    """The task of one call on the worker pool, run by a pool thread (or a helping
    caller): the call and its arguments in one object (a ``partial`` and its argument
    tuple are two objects the cyclic garbage collector tracks, and a wide execution
    has thousands of calls queued at once)."""

    __slots__ = ("actor", "attempt", "kwargs", "pool", "release")

    actor: NodeActor
    attempt: Attempt
    kwargs: dict[str, Any]
    pool: ThreadPool
    release: bool  # whether the thread's backlog is released first (a call with options)

    def __call__(self) -> None:
        # On a worker thread, outside any actor turn: the module may block.
        actor = self.actor
        attempt = self.attempt
        pool = self.pool
        if attempt.state != RUNNING or actor.handle._result is not None:
            # Never start a call whose execution is over (cancelled, timed out ...).
            if attempt.state == RUNNING and attempt.abandon():
                # Ended here, before it started: nothing was compensated. This thread
                # won the attempt's token, so it tells the end (a NodeActor tells it
                # when it handles its Abandon anyway).
                actor.unstarted()
                return
            pool.compensate(-1)  # the node abandoned it and let the pool add a thread
            return
        local = _pool_local
        slot = getattr(local, "slot", None)  # None on a pool thread; SLOT_HELD on a helper
        local.slot = SLOT_HELD
        if self.release:
            pool.release_backlog()  # nothing queued on this thread waits behind the call
        attempt.started = True
        started = time.perf_counter()
        error: BaseException | None = None
        value: Any = None
        try:
            value = actor.node.module.func(**self.kwargs)
        except BaseException as exc:  # any exception is the module's failure
            error = exc
        local.slot = slot
        try:
            if not attempt.finish():
                pool.compensate(-1)  # abandoned meanwhile: the pool had started a thread
                return
            actor.attempt_returned(attempt, value, error, time.perf_counter() - started)
        except BaseException as exc:
            # Injected into this thread (PyThreadState_SetAsyncExc) between the call's
            # end and its report: the token is won, nobody else will report the node.
            if attempt.state == DONE:
                actor.report_lost(exc)
            raise


class ExecutorRunner(Runner):
    """Base of the runners for ``concurrent.futures`` executors: submit, then a done
    callback."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self.name = type(executor).__name__


class LocalExecutorRunner(ExecutorRunner):
    """A user's ``ThreadPoolExecutor``: same process, so the module gets the real
    ``ctx``; a call whose execution ended while it was queued never starts."""

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        started = time.perf_counter()
        future = self.executor.submit(_call_here, actor, attempt, kwargs)
        attempt.future = future
        if attempt.abandoned:  # abandoned while submitting: abandon() may have missed it
            future.cancel()
        attempt.started = True
        future.add_done_callback(partial(_local_done, actor, attempt, started, self))


def _call_here(actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> Any:
    if attempt.state != RUNNING or actor.handle._result is not None:
        return NotStarted("its execution had ended")
    return actor.node.module.func(**kwargs)


def _local_done(actor: NodeActor, attempt: Attempt, started: float, runner: ExecutorRunner,
                future: Any) -> None:
    error: BaseException | None = None
    value: Any = None
    try:
        if future.cancelled():
            if attempt.state != RUNNING:
                return
            error = executor_error(actor, runner.name, RuntimeError(
                "the executor cancelled the call before it started (shut down?)"))
        else:
            exc = future.exception()
            if exc is None:
                value = future.result()
                if type(value) is NotStarted:
                    attempt.abandon()
                    return  # its execution is over: nobody waits for it
            else:
                error = exc
    except BaseException as exc:  # a future that cannot even report
        error = executor_error(actor, runner.name, exc)
    if not attempt.finish():
        return
    actor.attempt_returned(attempt, value, error, time.perf_counter() - started)


class _Remote:
    """What ``Attempt.abandon`` cancels for a call in another process: the future, the
    call's cancel token, the dask task (see :meth:`RemoteRunner.cancel`)."""

    __slots__ = ("execution", "future", "runner", "token")

    def __init__(self, runner: RemoteRunner, token: Any, execution: Any) -> None:
        self.runner = runner
        self.token = token
        self.execution = execution
        self.future: Any = None

    def cancel(self) -> bool:
        self.runner.cancel(self)
        return True


class RemoteRunner(ExecutorRunner):
    """Calls in other processes, on any ``concurrent.futures.Executor``: one packed
    argument per attempt (``_remote.Call``), run by ``_remote.run_call``.

    On an executor of unknown kind the call knows its deadline but hears no cancel,
    so modules that take ``ctx`` are refused (see :meth:`refuse`).
    """

    remote = True
    ctx_support = False

    def __init__(self, executor: Any) -> None:
        super().__init__(executor)
        self._code: dict[int, tuple[ModuleDefinition, bytes]] = {}
        self._by_value = can_ship_by_value()

    def refuse(self, mdef: ModuleDefinition) -> str | None:
        if mdef.takes_ctx and not self.ctx_support:
            return (f"module {mdef.name} takes ctx, which executor {self.name} cannot "
                    "serve (it has no way to tell a running call to stop): run it on the "
                    "engine's threads, executor='process', a ProcessPoolExecutor or "
                    "dask.distributed")
        func = mdef.func
        if mdef.isolation == "process" and by_value(func):
            return (f"module {mdef.name} runs in a separate process, so it must be "
                    f"importable: define {func.__qualname__} at the top level of a module")
        return None

    # --- packing -------------------------------------------------------------------------

    def token(self, actor: NodeActor, attempt: Attempt) -> Any:
        """The attempt's cancel token."""
        return NoToken()

    def release(self, remote: _Remote) -> None:
        """The call ended or was abandoned: its token is no longer needed."""

    def pack(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any],
             token: Any) -> Call:
        node = actor.node
        mdef = node.module
        func = mdef.func
        ref: tuple[str, str] | None = (func.__module__, func.__qualname__)
        code = None
        if by_value(func) and self._by_value and mdef.isolation != "process":
            ref = None
            cached = self._code.get(id(mdef))
            if cached is None or cached[0] is not mdef:
                cached = (mdef, dumps_by_value(func))
                self._code[id(mdef)] = cached
            code = cached[1]
        args = pickle.dumps({k: v for k, v in kwargs.items() if k != "ctx"},
                            pickle.HIGHEST_PROTOCOL) if "ctx" in kwargs \
            else pickle.dumps(kwargs, pickle.HIGHEST_PROTOCOL)
        handle = actor.handle
        left = None
        if handle.deadline is not None:
            left = handle.deadline - actor.runtime.clock()
        policy = actor.policy
        if policy is not None and policy.timeout is not None:
            left = policy.timeout if left is None else min(left, policy.timeout)
        return Call(mdef.name, ref, code, args,
                    (handle.execution_id, node.name, attempt.number) if mdef.takes_ctx
                    else None,
                    None if left is None else time.time() + left, token,
                    policy is not None and policy.isolation == "process")

    # --- the attempt ---------------------------------------------------------------------

    def submit(self, call: Call, executor: Any) -> Any:
        """Hand ``call`` to ``executor``; a ``concurrent.futures.Future``."""
        return executor.submit(run_call, call)

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        names = actor.node.module.secrets
        if not names:
            self.launch(actor, attempt, kwargs, None)
            return
        # Secrets first, on the engine's I/O threads: the backend may do I/O or block,
        # which a node's turn must never wait for. Tracked like a call: abandoning the
        # attempt (timeout, cancel, deadline) lets the pool replace a stuck thread.
        pool = actor.runtime.workers_pool
        lookup = Borrowed(pool)
        attempt.future = lookup
        pool.schedule_queued(partial(self._look_up_and_launch, actor, attempt, kwargs,
                                     lookup))

    def _look_up_and_launch(self, actor: NodeActor, attempt: Attempt,
                            kwargs: dict[str, Any], lookup: Borrowed) -> None:
        # On an I/O thread. Values are looked up again for every attempt (a retry sees
        # a rotated secret); only this attempt's Call carries them.
        started = time.perf_counter()
        handle = actor.handle
        if not lookup.start():
            attempt.abandon()  # given up on while queued: never ship it (no-op if so)
            return
        values: dict[str, str] | None = None
        error: BaseException | None = None
        try:
            if attempt.state == RUNNING and handle._result is None:
                node = actor.node
                values = {name: lookup_secret(handle, name, node.name)
                          for name in node.module.secrets}
        except BaseException as exc:  # E320; a BaseException out of the backend
            error = exc
        finally:
            lookup.done()
        if error is not None:
            if attempt.finish():
                actor.attempt_returned(attempt, None, error, time.perf_counter() - started)
            return
        if values is None or attempt.state != RUNNING or handle._result is not None:
            attempt.abandon()  # ended while it waited or looked up: never ship it
            return
        try:
            self.launch(actor, attempt, kwargs, values)
        except BaseException as exc:
            if attempt.finish():
                actor.attempt_returned(attempt, None, executor_error(actor, self.name, exc),
                                       time.perf_counter() - started)

    def launch(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any],
               secrets: dict[str, str] | None) -> None:
        """Pack and submit ``attempt`` with the values of its module's ``secrets``;
        raise only if the executor refused it."""
        started = time.perf_counter()
        executor = self.executor
        token = self.token(actor, attempt)
        remote = _Remote(self, token, actor.handle)
        try:
            call = self.pack(actor, attempt, kwargs, token)
            call.secrets = secrets
            future = self.submit(call, executor)
        except BaseException:
            self.release(remote)
            raise
        remote.future = future
        attempt.future = remote
        if attempt.abandoned:  # abandoned while submitting: abandon() may have missed it
            remote.cancel()
        attempt.started = True
        future.add_done_callback(partial(_remote_done, actor, attempt, started, self,
                                         remote, executor))

    def cancel(self, remote: _Remote) -> None:
        """Abandon a call: a queued one never starts, a running one is told to stop."""
        self.release(remote)
        future = remote.future
        if future is not None:
            future.cancel()

    def broken(self, executor: Any) -> None:
        """``executor`` reported a broken pool."""

    def fault(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the executor's failure rather than the module's."""
        return isinstance(exc, BrokenExecutor | ShipError | CallAbandoned)


def _remote_done(actor: NodeActor, attempt: Attempt, started: float, runner: RemoteRunner,
                 remote: _Remote, executor: Any, future: Any) -> None:
    # On whatever thread completes the future (the executor's, or dask's event loop).
    runner.release(remote)
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
                if type(value) is NotStarted:
                    if attempt.state != RUNNING:
                        return
                    error = executor_error(actor, runner.name, RuntimeError(
                        f"the worker did not start the call: {value.reason}"))
            elif isinstance(exc, CallAbandoned) and attempt.state != RUNNING:
                return  # the worker gave up a call the engine had given up on
            elif runner.fault(exc):
                error = executor_error(actor, runner.name, exc)
                if isinstance(exc, BrokenExecutor):
                    runner.broken(executor)
            else:
                error = exc
    except BaseException as exc:  # a future that cannot even report
        error = executor_error(actor, runner.name, exc)
    if not attempt.finish():
        return
    actor.attempt_returned(attempt, value, error, time.perf_counter() - started)


class ProcessRunner(RemoteRunner):
    """A ``ProcessPoolExecutor``: the engine's own, or a user's.

    Cancel tokens are slots of a memory-mapped file (``_remote.Flags``): a queued call
    whose execution ended never starts, a running one sees ``ctx.cancelled``, and one
    past its deadline is given up by its worker, which goes on with the next call (the
    stuck call's thread runs on, detached, in that worker process).

    A worker process that dies (a crash, ``os._exit``, the OOM killer) breaks a
    ``ProcessPoolExecutor`` for good: the calls that were in it fail
    (``ExecutorError``); this runner then builds a fresh pool (engine-owned, of the
    same size, started with ``spawn``), so later calls run again. The engine shuts
    down only the pools it owns.

    Args:
        executor: a user's pool, or None for an engine-owned one.
        max_workers: the size of an engine-owned pool (default: one per core).
    """

    ctx_support = True

    def __init__(self, executor: ProcessPoolExecutor | None = None,
                 max_workers: int | None = None) -> None:
        self._owned = executor is None
        self._max_workers = max_workers if executor is None \
            else getattr(executor, "_max_workers", max_workers)
        self._lock = threading.Lock()
        self._closed = False
        self.replaced = 0
        self._flags: Flags | None = None
        super().__init__(executor if executor is not None else self._new_pool())
        self.name = "ProcessPoolExecutor"

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing

        return ProcessPoolExecutor(self._max_workers,
                                   mp_context=multiprocessing.get_context("spawn"))

    def token(self, actor: NodeActor, attempt: Attempt) -> Any:
        flags = self._flags
        if flags is None:
            with self._lock:
                if self._flags is None:
                    self._flags = Flags()
                flags = self._flags
        return flags.issue()

    def release(self, remote: _Remote) -> None:
        flags = self._flags
        if flags is not None:
            flags.retire(remote.token)

    def replace(self, broken: Executor) -> None:
        """Swap in a new pool if ``broken`` is still the current one."""
        with self._lock:
            if self.executor is not broken or self._closed:
                return
            owned = self._owned
            self.executor = self._new_pool()
            self._owned = True
            self.replaced += 1
        logger.warning("the process pool broke (a worker process died); calls go to a new "
                       "engine-owned pool from now on")
        if owned:
            _stop_pool(broken)

    def launch(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any],
               secrets: dict[str, str] | None) -> None:
        executor = self.executor
        try:
            super().launch(actor, attempt, kwargs, secrets)
        except BrokenExecutor:
            self.replace(executor)
            super().launch(actor, attempt, kwargs, secrets)  # once, on the new pool

    def broken(self, executor: Any) -> None:
        self.replace(executor)

    def shutdown(self) -> None:
        """Shut the current pool down if the engine owns it; remove the flags file."""
        with self._lock:
            self._closed = True
            executor, owned = self.executor, self._owned
        if owned:
            _stop_pool(executor)
        if self._flags is not None:
            self._flags.close()


ProcessPoolRunner = ProcessRunner


def _stop_pool(pool: Executor) -> None:
    """Shut an owned pool down without waiting; a worker process still running after
    a few seconds (a call that ignores everything) is killed."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    if not processes:
        return

    def reap() -> None:
        deadline = time.monotonic() + 3.0
        for p in processes:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()

    threading.Thread(target=reap, name="constellation-pool-reaper", daemon=True).start()


def is_dask(executor: Any) -> bool:
    """Whether ``executor`` is a dask ``Client`` or ``ClientExecutor``."""
    if "distributed" not in sys.modules:
        return False  # not imported: it cannot be one
    try:
        from distributed import Client
        from distributed.cfexecutor import ClientExecutor
    except ImportError:  # pragma: no cover - a broken install
        return False
    return isinstance(executor, Client | ClientExecutor)


class DaskRunner(RemoteRunner):
    """``dask.distributed``: a ``Client``, its ``get_executor()``, or an address.

    Whatever the user's executor was built with, every attempt is submitted as a task
    of its own -- a unique key and ``pure=False`` -- so that retries, breaker probes and
    identical calls all run (dask would otherwise hand back the first result, or error,
    for the same key). The executor's own options (``workers``, ``resources``,
    ``allow_other_workers``, ``retries``) are kept.

    Abandoning an attempt cancels its task with ``force=True`` (a queued task never
    starts) and, when its execution is over, sets the execution's
    ``distributed.Event`` (``constellation-cancel-<execution id>``), which a running
    call reads through ``ctx.cancelled`` and its worker through the call's token. Both
    are done by one control thread: an actor's turn never waits for the network.

    Faults of the cluster -- a task whose workers kept dying (``KilledWorker``), a lost
    scheduler connection (its futures are cancelled by the client), a client that is
    not connected at submit -- fail the call with ``ExecutorError``.
    """

    ctx_support = True

    def __init__(self, executor: Any, owned: bool = False) -> None:
        super().__init__(executor)
        from distributed import Client

        self.client: Any
        if isinstance(executor, Client):
            self.client, self._options = executor, {}
        else:
            self.client = executor._client
            self._options = {k: v for k, v in getattr(executor, "_kwargs", {}).items()
                             if k != "pure"}
        self.name = "dask"
        self._owned = owned
        self._control: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self._control_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._events_set: set[str] = set()

    def token(self, actor: NodeActor, attempt: Attempt) -> Any:
        return DaskToken(f"constellation-cancel-{actor.handle.execution_id}")

    def submit(self, call: Call, executor: Any) -> Any:
        client = self.client
        status = getattr(client, "status", "running")
        if status != "running":
            raise RuntimeError(f"the dask client is {status!r}: the scheduler is not "
                               "reachable")
        key = f"constellation-{call.name}-{uuid.uuid4().hex}"
        dask_future = client.submit(run_call, call, key=key, pure=False, **self._options)
        cf: CFuture[Any] = CFuture()
        cf.dask_future = dask_future  # type: ignore[attr-defined]
        client.loop.add_callback(_cascade, dask_future, cf)
        return cf

    def cancel(self, remote: _Remote) -> None:
        cf = remote.future
        if cf is None:
            return
        cf.cancel()
        dask_future = getattr(cf, "dask_future", None)
        name = remote.token.name
        execution = remote.execution
        set_event = execution is not None and execution._result is not None
        with self._lock:
            if set_event:
                if name in self._events_set:
                    set_event = False
                else:
                    if len(self._events_set) > 10_000:
                        self._events_set.clear()
                    self._events_set.add(name)

        def control() -> None:
            if dask_future is not None:
                dask_future.cancel(force=True)
            if set_event:
                import distributed

                event: Any = distributed.Event
                event(name, client=self.client).set()

        self._run_control(control)

    def _run_control(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._control_thread is None:
                self._control_thread = threading.Thread(
                    target=self._control_loop, name="constellation-dask-control",
                    daemon=True)
                self._control_thread.start()
        self._control.put(fn)

    def _control_loop(self) -> None:
        while True:
            fn = self._control.get()
            if fn is None:
                return
            try:
                fn()
            except Exception:
                logger.debug("a dask control call failed", exc_info=True)

    def fault(self, exc: BaseException) -> bool:
        if super().fault(exc):
            return True
        mod = type(exc).__module__ or ""
        if mod.startswith(("distributed", "tornado")) or isinstance(exc, _DaskLost):
            return True
        return isinstance(exc, ImportError) and "constellation" in str(exc)

    def shutdown(self) -> None:
        self._control.put(None)
        if self._owned:
            try:
                self.client.close(timeout=5)
            except Exception:
                logger.debug("closing the dask client failed", exc_info=True)


class _DaskLost(Exception):  # noqa: N818
    """dask cancelled the task itself (the scheduler connection was lost ...)."""


async def _cascade(dask_future: Any, cf: CFuture[Any]) -> None:
    # On the client's event loop: the task's outcome onto the concurrent future.
    try:
        result = await dask_future._result(raiseit=False)
        status = dask_future.status
        if cf.done():
            return
        if status == "finished":
            cf.set_result(result)
        elif status == "cancelled":
            reason = getattr(getattr(dask_future, "_state", None), "_reason", None)
            cf.set_exception(_DaskLost(
                "dask cancelled the task" + (f" ({reason})" if reason else "")
                + ": the scheduler connection may have been lost"))
        else:
            exc = result[1] if isinstance(result, tuple) and len(result) == 3 else result
            cf.set_exception(exc if isinstance(exc, BaseException)
                             else _DaskLost(f"the task ended as {status}: {exc!r}"))
    except BaseException as exc:
        if not cf.done():
            cf.set_exception(_DaskLost(f"{type(exc).__name__}: {describe(exc)}"))


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


def runner_for(executor: Any) -> Runner:
    """The runner for the engine's worker executor: a :class:`ThreadPool`, an
    ``Executor``, a dask ``Client``, or a string (see
    :func:`constellation.executors.parse_executor`), whose executor the engine owns.

    Raises:
        ConfigurationError: a string that names no executor, or an object that is none.
    """
    if isinstance(executor, str):
        from constellation.executors import parse_executor

        spec = parse_executor(executor)
        if spec.kind == "process":
            return ProcessRunner(max_workers=spec.workers)
        if spec.kind == "dask":
            from constellation.executors import connect_client

            client = connect_client(spec)
            return DaskRunner(client, owned=True)
        return PoolRunner(ThreadPool(spec.workers or 16, "constellation-worker"))
    if type(executor) is ThreadPool:
        return PoolRunner(executor)
    if is_dask(executor):
        return DaskRunner(executor)
    if isinstance(executor, ProcessPoolExecutor):
        _warn_if_forking(executor)
        return ProcessRunner(executor)
    if isinstance(executor, ThreadPoolExecutor):
        return LocalExecutorRunner(executor)
    if isinstance(executor, Executor):
        return RemoteRunner(executor)
    raise ConfigurationError("executor must be a concurrent.futures.Executor, a dask "
                             f"Client or a string such as 'process:4', got {executor!r}",
                             details={"field": "executor"})


def _warn_if_forking(executor: ProcessPoolExecutor) -> None:
    """A user's pool that forks: the engine's process has threads (its pools, timers,
    listener), and a child forked while one of them holds a lock (logging's, the import
    lock, an allocator's) can hang on it -- its calls then end only at their timeout or
    the execution's deadline. Python 3.12 warns of it too; say it here, once per pool."""
    context = getattr(executor, "_mp_context", None)
    method = context.get_start_method() if context is not None else None
    if method == "fork":
        logger.warning(
            "the ProcessPoolExecutor given as executor starts its workers by fork: forking "
            "the engine's multi-threaded process can leave a worker hung on a lock it "
            "inherited (its calls then end only at their timeout); create it with "
            "mp_context=multiprocessing.get_context('spawn') or 'forkserver', or use "
            "executor='process'")


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
