"""RetryPolicy: whether to try a failed call again, and after how long.

``should_retry(error, attempt)`` returns the delay in seconds before the next attempt,
or ``None`` to stop. ``attempt`` is the number of the attempt that just failed (1 for
the first call). Policies are pure and thread-safe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from constellation.core.errors import ConfigurationError

__all__ = ["ExponentialBackoff", "FixedDelay", "LinearBackoff", "NoRetry", "RetryPolicy",
           "policy_for"]

MAX_DELAY = 30.0  # seconds; the original caps every backoff here


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides retries."""

    def should_retry(self, error: BaseException, attempt: int) -> float | None:
        """The delay before the next attempt, or None to stop."""


def _check(name: str, value: float, *, minimum: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigurationError(f"{name} must be a number >= {minimum}, got {value!r}",
                                 details={"field": name})


@dataclass(frozen=True, slots=True)
class NoRetry:
    """Never retry."""

    def should_retry(self, error: BaseException, attempt: int) -> float | None:
        """Always stop."""
        return None


@dataclass(frozen=True, slots=True)
class FixedDelay:
    """Up to ``max_retries`` retries, ``delay`` seconds apart."""

    max_retries: int
    delay: float = 0.0

    def __post_init__(self) -> None:
        _check("max_retries", self.max_retries)
        _check("delay", self.delay)

    def should_retry(self, error: BaseException, attempt: int) -> float | None:
        """``delay``, while retries remain."""
        return min(self.delay, MAX_DELAY) if attempt <= self.max_retries else None


@dataclass(frozen=True, slots=True)
class LinearBackoff:
    """Up to ``max_retries`` retries; the n-th waits ``delay * n`` (capped)."""

    max_retries: int
    delay: float
    max_delay: float = MAX_DELAY

    def __post_init__(self) -> None:
        _check("max_retries", self.max_retries)
        _check("delay", self.delay)
        _check("max_delay", self.max_delay)

    def should_retry(self, error: BaseException, attempt: int) -> float | None:
        """``delay * attempt``, while retries remain."""
        if attempt > self.max_retries:
            return None
        return min(self.delay * attempt, self.max_delay)


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Up to ``max_retries`` retries; the n-th waits ``initial * multiplier^(n-1)`` plus up
    to ``jitter`` (a fraction of it) at random, capped at ``max_delay``."""

    max_retries: int
    initial: float = 0.1
    multiplier: float = 2.0
    max_delay: float = MAX_DELAY
    jitter: float = 0.0

    def __post_init__(self) -> None:
        _check("max_retries", self.max_retries)
        _check("initial", self.initial)
        _check("multiplier", self.multiplier, minimum=1.0)
        _check("max_delay", self.max_delay)
        _check("jitter", self.jitter)

    def should_retry(self, error: BaseException, attempt: int) -> float | None:
        """The exponential delay, while retries remain."""
        if attempt > self.max_retries:
            return None
        delay = self.initial * self.multiplier ** (attempt - 1)
        if self.jitter:
            delay += delay * self.jitter * random.random()
        return min(delay, self.max_delay)  # jitter never takes it past the cap


def policy_for(retry: int | None, delay: float | None, backoff: str | None) -> RetryPolicy:
    """The policy a call's ``retry``/``delay``/``backoff`` options describe.

    fixed = d, linear = d * n, exponential = d * 2^(n-1) (the default), capped at 30 s.
    """
    if not retry:
        return NoRetry()
    d = delay or 0.0
    if backoff == "fixed" or d == 0.0:
        return FixedDelay(retry, d)
    if backoff == "linear":
        return LinearBackoff(retry, d)
    return ExponentialBackoff(retry, d, 2.0)
