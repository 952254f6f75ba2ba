"""Behaviours where the original engine's language is the reference (docs/language.md).

Written from the language reference: Range includes its end; branches of different
types make a union; a fallback is any expression of the call's type; an assignment may
rebind an input; a standalone lambda with typed parameters type-checks; ``??`` needs an
Optional; ``@example`` needs the input's exact type; ``==`` on different types is a type
mismatch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from constellation import CompilationError, Constellation, ExecutionStatus, module
from constellation.core.types import INT, STRING, CUnion, Tagged, to_json

if TYPE_CHECKING:
    from collections.abc import Iterator

CALLS: list[str] = []


@module("Unreliable")
def unreliable(text: str) -> str:
    CALLS.append(f"Unreliable({text})")
    raise RuntimeError("unreliable failed")


@module("Reliable")
def reliable(text: str) -> str:
    CALLS.append(f"Reliable({text})")
    return text.upper()


@module("Backup")
def backup(text: str) -> str:
    CALLS.append(f"Backup({text})")
    return f"backup of {text}"


@pytest.fixture(scope="module")
def engine() -> Iterator[Constellation]:
    with Constellation(modules=[unreliable, reliable, backup]) as e:
        yield e


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def outputs(engine: Constellation, source: str, **inputs: object) -> dict[str, object]:
    result = engine.run(source, inputs, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED, result.errors
    return dict(result.outputs)


def error_codes(engine: Constellation, source: str) -> list[str]:
    with pytest.raises(CompilationError) as info:
        engine.compile(source)
    return [d.code for d in info.value.errors]


# --- Range ----------------------------------------------------------------------------

@pytest.mark.parametrize(("start", "end", "expected"), [
    (1, 5, [1, 2, 3, 4, 5]), (5, 5, [5]), (-1, 1, [-1, 0, 1]), (3, 1, [])])
def test_range_includes_its_end(engine: Constellation, start: int, end: int,
                                expected: list[int]) -> None:
    source = "in a: Int\nin b: Int\nr = Range(a, b)\nout r\n"
    assert outputs(engine, source, a=start, b=end) == {"r": expected}


# --- branches of different types --------------------------------------------------------

def test_a_branch_whose_cases_differ_in_type_is_a_union(engine: Constellation) -> None:
    source = 'in flag: Boolean\nx = branch { flag -> 42, otherwise -> "hello" }\nout x\n'
    pipeline = engine.compile(source)
    assert pipeline.outputs["x"] == CUnion.of(INT, STRING)
    assert outputs(engine, source, flag=True) == {"x": Tagged("Int", 42)}
    assert outputs(engine, source, flag=False) == {"x": Tagged("String", "hello")}
    result = engine.run(pipeline, {"flag": False})
    assert to_json(pipeline.outputs["x"], result.outputs["x"]) == {"tag": "String",
                                                                   "value": "hello"}


def test_an_if_of_two_types_gives_a_union_that_match_can_take_apart(
        engine: Constellation) -> None:
    source = ("in flag: Boolean\nin n: Int\nin s: String\nv = if (flag) n else s\n"
              'kind = match v { is Int -> "number", is String -> "text" }\nout kind\n')
    assert outputs(engine, source, flag=True, n=1, s="a") == {"kind": "number"}
    assert outputs(engine, source, flag=False, n=1, s="a") == {"kind": "text"}


def test_an_if_of_two_types_inside_a_lambda_is_a_union_too(engine: Constellation) -> None:
    source = ('in xs: List<Int>\nys = map(xs, (x) => if (x > 1) x else "small")\nout ys\n')
    assert outputs(engine, source, xs=[1, 2]) == {
        "ys": [Tagged("String", "small"), Tagged("Int", 2)]}


def test_branches_of_one_type_are_not_a_union(engine: Constellation) -> None:
    pipeline = engine.compile('in f: Boolean\nx = if (f) "a" else "b"\nout x\n')
    assert pipeline.outputs["x"] == STRING


# --- fallback expressions ------------------------------------------------------------------

def test_a_fallback_may_be_an_input(engine: Constellation) -> None:
    source = ("in t: String\nin defaultValue: String\n"
              "x = Unreliable(t) with fallback: defaultValue\nout x\n")
    assert outputs(engine, source, t="a", defaultValue="dflt") == {"x": "dflt"}


def test_every_retry_happens_before_the_fallback_is_taken(engine: Constellation) -> None:
    source = ("in t: String\nin d: String\n"
              "x = Unreliable(t) with retry: 2, fallback: d\nout x\n")
    assert outputs(engine, source, t="a", d="dflt") == {"x": "dflt"}
    assert CALLS == ["Unreliable(a)"] * 3


def test_a_fallback_calls_its_modules_only_when_it_is_taken(engine: Constellation) -> None:
    source = "in t: String\nx = Reliable(t) with fallback: Backup(Backup(t))\nout x\n"
    assert outputs(engine, source, t="a") == {"x": "A"}
    assert CALLS == ["Reliable(a)"]
    CALLS.clear()
    source = "in t: String\nx = Unreliable(t) with fallback: \"${Backup(t)}!\"\nout x\n"
    assert outputs(engine, source, t="a") == {"x": "backup of a!"}
    assert CALLS == ["Unreliable(a)", "Backup(a)"]


def test_a_constant_fallback_stays_a_call_option(engine: Constellation) -> None:
    pipeline = engine.compile('in t: String\nx = Unreliable(t) with fallback: "?"\nout x\n')
    (call,) = pipeline.spec.modules
    assert call.options.fallback == "?"
    assert call.options.on_error is None


@pytest.mark.parametrize(("options", "code"), [
    ("fallback: n", "E144"),                       # an Int for a String call
    ("fallback: t, on_error: wrap", "E145"),       # wrap and a computed fallback
    ("fallback: nope", "E130"),
])
def test_bad_fallback_expressions_are_errors(engine: Constellation, options: str,
                                             code: str) -> None:
    source = f"in t: String\nin n: Int\nx = Reliable(t) with {options}\nout x\n"
    assert error_codes(engine, source)[0] == code


# --- rebinding an input -------------------------------------------------------------------

def test_an_assignment_may_rebind_an_inputs_name(engine: Constellation) -> None:
    source = "in job: String\njob = Reliable(job) with retry: 1\nout job\n"
    assert outputs(engine, source, job="j") == {"job": "J"}


@pytest.mark.parametrize("source", [
    "in x: Int\nx = 1\nx = 2\nout x\n",        # an input rebound twice
    "in x: Int\nin x: Int\nout x\n",           # an input declared twice
    "in a: Int\nx = 1\nx = 2\nout x\n",        # an assignment repeated
])
def test_names_declared_twice_otherwise_are_still_errors(engine: Constellation,
                                                         source: str) -> None:
    assert error_codes(engine, source) == ["E131"]


# --- standalone lambdas ------------------------------------------------------------------

def test_a_standalone_lambda_with_typed_parameters_type_checks(engine: Constellation) -> None:
    source = ("in xs: List<Int>\nin limit: Int\nt = ((x: Int) => x > limit)\n"
              "big = filter(xs, t)\nout big\n")
    assert outputs(engine, source, xs=[1, 5, 9], limit=4) == {"big": [5, 9]}
    assert outputs(engine, "in a: Int\nt = ((x: Int) => x)\nout a\n", a=1) == {"a": 1}


@pytest.mark.parametrize(("source", "code"), [
    ("in a: Int\nt = ((x) => x)\nout a\n", "E128"),                 # untyped parameter
    ('in a: Int\nt = ((x: Int) => x + "s")\nout a\n', "E126"),      # its body is checked
    ("in a: Int\nt = ((x: Int) => x)\nu = t\nout u\n", "E128"),     # not a value
    ("in a: Int\nt = ((x: Int) => x)\nout t\n", "E128"),            # not an output
])
def test_misused_standalone_lambdas_are_errors(engine: Constellation, source: str,
                                               code: str) -> None:
    assert error_codes(engine, source)[0] == code


# --- ?? needs an Optional -----------------------------------------------------------------

def test_coalescing_a_value_that_is_never_missing_is_a_type_error(
        engine: Constellation) -> None:
    assert error_codes(engine, "in a: Int\nx = a ?? 1\nout x\n") == ["E122"]
    assert error_codes(engine, "in xs: List<Int>\ny = map(xs, (x) => x ?? 1)\nout y\n") == [
        "E122"]
    assert outputs(engine, "in a: Int\nin c: Boolean\nx = (a when c) ?? 0\nout x\n",
                   a=3, c=False) == {"x": 0}


# --- @example needs the exact type --------------------------------------------------------

@pytest.mark.parametrize(("example", "declared"), [
    ("{a: 1, b: 2}", "{a: Int}"),      # a subtype is not enough
    ("1", "Float"),
    ('"x"', "Int"),
    ("[1]", "List<String>"),
])
def test_an_example_of_another_type_is_an_error(engine: Constellation, example: str,
                                                declared: str) -> None:
    source = f"@example({example})\nin v: {declared}\nout v\n"
    assert error_codes(engine, source) == ["E132"]


@pytest.mark.parametrize(("example", "declared"), [
    ("{a: 1}", "{a: Int}"), ("1.5", "Float"), ("[]", "List<Int>"), ("3", "Optional<Int>"),
    ("[1, 2]", "Seq<Int>"),
])
def test_an_example_of_the_inputs_type_is_accepted(engine: Constellation, example: str,
                                                   declared: str) -> None:
    assert engine.compile(f"@example({example})\nin v: {declared}\nout v\n")


# --- == on different types ------------------------------------------------------------------

def test_comparing_an_int_with_a_string_is_a_type_mismatch(engine: Constellation) -> None:
    assert error_codes(engine, 'in a: Int\nx = a == "1"\nout x\n') == ["E122"]
    assert error_codes(engine, 'in a: Int\nx = a != "1"\nout x\n') == ["E122"]
    # Same types that == does not compare stay E127.
    assert error_codes(engine, "in a: Float\nx = a == 1.5\nout x\n") == ["E127"]


def test_a_cached_call_with_a_computed_fallback_caches_only_real_results(
        engine: Constellation) -> None:
    source = ("in t: String\nin d: String\n"
              "x = Reliable(t) with cache: 1min, fallback: d\nout x\n")
    assert outputs(engine, source, t="c", d="D") == {"x": "C"}
    assert outputs(engine, source, t="c", d="D") == {"x": "C"}
    assert CALLS == ["Reliable(c)"]  # the second run was a cache hit
    failing = ("in t: String\nin d: String\n"
               "x = Unreliable(t) with cache: 1min, fallback: d\nout x\n")
    assert outputs(engine, failing, t="c", d="D") == {"x": "D"}
    assert outputs(engine, failing, t="c", d="E") == {"x": "E"}  # no fallback was stored
