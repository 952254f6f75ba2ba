"""Whatever the source, the compiler answers with a pipeline or a CompilationError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constellation.core.errors import CompilationError
from constellation.lang.compiler import compile_source
from constellation.stdlib import default_modules

MODULES = {m.name: m for m in default_modules()}
EXAMPLES = [p.read_text() for p in sorted(
    (Path(__file__).resolve().parents[2] / "examples" / "pipelines").glob("*.cst"))]
TOKENS = ["in", "out", "x", "y", ":", "Int", "String", "List<Int>", "=", "(", ")", "{", "}",
          "[", "]", ",", "+", "-", "*", "/", "==", "<", "??", "when", "and", "not", "if",
          "else", "branch", "otherwise", "->", "match", "is", "_", "=>", "with", "retry",
          "1", "-2", "3.5", '"s"', '"${x}"', "Trim", "add", "filter", ".", "@example",
          "@timeout", "30s", "10/1s", "type", "use", "stdlib.math", "as", "\n", " ", "#c\n"]


def compiles_or_reports(source: str) -> None:
    try:
        compile_source(source, MODULES)
    except CompilationError as exc:
        errors = exc.errors
    else:
        return
    assert errors
    assert all(d.code.startswith(("E", "W")) for d in errors)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(EXAMPLES), st.integers(0, 10_000), st.integers(1, 8),
       st.text(alphabet='abxyz01 (){}[]<>=+-*/.,:"$#@?\n_|', max_size=6))
def test_mutated_examples(source: str, at: int, cut: int, insert: str) -> None:
    at %= max(len(source), 1)
    compiles_or_reports(source[:at] + insert + source[at + cut:])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup(tokens: list[str]) -> None:
    compiles_or_reports(" ".join(tokens))
