"""Modules defined at module level, so that other processes can import them."""

from __future__ import annotations

import os

from constellation import module


@module("Pid")
def pid(x: int) -> int:
    return os.getpid() + 0 * x


@module("Square")
def square(x: int) -> int:
    return x * x


@module("Double")
def double(x: int) -> int:
    return 2 * x


@module("Die")
def die(x: int) -> int:
    """Kills the worker process running it (a broken process pool)."""
    os._exit(13)
