"""The four reference workloads, built for Constellation and described for the peers.

W1  1,000-node chain of trivial modules (each adds 1).
W2  1,000-wide fan-out of trivial modules from one source, then one fan-in sum.
W3  10-node diamond (1 → 8 parallel → 1), measured as executions per second.
W4  64 modules that each sleep 10 ms, all independent (max_concurrency 64).

Each workload is also given as a plain task graph (``graph``: node → (function,
dependencies)) so the peers in ``compare.py`` run exactly the same work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from constellation import ModuleDefinition, PipelineBuilder, module

if TYPE_CHECKING:
    from collections.abc import Callable

    from constellation.core.dag import DagSpec

__all__ = ["MODULES", "Workload", "diamond", "fan_out", "chain", "sleepers"]


@module("bench.inc")
def inc(x: int) -> int:
    return x + 1


@module("bench.sum")
def sum_all(xs: list[int]) -> int:
    return sum(xs)


@module("bench.add2")
def add2(a: int, b: int) -> int:
    return a + b


@module("bench.sleep10")
def sleep10(x: int) -> int:
    time.sleep(0.010)
    return x


MODULES: list[ModuleDefinition] = [inc, sum_all, add2, sleep10]


@dataclass(frozen=True)
class Workload:
    """One workload: its Constellation spec, its inputs, the expected output and the
    equivalent plain task graph for the peers."""

    name: str
    spec: DagSpec
    inputs: dict[str, Any]
    output: str
    expected: Any
    graph: dict[str, tuple[Callable[..., Any], tuple[str, ...]]]
    sink: str
    builder: PipelineBuilder | None = None
    """The builder ``spec`` came from (for the naive ``run(builder.build())`` path)."""


def chain(n: int = 1000) -> Workload:
    b = PipelineBuilder(f"chain-{n}")
    ref = b.input("x", int)
    graph: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {"n0": (lambda: 0, ())}
    for i in range(n):
        ref = b.call(inc, x=ref)
        graph[f"n{i + 1}"] = (inc.func, (f"n{i}",))
    b.output("result", ref)
    return Workload("W1 chain", b.build(), {"x": 0}, "result", n, graph, f"n{n}", b)


def fan_out(n: int = 1000) -> Workload:
    b = PipelineBuilder(f"fanout-{n}")
    x = b.input("x", int)
    graph: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {"src": (lambda: 0, ())}
    leaves = []
    for i in range(n):
        leaves.append(b.call(inc, x=x))
        graph[f"leaf{i}"] = (inc.func, ("src",))
    # Fan-in: one module reading every leaf, through a list built inline.
    total = b.call(sum_all, xs=b.list(leaves))
    graph["sum"] = (lambda *xs: sum(xs), tuple(f"leaf{i}" for i in range(n)))
    b.output("total", total)
    return Workload("W2 fan-out/fan-in", b.build(), {"x": 0}, "total", n, graph, "sum", b)


def diamond() -> Workload:
    b = PipelineBuilder("diamond-10")
    x = b.input("x", int)
    top = b.call(inc, x=x)
    mids = [b.call(inc, x=top) for _ in range(8)]
    bottom = b.call(sum_all, xs=b.list(mids))
    b.output("result", bottom)
    graph: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
        "src": (lambda: 0, ()), "top": (inc.func, ("src",))}
    for i in range(8):
        graph[f"mid{i}"] = (inc.func, ("top",))
    graph["bottom"] = (lambda *xs: sum(xs), tuple(f"mid{i}" for i in range(8)))
    return Workload("W3 diamond", b.build(), {"x": 0}, "result", 16, graph, "bottom", b)


def sleepers(n: int = 64) -> Workload:
    b = PipelineBuilder(f"sleepers-{n}")
    x = b.input("x", int)
    outs = [b.call(sleep10, x=x) for _ in range(n)]
    b.output("total", b.call(sum_all, xs=b.list(outs)))
    graph: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {"src": (lambda: 0, ())}
    for i in range(n):
        graph[f"s{i}"] = (sleep10.func, ("src",))
    graph["sum"] = (lambda *xs: sum(xs), tuple(f"s{i}" for i in range(n)))
    return Workload("W4 64x10ms", b.build(), {"x": 0}, "total", 0, graph, "sum", b)
