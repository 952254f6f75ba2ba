"""Turning any exception into an error a user can read, without raising again.

User code can raise anything, and an exception's ``__str__`` or ``__repr__`` may itself
raise (or recurse without end): every description here is built defensively, so that
reporting a failure can never be a second failure.
"""

from __future__ import annotations

import traceback

from constellation.core.errors import InternalError

__all__ = ["describe", "internal_error", "safe_repr"]

_MAX_TEXT = 2_000


def describe(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when even that raises; cut to a readable length."""
    try:
        text = str(exc)
    except BaseException:
        text = f"<{type(exc).__name__} whose str() raised>"
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + "…"
    return text


def safe_repr(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, or a placeholder when it raises."""
    try:
        text = repr(value)
    except BaseException:
        return f"<{type(value).__name__} whose repr() raised>"
    return text if len(text) <= limit else text[:limit] + "…"


def _traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))[-8_000:]
    except BaseException:
        return f"{type(exc).__name__} (traceback unavailable)"


def internal_error(what: str, exc: BaseException, **details: object) -> InternalError:
    """An :class:`InternalError` (E311) for a runtime actor's turn that raised ``exc``.

    Args:
        what: which actor failed, in the user's words ("node 'x' (module M)").
        exc: what escaped the turn.
        details: more ``details`` entries.
    """
    error = InternalError(
        f"{what}: {type(exc).__name__}: {describe(exc)} (an internal error; the "
        f"execution ended FAILED and the engine goes on)",
        details={"exception": type(exc).__name__, "traceback": _traceback(exc),
                 **details})
    error.__cause__ = exc
    return error
