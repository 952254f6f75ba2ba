"""PrometheusMetrics: after N runs the text exposition, read back with prometheus-client's
own parser, has every metric with the right labels and counts."""

from __future__ import annotations

import threading
import time

import pytest

from constellation import (
    Backends,
    CircuitBreakerConfig,
    Constellation,
    ExecutionStatus,
    PipelineBuilder,
    QueueFullError,
    SchedulerConfig,
    module,
)

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from constellation.spi import PrometheusMetrics  # noqa: E402


@module("Fails")
def fails(text: str) -> str:
    raise ValueError("no")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


gate = threading.Event()


@module("Gate")
def gate_module(text: str) -> str:
    gate.wait(10)
    return text


def test_exposition_after_runs_has_every_metric_with_labels_and_counts() -> None:
    metrics = PrometheusMetrics()
    source = "in t: String\nu = Uppercase(Trim(t))\nout u\n"
    with Constellation([fails, gate_module], backends=Backends(metrics=metrics),
                       scheduler=SchedulerConfig(max_concurrency=1, max_queue_size=1),
                       circuit_breakers={"Fails": CircuitBreakerConfig(1, 60.0)}) as engine:
        for i in range(4):
            assert engine.run(source, {"t": f"x{i}"}).ok
        b = PipelineBuilder("bad")
        b.output("o", b.call("Fails", text=b.input("t", str)))
        assert engine.run(b, {"t": "x"}).status is ExecutionStatus.FAILED
        assert engine.run(b, {"t": "x"}).errors[0].code == "E403"  # breaker open
        held = engine.submit("in t: String\ng = Gate(t)\nout g", {"t": "x"})
        while engine.queued_count:  # until it runs (holding the only slot)
            time.sleep(0.001)
        queued = engine.submit("in t: String\ng = Gate(t)\nout g", {"t": "y"})
        rejected = 0
        while rejected < 2:
            try:
                engine.submit("in t: String\ng = Gate(t)\nout g", {"t": "z"})
            except QueueFullError:
                rejected += 1
        gate.set()
        assert held.result(10).ok
        assert queued.result(10).ok
    s = samples(metrics.exposition().decode())
    assert s[("constellation_scheduler_rejected_total", ())] == 2
    assert s[("constellation_circuit_breaker_state", (("module_name", "Fails"),))] == 1.0
    assert s[("constellation_circuit_breaker_rejected_total", (("module_name", "Fails"),))] == 1
    assert s[("constellation_execution_total", (("status", "completed"),))] == 4 + 2
    assert s[("constellation_execution_total", (("status", "failed"),))] == 2
    assert s[("constellation_module_started_total", (("module_name", "Trim"),))] == 4
    assert s[("constellation_module_completed_total", (("module_name", "Uppercase"),))] == 4
    assert s[("constellation_module_failed_total", (("module_name", "Fails"),))] == 1
    assert s[("constellation_module_duration_ms_count", (("module_name", "Trim"),))] == 4
    assert s[("constellation_execution_duration_ms_count", (("dag_name", "pipeline"),))] == 6
    assert s[("constellation_compilation_total", (("cache_hit", "false"),))] == 2
    assert s[("constellation_compilation_total", (("cache_hit", "true"),))] == 3 + 3
    assert ("constellation_scheduler_queued", ()) in s
    assert ("constellation_scheduler_active", ()) in s


def test_each_instance_has_its_own_registry() -> None:
    a, b = PrometheusMetrics(), PrometheusMetrics()
    a.counter("x.y", tags={"k": "v"})
    b.counter("x.y", tags={"k": "v"})
    assert b"x_y_total" in a.exposition()


def test_inconsistent_tags_are_a_clear_error() -> None:
    from constellation import ConfigurationError

    m = PrometheusMetrics()
    m.counter("jobs", tags={"a": "1"})
    with pytest.raises(ConfigurationError, match="used with tags"):
        m.counter("jobs", tags={"b": "1"})
