"""Modules for the executor-parity suite.

They live in an importable package (``tests.distributed.modules``): process pools import
them by reference, and the dask workers the fixture starts have the repository root on
their ``PYTHONPATH``. Calls are counted in files (one line appended per call), so that a
test sees how many times a module really ran, whichever process or machine ran it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from constellation import module


def mark(path: str, text: str = "run") -> int:
    """Append one line to ``path`` (atomically) and return how many lines it now has."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)
    return len(Path(path).read_text().splitlines())


def runs(path: str) -> int:
    """How many times something was marked in ``path``."""
    p = Path(path)
    return len(p.read_text().splitlines()) if p.exists() else 0


@module("P.Flaky")
def flaky(path: str, fails: int) -> int:
    """Fails its first ``fails`` calls, then returns the number of the call."""
    n = mark(path)
    if n <= fails:
        raise ValueError(f"call {n} fails")
    return n


@module("P.AlwaysFail")
def always_fail(path: str) -> int:
    mark(path)
    raise ValueError("always fails")


@module("P.Count")
def count(path: str, x: int) -> int:
    mark(path)
    return x


@module("P.Named")
def named(key: str, priority: int, workers: str, retries: int, pure: bool,
          resources: str, fn: str, allow_other_workers: bool, actor: bool, actors: bool,
          fifo_timeout: str, x: int) -> str:
    """Parameters that dask's ``submit`` would take as its own options."""
    return "|".join(str(v) for v in (key, priority, workers, retries, pure, resources, fn,
                                      allow_other_workers, actor, actors, fifo_timeout, x))


@module("P.CtxInfo", retry=1)
def ctx_info(path: str, ctx: Any) -> str:
    """Fails attempt 1; attempt 2 reports what its context says."""
    ctx.on_cleanup(lambda: mark(path, f"cleanup {ctx.attempt} {os.getpid()}"))
    if ctx.attempt == 1:
        raise ValueError("first attempt fails")
    left = None if ctx.deadline is None else ctx.deadline - time.monotonic()
    return f"{ctx.attempt}|{left is not None and 0 < left < 120}|{ctx.cancelled}"


@module("P.SlowCount")
def slow_count(path: str, seconds: float, i: int) -> int:
    mark(path)
    time.sleep(seconds)
    return i


@module("P.Stuck")
def stuck(seconds: float, i: int) -> int:
    """Sleeps without looking at anything (no ctx)."""
    time.sleep(seconds)
    return i


@module("P.Quick")
def quick(x: int) -> int:
    return x + 1


@module("P.Cooperative")
def cooperative(path: str, ctx: Any) -> int:
    """Runs until its context says stop (at most 30 s), then marks ``path``."""
    mark(path, "started")
    end = time.monotonic() + 30
    while not ctx.cancelled and time.monotonic() < end:
        time.sleep(0.02)
    mark(path, f"stopped cancelled={ctx.cancelled}")
    return 0


@module("P.KillWorkerOnce")
def kill_worker_once(path: str, x: int) -> int:
    """The first call SIGKILLs the process running it; later ones return ``x``."""
    if mark(path) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    return x


@module("P.Pid")
def pid(x: int) -> int:
    return os.getpid() + 0 * x


@module("P.SpawnAndSleep", isolation="process")
def spawn_and_sleep(path: str, seconds: float) -> int:
    """Starts a grandchild process (``sleep``), writes both pids to ``path``, sleeps."""
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    Path(path).write_text(f"{os.getpid()} {child.pid} {os.getppid()}")
    time.sleep(seconds)
    return child.pid


@module("P.IsolatedParent", isolation="process")
def isolated_parent(x: int) -> int:
    """The parent process id of the isolated child (who started it)."""
    return os.getppid() + 0 * x
