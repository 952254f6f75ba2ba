"""The runtime: pykka actors on a shared thread pool, the supervisor and the node actors.

Installed as ``constellation.actors`` (the repository keeps it in the root folder
``actors/``). Public here: :class:`PooledActor` (a drop-in ``pykka.Actor`` whose actors
share a few threads), :class:`ThreadPool`, :func:`current_pool`, :func:`default_dispatcher`,
:class:`SchedulerQueue`, :class:`TimerService`, and the per-execution types re-exported by
``constellation`` (:class:`Execution`, :class:`CallContext`). The supervisor, the node
actors and the per-engine wiring are internal.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from constellation.actors._actor import PooledActor, default_dispatcher
    from constellation.actors._context import CallContext
    from constellation.actors._handle import Execution
    from constellation.actors._pool import ThreadPool, current_pool
    from constellation.actors._scheduler import SchedulerQueue
    from constellation.actors._timer import TimerService

# Names are imported on first use (PEP 562), as in the ``constellation`` facade: the
# child process of an isolated call runs ``constellation.actors._isolated_child``, and
# importing this package must not start by loading the whole runtime (pykka, the
# scheduler, the handles: a quarter of a second per call).
_LAZY: dict[str, str] = {
    "CallContext": "constellation.actors._context",
    "Execution": "constellation.actors._handle",
    "PooledActor": "constellation.actors._actor",
    "SchedulerQueue": "constellation.actors._scheduler",
    "ThreadPool": "constellation.actors._pool",
    "TimerService": "constellation.actors._timer",
    "current_pool": "constellation.actors._pool",
    "default_dispatcher": "constellation.actors._actor",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'constellation.actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
