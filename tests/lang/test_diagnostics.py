"""Whatever text comes in, the answer is a pipeline or a located CompilationError."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from constellation.core.errors import CompilationError
from constellation.lang.compiler import compile_source
from constellation.lang.limits import MAX_ERRORS
from constellation.lang.parser import decode_source
from constellation.stdlib import default_modules

MODULES = {m.name: m for m in default_modules()}
EXAMPLES = [p.read_text() for p in sorted(
    (Path(__file__).resolve().parents[2] / "examples" / "pipelines").glob("*.cst"))]


def diagnostics(source: str) -> list[tuple[str, int, int, str]]:
    with pytest.raises(CompilationError) as info:
        compile_source(source, MODULES)
    return [(d.code, d.line, d.column, d.message) for d in info.value.errors]


def test_a_lambda_nested_in_a_lambda_says_so() -> None:
    found = diagnostics("in xs: List<Int>\nin ys: List<Int>\n"
                        "r = filter(xs, (x) => any(ys, (y) => y == x))\nout r\n")
    code, line, column, message = found[0]
    assert (code, line, column) == ("E128", 3, 23)
    assert "any cannot be used inside a lambda" in message
    assert "did you mean" not in message


def test_a_match_in_a_match_case_does_not_talk_about_lambdas() -> None:
    found = diagnostics("type A = {a: Int}\ntype B = {b: Int}\nin s: A | B\n"
                        "x = match s { {a} -> match s { {a} -> a, {b} -> b }, {b} -> b }\n"
                        "out x\n")
    code, line, column, message = found[0]
    assert (code, line, column) == ("E128", 4, 22)
    assert "inside a match case" in message
    assert "lambda" not in message


def test_did_you_mean_never_suggests_the_name_itself() -> None:
    message = diagnostics("use stdlib.math\nin xs: List<Int>\nr = any(xs, (x) => true)\n"
                          "out r\n")[0][3]
    assert "did you mean 'any'" not in message


def test_a_lone_surrogate_is_a_located_e108() -> None:
    found = diagnostics('in x: String\ny = "ab\ud800"\nout y\n')
    assert found[0][:3] == ("E108", 2, 8)
    assert "U+D800" in found[0][3]


@pytest.mark.parametrize("text", ["\x00", "\x07", "\x1b[0m", "\u2028", "\ufeff", "\udfff"])
def test_nul_and_control_characters_are_compilation_errors(text: str) -> None:
    found = diagnostics(f"in x: Int\ny = x {text} 1\nout y\n")
    assert found[0][0] in {"E103", "E108"}
    assert found[0][1] == 2


def test_control_characters_inside_a_string_are_text() -> None:
    compiled = compile_source('in x: Int\ny = "a\x00b\x07"\nout y\n', MODULES)
    assert compiled.spec.outputs


def test_bytes_that_are_not_utf8_give_e109_at_the_first_bad_byte() -> None:
    with pytest.raises(CompilationError) as info:
        decode_source("in x: Int\nout é\xff x\n".encode("latin-1").replace(b"\xe9", "é".encode()))
    d = info.value.errors[0]
    assert (d.code, d.line, d.column) == ("E109", 2, 6)
    assert "0xff" in d.message
    assert decode_source("\ufeffin x: Int\n".encode()) == "in x: Int\n"


def test_the_command_line_reports_a_file_that_is_not_utf8(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from constellation.cli import main

    path = tmp_path / "bad.cst"
    path.write_bytes(b"in x: Int\nout \xff x\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:5: E109" in err


def test_errors_stop_at_the_documented_maximum() -> None:
    source = "in a: Int\n" + "".join(f"v{i} = a + nope{i}\n" for i in range(500)) + "out a\n"
    found = diagnostics(source)
    assert len(found) == MAX_ERRORS + 1
    assert [c for c, *_ in found[:-1]] == ["E130"] * MAX_ERRORS
    assert found[-1][:2] == ("E151", MAX_ERRORS + 2)


# --- 10,000 seeded fuzzed inputs -------------------------------------------------------------

_PIECES = ["in", "out", "x", "y", ":", "Int", "String", "List<Int>", "=", "(", ")", "{",
           "}", "[", "]", ",", "+", "-", "*", "/", "==", "<", "??", "when", "and", "not",
           "if", "else", "branch", "otherwise", "->", "match", "is", "_", "=>", "with",
           "retry", "fallback", "1", "-2", "3.5", '"s"', '"${x}"', "Trim", "add", "filter",
           ".", "@example", "@timeout", "30s", "10/1s", "type", "use", "stdlib.math", "as",
           "\n", " ", "#c\n", "\ud800", "\udfff", "\x00", "\x1f", "\u202e", "é", "\\", "$",
           '"', "\t", "\r"]


def _fuzzed(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:  # an example with a few characters changed
        source = rng.choice(EXAMPLES)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(source) + 1)
            cut = rng.randint(0, 5)
            insert = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 3)))
            source = source[:at] + insert + source[at + cut:]
        return source
    if kind < 0.8:  # token soup
        return " ".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 40)))
    # any code points at all, surrogates included
    return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(0, 30)))


def test_ten_thousand_fuzzed_inputs_compile_or_fail_with_located_errors() -> None:
    rng = random.Random(13)
    seen_surrogates = 0
    codes: set[str] = set()
    for _ in range(10_000):
        source = _fuzzed(rng)
        seen_surrogates += any(0xD800 <= ord(c) <= 0xDFFF for c in source)
        try:
            compile_source(source, MODULES)
        except CompilationError as exc:
            problems = exc.errors
        else:
            continue
        assert problems
        codes |= {d.code for d in problems}
        assert json.dumps([str(d) for d in problems])  # each one printable, located text
    assert seen_surrogates > 500
    assert all(re.fullmatch(r"[EW]\d{3}", c) for c in codes), codes
    assert "E108" in codes


def test_a_large_compile_pauses_the_collector_and_restores_it() -> None:
    import gc

    from bench.programs import assignments
    from constellation.lang.collector import LARGE_SOURCE

    assert gc.isenabled()
    compile_source(assignments(LARGE_SOURCE + 10), MODULES)
    assert gc.isenabled()
    gc.disable()
    try:
        compile_source(assignments(LARGE_SOURCE + 10), MODULES)
        assert not gc.isenabled()  # an embedder's choice is kept
    finally:
        gc.enable()


def test_the_engine_refuses_a_lone_surrogate_with_e108_not_a_unicode_error() -> None:
    from constellation import Constellation

    with Constellation() as engine:
        with pytest.raises(CompilationError) as info:
            engine.compile('in x: String\ny = "\ud800"\nout y\n')
        assert info.value.errors[0].code == "E108"
        result_source = "in x: String\nout x\n"
        assert engine.compile(result_source)  # and the engine carries on


@pytest.mark.parametrize("source", [
    "in a: Int\nx = a + 1\nout x\n",
    'in a: String\nx = a == "b"\nout x\n',
    "in xs: List<Int>\nx = filter(xs, (v) => v > 1)\nout x\n",
])
def test_operators_without_the_standard_library_are_e110_not_a_key_error(
        source: str) -> None:
    with pytest.raises(CompilationError) as info:
        compile_source(source, {})
    assert info.value.errors[0].code == "E110"
    assert "not registered" in info.value.errors[0].message


def test_after_a_large_compile_the_collector_has_no_backlog_and_frozen_objects_stay() -> None:
    import gc

    from bench.programs import assignments
    from constellation.lang.collector import LARGE_SOURCE

    compile_source(assignments(LARGE_SOURCE * 2), MODULES)
    # What the compile allocated was moved to the oldest generation, not left for the
    # first young collection to traverse.
    assert gc.get_count()[0] < 1000
    assert gc.get_freeze_count() == 0
    gc.freeze()  # an application's own frozen objects are left frozen
    try:
        frozen = gc.get_freeze_count()
        compile_source(assignments(LARGE_SOURCE * 2), MODULES)
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
