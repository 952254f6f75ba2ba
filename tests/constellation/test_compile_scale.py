"""Compiling a large graph: the collector stays paused through the whole compile
(parse, check, hash, resolution, plan) and is restored afterwards."""

from __future__ import annotations

import gc
from typing import Any

from bench.programs import long_chain
from constellation import Constellation, PipelineBuilder
from constellation.lang.collector import LARGE_GRAPH, LARGE_SOURCE


def collections_during(action: Any) -> int:
    seen: list[str] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(phase)

    gc.callbacks.append(record)
    try:
        action()
    finally:
        gc.callbacks.remove(record)
    return len(seen)


def test_a_large_source_compiles_without_a_collection_and_gc_comes_back() -> None:
    with Constellation() as engine:
        source = long_chain(LARGE_SOURCE * 2)
        assert collections_during(lambda: engine.compile(source)) == 0
        assert gc.isenabled()
        assert engine.run(engine.compile(source), {"a": 1}).outputs["x"] == \
            source.count(" + ") + 1


def test_a_large_dagspec_is_planned_without_a_collection() -> None:
    b = PipelineBuilder("wide")
    x = b.input("x", int)
    for i in range(LARGE_GRAPH):
        x = b.call("stdlib.math.add", a=x, b=b.input(f"i{i}", int)) if i % 2 else \
            b.call("stdlib.math.negate", value=x)
    b.output("o", x)
    spec = b.build()
    with Constellation() as engine:
        assert collections_during(lambda: engine.compile(spec)) == 0
        assert gc.isenabled()
