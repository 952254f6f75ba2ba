"""A module for bench/isolation_startup.py: isolated modules must be importable."""

from __future__ import annotations

from constellation import module


@module("bench.isolated_square", isolation="process")
def isolated_square(x: int) -> int:
    """x squared, in a child process."""
    return x * x
