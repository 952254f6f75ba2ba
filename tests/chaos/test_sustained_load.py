"""Sustained load (soak, ``-m soak``): 10,000 executions of a small pipeline.

Nothing may accumulate: the process's resident memory grows by less than 50 MB, and the
99th-percentile latency of the last 1,000 executions is at most 1.5 times that of the
first 1,000 (a slowdown means something grows per execution: a heap, a registry, a
record list). A short warm-up (compilation, the modules' timing) comes before the
10,000 and is not counted.

Latency on a shared 2-core machine is noisy (other processes take the cores for
milliseconds at a time), so a run whose p99 criterion fails is repeated, each time with
a fresh engine, up to ATTEMPTS times: a real slowdown fails every attempt, noise does
not. The memory criterion must hold in every attempt.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Any

import pytest

from constellation import ExecutionStatus, module

N = 10_000
WINDOW = 1_000
WARMUP = 200
MAX_RSS_GROWTH = 50 * 1024 * 1024
ATTEMPTS = 3


@module
def Inc(x: int) -> int:
    return x + 1


@module
def Double(x: int) -> int:
    return x * 2


SOURCE = "in x: Int\na = Inc(x)\nb = Double(a)\nc = Inc(b)\nout c"


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(len(ordered) * 0.99) - 1]


def _check(latencies: list[float], rss_before: int, rss_after: int) -> str | None:
    """Assert the memory bound; return why the latency bound failed, or None."""
    assert len(latencies) == N
    first, last = p99(latencies[:WINDOW]), p99(latencies[-WINDOW:])
    growth = rss_after - rss_before
    assert growth < MAX_RSS_GROWTH, f"RSS grew by {growth / 2**20:.1f} MB"
    if last <= 1.5 * first:
        return None
    return f"p99 of the last {WINDOW}: {last * 1e6:.0f} µs, first: {first * 1e6:.0f} µs"


def _attempts(measure: Any) -> None:
    failures = []
    for _ in range(ATTEMPTS):
        failure = measure()
        if failure is None:
            return
        failures.append(failure)
    pytest.fail(f"slower at the end in all {ATTEMPTS} attempts: {failures}")


@pytest.mark.soak
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_ten_thousand_runs_leak_nothing_and_do_not_slow_down(engine_factory: Any) -> None:
    _attempts(lambda: _runs(engine_factory))


def _runs(engine_factory: Any) -> str | None:
    engine = engine_factory([Inc, Double])
    pipeline = engine.compile(SOURCE)
    for i in range(WARMUP):
        engine.run(pipeline, {"x": i}, timeout=5)
    gc.collect()
    rss_before = rss_bytes()
    latencies: list[float] = []
    for i in range(N):
        t0 = time.perf_counter()
        r = engine.run(pipeline, {"x": i}, timeout=5)
        latencies.append(time.perf_counter() - t0)
        assert r.status is ExecutionStatus.COMPLETED, r.errors
        assert r.outputs == {"c": (i + 1) * 2 + 1}
    gc.collect()
    failure = _check(latencies, rss_before, rss_bytes())
    assert engine.inflight_count == 0
    assert engine.shutdown(drain_timeout=10)
    return failure


@pytest.mark.soak
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_ten_thousand_submissions_from_four_threads_with_cancels(
        engine_factory: Any) -> None:
    _attempts(lambda: _submissions(engine_factory))


def _submissions(engine_factory: Any) -> str | None:
    engine = engine_factory([Inc, Double])
    pipeline = engine.compile(SOURCE)
    for i in range(WARMUP):
        engine.submit(pipeline, {"x": i}, timeout=5).result()
    gc.collect()
    rss_before = rss_bytes()
    latencies: list[float] = [0.0] * N
    statuses: list[Any] = [None] * N
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(k, N, 4):
                t0 = time.perf_counter()
                e = engine.submit(pipeline, {"x": i}, timeout=5)
                if i % 10 == 0:
                    e.cancel()
                statuses[i] = e.result(timeout=10).status
                latencies[i] = time.perf_counter() - t0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    assert all(s in (ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED) for s in statuses)
    gc.collect()
    failure = _check(latencies, rss_before, rss_bytes())
    assert engine.shutdown(drain_timeout=10)
    return failure
