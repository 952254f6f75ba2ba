"""Every construct nested 10,000 levels deep compiles, or fails with a located E150;
never a RecursionError (the compiler's walks run on a trampoline)."""

from __future__ import annotations

import pytest

from constellation.core.errors import CompilationError
from constellation.core.types import INT, CList, CRecord, render
from constellation.lang.compiler import compile_source
from constellation.lang.limits import MAX_NESTING
from constellation.lang.parser import parse
from constellation.lang.printer import print_pipeline
from constellation.stdlib import default_modules

MODULES = {m.name: m for m in default_modules()}
N = 10_000


def nest(before: str, leaf: str, after: str, n: int = N) -> str:
    return before * n + leaf + after * n


# Constructs whose values stay shallow: they compile at any depth.
COMPILES = {
    "parentheses": "in a: Int\nx = " + nest("(", "a", ")") + "\nout x\n",
    "if/else": "in a: Int\nin c: Boolean\nx = " + nest("if (c) ", "a", " else 0")
               + "\nout x\n",
    "branch": "in a: Int\nin c: Boolean\nx = " + nest("branch { c -> ", "a",
                                                     ", otherwise -> 0 }") + "\nout x\n",
    "nested calls": "in a: String\nx = " + nest("Trim(", "a", ")") + "\nout x\n",
    "when": "in a: Int\nin c: Boolean\nx = " + nest("(", "a", " when c)") + "\nout x\n",
    "?? chain": "in a: Optional<Int>\nx = " + " ?? ".join(["a"] * N) + " ?? 1\nout x\n",
    "not chain": "in c: Boolean\nx = " + "not " * N + "c\nout x\n",
    "+ chain": "in a: Int\nx = " + " + ".join(["a"] * N) + "\nout x\n",
    "and chain": "in c: Boolean\nx = " + " and ".join(["c"] * N) + "\nout x\n",
    "interpolation": 'in a: Int\nx = "' + "${a}" * N + '"\nout x\n',
    "comparisons": "in a: Int\nx = " + nest("(if (", "a", " < 1) 1 else 0)") + "\nout x\n",
    "fallbacks": "in a: String\nx = " + nest("(Trim(a) with fallback: ", "a", ")")
                 + "\nout x\n",
    "record merges": "in r: {a: Int}\nx = " + nest("(", "r", " + {b: 1})") + "\nout x\n",
    "projections": "in r: {a: Int, b: Int}\nx = " + nest("(", "r", ")[a, b]") + "\nout x\n",
}

# Constructs whose value's type nests as deep as the expression, or lambda bodies: past
# MAX_NESTING levels they are refused with E150 (their values and closures are walked
# recursively at run time), at the line and column where the limit is passed.
LIMITED = {
    "record literals": ("in a: Int\nx = " + nest("{f: ", "a", "}") + "\nout x\n", 2),
    "list literals": ("in a: Int\nx = " + nest("[", "a", "]") + "\nout x\n", 2),
    "record types": ("in a: " + nest("{f: ", "Int", "}") + "\nout a\n", 1),
    "List<> types": ("in a: " + nest("List<", "Int", ">") + "\nout a\n", 1),
    "Optional<> types": ("in a: " + nest("Optional<", "Int", ">") + "\nout a\n", 1),
    "lambda bodies": ("in xs: List<Int>\nx = map(xs, (x) => " + nest("(", "x", " + 1)")
                      + ")\nout x\n", 2),
    "not in a lambda": ("in xs: List<Boolean>\nx = filter(xs, (x) => " + "not " * N
                        + "x)\nout x\n", 2),
    "if in a lambda": ("in xs: List<Int>\nx = map(xs, (x) => " + nest("if (true) ", "x",
                                                                      " else 0")
                       + ")\nout x\n", 2),
    "match cases": ("type A = {a: Int}\nin s: A | {b: Int}\nx = match s { {a} -> "
                    + nest("(", "a", " + 1)") + ", {b} -> b }\nout x\n", 3),
}


@pytest.mark.parametrize("name", sorted(COMPILES))
def test_constructs_nested_ten_thousand_deep_compile(name: str) -> None:
    compiled = compile_source(COMPILES[name], MODULES)
    assert compiled.spec.outputs


@pytest.mark.parametrize("name", sorted(LIMITED))
def test_constructs_whose_types_nest_that_deep_fail_with_a_located_e150(name: str) -> None:
    source, line = LIMITED[name]
    with pytest.raises(CompilationError) as info:
        compile_source(source, MODULES)
    first = info.value.errors[0]
    assert first.code == "E150", info.value.errors
    assert first.line == line
    assert first.column > MAX_NESTING  # where the limit is passed, not the start
    assert str(MAX_NESTING) in first.message


def test_nesting_up_to_the_limit_compiles() -> None:
    depth = MAX_NESTING - 1
    for source in (
        "in a: Int\nx = " + nest("{f: ", "a", "}", depth) + "\nout x\n",
        "in a: " + nest("List<", "Int", ">", depth) + "\nout a\n",
        "in xs: List<Int>\nx = map(xs, (x) => " + nest("(", "x", " + 1)", depth) + ")\nout x\n",
    ):
        assert compile_source(source, MODULES).spec.outputs


@pytest.mark.parametrize("name", sorted(COMPILES))
def test_deeply_nested_programs_print_back_to_the_same_program(name: str) -> None:
    text = print_pipeline(parse(COMPILES[name]))
    assert print_pipeline(parse(text)) == text


def test_a_deeply_nested_type_prints_and_renders() -> None:
    tree = parse(LIMITED["List<> types"][0])
    assert print_pipeline(tree).startswith("in a: List<List<")
    t = INT
    for _ in range(N):
        t = CRecord.of(f=CList(t))
    assert render(t).count("{f: List<") == N


def test_a_deeply_nested_pipeline_also_runs() -> None:
    from constellation import Constellation

    with Constellation() as engine:
        result = engine.run(COMPILES["if/else"], {"a": 7, "c": True}, timeout=60)
        assert result.ok, result.errors
        assert result.outputs["x"] == 7
        result = engine.run(COMPILES["nested calls"], {"a": " t "}, timeout=60)
        assert result.outputs["x"] == "t"
