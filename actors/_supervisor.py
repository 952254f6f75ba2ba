"""The supervisor: one per engine; owns the scheduler queue and the execution slots.

Admission (the queue bound) is decided synchronously in ``submit`` so that a full queue
fails the caller at once; everything after that travels here as messages: submissions,
finished executions, cancellations and deadlines.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from constellation.actors._actor import PooledActor
from constellation.actors._execution import ExecutionActor
from constellation.actors._messages import (
    CancelExecution,
    DeadlineReached,
    ExecutionFinished,
    SubmitExecution,
)
from constellation.actors._records import record_finished
from constellation.actors._scheduler import SchedulerQueue
from constellation.core.errors import (
    ConstellationError,
    ExecutionCancelledError,
    ExecutionTimeoutError,
)
from constellation.core.results import ExecutionResult, ExecutionStatus, NodeRecord, NodeStatus
from constellation.core.types import render

if TYPE_CHECKING:
    from constellation.actors._handle import Execution
    from constellation.actors._runtime import Runtime

__all__ = ["CancelAll", "Supervisor"]


class CancelAll:
    """Engine → supervisor (shutdown): cancel everything queued or running."""

    __slots__ = ()


class Supervisor(PooledActor):
    """Schedules executions: priority order with aging, at most ``max_concurrency`` at once.

    Args:
        runtime: the engine's runtime.
        max_concurrency: executions running at the same time.
        starvation_timeout: see :class:`~constellation.actors._scheduler.SchedulerQueue`.
    """

    def __init__(self, runtime: Runtime, max_concurrency: int, starvation_timeout: float
                 ) -> None:
        super().__init__()
        self.runtime = runtime
        self.max_concurrency = max_concurrency
        self.queue: SchedulerQueue[Execution] = SchedulerQueue(starvation_timeout,
                                                                runtime.clock)
        self.queued: dict[str, Execution] = {}
        self.running: dict[str, Execution] = {}

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is SubmitExecution:
            h = message.handle
            self.queued[h.execution_id] = h
            self.queue.push(h.execution_id, h, h.priority, h.enqueued_at)
            self._pump()
        elif kind is ExecutionFinished:
            self.running.pop(message.handle.execution_id, None)
            self._pump()
        elif kind is CancelExecution or kind is DeadlineReached:
            self._stop_one(message)
        elif kind is CancelAll:
            for eid in list(self.queued) + list(self.running):
                self._stop_one(CancelExecution(eid))
        else:
            return super().on_receive(message)
        return None

    def _pump(self) -> None:
        runtime = self.runtime
        while len(self.running) < self.max_concurrency:
            h = self.queue.pop()
            if h is None:
                return
            del self.queued[h.execution_id]
            runtime.dequeued()
            self.running[h.execution_id] = h
            actor = ExecutionActor.spawn_running(h, runtime, _dispatcher=runtime.dispatcher)
            h._actor = actor.actor_ref
            actor.begin()
            actor.end_turn()

    def _stop_one(self, message: CancelExecution | DeadlineReached) -> None:
        eid = message.execution_id
        running = self.running.get(eid)
        if running is not None:
            if running._actor is not None:
                running._actor.tell(message)
            return
        h = self.queued.pop(eid, None)
        if h is None or not self.queue.remove(eid):
            return
        self.runtime.dequeued()
        if type(message) is CancelExecution:
            status = ExecutionStatus.CANCELLED
            error: ConstellationError = ExecutionCancelledError(
                f"execution {eid} was cancelled while queued", details={"execution_id": eid})
        else:
            status = ExecutionStatus.TIMED_OUT
            error = ExecutionTimeoutError(f"execution {eid} passed its deadline while queued",
                                          details={"execution_id": eid})
        result = _unstarted_result(h, status, error)
        if self.runtime.observer is not None:
            self.runtime.observer.execution_finished(h, result)
        if self.runtime.storage is not None:
            record_finished(self.runtime.storage, h, result)
        h._complete(result)


def _unstarted_result(h: Execution, status: ExecutionStatus, error: ConstellationError
                      ) -> ExecutionResult:
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
