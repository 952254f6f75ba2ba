"""``async def`` modules: awaited on an event loop the engine owns.

Each engine that has an ``async def`` module starts, on first use, one event loop on a
thread of its own (``constellation-async``). An attempt of an async module is a task on
that loop (``asyncio.run_coroutine_threadsafe``): while it awaits, it holds no thread,
so a thousand concurrent HTTP calls cost a thousand tasks, not a thousand threads.
Everything else is as for any module: call options (a ``timeout`` cancels the task, a
retry makes a new one), the execution's cancellation and deadline (they cancel the
task: the coroutine sees ``asyncio.CancelledError`` at its current ``await``),
``ctx``, records and events. A coroutine that blocks its loop (a ``time.sleep`` inside
``async def``) delays the engine's other async calls, as it would in any asyncio
program; give such code to a plain ``def`` module.

Async modules run in the engine's process even when module code otherwise goes to a
process pool or dask (a coroutine is not a task those executors can run).

The loop is stopped, and its remaining tasks cancelled, when the engine shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from constellation.actors._context import RUNNING

if TYPE_CHECKING:
    from concurrent.futures import Future

    from constellation.actors._context import Attempt
    from constellation.actors._node import NodeActor

__all__ = ["AsyncRunner"]

logger = logging.getLogger("constellation.runtime")


class AsyncRunner:
    """Runs attempts of ``async def`` modules on the engine's event loop."""

    name = "asyncio"
    pool = None  # no thread is held by a waiting call: nothing to compensate
    remote = False  # in the engine's process (async modules are never isolated)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The engine's event loop (started on first use).

        Raises:
            RuntimeError: the engine has shut down.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine's event loop is shut down")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        _cancel_all(loop)
                        loop.close()

                thread = threading.Thread(target=run, name="constellation-async",
                                          daemon=True)
                thread.start()
                if not ready.wait(10):
                    raise RuntimeError("the engine's event loop did not start")
                self._loop, self._thread = loop, thread
            return self._loop

    def start(self, actor: NodeActor, attempt: Attempt, kwargs: dict[str, Any]) -> None:
        """Start ``attempt`` as a task; raise only if the loop refused it."""
        loop = self.loop
        func = actor.node.module.func
        started = time.perf_counter()

        async def call() -> Any:
            if attempt.state != RUNNING or actor.handle._result is not None:
                raise asyncio.CancelledError  # the execution ended before it started
            attempt.started = True
            return await func(**kwargs)

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        attempt.future = future  # abandoning the attempt cancels the task
        future.add_done_callback(lambda f: _done(actor, attempt, f, started))

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel what still runs and stop the loop (bounded by ``timeout``)."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("the engine's event loop did not stop within %.1f s (a "
                           "coroutine blocks it)", timeout)


def _done(actor: NodeActor, attempt: Attempt, future: Future[Any], started: float) -> None:
    # On the loop's thread (or the canceller's): report like a pool thread would.
    elapsed = time.perf_counter() - started
    if future.cancelled():
        attempt.abandon()  # cancelled because the attempt was given up: nothing to report
        return
    exc = future.exception()
    if isinstance(exc, asyncio.CancelledError) and attempt.state != RUNNING:
        return
    if not attempt.finish():
        return  # abandoned meanwhile (timeout, cancel): its result is not wanted
    value = None if exc is not None else future.result()
    actor.attempt_returned(attempt, value, exc, elapsed)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait(tasks, timeout=2))
