"""Before/after: the same workload on two checkouts of Constellation, alternated.

A change that must cost "nothing measurable" (logging when it is off, a new event
site) is checked against the commit before it, in one sitting: each round runs the
workload once per checkout, each in a fresh interpreter with that checkout first on
``sys.path``, rotating who goes first; the medians and their ratio are printed. Make the
"before" checkout with ``git worktree add /tmp/before <commit>``. Usage::

    python bench/ab.py --before /tmp/before --after . [--rounds 11] [--workload w3-loop]
    python bench/ab.py --before /tmp/before --after . --instructions [--rounds 3]

On a shared, noisy machine wall times of two runs can differ by 2x; ``--instructions``
counts the instructions each run executes instead, with valgrind's callgrind (slow, but
the same count for the same work whatever else the machine does): it runs each
workload with ``n`` executions and with none and reports instructions per execution
(run) -- start-up and imports cancel out.

Workloads: ``w3-loop`` (the 10-node diamond, ``engine.run()`` in a loop on one thread:
executions per second), ``w3-helps`` (the same with ``caller_helps=True``: the calling
thread runs its execution), ``w3-burst`` (2,000 submitted at once), ``w1`` (the
1,000-node chain, ms per run), ``w2`` (the 1,000-wide fan-out and fan-in, ms per run).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

_SNIPPET = r"""
import sys, time
sys.path.insert(0, {root!r})
from bench.workloads import MODULES, chain, diamond, fan_out
from constellation import Constellation, SchedulerConfig
which = {workload!r}
wl = chain() if which == "w1" else fan_out() if which == "w2" else diamond()
helps = which == "w3-helps"
if helps:
    which = "w3-loop"
with Constellation(MODULES, scheduler=SchedulerConfig(max_concurrency=64, worker_threads=2,
                                                       max_queue_size=None,
                                                       caller_helps=helps)) as engine:
    pipeline = engine.compile(wl.spec)
    for _ in range(200 if which not in ("w1", "w2") else 5):
        engine.run(pipeline, wl.inputs)
    if which == "w3-loop":
        n = {n}
        t = time.perf_counter()
        for _ in range(n):
            engine.run(pipeline, wl.inputs)
        print(n / (time.perf_counter() - t))
    elif which == "w3-burst":
        n = {n}
        t = time.perf_counter()
        for h in [engine.submit(pipeline, wl.inputs) for _ in range(n)]:
            h.result()
        print(n / (time.perf_counter() - t))
    else:
        t = time.perf_counter()
        for _ in range(max(1, {n} // 200)):
            engine.run(pipeline, wl.inputs)
        print((time.perf_counter() - t) / max(1, {n} // 200) * 1000)
"""

_UNITS = {"w3-loop": "executions/s", "w3-helps": "executions/s",
          "w3-burst": "executions/s", "w1": "ms per run", "w2": "ms per run"}


def _run(root: Path, workload: str, n: int, prefix: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    code = _SNIPPET.format(root=str(root), workload=workload, n=n)
    done = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                          text=True, env=env, cwd=root, timeout=3600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{root}: the workload failed:\n{done.stderr[-3000:]}")
    return done


def measure(root: Path, workload: str) -> float:
    """The workload's rate or time, by the wall clock."""
    done = _run(root, workload, 2000, [])
    return float(done.stdout.strip().splitlines()[-1])


_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(root: Path, workload: str, n: int = 300) -> float:
    """Instructions per execution (per run for w1), counted by callgrind."""
    prefix = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    counts = []
    for k in (0, n):
        found = _COLLECTED.search(_run(root, workload, k, prefix).stderr)
        if found is None:
            raise SystemExit("callgrind printed no instruction count (is valgrind installed?)")
        counts.append(int(found.group(1)))
    per = n if workload not in ("w1", "w2") else max(1, n // 200)
    return (counts[1] - counts[0]) / per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path("."))
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--workload", choices=sorted(_UNITS), default="w3-loop")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions with callgrind instead of timing")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, list[float]] = {k: [] for k in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            value = instructions(trees[name], args.workload) if args.instructions \
                else measure(trees[name], args.workload)
            results[name].append(value)
            print(f"  round {r + 1} {name}: {value:.2f}", flush=True)
    unit = "instructions per execution" if args.instructions else _UNITS[args.workload]
    med = {k: statistics.median(v) for k, v in results.items()}
    for name, values in results.items():
        print(f"{name:6} median {med[name]:10.2f} {unit}  "
              f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)")
    print(f"after/before: {med['after'] / med['before']:.3f} "
          f"({'higher' if unit.startswith('executions') else 'lower'} is better)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
