"""The runtime: pykka actors on a shared thread pool, the supervisor and the node actors.

Public here: :class:`PooledActor` (a drop-in ``pykka.Actor`` whose actors share a few
threads), :class:`ThreadPool`, :func:`default_dispatcher`, :class:`SchedulerQueue`,
:class:`TimerService`, and the per-execution handle types re-exported by ``constellation``.
"""

from actors._actor import PooledActor, default_dispatcher
from actors._context import CallContext
from actors._handle import Execution
from actors._plan import ExecutionPlan
from actors._pool import ThreadPool, current_pool
from actors._runtime import Runtime
from actors._scheduler import SchedulerQueue
from actors._supervisor import Supervisor
from actors._timer import TimerService

__all__ = [
    "CallContext",
    "Execution",
    "ExecutionPlan",
    "PooledActor",
    "Runtime",
    "SchedulerQueue",
    "Supervisor",
    "ThreadPool",
    "TimerService",
    "current_pool",
    "default_dispatcher",
]
