"""`with lazy`: a lazy call that only a selective operation (if, ??, when, branch) reads
runs only when that operation picks it."""

from __future__ import annotations

from typing import Any

import pytest

from constellation import ExecutionStatus, NodeStatus, module


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def engine(engine_factory: Any, calls: list[str]) -> Any:
    @module
    def Expensive(x: int) -> int:
        calls.append(f"expensive {x}")
        return x * 100

    @module
    def Cheap(x: int) -> int:
        calls.append(f"cheap {x}")
        return x + 1

    @module
    def MaybeFind(x: int) -> int | None:
        calls.append(f"find {x}")
        return x if x > 0 else None

    return engine_factory([Expensive, Cheap, MaybeFind])


IF_SRC = """
in flag: Boolean
in x: Int
slow = Expensive(x) with lazy
fast = Cheap(x)
r = if (flag) slow else fast
out r
"""


def test_if_runs_the_lazy_call_only_when_it_picks_it(engine: Any, calls: list[str]) -> None:
    skipped = engine.run(IF_SRC, {"flag": False, "x": 2})
    assert skipped.outputs == {"r": 3}
    assert calls == ["cheap 2"]
    assert skipped.modules["Expensive"].status is NodeStatus.SKIPPED
    calls.clear()
    picked = engine.run(IF_SRC, {"flag": True, "x": 2})
    assert picked.outputs == {"r": 200}
    assert sorted(calls) == ["cheap 2", "expensive 2"]
    assert picked.modules["Expensive"].status is NodeStatus.COMPLETED


def test_without_lazy_both_branches_run(engine: Any, calls: list[str]) -> None:
    result = engine.run(IF_SRC.replace(" with lazy", ""), {"flag": False, "x": 2})
    assert result.outputs == {"r": 3}
    assert sorted(calls) == ["cheap 2", "expensive 2"]


def test_coalesce_computes_the_lazy_default_only_when_needed(engine: Any,
                                                             calls: list[str]) -> None:
    src = "in x: Int\nfound = MaybeFind(x)\nslow = Expensive(x) with lazy\n" \
          "r = found ?? slow\nout r"
    assert engine.run(src, {"x": 5}).outputs == {"r": 5}
    assert calls == ["find 5"]
    calls.clear()
    assert engine.run(src, {"x": -1}).outputs == {"r": -100}
    assert calls == ["find -1", "expensive -1"]


def test_branch_and_a_lazy_call_feeding_another_call(engine: Any, calls: list[str]) -> None:
    src = """
in x: Int
a = Expensive(x) with lazy
b = Cheap(a) with lazy
r = branch { x > 10 -> b, x > 5 -> a, otherwise -> 0 }
out r
"""
    assert engine.run(src, {"x": 1}).outputs == {"r": 0}
    assert calls == []
    assert engine.run(src, {"x": 7}).outputs == {"r": 700}
    assert calls == ["expensive 7"]
    calls.clear()
    result = engine.run(src, {"x": 11})
    assert result.outputs == {"r": 1101}
    assert calls == ["expensive 11", "cheap 1100"]
    assert result.status is ExecutionStatus.COMPLETED


def test_a_lazy_call_read_by_an_output_or_an_eager_call_runs(engine: Any,
                                                              calls: list[str]) -> None:
    src = "in x: Int\na = Expensive(x) with lazy\nb = Cheap(a)\nout b"
    assert engine.run(src, {"x": 1}).outputs == {"b": 101}
    assert calls == ["expensive 1", "cheap 100"]
