"""The runtime: pykka actors on a shared thread pool, the supervisor and the node actors.

Installed as ``constellation.actors`` (the repository keeps it in the root folder
``actors/``). Public here: :class:`PooledActor` (a drop-in ``pykka.Actor`` whose actors
share a few threads), :class:`ThreadPool`, :func:`current_pool`, :func:`default_dispatcher`,
:class:`SchedulerQueue`, :class:`TimerService`, and the per-execution types re-exported by
``constellation`` (:class:`Execution`, :class:`CallContext`). The supervisor, the node
actors and the per-engine wiring are internal.
"""

from constellation.actors._actor import PooledActor, default_dispatcher
from constellation.actors._context import CallContext
from constellation.actors._handle import Execution
from constellation.actors._pool import ThreadPool, current_pool
from constellation.actors._scheduler import SchedulerQueue
from constellation.actors._timer import TimerService

__all__ = [
    "CallContext",
    "Execution",
    "PooledActor",
    "SchedulerQueue",
    "ThreadPool",
    "TimerService",
    "current_pool",
    "default_dispatcher",
]
