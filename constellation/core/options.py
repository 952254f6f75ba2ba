"""Call options and priorities shared by the language, the builder and the runtime."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any

from constellation.core.errors import ConfigurationError
from constellation.core.types import BOOLEAN, STRING, COptional, CRecord, CType

__all__ = ["BACKOFFS", "ON_ERROR", "CallOptions", "Priority", "call_output_type", "priority_value",
           "wrapped_type"]


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

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigurationError:
            return ConfigurationError(f"option {field}: {why}", details={"field": field})

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
