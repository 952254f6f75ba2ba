"""Compile time against source size (tox -e bench): the parser and the checker apart.

Shapes (bench/programs.py): plain assignments, one match over thousands of union
variants, thousands of unknown names (errors, capped at MAX_ERRORS), one expression
nested in parentheses, one long ``+`` chain; each at 100 KB and 1 MB. Target: every
1 MB program parsed and checked in under 5 s in all (see docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.programs import SCALING_SHAPES
from constellation.core.errors import CompilationError
from constellation.lang.compiler import compile_tree
from constellation.lang.parser import parse
from constellation.stdlib import default_modules

MODULES = {m.name: m for m in default_modules()}
SIZES = {"100KB": 100_000, "1MB": 1_000_000}


def check(tree: Any, source: str) -> int:
    try:
        return len(compile_tree(tree, source, MODULES).spec.data)
    except CompilationError as exc:
        return len(exc.errors)


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("shape", sorted(SCALING_SHAPES))
def test_parsing_each_shape_at_each_size(benchmark: Any, shape: str, size: str) -> None:
    source = SCALING_SHAPES[shape](SIZES[size])
    benchmark.extra_info["bytes"] = len(source)
    tree = benchmark.pedantic(parse, (source,), rounds=3 if size == "100KB" else 1,
                              iterations=1)
    assert tree.declarations


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("shape", sorted(SCALING_SHAPES))
def test_checking_each_shape_at_each_size(benchmark: Any, shape: str, size: str) -> None:
    source = SCALING_SHAPES[shape](SIZES[size])
    benchmark.extra_info["bytes"] = len(source)
    tree = parse(source)
    result = benchmark.pedantic(check, (tree, source), rounds=3 if size == "100KB" else 1,
                                iterations=1)
    assert result > 0
