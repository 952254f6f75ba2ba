"""Two isolated modules whose functions share a qualified name (the second ``def f``
rebinds the name): the first one's function is no longer reachable by name."""

from __future__ import annotations

from constellation import module


@module("FirstF", isolation="process")
def f(x: int) -> int:
    return 1


FirstF = f


@module("SecondF", isolation="process")
def f(x: int) -> int:  # the point of this file
    return 2
