"""Ctrl-C on the main thread while it runs the runtime's own code.

Python raises ``KeyboardInterrupt`` between any two bytecodes of the main thread. When
that thread is inside the runtime -- a helping caller running actor turns (see
``_help``), or any thread outside the pools handing a message to an actor (``submit``,
``cancel``) -- an interrupt there would cut an actor turn in half or lose an actor's turn
token: a broken actor, an engine that never finishes anything again.

So the runtime installs, once, on the main thread and only over Python's default handler
(a program's own SIGINT handler is left alone), a handler that defers the interrupt
while the main thread is inside such a *critical section* and raises it at its end;
outside one it behaves exactly like the default handler. Helping callers also mark
themselves interrupted, and raise between tasks (see ``Helper``).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stubs: signal's C half
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

__all__ = ["enter_critical", "exit_critical", "install"]


class _MainState:
    """The main thread's: how deep in critical sections, and a deferred interrupt."""

    __slots__ = ("depth", "on_interrupt", "pending")

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.on_interrupt: object = None  # a helper's HelpState, while one helps


MAIN = _MainState()
_getsignal: Callable[[int], object] = _signal.getsignal
_SIGINT = int(signal.SIGINT)
_DEFAULT = signal.default_int_handler
_lock = threading.Lock()


def install() -> None:
    """Install the deferring handler if SIGINT still has Python's default handler.

    Call on the main thread; cheap when already installed (one ``getsignal`` of the C
    module: ``signal.getsignal`` converts its answer to an enum, ~4 µs a call, and this
    runs on every submit from the main thread).
    """
    if _getsignal(_SIGINT) is not _DEFAULT:
        return
    with _lock:
        try:
            if _getsignal(_SIGINT) is _DEFAULT:
                signal.signal(signal.SIGINT, _on_sigint)
        except ValueError:  # not the main thread
            pass


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    state = MAIN
    helper = state.on_interrupt
    if helper is not None:
        helper.interrupted = True  # type: ignore[attr-defined]
    if state.depth > 0:
        state.pending = True  # raised when the critical section ends
        return
    if helper is not None and not _in_module_code(frame):
        return  # the helper raises it between two tasks
    signal.default_int_handler(signum, frame)


def enter_critical() -> bool:
    """Enter a critical section if this is the main thread (returns whether it is)."""
    if threading.get_ident() != threading.main_thread().ident:
        return False
    install()
    MAIN.depth += 1
    return True


def exit_critical() -> None:
    """Leave it; raise the interrupt that arrived meanwhile, if any."""
    state = MAIN
    state.depth -= 1
    if state.depth == 0 and state.pending:
        state.pending = False
        if state.on_interrupt is None:  # a helping caller raises it itself, between tasks
            raise KeyboardInterrupt


def _in_module_code(frame: FrameType | None) -> bool:
    """Whether ``frame`` is module code called by a runner (not the runtime's own)."""
    import os

    from constellation.actors._runners import _PoolCall

    runtime_dir = os.path.dirname(os.path.abspath(__file__))
    run_code = _PoolCall.__call__.__code__
    while frame is not None:
        code = frame.f_code
        if code is run_code:
            return True
        if os.path.dirname(os.path.abspath(code.co_filename)) == runtime_dir:
            return False
        frame = frame.f_back
    return False
