"""The compiler's documented limits (see docs/language.md, "Limits")."""

from __future__ import annotations

__all__ = ["MAX_ERRORS", "MAX_NESTING"]

MAX_NESTING = 200
"""Deepest nesting of a type, or of a lambda or match-case body (error E150).

Expressions themselves nest without limit; these two are walked recursively at run
time (a value's type when it is checked or encoded, a lambda body as nested closures),
so the compiler refuses what the runtime could not take."""

MAX_ERRORS = 100
"""Errors reported before the compiler stops (the last diagnostic is E151)."""
