"""Execution: the caller's handle on one submitted execution."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from constellation.actors._log import EXECUTION, log
from constellation.actors._messages import CancelExecution
from constellation.actors._pool import SLOT_HELD, current_pool
from constellation.actors._pool import _local as _pool_local
from constellation.core.errors import ExecutionCancelledError, ExecutionTimeoutError
from constellation.core.results import ExecutionResult, ExecutionStatus, NodeRecord, NodeStatus
from constellation.core.types import render

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Mapping

    from constellation.actors._help import HelpState
    from constellation.actors._plan import ExecutionPlan
    from constellation.actors._runtime import Runtime
    from constellation.actors._timer import TimerEntry
    from constellation.core.errors import ConstellationError

__all__ = ["DEADLINE_GRACE", "Execution", "bare_result"]

logger = logging.getLogger("constellation.runtime")

_PENDING: Any = []  # Execution._callbacks while its done callbacks run (see _complete)

DEADLINE_GRACE = 1.0
"""Seconds past an execution's deadline after which a waiter stops waiting for the
runtime and ends the execution itself (TIMED_OUT): ``result()`` is bounded even if a
runtime thread died."""


class Execution:
    """A submitted execution: its id and status, its result when done, and cancel.

    Returned by ``Constellation.submit``; never built by users.

    Attributes:
        execution_id: unique id (also in the result, events and storage).
        priority: the integer priority it was submitted with.
    """

    __slots__ = ("_callbacks", "_deadline_timer", "_event", "_help", "_help_dispatcher",
                 "_help_workers", "_parked", "_result", "_runtime", "_secrets",
                 "_snapshot", "_status", "deadline", "enqueued_at", "execution_id", "inputs",
                 "plan", "preset", "priority", "submitted_at")

    # Guards the lazy creation of _event and the callback list, not the hot path.
    _lock = threading.Lock()

    def __init__(self, execution_id: str, plan: ExecutionPlan, inputs: Mapping[str, Any],
                 priority: int, deadline: float | None, runtime: Runtime,
                 preset: Mapping[int, Any] | None = None) -> None:
        self.execution_id = execution_id
        # Values ctx.secret() handed out (replaced whole on each new one: redaction
        # reads it without a lock).
        self._secrets: frozenset[str] | None = None
        self.plan = plan
        self.inputs = inputs
        self.priority = priority
        self.deadline = deadline
        self.submitted_at = time.perf_counter()
        self.enqueued_at = runtime.clock()  # aging counts from here (engine's clock)
        self._runtime = runtime
        # Not a concurrent.futures.Future: its Condition and RLock cost more than the
        # rest of the handle, and most results are read after they are set. An Event
        # is made only for a caller that has to wait.
        self._result: ExecutionResult | None = None
        self._event: threading.Event | None = None
        # A parked run()'s wait (see park): a lock held until the result is set.
        self._parked: threading.Lock | None = None
        self._callbacks: list[Callable[[ExecutionResult], None]] | None = None
        self._status = ExecutionStatus.QUEUED
        self._deadline_timer: TimerEntry | None = None
        # Set when the calling thread helps run it (see _help.Helper.attach).
        self._help: HelpState | None = None
        self._help_dispatcher: Any = None
        self._help_workers: Any = None
        # Resumed executions: node index → the output it already computed (not re-run).
        self.preset = preset
        # Suspended executions: node name → output, for the stored snapshot.
        self._snapshot: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<Execution {self.execution_id} {self.plan.name} {self._status.value}>"

    @property
    def pipeline(self) -> str:
        """The pipeline's name."""
        return self.plan.name

    @property
    def status(self) -> ExecutionStatus:
        """QUEUED, RUNNING, or the final status once the result is available."""
        return self._status

    def done(self) -> bool:
        """Whether the execution has ended."""
        return self._result is not None

    def result(self, timeout: float | None = None) -> ExecutionResult:
        """Wait for the result.

        The wait is bounded: every execution ends by its deadline (the engine's
        ``default_timeout`` at the latest), and the waiter itself enforces it -- should
        the runtime not end the execution within :data:`DEADLINE_GRACE` seconds of its
        deadline, the execution ends TIMED_OUT here. So waiting without a timeout
        cannot hang, whatever happened to the engine's threads.

        Args:
            timeout: seconds to wait; ``None`` waits until it ends.

        Raises:
            TimeoutError: still running after ``timeout`` seconds (it keeps running).
        """
        result = self._result
        if result is not None and self._callbacks is not _PENDING:
            return result
        with self._lock:
            waiting = self._result is None or self._callbacks is _PENDING
            if waiting and self._event is None:
                self._event = threading.Event()
            event = self._event
        if waiting and event is not None:
            pool = current_pool()
            if pool is not None:
                # A module waiting for another execution: let the pool compensate.
                with pool.blocking():
                    self._wait(event, timeout)
            else:
                self._wait(event, timeout)
        result = self._result
        if result is None:
            raise TimeoutError(f"execution {self.execution_id} still running after "
                               f"{timeout} s")
        return result

    def park(self) -> None:
        """Before the execution is handed over: ``wait_parked`` will wait for it.

        A lock held here and released by ``_complete``: the waiting thread sleeps in one
        ``acquire``, and the thread that ends the execution wakes it with one
        ``release`` -- not an Event's Condition, whose lock the woken waiter must take
        again while the setter may still hold it (one more sleep and wake-up per run on
        a thread of another CPU).
        """
        lock = threading.Lock()
        lock.acquire()
        self._parked = lock

    def wait_parked(self) -> ExecutionResult:
        """``result()`` for a handle made with ``park()``: as bounded as ``result()``."""
        lock = self._parked
        assert lock is not None
        pool = current_pool()
        if pool is not None:
            # A module's nested run(): let the pool compensate, as result() does.
            with pool.blocking():
                self._sleep_parked(lock)
        else:
            self._sleep_parked(lock)
        return self.result()

    def _sleep_parked(self, lock: threading.Lock) -> None:
        deadline = self.deadline
        clock = self._runtime.clock
        while self._result is None:
            if deadline is None:
                step = 1.0
            else:
                over = deadline + DEADLINE_GRACE - clock()
                if over <= 0:
                    self._end_overdue()
                    break
                step = min(over, 1.0)  # slices: the engine's clock may be a test's
            if lock.acquire(True, step):
                break

    def _wait(self, event: threading.Event, timeout: float | None) -> None:
        clock = self._runtime.clock
        until = None if timeout is None else time.monotonic() + timeout
        while not event.is_set():
            left = None if until is None else until - time.monotonic()
            if left is not None and left <= 0:
                return
            over = None if self.deadline is None else self.deadline + DEADLINE_GRACE - clock()
            if over is not None and over <= 0:
                self._end_overdue()
                return
            # Slices of at most a second: the engine's clock may be a test's manual one.
            step = min(x for x in (left, over, 1.0) if x is not None)
            event.wait(step)

    def _end_overdue(self) -> None:
        # The runtime should have ended this execution DEADLINE_GRACE seconds ago.
        logger.error("execution %s was not ended by the runtime within %.1f s of its "
                     "deadline; ending it as TIMED_OUT from the waiting thread",
                     self.execution_id, DEADLINE_GRACE)
        self._complete(bare_result(self, ExecutionStatus.TIMED_OUT, ExecutionTimeoutError(
            f"execution {self.execution_id} passed its deadline and the runtime did not "
            f"end it; ended by the waiter", details={"execution_id": self.execution_id,
                                                     "ended_by": "waiter"})))
        self._runtime.post_to_supervisor(CancelExecution(self.execution_id))

    def cancel(self) -> bool:
        """Ask the engine to stop the execution; it ends CANCELLED with the outputs so far.

        Safe from any thread, any number of times, at any moment: a cancel that races
        the execution's end has no effect.

        Returns:
            ``False`` if it had already ended, else ``True`` (the result follows soon).
        """
        if self._result is not None:
            return False
        if not self._runtime.post_to_supervisor(CancelExecution(self.execution_id)):
            # Nobody left to stop it (the engine has stopped or failed): end it here.
            self._complete(bare_result(self, ExecutionStatus.CANCELLED,
                                       ExecutionCancelledError(
                                           f"execution {self.execution_id} was cancelled",
                                           details={"execution_id": self.execution_id})))
        return True

    def add_done_callback(self, fn: Callable[[ExecutionResult], None]) -> None:
        """Call ``fn(result)`` when the execution ends (at once, here, if it has).

        Callbacks run on the engine's callback thread, in order, never inside the runtime's
        own turns: a callback may block or call ``shutdown()``. ``done()`` is true as
        soon as the result exists; ``result()`` returns once the callbacks have run.
        Exceptions are logged.
        """
        with self._lock:
            if self._result is None:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self._result)

    def _add_waker(self, fn: Callable[[ExecutionResult], None]) -> None:
        """A done callback that only wakes a waiter -- it never blocks and never raises
        (``loop.call_soon_threadsafe``, an Event's ``set``). When every callback of the
        execution is such a waker, they run right where the execution ends, with no
        hop through the callback thread (for the awaiting side, one thread handoff
        less); otherwise after the other callbacks, in order, as any callback."""
        self.add_done_callback(_Waker(fn))

    def __await__(self) -> Generator[Any, None, ExecutionResult]:
        """``await execution`` from asyncio code: the result, without blocking the loop.

        Cancelling the awaiting task (``asyncio.wait_for`` past its timeout, a task
        group failing) cancels the execution too. The wait is bounded by the
        execution's deadline, as ``result()`` is."""
        return self._awaited().__await__()

    async def _awaited(self) -> ExecutionResult:
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[ExecutionResult] = loop.create_future()

        def settle(result: ExecutionResult) -> None:
            if not future.done():
                future.set_result(result)

        def done(result: ExecutionResult) -> None:
            # A closed loop (RuntimeError): nobody awaits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result)

        self._add_waker(done)
        try:
            return await future
        except asyncio.CancelledError:
            self.cancel()
            raise

    # --- runtime side -------------------------------------------------------------------

    def _mark_running(self) -> None:
        with self._lock:
            if self._result is None:
                self._status = ExecutionStatus.RUNNING

    def _complete(self, result: ExecutionResult, *, wake_parked: bool = True) -> bool:
        """Make ``result`` the execution's result, if nobody did first.

        The one way an execution ends: called by its owner (the execution actor while it
        runs, the supervisor while it is queued) and, as a last resort, by a waiter past
        the deadline or by the engine when its supervisor failed. The first call wins;
        the others return False and change nothing.

        ``wake_parked=False``: a parked ``run()`` is not woken here; the winner of this
        call must then call :meth:`_wake_parked` (in a ``finally``) once it has done the
        rest of its turn. The result is set either way: a waiter whose slice ends sees
        it and returns it without being woken.
        """
        with self._lock:
            if self._result is not None:
                return False
            self._result = result
            self._status = result.status
            event = self._event
            callbacks = self._callbacks
            if callbacks:
                self._callbacks = _PENDING  # waiters in result() wait for them too
        if self._deadline_timer is not None:
            self._runtime.timer.cancel(self._deadline_timer)
        self._runtime.execution_done()
        level = _END_LEVELS.get(result.status, logging.WARNING)
        if EXECUTION.isEnabledFor(level):
            _log_end(self, result, level)
        if self._help is not None:
            self._help.wake()
        if wake_parked:
            self._wake_parked()  # callbacks to run first: result() waits for them
        if not callbacks:
            if event is not None:
                event.set()
            return True
        if all(type(fn) is _Waker for fn in callbacks):  # cheap: here, at once
            self._callbacks_done(callbacks, result)
            return True
        # Off the runtime's turn: a callback may block, even call shutdown(). Those
        # waiting in result() are woken once the callbacks have run, as before.
        try:
            self._runtime.callbacks_pool.schedule_queued(
                lambda: self._callbacks_done(callbacks, result))
        except RuntimeError:  # the pool is shut down: call them here
            self._callbacks_done(callbacks, result)
        return True

    def _wake_parked(self) -> None:
        """Wake a parked ``run()`` (if there is one): by the thread whose ``_complete``
        won, once -- in it, or after it for ``wake_parked=False``."""
        if self._parked is not None:
            self._parked.release()

    def _callbacks_done(self, callbacks: list[Callable[[ExecutionResult], None]],
                        result: ExecutionResult) -> None:
        try:
            _run_callbacks(self.execution_id, callbacks, result)
        finally:
            with self._lock:
                self._callbacks = None
                event = self._event
            if event is not None:
                event.set()


def _run_callbacks(execution_id: str, callbacks: list[Callable[[ExecutionResult], None]],
                   result: ExecutionResult) -> None:
    # Like module code: user code that may block, so nothing the runtime schedules from
    # it may wait in this thread's slot behind it (a callback calling shutdown() waits
    # for the very turns it triggers).
    local = _pool_local
    slot = getattr(local, "slot", None)
    local.slot = SLOT_HELD
    try:
        for fn in callbacks:
            try:
                fn(result)
            except BaseException:  # a user's callback never breaks the runtime
                logger.exception("done callback of execution %s failed", execution_id)
    finally:
        local.slot = slot


class _Waker:
    """A done callback that only wakes a waiter (see ``Execution._add_waker``)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[ExecutionResult], None]) -> None:
        self.fn = fn

    def __call__(self, result: ExecutionResult) -> None:
        self.fn(result)


_END_LEVELS = {ExecutionStatus.COMPLETED: logging.DEBUG, ExecutionStatus.FAILED: logging.ERROR}


def _log_end(handle: Execution, result: ExecutionResult, level: int) -> None:
    error = result.errors[0] if result.errors else None
    because = f": {error.code} {error.message}" if error is not None else ""
    log(EXECUTION, level, "execution %s of %s %s in %.1f ms%s", handle.execution_id,
        handle.plan.name, result.status.value, result.duration_ms, because,
        execution_id=handle.execution_id, pipeline=handle.plan.name,
        status=result.status.value, duration_ms=result.duration_ms,
        code=None if error is None else error.code)


def bare_result(h: Execution, status: ExecutionStatus, error: ConstellationError
                ) -> ExecutionResult:
    """The result of an execution ended from outside its actor (queued, overdue, or its
    engine failed): no outputs, every node as far as is known without the actor."""
    plan = h.plan
    return ExecutionResult(
        execution_id=h.execution_id,
        pipeline=plan.name,
        structural_hash=plan.structural_hash,
        status=status,
        outputs={},
        errors=(error,),
        modules={n.name: NodeRecord(n.name, n.module.name, NodeStatus.PENDING)
                 for n in plan.nodes},
        missing_inputs={n: render(plan.input_types[n]) for n in plan.inputs
                        if n not in h.inputs},
        queued_ms=(time.perf_counter() - h.submitted_at) * 1000.0,
    )
