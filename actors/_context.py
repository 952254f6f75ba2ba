"""CallContext (what a module that declares a ``ctx`` parameter receives) and Attempt
(the runtime's side of one call: cancel it, kill its process, run its cleanups)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from constellation.actors._handle import Execution

__all__ = ["Attempt", "CallContext", "lookup_secret"]

logger = logging.getLogger("constellation.runtime")

RUNNING, DONE, ABANDONED = 0, 1, 2


_cleanup_lock = threading.Lock()  # only calls with a ctx (cleanups) ever take it


class Attempt:
    """One attempt of one module call, as the runtime tracks it.

    It ends exactly once: :meth:`finish` (the call returned) or :meth:`abandon` (the
    execution ended, or the attempt passed its timeout). Cleanup callbacks registered
    through the context run at that moment, once. Shared by the node actor and the
    thread or executor running the call.

    Every module call builds one, so it is cheap: who ends it is decided by a one-byte
    *token* (``bytearray.pop`` is atomic: whoever pops it wins, no lock; a bytearray,
    unlike a list, is not tracked by the cyclic garbage collector, which a wide
    execution's thousands of live attempts would otherwise keep busy), the cancel event
    is built only when a module asks for it, and only calls that can register cleanups
    (``ctx``) have a cleanup list.

    Args:
        number: 1 for the first attempt, 2 for the first retry ...
        cleanups: whether cleanups can be registered (the module takes ``ctx``).
    """

    __slots__ = ("_cleanups", "_event", "_open", "future", "number", "process", "started",
                 "state")

    def __init__(self, number: int, cleanups: bool = False) -> None:
        self.number = number
        self.state = RUNNING
        self.started = False  # set by the thread that calls the module
        self.process: Any = None  # a subprocess.Popen for isolated calls
        self.future: Any = None  # the executor's future, cancelled on abandon
        self._open = bytearray(b"\x01")  # the token; empty once the attempt has ended
        self._event: threading.Event | None = None
        self._cleanups: list[Callable[[], None]] | None = [] if cleanups else None

    @property
    def event(self) -> threading.Event:
        """Set when the attempt is abandoned (built on first use)."""
        event = self._event
        if event is None:
            event = threading.Event()
            self._event = event
            if self.state == ABANDONED:  # abandon() ran before the event existed
                event.set()
        return event

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        with _cleanup_lock:
            if self._open and self._cleanups is not None:
                self._cleanups.append(fn)
                return
        _run_cleanup(fn)  # already over: run at once

    def _won(self) -> bool:
        # Whoever pops the token ends the attempt.
        try:
            self._open.pop()
        except IndexError:
            return False
        return True

    def _run_cleanups(self) -> None:
        if self._cleanups is not None:
            with _cleanup_lock:
                cleanups, self._cleanups = self._cleanups, None
            for fn in cleanups or ():
                _run_cleanup(fn)

    def finish(self) -> bool:
        """The call returned; False if it had been abandoned first (result unwanted)."""
        # _won(), inlined: every module call ends here.
        try:
            self._open.pop()
        except IndexError:
            return False
        self.state = DONE
        if self._cleanups is not None:
            self._run_cleanups()
        return True

    def abandon(self) -> bool:
        """Stop waiting for the call: signal it, cancel its future (a call still queued
        in the executor then never starts), kill its process, run its cleanups.

        Returns:
            False if the call had already returned or been abandoned.
        """
        if not self._won():
            return False
        self.state = ABANDONED
        event = self._event
        if event is not None:
            event.set()
        future = self.future
        if future is not None:
            try:
                future.cancel()
            except Exception:  # an executor's future that cannot cancel: it runs on
                logger.debug("cancelling the future of an abandoned call failed",
                             exc_info=True)
        process = self.process
        if process is not None:
            kill_process(process)
        self._run_cleanups()
        return True

    @property
    def abandoned(self) -> bool:
        return self.state == ABANDONED


def kill_process(process: Any, group_only: bool = False) -> None:
    """SIGKILL an isolated call's process and its whole process group -- the processes
    the module started (it runs in a session of its own). Harmless once they have ended.

    Args:
        group_only: the process has returned; kill what is left in its group.
    """
    with contextlib.suppress(OSError, AttributeError):  # gone (or no process groups)
        os.killpg(process.pid, signal.SIGKILL)
    if group_only:
        return
    try:
        if process.poll() is None:
            process.kill()
    except OSError:  # pragma: no cover - already gone
        pass


def lookup_secret(handle: Execution, name: str, node: str) -> str:
    """The value of secret ``name`` for a call of ``node`` in ``handle``, from the
    engine's secrets backend; from then on it is redacted from the execution's errors.

    Used by ``ctx.secret`` in the engine's process, and by the runners of other
    processes before they ship a call (its module's declared secrets). Never puts a
    value into a message.

    Raises:
        SecretNotFoundError: no such secret, the backend raised (its exception is the
            ``__cause__``: only its type is named), or it returned a non-string.
        ConfigurationError: an invalid name.
    """
    from constellation.core.errors import SecretNotFoundError
    from constellation.spi._secrets import MIN_REDACTED, check_name

    check_name(name)
    backend = handle._runtime.secrets
    where = type(backend).__name__
    details = {"secret": name, "node": node}
    try:
        value: object = backend.get(name)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt too: not the module's
        # The backend's message is not repeated: it may quote what it read.
        raise SecretNotFoundError(
            f"secret {name!r} could not be read: secrets backend {where} raised "
            f"{type(exc).__name__}", details={**details, "exception": type(exc).__name__}
        ) from exc
    if value is None:
        raise SecretNotFoundError(f"secret {name!r} is not set ({where})", details=details)
    if not isinstance(value, str):
        raise SecretNotFoundError(
            f"secret {name!r}: secrets backend {where} returned a "
            f"{type(value).__name__}, not a str", details=details)
    if type(value) is not str:  # a subclass could override what redaction relies on
        value = str.__str__(value)
    with _cleanup_lock:
        # Copy on write: readers (redaction, in node turns) take no lock.
        known = handle._secrets
        if known is None or value not in known:
            handle._secrets = frozenset((*(known or ()), value))
    if len(value) < MIN_REDACTED:
        logger.warning("secret %r is shorter than %d characters: it cannot be redacted "
                       "from messages", name, MIN_REDACTED)
    return value


def _run_cleanup(fn: Callable[[], None]) -> None:
    try:
        fn()
    except BaseException:
        logger.exception("cleanup callback %r failed", fn)


class CallContext:
    """The context of one module call; declare a parameter named ``ctx`` to get it.

    A long-running module should look at :attr:`cancelled` (or wait on
    :attr:`cancel_event`) and return early when it is set: that happens when the
    execution is cancelled or passes its deadline, and when this attempt passes its
    ``timeout``. Resources can be released through :meth:`on_cleanup`.

    Attributes:
        execution_id: the execution the call belongs to.
        node: the node's name.
        attempt: 1 for the first call, 2 for the first retry, ...
    """

    __slots__ = ("_attempt", "_handle", "attempt", "execution_id", "node")

    def __init__(self, handle: Execution, node: str, attempt: Attempt) -> None:
        self._handle = handle
        self._attempt = attempt
        self.execution_id = handle.execution_id
        self.node = node
        self.attempt = attempt.number

    @property
    def cancelled(self) -> bool:
        """Whether the call should stop: the execution ended (cancelled, timed out,
        failed elsewhere) or this attempt passed its timeout."""
        return self._attempt.event.is_set() or self._handle.done()

    @property
    def cancel_event(self) -> threading.Event:
        """Set when :attr:`cancelled` becomes true; ``ctx.cancel_event.wait(t)`` is an
        interruptible sleep."""
        return self._attempt.event

    def secret(self, name: str) -> str:
        """The secret ``name`` from the engine's secrets backend (by default the
        environment variable ``CONSTELLATION_SECRET_<NAME>``). Its value is redacted
        (``***``) from every error message and detail the engine builds for this
        execution, and so from its records, log records and events. In the engine's
        process any name can be asked for; a call on a process pool or dask gets only
        the names its module declares (``@module(secrets=(...))``).

        Raises:
            SecretNotFoundError: the backend has no such secret, failed, or returned
                something else than a string (E320; the call fails).
            ConfigurationError: ``name`` is not a valid secret name.
        """
        return lookup_secret(self._handle, name, self.node)

    @property
    def deadline(self) -> float | None:
        """The execution's deadline on the engine's clock (``time.monotonic()`` unless
        the engine was given another), if it has one."""
        return self._handle.deadline

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once when this call ends: when it returns, or at once when it is
        cancelled, timed out or abandoned (from the thread that ends it). At once if the
        call is already over. Exceptions are logged."""
        self._attempt.add_cleanup(fn)

    def __repr__(self) -> str:
        return f"<CallContext {self.execution_id} {self.node} attempt {self.attempt}>"
