"""No backends vs the no-op backends vs full instrumentation, alternated in one process.

pytest-benchmark runs its parameters one after another, so an engine measured later
inherits the heap and caches of the ones before it (the order alone moved W3 by 30-50%
here). This script alternates the configurations round by round and reports medians
and ratios to "none". Usage::

    python bench/backends_overhead.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.test_bench_backends import CONFIGS
from bench.workloads import MODULES, chain, diamond
from constellation import Constellation, SchedulerConfig


def measure(config: str) -> tuple[float, float]:
    """(W1 median seconds over 20 runs, W3 seconds for 1,000 executions)."""
    with Constellation(MODULES, backends=CONFIGS[config](), scheduler=SchedulerConfig(
            max_concurrency=64, worker_threads=8, max_queue_size=None)) as engine:
        wl = chain()
        pipeline = engine.compile(wl.spec)
        for _ in range(5):
            engine.run(pipeline, wl.inputs)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            engine.run(pipeline, wl.inputs)
            times.append(time.perf_counter() - t)
        w1 = statistics.median(times)
        wl = diamond()
        pipeline = engine.compile(wl.spec)
        t = time.perf_counter()
        for h in [engine.submit(pipeline, wl.inputs) for _ in range(1000)]:
            h.result()
        return w1, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    names = ["none", "noop", "full", "listener", "raising", "sleeping"]
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        for name in order:
            results[name].append(measure(name))
            gc.collect()
    base: Any = None
    print(f"{'config':8} {'W1 ms':>9} {'ratio':>7} {'W3 exec/s':>10} {'ratio':>7}")
    for name in names:
        w1 = statistics.median(x[0] for x in results[name])
        w3 = 1000 / statistics.median(x[1] for x in results[name])
        if base is None:
            base = (w1, w3)
        print(f"{name:8} {w1 * 1000:9.2f} {w1 / base[0]:7.3f} {w3:10.0f} {base[1] / w3:7.3f}")


if __name__ == "__main__":
    main()
