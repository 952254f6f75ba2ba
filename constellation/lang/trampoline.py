"""Run recursive tree walks without the Python call stack.

The compiler's passes are written as generators: where a recursive walk would call
itself on a child, the generator *yields* the child's generator and receives its
result (``value = yield self._expr(child)``). :func:`run` drives the generators with
an explicit stack, so a tree nested 10,000 levels deep costs 10,000 suspended
generators on the heap, never 10,000 frames on the C stack (no ``RecursionError``).
An exception raised in a child is thrown into its parent at the ``yield``, exactly as
it would propagate through recursive calls.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

__all__ = ["Step", "run"]

T = TypeVar("T")

Step = Generator[Any, Any, T]
"""A generator that yields the steps it needs first and returns a ``T``."""


def run(root: Step[T]) -> T:
    """Drive ``root`` and every generator it yields to completion; return its result.

    Raises:
        Exception: whatever ``root`` raises (including what its children raised and it
            did not catch).
    """
    stack: list[Step[Any]] = [root]
    value: Any = None
    error: BaseException | None = None
    while True:
        gen = stack[-1]
        try:
            if error is None:
                child = gen.send(value)
            else:
                thrown, error = error, None
                child = gen.throw(thrown)
        except StopIteration as done:
            stack.pop()
            if not stack:
                return done.value  # type: ignore[no-any-return]
            value = done.value
            continue
        except Exception as exc:
            stack.pop()
            if not stack:
                raise
            error = exc
            continue
        stack.append(child)
        value = None
