"""Canary routing: which side of a name's canary a run goes to, and each side's counts.

The split is exact and deterministic rather than random: with weight ``w`` the n-th run
(from 1) goes to the candidate when ``floor(n * w)`` grows, so after any n runs the
candidate has had ``floor(n * w)`` of them (weight 0.1: runs 10, 20, 30 ...). Counts are
kept in memory, per engine, from the moment the canary was set or this engine first
routed it; the setting itself is in the pipeline store.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from constellation.core.results import ExecutionStatus

if TYPE_CHECKING:
    from constellation.core.results import ExecutionResult

__all__ = ["CanarySide", "CanaryStatus", "CanaryStats"]

_FAILED = (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)


@dataclass(frozen=True, slots=True)
class CanarySide:
    """One side of a canary, as counted by this engine.

    Attributes:
        structural_hash: the pipeline this side runs.
        version: its version under the name (None: a hash the name has no version of).
        runs: runs routed to it that ended (or failed to start).
        failures: those that ended FAILED or TIMED_OUT, or raised before starting.
        total_ms: their summed duration.
        max_ms: the longest.
    """

    structural_hash: str
    version: int | None
    runs: int = 0
    failures: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def mean_ms(self) -> float:
        """Mean duration of the runs counted (0.0 before any)."""
        return self.total_ms / self.runs if self.runs else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"structural_hash": self.structural_hash, "version": self.version,
                "runs": self.runs, "failures": self.failures,
                "mean_ms": self.mean_ms, "max_ms": self.max_ms}


@dataclass(frozen=True, slots=True)
class CanaryStatus:
    """A name's canary: the setting and both sides' counts.

    Attributes:
        name: the pipeline's name.
        weight: the candidate's share of runs.
        current: the side running the current version.
        candidate: the side running the candidate.
    """

    name: str
    weight: float
    current: CanarySide
    candidate: CanarySide

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"name": self.name, "weight": self.weight, "current": self.current.as_dict(),
                "candidate": self.candidate.as_dict()}


class _Counts:
    __slots__ = ("failures", "max_ms", "runs", "total_ms")

    def __init__(self) -> None:
        self.runs = 0
        self.failures = 0
        self.total_ms = 0.0
        self.max_ms = 0.0


class CanaryStats:
    """The routing counter and both sides' counts of one canary setting (thread-safe).

    Args:
        candidate: the candidate's structural hash.
        weight: its share of runs.
    """

    def __init__(self, candidate: str, weight: float) -> None:
        self.candidate = candidate
        self.weight = weight
        self._lock = threading.Lock()
        self._routed = 0
        self._sides = {False: _Counts(), True: _Counts()}

    def pick(self) -> bool:
        """Whether the next run goes to the candidate."""
        with self._lock:
            self._routed += 1
            n = self._routed
        return math.floor(n * self.weight) > math.floor((n - 1) * self.weight)

    def ended(self, candidate: bool, result: ExecutionResult | None) -> None:
        """Count a run that ended with ``result`` (None: it raised before starting)."""
        with self._lock:
            side = self._sides[candidate]
            side.runs += 1
            if result is None or result.status in _FAILED:
                side.failures += 1
            if result is not None:
                side.total_ms += result.duration_ms
                side.max_ms = max(side.max_ms, result.duration_ms)

    def side(self, candidate: bool, structural_hash: str, version: int | None
             ) -> CanarySide:
        """One side's counts so far."""
        with self._lock:
            c = self._sides[candidate]
            return CanarySide(structural_hash, version, c.runs, c.failures, c.total_ms,
                              c.max_ms)
