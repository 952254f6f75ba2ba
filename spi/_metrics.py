"""MetricsProvider: counters, histograms and gauges with tags.

Metric names use dots (``constellation.execution.total``); Prometheus-style backends
turn them into underscores. Tags are small string maps (``{"status": "completed"}``).
Backends are called from the engine's listener actor, never from a pipeline's own
threads, so a slow backend cannot slow a pipeline down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

__all__ = ["InMemoryMetrics", "LoggingMetrics", "MetricsProvider", "NoOpMetrics", "Tags"]

Tags = Mapping[str, str]


@runtime_checkable
class MetricsProvider(Protocol):
    """Receives the engine's measurements."""

    def counter(self, name: str, value: float = 1.0, tags: Tags | None = None) -> None:
        """Add ``value`` to the counter ``name`` (with these tags)."""

    def histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Record one observation of ``value`` (durations are in milliseconds)."""

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Set the gauge ``name`` to ``value``."""


class NoOpMetrics:
    """All operations are no-op. The default."""

    def counter(self, name: str, value: float = 1.0, tags: Tags | None = None) -> None:
        """Do nothing."""

    def histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Do nothing."""

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Do nothing."""


def _key(name: str, tags: Tags | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted((tags or {}).items()))


class InMemoryMetrics:
    """Keeps every measurement in memory: a public test double for your own tests.

    Example:
        >>> m = InMemoryMetrics()
        >>> m.counter("jobs", tags={"kind": "a"}); m.counter("jobs", tags={"kind": "a"})
        >>> m.counter_value("jobs", {"kind": "a"})
        2.0
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.histograms: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def counter(self, name: str, value: float = 1.0, tags: Tags | None = None) -> None:
        """Add to a counter."""
        key = _key(name, tags)
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + value

    def histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Record an observation."""
        with self._lock:
            self.histograms.setdefault(_key(name, tags), []).append(value)

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Set a gauge."""
        with self._lock:
            self.gauges[_key(name, tags)] = value

    def counter_value(self, name: str, tags: Tags | None = None) -> float:
        """The counter's total (0 if never touched)."""
        with self._lock:
            return self.counters.get(_key(name, tags), 0.0)

    def observations(self, name: str, tags: Tags | None = None) -> list[float]:
        """Every value recorded in the histogram."""
        with self._lock:
            return list(self.histograms.get(_key(name, tags), []))

    def gauge_value(self, name: str, tags: Tags | None = None) -> float | None:
        """The gauge's last value, or None."""
        with self._lock:
            return self.gauges.get(_key(name, tags))

    def names(self) -> set[str]:
        """Every metric name seen."""
        with self._lock:
            return {n for n, _ in [*self.counters, *self.histograms, *self.gauges]}


class LoggingMetrics:
    """Writes each measurement as a DEBUG line to ``constellation.metrics``.

    Args:
        logger: the logger to use instead.
        level: the log level.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG
                 ) -> None:
        self._logger = logger or logging.getLogger("constellation.metrics")
        self._level = level

    def counter(self, name: str, value: float = 1.0, tags: Tags | None = None) -> None:
        """Log a counter increment."""
        self._logger.log(self._level, "counter %s +%s %s", name, value, dict(tags or {}))

    def histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Log an observation."""
        self._logger.log(self._level, "histogram %s %s %s", name, value, dict(tags or {}))

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Log a gauge value."""
        self._logger.log(self._level, "gauge %s = %s %s", name, value, dict(tags or {}))
