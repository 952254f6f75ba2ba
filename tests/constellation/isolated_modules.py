"""Modules for the process-isolation tests: isolated modules must be importable."""

from __future__ import annotations

import os
import time
from pathlib import Path

from constellation import module


@module(isolation="process")
def WritePidAndSleep(path: str, seconds: float) -> int:
    """Write this process's id to ``path``, then sleep without looking at anything."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@module(isolation="process")
def IsolatedSquare(x: int) -> int:
    """x squared, computed in a child process."""
    return x * x


@module(isolation="process")
def IsolatedFail(x: int) -> int:
    """Always raises, in the child."""
    raise ValueError(f"no {x}")


@module(isolation="process")
def IsolatedExit(x: int) -> int:
    raise SystemExit(f"exit from the child with {x}")
