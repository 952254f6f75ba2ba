"""Side-by-side: the four workloads on Constellation and on three peers, in one run.

Peers:
  * ``tpe``      - a plain dependency-counting scheduler on
                   ``concurrent.futures.ThreadPoolExecutor`` (the least a pipeline engine
                   can cost on threads);
  * ``dask``     - dask's threaded scheduler (``dask.threaded.get``) on the same task graph;
  * ``hamilton`` - Apache Hamilton's ``driver.execute``, which runs the graph inline on
                   the calling thread (skipped, with a note, when ``apache-hamilton`` is
                   not installed).

Constellation runs twice: as configured by default, and with
``SchedulerConfig(caller_helps=True)`` (column ``helps``; ``run()`` only).

Every engine gets a pool of the same size (``--workers``, by default one thread per core;
W4 uses 64): Constellation's ``worker_threads``, the ``tpe`` pool, dask's pool. Hamilton
has none: it runs on the caller. The table states the sizes.

Usage::

    python bench/compare.py [--repeat 7] [--workers N] [--w3-executions 2000]

The engines alternate round by round (rotating who goes first) and the medians are
printed with each engine's ratio to ``tpe`` (for times, < 1 is faster; for W3's
executions per second, > 1 is faster). W3 is measured twice: 2,000 executions submitted
at once (throughput), and ``run()`` called in a loop on one thread (the embedder's
case). Two more rows give Constellation's naive paths against its compiled one: W1 run
with ``builder.build()`` passed to ``run`` each time, and with a new, structurally
equal DagSpec each time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
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
from constellation.actors._runtime import Runtime

Graph = dict[str, tuple[Callable[..., Any], tuple[str, ...]]]
Runner = Callable[[], Any]


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


def hamilton_driver(graph: Graph, name: str) -> Any:
    """A Hamilton driver for ``graph``: one function per node, whose parameters are named
    after the nodes it depends on (Hamilton's convention), each calling the same Python
    function the other engines call."""
    from hamilton import ad_hoc_utils, driver

    functions = []
    for node, (fn, deps) in graph.items():
        params = ", ".join(f"{d}: int" for d in deps)
        namespace: dict[str, Any] = {"_fn": fn}
        exec(f"def {node}({params}) -> int:\n    return _fn({', '.join(deps)})\n", namespace)
        functions.append(namespace[node])
    module = ad_hoc_utils.create_temporary_module(*functions, module_name=f"bench_{name}")
    return driver.Builder().with_modules(module).build()


def alternate(runners: dict[str, Runner], rounds: int) -> dict[str, float]:
    """Median seconds of each runner, the runners alternating round by round."""
    for fn in runners.values():
        fn()  # warm up
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - t)
    return {n: statistics.median(v) for n, v in times.items()}


class Engines:
    """Every engine's runner for one workload, sharing pools of ``workers`` threads."""

    def __init__(self, wl: Workload, workers: int, peers: set[str]) -> None:
        self.wl = wl
        self.engine = Constellation(MODULES, scheduler=SchedulerConfig(
            max_concurrency=64, worker_threads=workers, max_queue_size=None))
        self.pipeline = self.engine.compile(wl.spec)
        # The same engine with the caller helping its run() (opt-in: see
        # docs/performance-tuning.md, "Where calls run").
        self.helping = Constellation(MODULES, scheduler=SchedulerConfig(
            max_concurrency=64, worker_threads=workers, max_queue_size=None,
            caller_helps=True))
        self.helping_pipeline = self.helping.compile(wl.spec)
        self.pool = ThreadPoolExecutor(workers)
        self.dask_pool = ThreadPoolExecutor(workers)
        self.callers = ThreadPoolExecutor(8)  # submitters for the peers' W3 throughput
        self.sched = CountingScheduler(self.pool)
        self.dgraph = {k: (fn, *deps) for k, (fn, deps) in wl.graph.items()}
        self.peers = peers
        self.hamilton = None
        if "hamilton" in peers:
            self.hamilton = hamilton_driver(wl.graph, re.sub(r"\W", "_", wl.name))

    def close(self) -> None:
        self.engine.shutdown()
        self.helping.shutdown()
        for pool in (self.pool, self.dask_pool, self.callers):
            pool.shutdown()

    # one execution each
    def constellation(self) -> None:
        r = self.engine.run(self.pipeline, self.wl.inputs)
        assert r.ok, (r.status, r.errors)
        assert r.outputs[self.wl.output] == self.wl.expected

    def helps(self) -> None:
        r = self.helping.run(self.helping_pipeline, self.wl.inputs)
        assert r.ok, (r.status, r.errors)
        assert r.outputs[self.wl.output] == self.wl.expected

    def naive(self) -> None:
        assert self.wl.builder is not None
        r = self.engine.run(self.wl.builder.build(), self.wl.inputs)
        assert r.outputs[self.wl.output] == self.wl.expected

    def fresh_spec(self) -> None:
        r = self.engine.run(dataclasses.replace(self.wl.spec), self.wl.inputs)
        assert r.outputs[self.wl.output] == self.wl.expected

    def tpe(self) -> None:
        assert self.sched.run(self.wl.graph, self.wl.sink) == self.wl.expected

    def dask(self) -> None:
        import dask.threaded

        assert dask.threaded.get(self.dgraph, self.wl.sink, pool=self.dask_pool) \
            == self.wl.expected

    def hamilton_run(self) -> None:
        assert self.hamilton is not None
        out = self.hamilton.execute([self.wl.sink], inputs=self.wl.inputs)
        assert out[self.wl.sink] == self.wl.expected

    def single(self) -> dict[str, Runner]:
        runners: dict[str, Runner] = {"constellation": self.constellation,
                                      "helps": self.helps, "tpe": self.tpe}
        if "dask" in self.peers:
            runners["dask"] = self.dask
        if "hamilton" in self.peers:
            runners["hamilton"] = self.hamilton_run
        return runners

    def loop(self, n: int, one: Runner) -> Runner:
        def run() -> None:
            for _ in range(n):
                one()
        return run

    def all_at_once(self, n: int) -> dict[str, Runner]:
        """n executions submitted at once (the peers from 8 submitting threads)."""
        wl = self.wl

        def constellation() -> None:
            handles = [self.engine.submit(self.pipeline, wl.inputs) for _ in range(n)]
            for h in handles:
                assert h.result().outputs[wl.output] == wl.expected

        def peer(one: Runner) -> Runner:
            def run() -> None:
                for f in [self.callers.submit(one) for _ in range(n)]:
                    f.result()
            return run

        runners: dict[str, Runner] = {"constellation": constellation, "tpe": peer(self.tpe)}
        if "dask" in self.peers:
            runners["dask"] = peer(self.dask)
        if "hamilton" in self.peers:
            runners["hamilton"] = peer(self.hamilton_run)
        return runners


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="threads of every engine's pool for W1-W3 (W4 uses 64); "
                             "default: one per core")
    parser.add_argument("--w3-executions", type=int, default=2000)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-hamilton", action="store_true")
    args = parser.parse_args(argv)

    peers: set[str] = set()
    notes: list[str] = []
    try:
        import dask.threaded  # noqa: F401
    except ImportError:
        notes.append("dask is not installed (pip install -e . --group bench): "
                     "its column is empty")
    else:
        if not args.skip_dask:
            peers.add("dask")
    try:
        import hamilton.driver  # noqa: F401
    except ImportError:
        notes.append("apache-hamilton is not installed (pip install -e . --group bench): "
                     "its column is empty")
    else:
        if not args.skip_hamilton:
            peers.add("hamilton")
            # Hamilton computes a node's dependencies recursively: a 1,000-node chain
            # needs a deeper stack than Python's default allows.
            sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))

    rows: list[tuple[str, str, int, dict[str, float]]] = []
    naive: dict[str, float] = {}
    for wl, workers in ((chain(), args.workers), (fan_out(), args.workers),
                        (sleepers(), 64)):
        engines = Engines(wl, workers, peers)
        try:
            runners = engines.single()
            if wl.name.startswith("W1"):
                runners["naive"] = engines.naive
                runners["fresh"] = engines.fresh_spec
            times = {k: v * 1000 for k, v in alternate(runners, args.repeat).items()}
        finally:
            engines.close()
        if wl.name.startswith("W1"):
            naive = {k: times.pop(k) for k in ("naive", "fresh")} | \
                {"compiled": times["constellation"]}
        rows.append((wl.name, f"ms ({len(wl.spec.modules)} modules)", workers, times))
        print(f"{wl.name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in times.items()),
              flush=True)

    n = args.w3_executions
    engines = Engines(diamond(), args.workers, peers)
    try:
        burst = alternate(engines.all_at_once(n), 3)
        seq = alternate({k: engines.loop(n, fn) for k, fn in engines.single().items()}, 3)
    finally:
        engines.close()
    for label, t in (("W3 all at once", burst), ("W3 run() loop", seq)):
        rates = {k: n / v for k, v in t.items()}
        rows.append((label, "executions/s", args.workers, rates))
        print(f"{label}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in rates.items()),
              flush=True)

    print()
    cols = ["constellation", "helps", "tpe", "dask", "hamilton"]
    print(f"{'workload':<18} {'unit':<20} {'pool':>4} "
          + " ".join(f"{c:>13}" for c in cols) + " " + " ".join(
              f"{c[:4] + '/tpe':>9}" for c in cols if c != "tpe"))
    for name, unit, workers, t in rows:
        base = t["tpe"]
        cells = " ".join(f"{t[c]:>13.2f}" if c in t else f"{'-':>13}" for c in cols)
        ratios = " ".join(f"{t[c] / base:>9.2f}" if c in t else f"{'-':>9}"
                          for c in cols if c != "tpe")
        print(f"{name:<18} {unit:<20} {workers:>4} {cells} {ratios}")
    print("\nW1, W2, W4: lower is better; W3 (executions/s): higher is better.")
    print("helps: Constellation with SchedulerConfig(caller_helps=True): the thread in "
          "run() runs its execution's turns and quick calls (submit() never helps, so "
          "'W3 all at once' has no such column).")
    if "hamilton" in rows[-1][3]:
        seq = rows[-1][3]
        print(f"W3 run() loop against Hamilton: constellation "
              f"{seq['constellation'] / seq['hamilton']:.2f}x, helps "
              f"{seq['helps'] / seq['hamilton']:.2f}x (executions/s; > 1 is faster)")
    dispatcher = Runtime.default_dispatcher_threads()
    print(f"pool: threads of Constellation's worker pool (worker_threads; it also runs "
          f"{dispatcher} dispatcher threads for actor turns), of the tpe pool and of dask's "
          "pool; Hamilton runs inline on the calling thread. W3's peers are submitted from "
          "8 threads when all at once.")
    for name, _, _, t in rows[:2]:
        nodes = 1001
        print(f"{name}: per-node overhead " + ", ".join(
            f"{c} {t[c] * 1000 / nodes:.1f} µs" for c in cols if c in t))
    print(f"W1 naive paths (Constellation): builder.build() passed to run() "
          f"{naive['naive']:.2f} ms = {naive['naive'] / naive['compiled']:.2f}x compiled; "
          f"a new, structurally equal DagSpec each run {naive['fresh']:.2f} ms = "
          f"{naive['fresh'] / naive['compiled']:.2f}x compiled "
          f"(compiled {naive['compiled']:.2f} ms)")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
