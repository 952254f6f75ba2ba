"""Execution: the caller's handle on one submitted execution."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from constellation.actors._messages import CancelExecution
from constellation.actors._pool import current_pool
from constellation.core.results import ExecutionResult, ExecutionStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pykka import ActorRef

    from constellation.actors._plan import ExecutionPlan
    from constellation.actors._runtime import Runtime
    from constellation.actors._timer import TimerEntry

__all__ = ["Execution"]

logger = logging.getLogger("constellation.runtime")


class Execution:
    """A submitted execution: its id and status, its result when done, and cancel.

    Returned by ``Constellation.submit``; never built by users.

    Attributes:
        execution_id: unique id (also in the result, events and storage).
        priority: the integer priority it was submitted with.
    """

    __slots__ = ("_actor", "_callbacks", "_deadline_timer", "_event", "_result", "_runtime",
                 "_snapshot", "_status", "deadline", "enqueued_at", "execution_id", "inputs",
                 "plan", "preset", "priority", "submitted_at")

    # Guards the lazy creation of _event and the callback list, not the hot path.
    _lock = threading.Lock()

    def __init__(self, execution_id: str, plan: ExecutionPlan, inputs: Mapping[str, Any],
                 priority: int, deadline: float | None, runtime: Runtime,
                 preset: Mapping[int, Any] | None = None) -> None:
        self.execution_id = execution_id
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
        self._callbacks: list[Callable[[ExecutionResult], None]] | None = None
        self._status = ExecutionStatus.QUEUED
        self._actor: ActorRef[Any] | None = None
        self._deadline_timer: TimerEntry | None = None
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

        Every execution ends by its deadline (the engine's ``default_timeout`` at the
        latest), so waiting without a timeout cannot hang forever.

        Args:
            timeout: seconds to wait; ``None`` waits until it ends.

        Raises:
            TimeoutError: still running after ``timeout`` seconds (it keeps running).
        """
        result = self._result
        if result is not None:
            return result
        with self._lock:
            if self._result is None and self._event is None:
                self._event = threading.Event()
            event = self._event
        if self._result is None and event is not None:
            pool = current_pool()
            if pool is not None:
                # A module waiting for another execution: let the pool compensate.
                with pool.blocking():
                    event.wait(timeout)
            else:
                event.wait(timeout)
        result = self._result
        if result is None:
            raise TimeoutError(f"execution {self.execution_id} still running after "
                               f"{timeout} s")
        return result

    def cancel(self) -> bool:
        """Ask the engine to stop the execution; it ends CANCELLED with the outputs so far.

        Returns:
            ``False`` if it had already ended, else ``True`` (the result follows soon).
        """
        if self._result is not None:
            return False
        self._runtime.post_to_supervisor(CancelExecution(self.execution_id))
        return True

    def add_done_callback(self, fn: Callable[[ExecutionResult], None]) -> None:
        """Call ``fn(result)`` when the execution ends (at once if it has)."""
        with self._lock:
            if self._result is None:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self._result)

    # --- runtime side -------------------------------------------------------------------

    def _complete(self, result: ExecutionResult) -> None:
        # Called once, from the actor that ends the execution.
        if self._result is not None:
            return
        if self._deadline_timer is not None:
            self._runtime.timer.cancel(self._deadline_timer)
        self._status = result.status
        with self._lock:
            self._result = result
            event = self._event
            callbacks = self._callbacks
        self._runtime.execution_done()
        if event is not None:
            event.set()
        for fn in callbacks or ():
            try:
                fn(result)
            except Exception:
                logger.exception("done callback of execution %s failed", self.execution_id)
