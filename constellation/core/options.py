"""Call options and priorities shared by the language, the builder and the runtime."""

from __future__ import annotations

import difflib
import enum
import math
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

from constellation.core.errors import ConfigurationError
from constellation.core.types import BOOLEAN, STRING, COptional, CRecord, CType

__all__ = ["BACKOFFS", "NO_OPTIONS", "ON_ERROR", "OPTIONS", "UNIT_SECONDS", "CallOptions",
           "Priority", "call_options", "call_output_type", "parse_duration", "parse_rate",
           "priority_value", "wrapped_type"]


class Priority(enum.IntEnum):
    """Execution and call priorities, as in the original engine."""

    BACKGROUND = 0
    LOW = 20
    NORMAL = 50
    HIGH = 80
    CRITICAL = 100


def priority_value(priority: Priority | int | str) -> int:
    """Return the integer priority of ``priority`` (an enum, an int, or a name like "high").

    Raises:
        ConfigurationError: an unknown name or a non-integer.
    """
    if isinstance(priority, bool):
        raise ConfigurationError("priority must be an int or a Priority, not a bool",
                                 details={"field": "priority"})
    if isinstance(priority, int):
        return int(priority)
    if isinstance(priority, str):
        try:
            return int(Priority[priority.upper()])
        except KeyError:
            names = ", ".join(p.name.lower() for p in Priority)
            raise ConfigurationError(f"unknown priority {priority!r}; use one of {names} "
                                     "or an integer", details={"field": "priority"}) from None
    raise ConfigurationError(f"priority must be a Priority, an int or a name, not "
                             f"{type(priority).__name__}", details={"field": "priority"})


BACKOFFS = ("exponential", "linear", "fixed")
ON_ERROR = ("propagate", "skip", "log", "wrap")


@dataclass(frozen=True, slots=True)
class CallOptions:
    """The options of one module call (``with retry: 3, timeout: 2s ...`` in a pipeline).

    Durations are seconds. ``None`` means "not set" so that call-site options can be
    layered over module defaults with :meth:`merged`.

    Attributes:
        retry: retries after the first attempt.
        timeout: seconds per attempt.
        delay: base delay between attempts, in seconds.
        backoff: ``exponential``, ``linear`` or ``fixed``.
        fallback: the value used when every attempt failed.
        cache: time to live of cached results, in seconds.
        cache_backend: name of a registered cache backend.
        throttle: ``(count, per_seconds)`` token bucket, shared across executions.
        concurrency: at most this many concurrent calls of the module.
        on_error: ``propagate``, ``skip``, ``log`` or ``wrap``.
        priority: scheduling priority of the call.
        lazy: compute only when the value is needed.
        retry_on: retry only when the module raised one of these exception types
            (Python only).
        retry_if: retry only when this predicate, given the module's exception, is true
            (Python only).
    """

    retry: int | None = None
    timeout: float | None = None
    delay: float | None = None
    backoff: str | None = None
    fallback: Any = None
    cache: float | None = None
    cache_backend: str | None = None
    throttle: tuple[int, float] | None = None
    concurrency: int | None = None
    on_error: str | None = None
    priority: int | None = None
    lazy: bool | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    retry_if: Callable[[BaseException], bool] | None = None

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigurationError:
            return ConfigurationError(f"option {field}: {why}", details={"field": field})

        if self.retry_on is not None:
            types: Any = self.retry_on
            if isinstance(types, type):
                types = (types,)
                object.__setattr__(self, "retry_on", types)
            if not isinstance(types, tuple) or not types or not all(
                    isinstance(t, type) and issubclass(t, BaseException) for t in types):
                raise bad("retry_on", f"must be an exception type or a tuple of them, got "
                          f"{self.retry_on!r}")
        if self.retry_if is not None and not callable(self.retry_if):
            raise bad("retry_if", f"must be a callable taking the exception, got "
                      f"{self.retry_if!r}")

        if self.retry is not None and (type(self.retry) is not int or self.retry < 0):
            raise bad("retry", f"must be an integer >= 0, got {self.retry!r}")
        for name in ("timeout", "delay", "cache"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                  or v <= 0):
                raise bad(name, f"must be a positive duration, got {v!r}")
        if self.backoff is not None and self.backoff not in BACKOFFS:
            raise bad("backoff", f"must be one of {', '.join(BACKOFFS)}, got {self.backoff!r}")
        if self.on_error is not None and self.on_error not in ON_ERROR:
            raise bad("on_error", f"must be one of {', '.join(ON_ERROR)}, got {self.on_error!r}")
        if self.concurrency is not None and (type(self.concurrency) is not int
                                             or self.concurrency <= 0):
            raise bad("concurrency", f"must be an integer > 0, got {self.concurrency!r}")
        if self.throttle is not None:
            count, per = self.throttle
            if type(count) is not int or count <= 0 or per <= 0:
                raise bad("throttle", f"must be N per positive duration with N > 0, got "
                          f"{self.throttle!r}")

    def merged(self, overrides: CallOptions) -> CallOptions:
        """Return these options with every field set in ``overrides`` replaced."""
        names = _OPTION_NAMES
        set_ = {n: v for n in names if (v := getattr(overrides, n)) is not None}
        if not set_:
            return self  # the common case: a call without options (frozen: shareable)
        values = {n: getattr(self, n) for n in names}
        values.update(set_)
        return CallOptions(**values)

    def as_dict(self) -> dict[str, Any]:
        """The options that are set, as a dict (used for hashing and display)."""
        # The field names once, not dataclasses.fields() per call: hashing a 1,000-node
        # DagSpec spent half its time there.
        return {n: v for n in _OPTION_NAMES if (v := getattr(self, n)) is not None}


_OPTION_NAMES = tuple(f.name for f in fields(CallOptions))

# The options of a call that sets none, shared (frozen): a DagSpec's structural hash
# renders each distinct options object once, and a builder's 1,000 calls without options
# made 1,000 of them (two thirds of the hash's time).
NO_OPTIONS = CallOptions()
"""The options of a call that sets none (shared: most calls have none)."""

UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
"""Duration units of the language (``100ms``, ``30s``, ``5min``, ``1h``, ``1d``)."""

# The one table of call options: what each takes, in words (the language's and Python's
# error messages), and whether the language can write it.
OPTIONS: dict[str, tuple[str, bool]] = {
    "retry": ("an integer >= 0 (retries after the first attempt)", True),
    "timeout": ("a duration such as 30s or 100ms (per attempt)", True),
    "delay": ("a duration such as 30s or 100ms (before a retry)", True),
    "backoff": (f"one of {', '.join(BACKOFFS)}", True),
    "fallback": ("a value of the module's output type", True),
    "cache": ("a duration such as 10min (time to live)", True),
    "cache_backend": ('a backend name such as "redis"', True),
    "throttle": ("a rate such as 100/1min", True),
    "concurrency": ("an integer >= 1", True),
    "on_error": (f"one of {', '.join(ON_ERROR)}", True),
    "priority": ("critical, high, normal, low, background or an integer", True),
    "lazy": ("true or false", True),
    "retry_on": ("an exception type or a tuple of them", False),
    "retry_if": ("a callable taking the exception, returning whether to retry", False),
}
assert set(OPTIONS) == set(_OPTION_NAMES)

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)\s*")
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|min|h|d)\s*")


def parse_duration(value: Any, field: str) -> float:
    """Seconds from ``30``, ``0.5``, ``"30s"``, ``"100ms"``, ``"5min"``, ``"1h"``.

    Raises:
        ConfigurationError: anything else, or a duration that is not positive.
    """
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m is not None:
            seconds = float(m.group(1)) * UNIT_SECONDS[m.group(2)]
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"option {field}: must be {OPTIONS[field][0]} or a number "
                                 f"of seconds > 0, got {value!r}", details={"field": field})
    return seconds


def parse_rate(value: Any, field: str = "throttle") -> tuple[int, float]:
    """``(count, per_seconds)`` from ``"100/1min"``, ``"5/s"`` or ``(100, 60.0)``."""
    if isinstance(value, str):
        m = _RATE.fullmatch(value)
        if m is not None:
            count = int(m.group(1))
            per = float(m.group(2) or 1) * UNIT_SECONDS[m.group(3)]
            if count > 0 and per > 0:
                return count, per
    elif isinstance(value, tuple | list) and len(value) == 2:
        count, per = value
        if type(count) is int and count > 0 and isinstance(per, int | float) \
                and not isinstance(per, bool) and math.isfinite(per) and per > 0:
            return count, float(per)
    raise ConfigurationError(f"option {field}: must be {OPTIONS[field][0]} or (count, "
                             f"seconds), got {value!r}", details={"field": field})


def call_options(values: Mapping[str, Any] | CallOptions | None, where: str = "") -> CallOptions:
    """CallOptions from Python: a mapping in the language's forms or plain values.

    ``{"retry": 2, "timeout": "5s", "throttle": "100/1min", "backoff": "exponential",
    "priority": "high", "retry_on": ConnectionError}`` -- durations as numbers of seconds
    or strings with a unit, rates as ``"N/duration"`` or ``(N, seconds)``.

    Args:
        values: the options (a CallOptions is returned as it is).
        where: what they belong to, for error messages (``node 'Fetch'``).

    Raises:
        ConfigurationError: an unknown option (with a suggestion) or a bad value; its
            ``details["field"]`` names the option.
    """
    if values is None:
        return NO_OPTIONS
    if isinstance(values, CallOptions):
        return values
    prefix = f"{where}: " if where else ""
    if not hasattr(values, "items"):
        raise ConfigurationError(f"{prefix}options must be a mapping of option name to "
                                 f"value, got {type(values).__name__}",
                                 details={"field": "options"})
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in OPTIONS:
            hint = difflib.get_close_matches(str(name), list(OPTIONS), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else \
                f" (options: {', '.join(OPTIONS)})"
            raise ConfigurationError(f"{prefix}unknown option {name!r}{suggestion}",
                                     details={"field": str(name)})
        if value is None:
            continue
        try:
            out[name] = _python_value(name, value)
        except ConfigurationError as exc:
            raise ConfigurationError(prefix + exc.message, details=dict(exc.details)) \
                from None
    if not out:
        return NO_OPTIONS
    try:
        return CallOptions(**out)
    except ConfigurationError as exc:
        raise ConfigurationError(prefix + exc.message, details=dict(exc.details)) from None


def _python_value(name: str, value: Any) -> Any:
    def bad() -> ConfigurationError:
        return ConfigurationError(f"option {name}: must be {OPTIONS[name][0]}, got "
                                  f"{value!r}", details={"field": name})

    if name in ("timeout", "delay", "cache"):
        return parse_duration(value, name)
    if name == "throttle":
        return parse_rate(value, name)
    if name == "priority":
        try:
            return priority_value(value)
        except ConfigurationError:
            raise bad() from None
    if name in ("retry", "concurrency"):
        if type(value) is not int:
            raise bad()
        return value
    if name == "lazy":
        if type(value) is not bool:
            raise bad()
        return value
    if name in ("backoff", "on_error", "cache_backend"):
        if not isinstance(value, str):
            raise bad()
        return value
    if name == "retry_on" and isinstance(value, list):
        return tuple(value)
    return value


def wrapped_type(output: CType) -> CRecord:
    """The type of a call made ``with on_error: wrap``: the result or the error.

    ``{ok: Boolean, value: Optional<T>, error: Optional<String>, code: Optional<String>}``
    -- ``value`` is set when the call succeeded, ``error`` (the message) and ``code`` (the
    error code, e.g. ``E300``) when it failed. Read it with ``r.value ?? default``.
    """
    return CRecord.of(ok=BOOLEAN, value=COptional(output), error=COptional(STRING),
                      code=COptional(STRING))


def call_output_type(output: CType, options: CallOptions) -> CType:
    """The type a call's result has under its (merged) options."""
    return wrapped_type(output) if options.on_error == "wrap" else output
