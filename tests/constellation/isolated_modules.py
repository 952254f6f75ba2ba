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


@module(isolation="process")
def LoadedInChild(prefix: str) -> list[str]:
    """The modules loaded in the child whose names start with ``prefix``, and what
    ``constellation.module`` is once the function has been found."""
    import sys

    import constellation

    loaded = sorted(m for m in sys.modules if m.startswith(prefix))
    return [*loaded, f"module={constellation.module.__module__}"]


@module("SelfSignature", isolation="process")
def SelfSignature(x: int) -> str:
    """Reads its own definition in the child: the stand-in builds the real one."""
    return f"{x}: {SelfSignature.signature}"


@module(isolation="process")
def Vanishing(x: int) -> int:
    return x


if os.environ.get("CONSTELLATION_TEST_VANISH") == "1":
    del Vanishing  # as if the child imported another version of this file
