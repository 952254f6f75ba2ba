"""Per-call overhead of module calls on each executor, and what a stuck call costs.

For the engine's threads, ``executor="process"`` (2 processes), a user's
``ProcessPoolExecutor(2)`` and a real dask cluster (a ``dask scheduler`` and two
``dask worker`` processes of one thread each on loopback, started as in the test
suite), it measures:

- ``raw``: ``executor.submit(f, x).result()`` of a trivial function (the executor's
  own round trip; none for threads), and ``raw par``: 100 such submits at once, wall
  time per call;
- ``seq``: one ``engine.run()`` of one trivial module call, median (µs per run);
- ``par``: one run of 100 independent trivial calls, wall time per call (µs);
- ``after stuck``: two calls stuck past a 0.3 s timeout, then the wall time of a run
  of two quick calls (ms): the stuck calls must not hold the executor's slots;
- ``cancel``: from ``cancel()`` to a running ``ctx`` module seeing ``ctx.cancelled``
  (ms).

Usage::

    python bench/executor_overhead.py [--rounds 200] [--only threads,process,user-process,dask]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from constellation import Constellation, PipelineBuilder, SchedulerConfig
from tests.distributed import modules as m


def trivial(x: int) -> int:
    return x + 1


def one(name: str, **args: Any) -> PipelineBuilder:
    b = PipelineBuilder("bench")
    b.output("out", b.call(name, **args))
    return b


def measure(label: str, executor: Any, raw: Any, rounds: int) -> dict[str, str]:
    row = {"executor": label}
    if raw is not None:
        for _ in range(10):
            raw.submit(trivial, 1).result(timeout=60)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            raw.submit(trivial, 1).result(timeout=60)
            times.append(time.perf_counter() - t)
        row["raw µs"] = f"{statistics.median(times) * 1e6:.0f}"
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for f in [raw.submit(trivial, i) for i in range(100)]:
                f.result(timeout=60)
            best = min(best, time.perf_counter() - t)
        row["raw par µs/call"] = f"{best / 100 * 1e6:.0f}"
    else:
        row["raw µs"] = row["raw par µs/call"] = "-"
    engine = Constellation([m.quick, m.stuck, m.cooperative], executor=executor,
                           scheduler=SchedulerConfig(worker_threads=2))
    try:
        single = engine.compile(one("P.Quick", x=1))
        for _ in range(10):
            engine.run(single, {}, timeout=60).raise_for_status()
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            engine.run(single, {}, timeout=60)
            times.append(time.perf_counter() - t)
        row["seq µs/run"] = f"{statistics.median(times) * 1e6:.0f}"
        wide = PipelineBuilder("wide")
        for i in range(100):
            wide.output(f"o{i}", wide.call("P.Quick", x=i))
        plan = engine.compile(wide)
        engine.run(plan, {}, timeout=60).raise_for_status()
        best = min(_timed(lambda: engine.run(plan, {}, timeout=60)) for _ in range(3))
        row["par µs/call"] = f"{best / 100 * 1e6:.0f}"
        stuck = PipelineBuilder("stuck")
        for i in range(2):
            stuck.output(f"o{i}", stuck.call("P.Stuck", options={"timeout": 0.3},
                                             seconds=3.0, i=i))
        engine.run(stuck, {}, timeout=30)
        quick = PipelineBuilder("after")
        quick.output("a", quick.call("P.Quick", x=1))
        quick.output("b", quick.call("P.Quick", x=2))
        t = time.perf_counter()
        after = engine.run(quick, {}, timeout=10)
        row["after stuck ms"] = f"{(time.perf_counter() - t) * 1e3:.0f}" if after.ok \
            else after.status.name
        time.sleep(3.0)  # let the stuck calls end before the next measurement
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "coop")
            execution = engine.submit(one("P.Cooperative", path=path), {}, timeout=60)
            while m.runs(path) < 1:
                time.sleep(0.001)
            t = time.perf_counter()
            execution.cancel()
            while m.runs(path) < 2 and time.perf_counter() - t < 10:
                time.sleep(0.001)
            row["cancel ms"] = f"{(time.perf_counter() - t) * 1e3:.0f}"
    finally:
        engine.shutdown(drain_timeout=5)
    return row


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn().raise_for_status()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--only", default="threads,process,user-process,dask")
    args = parser.parse_args()
    only = args.only.split(",")
    rows = []
    if "threads" in only:
        rows.append(measure("threads", None, None, args.rounds))
    if "process" in only:
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as raw:
            rows.append(measure("process (engine-owned, 2)", "process:2", raw, args.rounds))
    if "user-process" in only:
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows.append(measure("ProcessPoolExecutor(2)", pool, pool, args.rounds))
    if "dask" in only:
        from tests.distributed.conftest import start_cluster

        with tempfile.TemporaryDirectory() as d:
            cluster = start_cluster(Path(d))
            try:
                client = cluster.client()
                try:
                    rows.append(measure("dask (2 workers x 1 thread, loopback)",
                                        client.get_executor(), client.get_executor(pure=False),
                                        args.rounds))
                finally:
                    client.close(timeout=10)
            finally:
                cluster.stop()
    keys = list(rows[0])
    widths = [max(len(k), *(len(r.get(k, "")) for r in rows)) for k in keys]
    print(" | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(r.get(k, "").ljust(w) for k, w in zip(keys, widths, strict=True)))


if __name__ == "__main__":
    main()
