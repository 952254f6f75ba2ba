"""No backends vs the no-op backends vs full instrumentation, alternated in one process.

pytest-benchmark runs its parameters one after another, so an engine measured later
inherits the heap and caches of the ones before it (the order alone moved W3 by 30-50%
here). This script alternates the configurations round by round and reports medians
and ratios to "none". "full" is Prometheus metrics, OpenTelemetry SDK spans (simple
processor, an exporter that drops them) and a listener. Usage::

    python bench/backends_overhead.py [--rounds 6] [--configs none,noop,full]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.test_bench_backends import CONFIGS
from bench.workloads import MODULES, chain, diamond
from constellation import Constellation, SchedulerConfig
from constellation.actors import _observer
from constellation.actors._messages import FlushEvents

# CPU seconds the listener thread spent handling batches (thread_time: without the time
# it waited for the GIL), read around W3.
_listener_cpu = [0.0]
_handle = _observer._ListenerActor._handle


def _timed_handle(self: Any, events: list[Any]) -> None:
    started = time.thread_time()
    try:
        _handle(self, events)
    finally:
        _listener_cpu[0] += time.thread_time() - started


_observer._ListenerActor._handle = _timed_handle  # type: ignore[method-assign]


def delivered(engine: Constellation) -> None:
    """Wait until the listener actor has handled every event posted so far."""
    observer = engine._runtime.observer
    if observer is not None:
        done = threading.Event()
        observer.actor.post(FlushEvents(done))
        done.wait(120)


def measure(config: str) -> tuple[float, float, int, float]:
    """(W1 seconds per run, median of 4 x 5 runs, W3 seconds for 1,000 executions, events
    dropped, the listener thread's CPU seconds during W3).

    Both times run until the listener has handled every event (a listener that falls
    behind would otherwise look cheap: its work would spill past the clock), and the
    backlog bound is lifted so that no event is dropped to keep up -- except for the
    "sleeping" listener, which is meant to fall behind."""
    with Constellation(MODULES, backends=CONFIGS[config](), scheduler=SchedulerConfig(
            max_concurrency=64, worker_threads=8, max_queue_size=None)) as engine:
        observer = engine._runtime.observer
        if observer is not None and config != "sleeping":
            observer.max_pending = 10**7
        drain = delivered if config != "sleeping" else (lambda engine: None)
        wl = chain()
        pipeline = engine.compile(wl.spec)
        for _ in range(5):
            engine.run(pipeline, wl.inputs)
        drain(engine)
        times = []
        for _ in range(4):
            t = time.perf_counter()
            for _ in range(5):
                engine.run(pipeline, wl.inputs)
            drain(engine)
            times.append((time.perf_counter() - t) / 5)
        w1 = statistics.median(times)
        wl = diamond()
        pipeline = engine.compile(wl.spec)
        _listener_cpu[0] = 0.0
        t = time.perf_counter()
        for h in [engine.submit(pipeline, wl.inputs) for _ in range(1000)]:
            h.result()
        drain(engine)
        return (w1, time.perf_counter() - t, observer.dropped if observer is not None else 0,
                _listener_cpu[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--configs", default="none,noop,full,listener,raising,sleeping",
                        help="comma-separated; the first is the baseline of the ratios")
    args = parser.parse_args()
    names = args.configs.split(",")
    results: dict[str, list[tuple[float, float, int, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        for name in order:
            results[name].append(measure(name))
            gc.collect()
    base: Any = None
    print(f"{'config':8} {'W1 ms':>9} {'ratio':>7} {'W3 exec/s':>10} {'ratio':>7} "
          f"{'dropped':>8} {'listener CPU µs/W3 exec':>24}")
    for name in names:
        w1 = statistics.median(x[0] for x in results[name])
        w3 = 1000 / statistics.median(x[1] for x in results[name])
        dropped = sum(x[2] for x in results[name])
        cpu = statistics.median(x[3] for x in results[name]) * 1e6 / 1000
        if base is None:
            base = (w1, w3)
        print(f"{name:8} {w1 * 1000:9.2f} {w1 / base[0]:7.3f} {w3:10.0f} {base[1] / w3:7.3f} "
              f"{dropped:8} {cpu:24.0f}")
    print("\nratio: time relative to the first configuration (W3: its executions/s over "
          "this one's). Timed until the listener has handled every event.")
    if "tracing" in names or "full" in names:
        span_us = span_cost() * 1e6
        print(f"OpenTelemetry SDK span (start + end, 4 attributes, a parent; simple "
              f"processor, dropping exporter): {span_us:.1f} µs; a W3 execution makes "
              f"11 = {11 * span_us:.0f} µs, against {1e6 / base[1]:.0f} µs per "
              f"uninstrumented W3 execution ({base[1] / 1e6 * 11 * span_us:.2f}x of it)")


def span_cost(n: int = 5000) -> float:
    """Seconds per module span as the listener creates it."""
    from bench.test_bench_backends import _tracer

    tracer = _tracer()
    root = tracer.start_span("execute(diamond-10)", {"execution_id": "e", "pipeline": "p"},
                             None, time.time_ns())
    attributes = {"module_name": "bench.inc", "execution_id": "e", "attempt": 1,
                  "node": "bench.inc#2"}
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            tracer.start_span("module(bench.inc)", attributes, root, 1).end(2)
        best = min(best, (time.perf_counter() - t) / n)
    return best


if __name__ == "__main__":
    main()
