"""Compiling untrusted source for the daemon: in worker processes, within a budget.

A compile runs in a child process (a small pool of them, started on first use) that is
killed when the compile passes ``compile_timeout`` or its client goes away, so a source
that is slow to compile stops using CPU at once instead of running on in a thread that
nobody waits for. The child compiles against the *signatures* of the engine's modules
(no module code runs there) and sends back the typed ``DagSpec``; the daemon turns that
into a pipeline of its engine. Any failure of the compile, expected or not (an exception
inside the compiler, a dead child), is a :class:`CompilationError` with a code: the
daemon answers it with a 4xx, never a 500.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from constellation.core.errors import (
    CompilationError,
    ConstellationError,
    Diagnostic,
    ShuttingDownError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from constellation.core.dag import DagSpec
    from constellation.core.modules import ModuleDefinition
    from constellation.lang.compiler import CompiledSource

__all__ = ["CompileCancelled", "CompilePool", "CompileTimeoutError", "compiler_failure",
           "module_signatures"]

# What a module looks like to the compiler: everything but its function.
Signature = tuple[Any, ...]
Signatures = tuple[Signature, ...]

_POLL = 0.02  # seconds between checks of the deadline, the client and close()
_RECYCLE_CHARS = 64 * 1024  # a worker that compiled a source this long is replaced


class CompileTimeoutError(ConstellationError):
    """The compile passed the daemon's ``compile_timeout`` and was stopped (E609)."""

    code = "E609"


class CompileCancelled(Exception):  # noqa: N818 - not an error: the client went away
    """The compile was stopped because nobody waits for it any more."""


def compiler_failure(what: str) -> CompilationError:
    """E152: the compiler failed on this source in a way it does not report itself."""
    return CompilationError([Diagnostic(
        "E152", f"the compiler failed on this source ({what}); the source is refused. "
                "This is a bug in Constellation: please report it with the source")])


def module_signatures(modules: Mapping[str, ModuleDefinition]) -> Signatures:
    """The modules as the compiler needs them (picklable, without functions)."""
    return tuple((name, m.name, dict(m.inputs), m.output, m.version, m.description,
                  m.options, m.takes_ctx, m.isolation) for name, m in modules.items())


def _no_call(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("a compile worker never runs module code")


def _modules_from(signatures: Signatures) -> dict[str, ModuleDefinition]:
    from constellation.core.modules import ModuleDefinition

    return {key: ModuleDefinition(name=name, func=_no_call, inputs=inputs, output=output,
                                  version=version, description=description,
                                  options=options, takes_ctx=takes_ctx,
                                  isolation=isolation)
            for key, name, inputs, output, version, description, options, takes_ctx,
            isolation in signatures}


def worker_main(conn: Connection) -> None:
    """A compile worker: compile what the daemon sends until the pipe closes."""
    from constellation.lang import compiler

    # Ctrl-C in a terminal reaches the whole process group: the daemon decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))  # pickling deep specs
    compiling = threading.Event()
    if os.name == "posix":  # select() on a pipe
        threading.Thread(target=_watch_daemon, args=(conn, compiling), daemon=True,
                         name="constellation-compile-watch").start()
    modules: dict[str, ModuleDefinition] = {}
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the daemon is gone
        compiling.set()
        source, name, signatures = request
        if signatures is not None:
            modules = _modules_from(signatures)
        try:
            compiled = compiler.compile_source(source, modules, name)
            _rehearse(compiled.spec, modules)
            reply: tuple[Any, ...] = ("ok", compiled)
        except CompilationError as exc:
            reply = ("error", exc.errors)
        except BaseException as exc:  # anything else: reported to the daemon as E152
            reply = ("crash", f"{type(exc).__name__}: {str(exc)[:200]}")
        compiling.clear()
        try:
            conn.send(reply)
        except OSError:
            return  # the daemon is gone
        except Exception as exc:  # e.g. a result that does not pickle
            conn.send(("crash", f"cannot send the result: {type(exc).__name__}"))


def _watch_daemon(conn: Connection, compiling: threading.Event) -> None:
    # While a compile runs the daemon sends nothing: if the pipe turns readable then, it
    # was closed (the daemon exited or was killed), and the compile must not run on.
    while True:
        compiling.wait()
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0.1)
        except (OSError, ValueError):
            readable = [True]
        if readable and compiling.is_set():
            os._exit(0)


def _rehearse(spec: DagSpec, modules: Mapping[str, ModuleDefinition]) -> None:
    """The steps the daemon's engine takes with the compiled graph (its hash, typing,
    the execution plan), so that a graph whose steps are slow runs into the budget here,
    where the compile can be stopped. The hash is cached on ``spec`` and sent along."""
    from constellation.actors._plan import ExecutionPlan
    from constellation.core.dag import resolve

    _ = spec.structural_hash
    resolved = resolve(spec, modules)
    _ = resolved.structural_hash
    ExecutionPlan.build(resolved, modules)


class _Worker:
    def __init__(self, ctx: Any) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.conn: Connection = parent
        self.process: BaseProcess = ctx.Process(target=worker_main, args=(child,),
                                                name="constellation-compile", daemon=True)
        self.process.start()
        child.close()
        self.signatures: Signatures | None = None  # what this worker was last sent

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()


class CompilePool:
    """Up to ``size`` compile worker processes, each compiling one source at a time.

    Args:
        size: the most workers (compiles running at once; others wait for one).
        timeout: seconds a compile may take, waiting for a worker included.
    """

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._ctx = _context()
        self._free = threading.Semaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = threading.Event()

    def compile(self, source: str, name: str, signatures: Signatures,
                cancel: threading.Event | None = None,
                deadline: float | None = None) -> CompiledSource:
        """Compile ``source`` in a worker (blocking; call it from a thread), by
        ``deadline`` (a ``time.monotonic()`` time; default: ``timeout`` from now).

        Raises:
            CompilationError: the source does not compile (E152 when the compiler itself
                failed, its process included).
            CompileTimeoutError: the compile took longer than ``timeout`` and was killed.
            CompileCancelled: ``cancel`` was set; the compile was killed.
            ShuttingDownError: the pool was closed; the compile was killed.
        """
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        self._check(deadline, cancel)
        while not self._free.acquire(timeout=_POLL):
            self._check(deadline, cancel)
        try:
            worker = self._take()
            try:
                if worker.signatures != signatures:
                    worker.conn.send((source, name, signatures))
                    worker.signatures = signatures
                else:
                    worker.conn.send((source, name, None))
                while not worker.conn.poll(_POLL):
                    self._check(deadline, cancel)
                reply = worker.conn.recv()
            except BaseException as exc:
                self._discard(worker)
                if isinstance(exc, (CompileTimeoutError, CompileCancelled,
                                    ShuttingDownError)):
                    raise
                if isinstance(exc, (EOFError, OSError)):
                    code = worker.process.exitcode
                    raise compiler_failure(f"its process ended with exit code {code}"
                                           ) from None
                raise
            if len(source) >= _RECYCLE_CHARS:
                self._discard(worker)  # a big compile leaves a big process behind
            else:
                self._give_back(worker)
        finally:
            self._free.release()
        kind = reply[0]
        if kind == "ok":
            return reply[1]  # type: ignore[no-any-return]
        if kind == "error":
            raise CompilationError(list(reply[1]))
        raise compiler_failure(str(reply[1]))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def _check(self, deadline: float, cancel: threading.Event | None) -> None:
        if self._closed.is_set():
            raise _stopped()
        if cancel is not None and cancel.is_set():
            raise CompileCancelled
        if time.monotonic() >= deadline:
            raise CompileTimeoutError(
                f"the compile took longer than {self.timeout:g} s and was stopped",
                details={"compile_timeout": self.timeout})

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed.is_set():
                raise _stopped()
            worker = self._idle.pop() if self._idle else None
        while worker is not None and not worker.process.is_alive():
            worker.kill()
            with self._lock:
                worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self._ctx)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if not self._closed.is_set():
                self._idle.append(worker)
                return
        worker.kill()

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.kill()

    def start_worker(self) -> None:
        """Start one worker now, so that the first compile does not wait for it."""
        worker = _Worker(self._ctx)
        with self._lock:
            if not self._closed.is_set():
                self._idle.append(worker)
                return
        worker.kill()

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (idle and busy)."""
        with self._lock:
            workers = [*self._idle, *self._busy]
        return [w.process.pid for w in workers if w.process.pid is not None]

    def close(self) -> None:
        """Kill every worker; compiles running or waiting end with ShuttingDownError."""
        self._closed.set()
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


def _stopped() -> ShuttingDownError:
    return ShuttingDownError("the server is shutting down; the compile was stopped")


def _context() -> Any:
    # forkserver: workers fork from a small single-threaded server that has imported
    # the compiler once (fast to start, and never a fork of the threaded daemon).
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        with contextlib.suppress(Exception):
            ctx.set_forkserver_preload(["constellation.http.compiling",
                                        "constellation.lang.compiler",
                                        "constellation.actors._plan"])
        return ctx
    return multiprocessing.get_context("spawn")
