"""Compiling a large graph: the collector stays paused through the whole compile
(parse, check, hash, resolution, plan) and is restored afterwards."""

from __future__ import annotations

import gc
import threading
from typing import Any

from bench.programs import long_chain
from constellation import Constellation, PipelineBuilder
from constellation.lang import collector
from constellation.lang.collector import LARGE_GRAPH, LARGE_SOURCE


def collections_during(action: Any) -> int:
    """Collections started while ``action`` has the collector paused, on this thread (a
    callback runs on the thread whose allocation started the collection; threads other
    tests left running may allocate at any moment). Only the paused stretch counts: a
    young-generation collection started by an allocation just before the pause begins
    (the count may be at its threshold already) or just after it ends (the compile's
    last allocations) is the collector working as usual. Fails if ``action`` never
    paused the collector: ``_age_young_objects`` runs once the last pause ends."""
    seen: list[str] = []
    me = threading.get_ident()
    ended = threading.Event()
    age = collector._age_young_objects

    def record(phase: str, info: dict[str, Any]) -> None:
        if (phase == "start" and threading.get_ident() == me and not ended.is_set()
                and collector._PAUSE.active > 0):
            seen.append(phase)

    def age_then_end() -> None:
        if threading.get_ident() == me:
            ended.set()
        age()

    gc.callbacks.append(record)
    collector._age_young_objects = age_then_end
    try:
        action()
    finally:
        collector._age_young_objects = age
        gc.callbacks.remove(record)
    assert ended.is_set(), "the collector was not paused"
    return len(seen)


def test_a_large_source_compiles_without_a_collection_and_gc_comes_back() -> None:
    with Constellation() as engine:
        engine.compile("in a: Int\nout a\n")  # the compiler's modules imported
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


def test_a_graph_with_a_cycle_is_refused_with_e125_whatever_its_order() -> None:
    import pytest

    from constellation.core.dag import DagSpec, DataNode, ModuleNode
    from constellation.core.errors import CompilationError
    from constellation.core.types import INT

    data = (DataNode("in:x", "x", INT), DataNode("y", "y", INT), DataNode("z", "z", INT))
    calls = (ModuleNode("mod:f", "f", "stdlib.math.add", (("a", "in:x"), ("b", "z")), "y"),
             ModuleNode("mod:g", "g", "stdlib.math.negate", (("value", "y"),), "z"))
    with Constellation() as engine:
        for order in (data, data[::-1]):
            spec = DagSpec("loop", (("x", "in:x"),), order, calls, (("o", "y"),))
            with pytest.raises(CompilationError) as info:
                engine.compile(spec)
            assert [e.code for e in info.value.errors] == ["E125"]
        # Out of dependency order but acyclic: planned (Kahn's check, not the order).
        fine = DagSpec("fine", (("x", "in:x"),), data[::-1],
                       (ModuleNode("mod:g", "g", "stdlib.math.negate", (("value", "in:x"),),
                                   "z"),), (("o", "z"),))
        assert engine.run(engine.compile(fine), {"x": 2}).outputs == {"o": -2}
