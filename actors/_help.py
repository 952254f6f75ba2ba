"""The caller helps: a thread waiting in ``engine.run()`` runs its own execution's work.

Opt-in (``SchedulerConfig(caller_helps=True)``): see the last paragraph but one for why.
Only with the engine's own worker pool: with a user's executor a node's turn calls its
``submit()``, which may block, and the caller must keep its deadline.

A handoff between threads costs tens of µs here, more than a quick module call. Instead
of parking while pool threads work, the thread that called ``run()`` (outside the
engine's pools) becomes a temporary helper for that one execution, as a fork-join
pool's joining thread does:

- it delivers the submission to the supervisor and, when the supervisor is idle, runs
  the supervisor's turn itself, which begins its execution right there;
- the execution's first step is scheduled on a :class:`HelpPool` stand-in for the
  dispatcher, which puts it on the helper's own queue; the execution's later turns run
  on the helper where their messages arise (``post_and_run``: the helper counts as a
  dispatcher thread whose slot is held), while a message from another thread (a
  timer, a canceller) gets its turn on the real dispatcher, as for any actor;
- quick module calls go through a HelpPool stand-in for the worker pool: a call
  scheduled *from the helping thread* goes to the helper's queue and runs next on it;
  one scheduled from another thread is handed to the helper while it is idle, else to
  the real pool; one scheduled from a pool thread stays there (that thread's slot);
- slow or blocking modules (by the adaptive timing), options that need the worker
  pool, process isolation and user executors go to the real executor as always.

The actor guarantees do not depend on the thread: one turn at a time per actor (the
turn token) and messages in order (the inbox). The helper runs only its execution's
turns and calls, and the turns of the shared actors its execution talks to (the
supervisor, a limiter or breaker). Executions other than its own that the supervisor
starts in a turn run by the helper are handed to the dispatcher. The helper keeps the
deadline: it waits in slices and ends the execution itself past deadline + grace
(see ``Execution._wait``). A module measured quick that suddenly blocks holds its
caller until it returns (it runs on that thread); cancellation and the deadline still
end the execution on the engine's threads meanwhile.

Ctrl-C: on the main thread, a helping ``run()`` makes sure SIGINT reaches the caller
as the user meant it. While a caller helps, the runtime's SIGINT handler (installed
once, on the first helping ``run()`` on the main thread, only over Python's default
handler, to which it defers whenever no ``run()`` is helping) does not raise inside the
runtime's own code -- an actor turn cut in half would be a broken actor -- but marks the
helper interrupted; if the signal lands in module code, the module gets its
``KeyboardInterrupt`` as usual (that call fails, E300). Either way the helper then
cancels its execution and raises ``KeyboardInterrupt`` from ``run()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from constellation.actors import _interrupts
from constellation.actors._handle import DEADLINE_GRACE
from constellation.actors._pool import SLOT_HELD, ThreadPool
from constellation.actors._pool import _local as _pool_local

if TYPE_CHECKING:
    from collections.abc import Callable

    from constellation.actors._handle import Execution
    from constellation.actors._pool import Task
    from constellation.actors._runtime import Runtime
    from constellation.core.results import ExecutionResult

__all__ = ["HelpPool", "HelpState", "Helper"]

logger = logging.getLogger("constellation.runtime")


class HelpState:
    """What the helping thread and its stand-in pools share."""

    __slots__ = ("active", "busy_since", "cond", "idle", "interrupted", "tasks", "thread")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.tasks: deque[tuple[ThreadPool, Task]] = deque()
        self.active = True
        self.idle = False
        self.busy_since = 0.0  # monotonic start of the task the helper runs; 0 if none
        self.interrupted = False  # SIGINT arrived while it helped (see _interrupts)
        self.thread = threading.get_ident()

    def rescue(self, now: float, busy_for: float) -> int:
        """Hand the queued work of a helper busy with one task for more than
        ``busy_for`` seconds to the real pools (a quick module that blocks this once
        must not hold its execution's other calls). Called from the engine's timer."""
        since = self.busy_since
        if not self.tasks or not since or now - since <= busy_for:
            return 0
        moved = 0
        while True:
            try:
                real, task = self.tasks.popleft()
            except IndexError:
                return moved
            try:
                real.schedule_queued(task)
            except RuntimeError:  # the engine is stopping
                logger.debug("pool shut down; a rescued task was dropped")
            moved += 1

    def wake(self) -> None:
        """The execution ended: let the helper see it at once."""
        with self.cond:
            self.cond.notify()


class HelpPool:
    """Stands in for ``real`` for the actors and quick calls of one helped execution."""

    __slots__ = ("_runs_on", "max_threads", "name", "real", "state")

    def __init__(self, real: ThreadPool, state: HelpState) -> None:
        self.real = real
        self.state = state
        self._runs_on = real._runs_on  # who may run its turns inline (post_and_run)
        self.name = real.name
        self.max_threads = real.max_threads

    def _to_helper(self, task: Task) -> bool:
        st = self.state
        if not st.active:
            return False
        if threading.get_ident() == st.thread:
            st.tasks.append((self.real, task))  # the helper itself: it runs this next
            return True
        if getattr(_pool_local, "pool", None) in self.real._runs_on:
            return False  # a pool thread: keep it there (its slot), no handoff
        with st.cond:
            if st.active and st.idle:
                st.tasks.append((self.real, task))
                st.cond.notify()
                return True
        return False

    def schedule(self, task: Task) -> None:
        if not self._to_helper(task):
            self.real.schedule(task)

    def schedule_local(self, task: Task) -> None:
        if not self._to_helper(task):
            self.real.schedule_local(task)

    def schedule_queued(self, task: Task) -> None:
        if not self._to_helper(task):
            self.real.schedule_queued(task)

    def dead_letter(self) -> None:
        self.real.dead_letter()


class Helper:
    """One ``run()`` on the calling thread (see the module docstring).

    Args:
        runtime: the engine's runtime.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.state = HelpState()
        self.dispatcher = HelpPool(runtime.dispatcher, self.state)
        self.workers = HelpPool(runtime.workers, self.state) \
            if type(runtime.workers) is ThreadPool else None

    def attach(self, handle: Execution) -> None:
        """Give ``handle``'s actors this helper's stand-in pools (before it is queued)."""
        handle._help = self.state
        handle._help_dispatcher = self.dispatcher
        handle._help_workers = self.workers

    def run(self, submit: Callable[[Helper], Execution]) -> ExecutionResult:
        """Submit with ``submit(self)`` and help until the result is there."""
        local = _pool_local
        saved = dict(local.__dict__)
        # Look like a dispatcher thread whose slot is taken: the supervisor's and our
        # actors' turns may run inline here, and anything scheduled on the real pools
        # from here goes to their shared queues, never to a slot of this thread.
        local.pool = self.runtime.dispatcher
        local.slot = SLOT_HELD
        local.backlog = deque()
        local.helping = self.state
        main = threading.current_thread() is threading.main_thread()
        if main:
            _interrupts.install()
            _interrupts.MAIN.on_interrupt = self.state
        handle: Execution | None = None
        self.runtime.helpers.add(self.state)
        try:
            handle = submit(self)
            self._help(handle)
        except KeyboardInterrupt:
            # The user interrupted the caller: its execution is cancelled, not left to
            # run until its deadline, and the interrupt goes on up.
            if handle is not None:
                handle.cancel()
            raise
        finally:
            # Still marked as helping (a Ctrl-C now only marks it): the stragglers are
            # handed over and the thread's state restored whole, then Ctrl-C is the
            # user's again.
            self.runtime.helpers.discard(self.state)
            self._release()
            local.__dict__.clear()
            local.__dict__.update(saved)
            if main:
                _interrupts.MAIN.on_interrupt = None
        if self.state.interrupted:
            # A Ctrl-C that landed after the helper's last look (its result was in):
            # it reaches the caller all the same, as it would a parked one.
            raise KeyboardInterrupt
        assert handle is not None
        return handle.result()

    def _help(self, handle: Execution) -> None:
        st = self.state
        tasks = st.tasks
        clock = self.runtime.clock
        monotonic = time.monotonic
        # On the main thread the waits are short: SIGINT only marks the helper.
        slice_ = 0.05 if threading.current_thread() is threading.main_thread() else 1.0
        while handle._result is None:
            if st.interrupted:
                raise KeyboardInterrupt
            try:
                _, task = tasks.popleft()
            except IndexError:
                pass
            else:
                st.busy_since = monotonic()
                try:
                    task()
                except KeyboardInterrupt:
                    raise  # Ctrl-C between turns reaches the caller (see Helper.run)
                except BaseException:  # as a pool thread would
                    logger.exception("unhandled error in a task run by a helping caller")
                st.busy_since = 0.0
                continue
            with st.cond:
                if tasks or handle._result is not None:
                    continue
                over = None if handle.deadline is None \
                    else handle.deadline + DEADLINE_GRACE - clock()
                if over is not None and over <= 0:
                    break
                st.idle = True
                st.cond.wait(slice_ if over is None else min(over, slice_))
                st.idle = False
        if st.interrupted:
            raise KeyboardInterrupt
        if handle._result is None:
            handle._end_overdue()

    def _release(self) -> None:
        st = self.state
        with st.cond:
            st.active = False
            st.idle = False
            left = list(st.tasks)
            st.tasks.clear()
        for real, task in left:  # the execution's stragglers (Abandon turns, say)
            try:
                real.schedule_queued(task)
            except RuntimeError:
                logger.debug("pool shut down; a task of a helped execution was dropped")


def helping() -> Any:
    """The HelpState of the helper running on this thread, or None."""
    return getattr(_pool_local, "helping", None)
