"""Polling helper for tests that wait on other threads or processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def reached(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` for at most ``timeout`` seconds; whether it became true. Never
    raises: for hooks running on the runtime's threads, and for "must not happen"."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    if not reached(predicate, timeout):
        raise AssertionError("condition not reached in time")


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited.

    An exited child its parent has not reaped yet (a zombie, ``Z``/``X`` in
    ``/proc/<pid>/stat``) is not running. Reading ``/proc`` races the process's exit:
    any ``OSError`` there (``ENOENT``, ``ESRCH``) means it is gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the command name (field 2) may hold spaces or parentheses: the state follows the
    # last ")"
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
