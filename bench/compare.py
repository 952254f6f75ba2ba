"""Side-by-side: the four workloads on Constellation and on two peers, in one run.

Peers:
  * ``tpe``  - a plain dependency-counting scheduler on ``concurrent.futures.ThreadPoolExecutor``
               (the least a pipeline engine can cost on threads);
  * ``dask`` - dask's threaded scheduler (``dask.threaded.get``) on the same task graph.

Usage::

    python bench/compare.py [--repeat 7] [--workers 8] [--w3-executions 2000]

Prints, per workload, the median time of each engine and its ratio to ``tpe``
(ratio < 1 is faster than the plain scheduler). W3 is reported in executions per
second (submitted all at once); its ratio is throughput relative to ``tpe``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import MODULES, Workload, chain, diamond, fan_out, sleepers
from constellation import Constellation, SchedulerConfig

Graph = dict[str, tuple[Callable[..., Any], tuple[str, ...]]]


class CountingScheduler:
    """Run a task graph on a ThreadPoolExecutor: submit a task when its last input is done."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool

    def run(self, graph: Graph, sink: str) -> Any:
        dependents: dict[str, list[str]] = {k: [] for k in graph}
        pending = {}
        for k, (_, deps) in graph.items():
            pending[k] = len(deps)
            for d in deps:
                dependents[d].append(k)
        results: dict[str, Any] = {}
        lock = threading.Lock()
        done = threading.Event()
        errors: list[BaseException] = []

        def run_task(k: str) -> None:
            fn, deps = graph[k]
            try:
                results[k] = fn(*(results[d] for d in deps))
            except BaseException as exc:
                errors.append(exc)
                done.set()
                return
            if k == sink:
                done.set()
                return
            ready = []
            with lock:
                for child in dependents[k]:
                    pending[child] -= 1
                    if pending[child] == 0:
                        ready.append(child)
            for child in ready:
                self.pool.submit(run_task, child)

        for k, n in list(pending.items()):
            if n == 0:
                self.pool.submit(run_task, k)
        if not done.wait(120):
            raise TimeoutError("counting scheduler did not finish")
        if errors:
            raise errors[0]
        return results[sink]


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--workers", type=int, default=8,
                        help="threads for W1-W3 in every engine (W4 uses 64)")
    parser.add_argument("--w3-executions", type=int, default=2000)
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args(argv)

    try:
        import dask.threaded
    except ImportError:
        dask_get = None
        print("dask is not installed: pip install 'constellation-engine[bench]'")
    else:
        dask_get = None if args.skip_dask else dask.threaded.get

    rows: list[tuple[str, str, dict[str, float]]] = []
    for wl, workers in ((chain(), args.workers), (fan_out(), args.workers),
                        (sleepers(), 64)):
        times = _run_latency(wl, workers, args.repeat, dask_get)
        rows.append((wl.name, f"ms ({len(wl.spec.modules)} modules)", times))
    rows.append(("W3 diamond", "executions/s", _run_throughput(
        diamond(), args.workers, args.w3_executions, dask_get)))

    print()
    print(f"{'workload':<20} {'unit':<22} {'constellation':>14} {'tpe':>10} {'dask':>10}"
          f" {'c/tpe':>7} {'dask/tpe':>9}")
    for name, unit, t in rows:
        base = t["tpe"]
        c = t["constellation"]
        d = t.get("dask")
        print(f"{name:<20} {unit:<22} {c:>14.2f} {base:>10.2f} "
              f"{(f'{d:.2f}' if d else '-'):>10} {c / base:>7.2f} "
              f"{(f'{d / base:.2f}' if d else '-'):>9}")
    print("\nFor W1, W2, W4 lower is better; for W3 (executions/s) higher is better.")
    for name, _, t in rows[:2]:
        n = 1001
        print(f"{name}: per-node overhead  constellation {t['constellation'] * 1000 / n:.1f} µs,"
              f" tpe {t['tpe'] * 1000 / n:.1f} µs"
              + (f", dask {t['dask'] * 1000 / n:.1f} µs" if "dask" in t else ""))
    return 0


def _run_latency(wl: Workload, workers: int, repeat: int, dask_get: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    engine = Constellation(MODULES, scheduler=SchedulerConfig(
        max_concurrency=64, worker_threads=workers, max_queue_size=None))
    pipeline = engine.compile(wl.spec)

    def run_c() -> None:
        r = engine.run(pipeline, wl.inputs)
        assert r.ok, (r.status, r.errors)
        assert r.outputs[wl.output] == wl.expected

    out["constellation"] = _median_time(run_c, repeat) * 1000
    engine.shutdown()
    with ThreadPoolExecutor(workers) as pool:
        sched = CountingScheduler(pool)

        def run_t() -> None:
            assert sched.run(wl.graph, wl.sink) == wl.expected

        out["tpe"] = _median_time(run_t, repeat) * 1000
    if dask_get is not None:
        dgraph = {k: (fn, *deps) for k, (fn, deps) in wl.graph.items()}
        with ThreadPoolExecutor(workers) as pool:
            def run_d() -> None:
                assert dask_get(dgraph, wl.sink, pool=pool) == wl.expected

            out["dask"] = _median_time(run_d, repeat) * 1000
    print(f"{wl.name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in out.items()), flush=True)
    return out


def _run_throughput(wl: Workload, workers: int, n: int, dask_get: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    engine = Constellation(MODULES, scheduler=SchedulerConfig(
        max_concurrency=64, worker_threads=workers, max_queue_size=None))
    pipeline = engine.compile(wl.spec)

    def run_c() -> None:
        handles = [engine.submit(pipeline, wl.inputs) for _ in range(n)]
        for h in handles:
            assert h.result().outputs[wl.output] == wl.expected

    out["constellation"] = n / _median_time(run_c, 3)
    engine.shutdown()

    # The peers run n graphs concurrently from a pool of submitters, as the engine does.
    with ThreadPoolExecutor(workers) as pool, ThreadPoolExecutor(8) as callers:
        sched = CountingScheduler(pool)

        def run_t() -> None:
            futures = [callers.submit(sched.run, wl.graph, wl.sink) for _ in range(n)]
            for f in futures:
                assert f.result() == wl.expected

        out["tpe"] = n / _median_time(run_t, 3)
        if dask_get is not None:
            dgraph = {k: (fn, *deps) for k, (fn, deps) in wl.graph.items()}

            def run_d() -> None:
                futures = [callers.submit(dask_get, dgraph, wl.sink, pool=pool)
                           for _ in range(n)]
                for f in futures:
                    assert f.result() == wl.expected

            out["dask"] = n / _median_time(run_d, 3)
    print(f"{wl.name}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in out.items()), flush=True)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
