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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError, NoCanaryError
from constellation.core.results import ExecutionStatus
from constellation.spi._pipelines import CanarySetting

if TYPE_CHECKING:
    from constellation._engine_types import Pipeline
    from constellation._pipelines import PipelineCatalog
    from constellation.core.builder import PipelineBuilder
    from constellation.core.dag import DagSpec
    from constellation.core.results import ExecutionResult

__all__ = ["CanarySide", "CanaryStats", "CanaryStatus", "end", "promote", "start", "status"]

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


# --- the catalog's canary operations (engine.pipelines.canary ...) ---------------------

def start(catalog: PipelineCatalog, name: str,
          candidate: int | str | Pipeline | DagSpec | PipelineBuilder, weight: float
          ) -> CanarySetting:
    """Store ``name``'s canary and start counting it (see ``PipelineCatalog.canary``)."""
    from constellation._pipelines import hash_of

    if isinstance(weight, bool) or not isinstance(weight, int | float) or \
            not 0.0 <= weight <= 1.0:
        raise ConfigurationError(f"a canary weight is a number from 0 to 1, got "
                                 f"{weight!r}", details={"field": "weight"})
    catalog.current(name)
    given_hash = hash_of(candidate) if isinstance(candidate, str) else None
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        h = catalog._version(name, candidate).structural_hash
    elif given_hash is not None:
        h = catalog._load(given_hash).structural_hash
    else:
        compiled = catalog._compiled(candidate, name)
        catalog._save(name, compiled, False)
        h = compiled.structural_hash
    setting = CanarySetting(name, h, float(weight), time.time())
    catalog._call("set_canary", catalog.store.set_canary, setting)
    with catalog._lock:
        catalog._canaries[name] = CanaryStats(h, float(weight))
        catalog._epoch += 1
        catalog._routes.pop(name, None)
    return setting


def _setting(catalog: PipelineCatalog, name: str) -> CanarySetting:
    setting = catalog._call("canary", catalog.store.canary, name)
    if setting is None:
        raise NoCanaryError(f"pipeline '{name}' has no canary", details={"name": name})
    return setting  # type: ignore[no-any-return]


def status(catalog: PipelineCatalog, name: str) -> CanaryStatus:
    """The setting and both sides' counts (see ``PipelineCatalog.canary_status``)."""
    setting = _setting(catalog, name)
    current = catalog.current(name)
    by_hash = {v.structural_hash: v.version for v in catalog.versions(name)}
    with catalog._lock:
        stats = catalog._canaries.get(name)
        if stats is None or stats.candidate != setting.candidate or \
                stats.weight != setting.weight:
            stats = catalog._canaries[name] = CanaryStats(setting.candidate, setting.weight)
    return CanaryStatus(name, setting.weight,
                        stats.side(False, current.structural_hash, current.version),
                        stats.side(True, setting.candidate, by_hash.get(setting.candidate)))


def promote(catalog: PipelineCatalog, name: str) -> int:
    """Make the candidate current and end the canary (see ``PipelineCatalog.promote``)."""
    setting = _setting(catalog, name)
    store = catalog.store
    version, added = catalog._call("add_version", store.add_version, name,
                                   setting.candidate, make_current=True,
                                   created_at=time.time())
    if not added:
        catalog._call("set_current", store.set_current, name, version)
    end(catalog, name)
    return int(version)


def end(catalog: PipelineCatalog, name: str) -> None:
    """Remove the canary's setting and counts."""
    catalog._call("delete_canary", catalog.store.delete_canary, name)
    catalog._forget(name)
    with catalog._lock:
        catalog._canaries.pop(name, None)
