"""Validation of call options (``with retry: 3, timeout: 30s ...``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constellation.core.options import (
    BACKOFFS,
    NO_OPTIONS,
    ON_ERROR,
    OPTIONS,
    CallOptions,
    Priority,
)
from constellation.core.types import coerce, is_subtype, render
from constellation.lang import ast as A
from constellation.lang.resolution import suggest

if TYPE_CHECKING:
    from constellation.core.modules import ModuleDefinition
    from constellation.lang.compiler import _Compiler
    from constellation.lang.emission import Value

# A fallback that is not a constant: the compiler lowers it (see _Compiler._call).
_EXPRESSION = object()

__all__ = ["NO_OPTIONS", "check_options"]

# NO_OPTIONS: the options of a call without ``with``, shared with the PipelineBuilder's
# calls without options (see constellation.core.options).


def check_options(c: _Compiler, options: tuple[A.Option, ...], mdef: ModuleDefinition,
                  fallback: Value | None = None) -> CallOptions | None:
    """Validate a call's options (errors E140-E145, warnings W201-W204); None on error.

    Args:
        c: the compiler (for diagnostics).
        options: the call's ``with`` options.
        mdef: the module called.
        fallback: the compiled value of the ``fallback`` option, if it has one (None
            when it did not compile). A constant becomes ``CallOptions.fallback``; any
            other expression is left out, for the compiler to lower.
    """
    if not options:
        return NO_OPTIONS
    values: dict[str, Any] = {}
    ok = True
    seen: set[str] = set()
    for o in options:
        if o.name in seen:
            c.error("E140", f"option '{o.name}' is given twice", o.pos)
            ok = False
            continue
        seen.add(o.name)
        try:
            values[o.name] = _option_value(c, o, mdef, fallback)
        except c.Failed:
            ok = False
    if not ok:
        return None
    if values.get("fallback") is _EXPRESSION:
        del values["fallback"]
        if values.get("on_error") == "wrap":
            c.error("E145", "a fallback that is not a constant cannot be combined with "
                            "on_error: wrap; use one or the other", options[0].pos)
            return None
        values.pop("on_error", None)  # a fallback always gives a value: on_error is moot
    pos = options[0].pos if options else None
    if "delay" in values and "retry" not in values:
        c.error("W201", "'delay' has no effect without 'retry'", pos, "warning")
    if "backoff" in values and "delay" not in values:
        c.error("W202", "'backoff' has no effect without 'delay'", pos, "warning")
    if "cache_backend" in values and "cache" not in values:
        c.error("W203", "'cache_backend' has no effect without 'cache'", pos,
                   "warning")
    if values.get("retry", 0) > 10:
        c.error("W204", f"retry: {values['retry']} is a lot of retries", pos,
                   "warning")
    return CallOptions(**values)

def _option_value(c: _Compiler, o: A.Option, mdef: ModuleDefinition,
                  fallback: Value | None) -> Any:
    name, v = o.name, o.value
    if name == "lazy":
        if v is None:
            return True
        if isinstance(v, A.BoolLit):
            return v.value
        raise c.fail("E142", "lazy takes true or false", o.pos)
    if name in ("retry", "concurrency"):
        if not isinstance(v, A.IntLit):
            raise c.fail("E142", f"{name} takes an integer", o.pos)
        if name == "retry" and v.value < 0:
            raise c.fail("E141", f"retry must be 0 or more, got {v.value}", o.pos)
        if name == "concurrency" and v.value <= 0:
            raise c.fail("E141", f"concurrency must be at least 1, got {v.value}",
                            o.pos)
        return v.value
    if name in ("timeout", "delay", "cache"):
        if not isinstance(v, A.Duration):
            raise c.fail("E142", f"{name} takes a duration such as 30s or 100ms",
                            o.pos)
        if v.amount <= 0:
            raise c.fail("E141", f"{name} must be a positive duration", o.pos)
        return v.seconds
    if name == "throttle":
        if not isinstance(v, A.Rate):
            raise c.fail("E142", "throttle takes a rate such as 100/1min", o.pos)
        if v.count <= 0 or v.per.amount <= 0:
            raise c.fail("E141", "throttle needs a positive count per positive "
                                    "duration", o.pos)
        return (v.count, v.per.seconds)
    if name in ("backoff", "on_error"):
        allowed = BACKOFFS if name == "backoff" else ON_ERROR
        if not isinstance(v, A.Name) or v.name not in allowed:
            raise c.fail("E142", f"{name} is one of {', '.join(allowed)}", o.pos)
        return v.name
    if name == "priority":
        if isinstance(v, A.IntLit):
            return v.value
        if isinstance(v, A.Name) and v.name.upper() in Priority.__members__:
            return int(Priority[v.name.upper()])
        raise c.fail("E142", "priority is critical, high, normal, low, background "
                                "or an integer", o.pos)
    if name == "cache_backend":
        if not isinstance(v, A.StringLit) or not all(isinstance(p, str) for p in v.parts):
            raise c.fail("E142", 'cache_backend takes a name such as "redis"', o.pos)
        return "".join(v.parts)  # type: ignore[arg-type]
    if name == "fallback":
        if v is None or isinstance(v, A.Duration | A.Rate):
            raise c.fail("E142", "fallback takes a value", o.pos)
        if fallback is None:  # its expression did not compile: already reported
            raise c.Failed()
        if not is_subtype(fallback.type, mdef.output):
            raise c.fail("E144", f"fallback is {render(fallback.type)}, but "
                                 f"{mdef.name} returns {render(mdef.output)}", o.pos)
        if not fallback.is_const:
            return _EXPRESSION
        return coerce(mdef.output, fallback.const)
    if name in OPTIONS:  # a Python-only option (retry_on, retry_if)
        raise c.fail("E140", f"option '{name}' takes {OPTIONS[name][0]}: it can be set "
                             "from Python only (@module or the builder's options)", o.pos)
    known = [n for n, (_, in_language) in OPTIONS.items() if in_language]
    raise c.fail("E140", f"unknown option '{name}'{suggest(name, known)}", o.pos)
