"""Modules and checks shared by the fault tests (tests/constellation/test_fault_model.py,
tests/chaos/test_found.py and the chaos zoo, tests/chaos/zoo.py).

The modules are defined at module level, so that a process that imports this file finds
them by their module and name.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from constellation import ExecutionStatus, module
from constellation.spi import InMemoryCacheBackend

if TYPE_CHECKING:
    from collections.abc import Callable

    from constellation import Constellation

# How long a fault test waits for what should happen at once (a result, a thread).
WAIT = 10.0


@module
def Inc(x: int) -> int:
    return x + 1


class NastyStr(str):
    """A str subclass whose repr and str raise."""

    __slots__ = ()

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    __str__ = __repr__


@module
def Deep(x: int) -> list[int]:
    """Returns a list nested 100,000 deep (checking its type recurses that deep)."""
    value: Any = [1]
    for _ in range(100_000):
        value = [value]
    return value  # type: ignore[no-any-return]


def fresh_run_works(engine: Constellation, source: str, outputs: dict[str, Any], *,
                    timeout: float = WAIT) -> None:
    """A new execution of ``source`` (input ``x`` = 1) on ``engine`` completes within
    ``timeout`` with ``outputs``: the engine goes on after the fault."""
    result = engine.run(source, {"x": 1}, timeout=timeout)
    assert result.status is ExecutionStatus.COMPLETED, result.errors
    assert result.outputs == outputs, result.outputs


class GatedCache(InMemoryCacheBackend):
    """An in-memory cache that stopped answering until the test lets it go: ``get``
    (``hang_get``) and/or ``set`` (``hang_set``) wait on ``gate`` (at most WAIT). Records
    the keys asked (``asked``), the keys stored (``storing``) and the threads that
    stored them (``stored_on``)."""

    def __init__(self, *, hang_get: bool = False, hang_set: bool = False) -> None:
        super().__init__()
        self.hang_get = hang_get
        self.hang_set = hang_set
        self.gate = threading.Event()
        self.asked: list[str] = []
        self.storing: list[str] = []
        self.stored_on: list[str] = []

    def get(self, key: str) -> Any:
        self.asked.append(key)
        if self.hang_get:
            self.gate.wait(WAIT)
        return super().get(key)

    def set(self, key: str, value: Any, ttl: float) -> None:
        self.storing.append(key)
        self.stored_on.append(threading.current_thread().name)
        if self.hang_set:
            self.gate.wait(WAIT)
        super().set(key, value, ttl)


def burst_runs_in_parallel(pool: Any, n: int, timeout: float = 2.0) -> None:
    """``n`` tasks on ``pool`` (an Executor) that each wait for all the others: they
    need ``n`` threads at once (BrokenBarrierError: too few threads)."""
    barrier = threading.Barrier(n, timeout=timeout)
    futures = [pool.submit(barrier.wait) for _ in range(n)]
    for f in futures:
        f.result(timeout=timeout + 1.0)


def start_threads(target: Callable[[int], Any], n: int, *, daemon: bool = True
                  ) -> list[threading.Thread]:
    """Start ``n`` threads running ``target(0)`` ... ``target(n - 1)``."""
    threads = [threading.Thread(target=target, args=(i,), daemon=daemon) for i in range(n)]
    for t in threads:
        t.start()
    return threads


def all_ended(threads: list[threading.Thread], timeout: float) -> bool:
    """Join ``threads`` within ``timeout`` seconds in all: whether every one ended."""
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def count_inits(monkeypatch: Any, cls: type) -> list[str]:
    """Record the node name of every ``cls(parent, node, ...)`` made (NodeActor,
    PlainNode) while ``monkeypatch`` holds."""
    made: list[str] = []
    init = cls.__init__

    def counting(self: Any, parent: Any, node: Any, *rest: Any) -> None:
        made.append(node.name)
        init(self, parent, node, *rest)

    monkeypatch.setattr(cls, "__init__", counting)
    return made
