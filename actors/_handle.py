"""Execution: the caller's handle on one submitted execution."""

from __future__ import annotations

import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

from actors._messages import CancelExecution
from constellation.core.results import ExecutionResult, ExecutionStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pykka import ActorRef

    from actors._plan import ExecutionPlan
    from actors._runtime import Runtime
    from actors._timer import TimerEntry

__all__ = ["Execution"]


class Execution:
    """A submitted execution: its id and status, its result when done, and cancel.

    Returned by ``Constellation.submit``; never built by users.

    Attributes:
        execution_id: unique id (also in the result, events and storage).
        priority: the integer priority it was submitted with.
    """

    __slots__ = ("_actor", "_deadline_timer", "_future", "_runtime", "_status", "deadline",
                 "execution_id", "inputs", "plan", "priority", "started_at", "submitted_at")

    def __init__(self, execution_id: str, plan: ExecutionPlan, inputs: Mapping[str, Any],
                 priority: int, deadline: float | None, runtime: Runtime) -> None:
        self.execution_id = execution_id
        self.plan = plan
        self.inputs = inputs
        self.priority = priority
        self.deadline = deadline
        self.submitted_at = time.perf_counter()
        self.started_at = 0.0
        self._runtime = runtime
        self._future: concurrent.futures.Future[ExecutionResult] = concurrent.futures.Future()
        self._status = ExecutionStatus.QUEUED
        self._actor: ActorRef[Any] | None = None
        self._deadline_timer: TimerEntry | None = None

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
        return self._future.done()

    def result(self, timeout: float | None = None) -> ExecutionResult:
        """Wait for the result.

        Every execution ends by its deadline (the engine's ``default_timeout`` at the
        latest), so waiting without a timeout cannot hang forever.

        Args:
            timeout: seconds to wait; ``None`` waits until it ends.

        Raises:
            TimeoutError: still running after ``timeout`` seconds (it keeps running).
        """
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"execution {self.execution_id} still running after "
                               f"{timeout} s") from None

    def cancel(self) -> bool:
        """Ask the engine to stop the execution; it ends CANCELLED with the outputs so far.

        Returns:
            ``False`` if it had already ended, else ``True`` (the result follows soon).
        """
        if self._future.done():
            return False
        self._runtime.tell_supervisor(CancelExecution(self.execution_id))
        return True

    def add_done_callback(self, fn: Callable[[ExecutionResult], None]) -> None:
        """Call ``fn(result)`` when the execution ends (at once if it has)."""
        self._future.add_done_callback(lambda f: fn(f.result()))

    # --- runtime side -------------------------------------------------------------------

    def _complete(self, result: ExecutionResult) -> None:
        if self._future.done():
            return
        if self._deadline_timer is not None:
            self._runtime.timer.cancel(self._deadline_timer)
        self._status = result.status
        self._runtime.execution_done()
        self._future.set_result(result)
