"""Process isolation start-up: one isolated call against a bare interpreter start.

An ``isolation="process"`` call starts a fresh interpreter running
``constellation.actors._isolated_child``, which imports the module that defines the
function (with the cheap ``@module`` stand-in of ``constellation._child_module``), calls it
and pickles the answer back. This script times, in
one process and alternating round by round, ``python -c pass`` (the floor: the same
interpreter, the same site-packages) and a full isolated call, and prints the medians
and their ratio. Usage::

    python bench/isolation_startup.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.isolated_modules import isolated_square
from constellation.actors._isolation import run_isolated


class _Attempt:
    """What run_isolated reads and writes on the attempt (no engine needed)."""

    process: Any = None
    abandoned = False


def bare() -> float:
    """Seconds for ``python -c pass``."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t


def isolated() -> float:
    """Seconds for one isolated call, start to answer."""
    t = time.perf_counter()
    assert run_isolated(isolated_square, {"x": 7}, _Attempt()) == 49  # type: ignore[arg-type]
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    bare(), isolated()  # warm the file cache
    times: dict[str, list[float]] = {"bare": [], "isolated": []}
    for r in range(args.rounds):
        pair = (("bare", bare), ("isolated", isolated))
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            times[name].append(fn())
    b = statistics.median(times["bare"])
    i = statistics.median(times["isolated"])
    print(f"python -c pass        {b * 1000:8.1f} ms")
    print(f"isolated call         {i * 1000:8.1f} ms")
    print(f"isolated / bare       {i / b:8.2f}")


if __name__ == "__main__":
    main()
