"""The supervisor: one per engine; owns the scheduler queue and the execution slots.

Admission (the queue bound) is decided synchronously in ``submit`` so that a full queue
fails the caller at once; everything after that travels here as messages: submissions,
finished executions, cancellations and deadlines.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from constellation.actors._actor import PooledActor
from constellation.actors._execution import ExecutionActor
from constellation.actors._handle import bare_result
from constellation.actors._messages import (
    CancelAll,
    CancelExecution,
    DeadlineReached,
    ExecutionFinished,
    SubmitExecution,
)
from constellation.actors._pool import current_pool
from constellation.actors._records import record_finished
from constellation.actors._scheduler import SchedulerQueue
from constellation.core.errors import (
    ConstellationError,
    ExecutionCancelledError,
    ExecutionTimeoutError,
)
from constellation.core.results import ExecutionStatus

if TYPE_CHECKING:
    from constellation.actors._handle import Execution
    from constellation.actors._runtime import Runtime

__all__ = ["Supervisor"]

logger = logging.getLogger("constellation.runtime")


class Supervisor(PooledActor):
    """Schedules executions: priority order with aging, at most ``max_concurrency`` at once.

    It supervises the execution actors it starts: their first step runs in its turn,
    and whatever that raises is the execution's failure (the execution ends FAILED),
    never the supervisor's. Messages to an execution that has ended are dead letters.
    If a turn of the supervisor itself raises, the engine fails fast: every queued and
    running execution ends FAILED with :class:`EngineFailedError` at once (see
    :meth:`turn_failed`) -- nothing is left waiting.

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
        self.running: dict[str, ExecutionActor] = {}

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is SubmitExecution:
            h = message.handle
            self.queued[h.execution_id] = h
            self.queue.push(h.execution_id, h, h.priority, h.enqueued_at)
            if h.deadline is not None and self.runtime.clock() >= h.deadline:
                # Its deadline timer may have fired before this message arrived.
                self._stop_one(DeadlineReached(h.execution_id))
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

    def turn_failed(self, exc: BaseException) -> None:
        """The supervisor's own turn raised: fail the engine, end every execution."""
        self.runtime.count_internal_error("Supervisor")
        handles = [*self.queued.values(), *(a.handle for a in self.running.values())]
        self.queued.clear()
        self.running.clear()
        self._stop()
        self.runtime.supervisor_failed(exc, handles)

    def _pump(self) -> None:
        runtime = self.runtime
        # On a worker thread (a run() handed over, or an execution that ended there) a
        # first step goes to this thread's slot only if the slot is free: in its
        # backlog it would wait behind the calls of the execution started before it,
        # which keep taking the slot (a chain), while other workers sit idle. Then it
        # goes to the dispatcher's queue (ThreadPool.schedule).
        on_worker = current_pool() is not runtime.dispatcher
        while len(self.running) < self.max_concurrency:
            h = self.queue.pop()
            if h is None:
                return
            del self.queued[h.execution_id]
            runtime.dequeued()
            if h._result is not None:
                continue  # ended while it waited (its waiter gave up at the deadline)
            actor = ExecutionActor.spawn_running(h, runtime, _dispatcher=runtime.dispatcher)
            self.running[h.execution_id] = actor
            # The execution's first step is its own turn, after this one: it computes the
            # transforms over the inputs (user data, lambdas that call modules) and the
            # supervisor must not wait for that. Next on this thread (its slot: no
            # handoff), or on the helping caller whose execution it is.
            first = partial(_first_step, actor)
            pool = h._help_dispatcher or runtime.dispatcher
            try:
                if on_worker:
                    pool.schedule(first)
                else:
                    pool.schedule_local(first)
            except RuntimeError:  # the dispatcher is shut down: here, as before
                first()

    def _stop_one(self, message: CancelExecution | DeadlineReached) -> None:
        eid = message.execution_id
        running = self.running.get(eid)
        if running is not None:
            running.post(message)  # a dead letter if it has just ended
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
        result = bare_result(h, status, error)
        h._complete(result)  # first: whatever a backend does below, the waiter has it
        if self.runtime.observer is not None:
            self.runtime.observer.execution_finished(h, result)
        if self.runtime.storage is not None:
            record_finished(self.runtime.storage, h, result)


def _first_step(actor: ExecutionActor) -> None:
    # The execution actor's first turn (it was created holding its turn token).
    try:
        actor.begin()
    except BaseException as exc:  # the child's failure, not the supervisor's
        actor._turn_failed_safely(exc)
    actor.end_turn()
