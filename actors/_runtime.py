"""Runtime: the threads, timer and counters one engine's actors share."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from actors._pool import ThreadPool
from actors._timer import TimerService
from constellation.core.errors import QueueFullError

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

    from pykka import ActorRef

    from actors._actor import PooledActor
    from actors._observer import Observer
    from spi._storage import ExecutionStorage

__all__ = ["Runtime"]


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
                 executor: Executor | None, max_queue_size: int | None,
                 clock: Callable[[], float] = time.monotonic, name: str = "constellation"
                 ) -> None:
        self.clock = clock
        self.dispatcher = ThreadPool(dispatcher_threads, f"{name}-dispatcher")
        self.own_workers = executor is None
        self.workers: Executor = executor or ThreadPool(worker_threads, f"{name}-worker")
        # Actor turns may run in a worker thread's slot (the thread that finished a
        # module runs the next ready turn itself); module calls never run on dispatchers.
        if isinstance(self.workers, ThreadPool):
            self.dispatcher.also_runs_on(self.workers)
        self.timer = TimerService(f"{name}-timer", clock=clock)
        self.supervisor: ActorRef[Any] | None = None
        self.supervisor_actor: PooledActor | None = None
        # Set by the engine when metrics, tracing or a listener is configured; None
        # otherwise, so that instrumentation costs one "is None" per event site.
        self.observer: Observer | None = None
        # Where finished executions are recorded (the engine sets it).
        self.storage: ExecutionStorage | None = None
        self.max_queue_size = max_queue_size
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.queued = 0
        self.inflight = 0
        self.rejected = 0

    @staticmethod
    def default_dispatcher_threads() -> int:
        """Two per core, at least 2, at most 8: turns are short and mostly hold the GIL."""
        return max(2, min(8, 2 * (os.cpu_count() or 1)))

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

    def post_to_supervisor(self, message: Any) -> None:
        """Deliver to the supervisor (dropped once it has stopped), running its turn on
        this thread if it is idle and this is an engine thread (see
        ``PooledActor.post_and_run``); from any other thread the turn is queued."""
        if self.supervisor_actor is not None:
            self.supervisor_actor.post_and_run(message)

    def stop(self, join_timeout: float = 5.0) -> None:
        """Stop timer and pools (after the supervisor has stopped)."""
        self.timer.stop()
        self.dispatcher.shutdown(wait=False)
        if self.own_workers:
            self.workers.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + join_timeout
        for pool in (self.dispatcher, self.workers):
            if isinstance(pool, ThreadPool):
                pool.join(max(0.0, deadline - time.monotonic()))
