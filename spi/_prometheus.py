"""PrometheusMetrics: the metrics SPI on prometheus-client.

Needs the ``prometheus`` extra: ``pip install 'constellation-engine[prometheus]'``.
Metric names become Prometheus names (dots to underscores: ``constellation_module_started``);
each metric's tag names become its label names. Counters are exposed with the
``_total`` suffix, as prometheus-client writes them; a name already ending in ``.total``
keeps a single one (``constellation.execution.total`` is
``constellation_execution_total``).
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PrometheusMetrics"]

# Histogram buckets in milliseconds, from sub-millisecond module calls to minutes.
DEFAULT_BUCKETS_MS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000,
                      2500, 5000, 10000, 30000, 60000)


def _prom_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_:]", "_", name)


class PrometheusMetrics:
    """A MetricsProvider that keeps Prometheus counters, histograms and gauges.

    Args:
        registry: the ``CollectorRegistry`` to register in; by default a new one of its
            own (so several engines, or tests, do not collide).
        buckets: histogram buckets, in the unit observed (milliseconds).
    """

    def __init__(self, registry: Any = None,
                 buckets: tuple[float, ...] = DEFAULT_BUCKETS_MS) -> None:
        try:
            import prometheus_client
        except ImportError:
            raise ConfigurationError(
                "Prometheus metrics need prometheus-client: pip install "
                "'constellation-engine[prometheus]'", details={"field": "metrics"}) from None
        self._prom = prometheus_client
        self.registry = registry if registry is not None else \
            prometheus_client.CollectorRegistry()
        self._buckets = buckets
        self._metrics: dict[tuple[str, str], tuple[Any, tuple[str, ...]]] = {}
        # The labelled child of each (kind, name, tags) seen: a hit skips the lock and
        # prometheus-client's labels() (the engine reports the same few series over and
        # over). Reads and inserts of a dict are atomic in CPython.
        self._children: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}
        self._lock = threading.Lock()

    def _metric(self, kind: str, name: str, tags: Mapping[str, str] | None) -> Any:
        key = (kind, name, tuple(tags.items()) if tags else ())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._labelled(kind, name, tags)
        return child

    def _labelled(self, kind: str, name: str, tags: Mapping[str, str] | None) -> Any:
        labels = tuple(sorted(tags or {}))
        key = (kind, name)
        with self._lock:
            found = self._metrics.get(key)
            if found is None:
                cls = {"counter": self._prom.Counter, "histogram": self._prom.Histogram,
                       "gauge": self._prom.Gauge}[kind]
                extra = {"buckets": self._buckets} if kind == "histogram" else {}
                metric = cls(_prom_name(name), f"Constellation {name}", labels,
                             registry=self.registry, **extra)
                found = (metric, labels)
                self._metrics[key] = found
        metric, known = found
        if labels != known:
            raise ConfigurationError(f"metric {name} is used with tags {list(labels)} and "
                                     f"{list(known)}", details={"field": "tags"})
        return metric.labels(**tags) if labels else metric  # type: ignore[arg-type]

    def counter(self, name: str, value: float = 1.0, tags: Mapping[str, str] | None = None
                ) -> None:
        """Increase a counter."""
        self._metric("counter", name, tags).inc(value)

    def histogram(self, name: str, value: float, tags: Mapping[str, str] | None = None
                  ) -> None:
        """Observe a value."""
        self._metric("histogram", name, tags).observe(value)

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Set a gauge."""
        self._metric("gauge", name, tags).set(value)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what ``/metrics`` serves)."""
        return self._prom.generate_latest(self.registry)
