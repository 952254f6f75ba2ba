"""The fast parser builds exactly lark's tree, positions included, and takes nothing
lark refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constellation.core.errors import CompilationError
from constellation.lang import ast as A
from constellation.lang.descent import NotFast, parse_items_fast
from constellation.lang.parser import _parse_with_lark, parse
from constellation.lang.printer import print_pipeline
from tests.lang.test_printer_properties import pipelines

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "pipelines")
                  .glob("*.cst"))


def positions(tree: Any) -> list[tuple[str, A.Pos | None]]:
    """Every node's type and position, in a fixed order (without recursion)."""
    out: list[tuple[str, A.Pos | None]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(reversed(node))
        elif hasattr(node, "__dataclass_fields__"):
            out.append((type(node).__name__, getattr(node, "pos", None)))
            stack.extend(reversed([getattr(node, f) for f in node.__dataclass_fields__
                                   if f != "pos"]))
    return out


def fast_or_none(source: str) -> A.Pipeline | None:
    from constellation.lang.parser import _assemble

    try:
        items, problems, groups = parse_items_fast(source)
        if problems or groups:
            return None
        return _assemble(items, source, groups=groups)
    except (NotFast, CompilationError):
        return None


def located(source: str, parser: Any) -> list[tuple[str, str, int, int, str]] | None:
    try:
        parser(source)
    except CompilationError as exc:
        return [(d.code, d.message, d.line, d.column, d.snippet) for d in exc.errors]
    return None


def agree(source: str) -> None:
    fast = fast_or_none(source)
    try:
        reference = _parse_with_lark(source)
    except CompilationError:
        assert fast is None, f"the fast parser took what lark refuses: {source!r}"
        # parse() asks lark about the rest from where the fast path gave up: the
        # diagnostics are lark's, for the whole source.
        assert located(source, parse) == located(source, _parse_with_lark)
        return
    if fast is not None:
        assert fast == reference
        assert positions(fast) == positions(reference)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_example_pipelines_parse_the_same_on_both_paths(path: Path) -> None:
    source = path.read_text()
    assert fast_or_none(source) is not None, "the fast path should take every example"
    agree(source)


def test_positions_are_those_of_each_constructs_first_token() -> None:
    source = ("in a: {x: Int}\n  y = (a).x + 2 * (3)\nz = (a.x when true) ?? 1\n"
              "w = not (a.x) < 1 and true\nout y\n")
    agree(source)
    tree = parse(source)
    y = tree.declarations[1]
    assert isinstance(y, A.Assign) and y.value.pos == A.Pos(2, 7)  # noqa: PT018


@pytest.mark.parametrize("source", [
    "in x: Int\ny = if (true) -5 else 3\nout y\n",       # "-5" after ")" is a number
    "in x: Int\ny = x -1\nout y\n",                      # ... and after a name, a minus
    "in x: Int\ny = (x: Int) => x\nout y\n",
    "in x: Int\ny = f(x) with lazy, retry: 1, timeout: 1s, throttle: 5/1min\nout y\n",
    'in x: Int\ny = "a ${f(x)} \\$ \\n b"\nout y\n',
    "in x: Int\ny = match x { {a, b} -> a, is List<Int> -> 1, _ -> 2, }\nout y\n",
    "in x: Int\ny = branch { x -> 1, otherwise -> 2, }\nout y\n",
    "in x: Int\ny = x.a[b, c]{d}.e\nout y\n",
    "@timeout(5s)\n@example({a: [1, 2]})\nin x: {a: List<Int>} + {b: Int} | Int\nout x\n",
    "use stdlib.string as str\nin x: Int\ny = ((g(x) with retry: 1), (x))\nout y\n",
    "in x: Int\ny = stdlib.math.add(x, 1) + a.b.c + s.trim(x) + a . b(x)\nout y\n",
    "in x: Int\ny = a.if(x) + if.a(x) + a.in(x)\nout y\n",
])
def test_tricky_programs_parse_the_same_on_both_paths(source: str) -> None:
    agree(source)


@pytest.mark.parametrize("source", [
    'in x: Int\ny = "a\\q ${} b \\z" + f((x, 1), (2, x))\nout y\n',
    "in x: Int\ny = ((x + 1, y) => \"\\w\") + (a: Int)\nz = ()\nout y\n",
    '@example("\\e")\nin x: Int\ny = "${(a, b)} ${1 +}"\nout y\n',
    "in x: Int\ny = [(x, x)]\n@example(1)\nout y\n",
])
def test_problems_found_after_parsing_are_lark_s_in_lark_s_order(source: str) -> None:
    assert located(source, parse) is not None
    agree(source)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipelines())
def test_generated_programs_parse_the_same_on_both_paths(p: A.Pipeline) -> None:
    source = print_pipeline(p)
    assert fast_or_none(source) is not None
    agree(source)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([p.read_text() for p in EXAMPLES]), st.integers(0, 10_000),
       st.integers(0, 6), st.text(alphabet='abx01 (){}[]<>=+-*/.,:"$#@?\n_|\\', max_size=5))
def test_mutated_programs_parse_the_same_on_both_paths(source: str, at: int, cut: int,
                                                       insert: str) -> None:
    at %= max(len(source), 1)
    agree(source[:at] + insert + source[at + cut:])


def test_a_syntax_error_late_in_a_large_program_is_found_quickly() -> None:
    import time

    from bench.programs import assignments

    source = assignments(300_000) + "y = (1 +\nout y\n"
    started = time.perf_counter()
    found = located(source, parse)
    assert time.perf_counter() - started < 10  # lark alone takes ~10 s per 300 KB here
    assert found is not None
    code, message, line, column, snippet = found[0]
    assert (code, line, column) == ("E101", source.count("\n"), 1)
    assert "unexpected 'out'" in message
    assert snippet == "out y\n^"
