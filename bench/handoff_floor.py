"""What a parked ``run()`` can cost at best: W3 in a loop against two engines with no
overhead at all.

A sequential ``engine.run()`` by default keeps module code off the calling thread (the
first rule: a module that blocks must not hold ``run()`` past its deadline), so each run
hands the execution to a worker and waits for it to come back. This script measures,
side by side in one run (rounds alternating), W3 (the 10-node diamond) as:

* ``inline floor``  -- the graph's functions called in order on the caller: an engine
  with no overhead that runs modules on the caller (what Hamilton does, minus Hamilton);
* ``parked floor``  -- the same calls on one worker thread, the caller waiting: a put on
  a ``queue.SimpleQueue`` and a ``threading.Event`` (the least a handoff and a wait can
  be in CPython), no engine at all;
* ``hamilton``      -- ``driver.execute`` (inline on the caller);
* ``helps`` and ``constellation`` -- ``engine.run()`` with ``caller_helps=True`` and by
  default (parked), pools of 2 threads as in compare.py.

``parked floor - inline floor`` is the price of the two thread crossings alone; a
parked ``run()`` can beat Hamilton only if its engine costs less than
``hamilton - parked floor``. ``--pin CPU`` runs the whole process on one CPU, so a woken
thread runs where its waker does: the difference it makes shows what crossing between
CPUs costs on the machine (on this 2-vCPU VM, most of what a parked run costs over a
helping one; see docs/benchmarks.md). Usage::

    python bench/handoff_floor.py [--runs 2000] [--rounds 7] [--pin 0]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import Graph, hamilton_driver
from bench.workloads import MODULES, diamond
from constellation import Constellation, SchedulerConfig


def _order(graph: Graph) -> list[tuple[str, Any, tuple[str, ...]]]:
    done: set[str] = set()
    order: list[tuple[str, Any, tuple[str, ...]]] = []
    while len(order) < len(graph):
        for node, (fn, deps) in graph.items():
            if node not in done and all(d in done for d in deps):
                done.add(node)
                order.append((node, fn, deps))
    return order


def _inline(order: list[tuple[str, Any, tuple[str, ...]]], sink: str) -> Any:
    values: dict[str, Any] = {}
    for node, fn, deps in order:
        values[node] = fn(*[values[d] for d in deps])
    return values[sink]


class _ParkedFloor:
    """One worker thread; each call hands it the graph and waits on an Event."""

    def __init__(self, order: list[tuple[str, Any, tuple[str, ...]]], sink: str) -> None:
        self.order = order
        self.sink = sink
        self.jobs: queue.SimpleQueue[tuple[threading.Event, list[Any]] | None] = \
            queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            done, out = job
            out.append(_inline(self.order, self.sink))
            done.set()

    def __call__(self) -> Any:
        done = threading.Event()
        out: list[Any] = []
        self.jobs.put((done, out))
        done.wait(10.0)
        return out[0]

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="run() calls per timing")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pin", type=int, default=None, metavar="CPU",
                        help="run the whole process on this one CPU (Linux): every "
                             "thread then wakes where the caller runs")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})

    wl = diamond()
    order = _order(wl.graph)
    parked = _ParkedFloor(order, wl.sink)
    ham = hamilton_driver(wl.graph, "w3_floor")
    default = Constellation(MODULES, scheduler=SchedulerConfig(
        max_concurrency=64, worker_threads=2, max_queue_size=None))
    helps = Constellation(MODULES, scheduler=SchedulerConfig(
        max_concurrency=64, worker_threads=2, max_queue_size=None, caller_helps=True))
    p_default = default.compile(wl.spec)
    p_helps = helps.compile(wl.spec)
    n = args.runs

    def loop(fn: Any) -> Any:
        def run() -> None:
            for _ in range(n):
                fn()
        return run

    runners = {
        "inline floor": loop(lambda: _inline(order, wl.sink)),
        "parked floor": loop(parked),
        "hamilton": loop(lambda: ham.execute([wl.sink], inputs=wl.inputs)),
        "helps": loop(lambda: helps.run(p_helps, wl.inputs)),
        "constellation": loop(lambda: default.run(p_default, wl.inputs)),
    }
    try:
        assert _inline(order, wl.sink) == parked() == wl.expected
        assert default.run(p_default, wl.inputs).outputs["result"] == wl.expected
        for fn in runners.values():
            fn()  # warm up
        names = list(runners)
        times: dict[str, list[float]] = {k: [] for k in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t = time.perf_counter()
                runners[name]()
                times[name].append((time.perf_counter() - t) / n * 1e6)
    finally:
        parked.close()
        default.shutdown()
        helps.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"W3 (10-node diamond) in a loop, µs per run, median of {args.rounds} rounds "
          f"of {n} runs, rounds alternating:")
    for k in names:
        print(f"  {k:<14} {med[k]:8.1f}")
    crossing = med["parked floor"] - med["inline floor"]
    print(f"two thread crossings alone (parked floor - inline floor): {crossing:.1f} µs")
    print(f"room for a parked engine's own work to tie Hamilton "
          f"(hamilton - parked floor): {med['hamilton'] - med['parked floor']:.1f} µs")
    print(f"constellation's own work when it helps (helps - inline floor): "
          f"{med['helps'] - med['inline floor']:.1f} µs; parked, its work plus crossings "
          f"(constellation - inline floor): {med['constellation'] - med['inline floor']:.1f}"
          " µs")
    print(f"ratios (executions/s, > 1 is faster than Hamilton): constellation "
          f"{med['hamilton'] / med['constellation']:.2f}x, helps "
          f"{med['hamilton'] / med['helps']:.2f}x, parked floor "
          f"{med['hamilton'] / med['parked floor']:.2f}x")


if __name__ == "__main__":
    main()
