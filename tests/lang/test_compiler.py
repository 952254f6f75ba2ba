"""constellation-lang compiled and run: the original's example programs, errors, resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from constellation import CompilationError, Constellation, ExecutionStatus
from constellation.lang.compiler import compile_source

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def engine() -> Iterator[Constellation]:
    with Constellation() as e:
        yield e


def run(engine: Constellation, source: str, **inputs: object) -> dict[str, object]:
    result = engine.run(source, inputs)
    assert result.status is ExecutionStatus.COMPLETED, result.errors
    return dict(result.outputs)


def codes(engine: Constellation, source: str) -> list[tuple[str, int, int, str]]:
    with pytest.raises(CompilationError) as info:
        engine.compile(source)
    return [(d.code, d.line, d.column, d.message) for d in info.value.errors]


def test_text_analysis(engine: Constellation) -> None:
    source = ("in document: String\ncleaned = Trim(document)\nnormalized = Lowercase(cleaned)\n"
              "words = WordCount(normalized)\nout cleaned\nout normalized\nout words\n")
    assert run(engine, source, document="  Hello World\nLine 2  ") == {
        "cleaned": "Hello World\nLine 2", "normalized": "hello world\nline 2", "words": 4}


@pytest.mark.parametrize(("flag", "expected"), [(True, 42), (False, 0)])
def test_guard_and_coalesce(engine: Constellation, flag: bool, expected: int) -> None:
    source = ("in flag: Boolean\nin value: Int\nin fallback: Int\nguarded = value when flag\n"
              "result = guarded ?? fallback\nout result\n")
    assert run(engine, source, flag=flag, value=42, fallback=0) == {"result": expected}


def test_filter_then_map_with_lambdas(engine: Constellation) -> None:
    source = ("use stdlib.collection\nuse stdlib.compare\nuse stdlib.math\n"
              "in numbers: List<Int>\npositives = filter(numbers, (x) => gt(x, 0))\n"
              "result = map(positives, (x) => multiply(x, 2))\nout result\n")
    assert run(engine, source, numbers=[1, -2, 3, -4, 5]) == {"result": [2, 6, 10]}


def test_lambdas_capture_outer_names(engine: Constellation) -> None:
    source = ("use stdlib.collection\nuse stdlib.compare\nin numbers: Seq<Int>\n"
              "in threshold: Int\nabove = filter(numbers, (x) => gt(x, threshold))\nout above\n")
    assert run(engine, source, numbers=[1, 5, 10, 15, 20], threshold=8) == {
        "above": [10, 15, 20]}


def test_branch_and_if(engine: Constellation) -> None:
    source = ('use stdlib.compare\nuse stdlib.bool\nin score: Int\nin isUrgent: Boolean\n'
              'grade = branch {\n  gte(score, 90) -> "A",\n  gte(score, 80) -> "B",\n'
              '  gte(score, 70) -> "C",\n  otherwise -> "F"\n}\n'
              'plan = branch {\n  isUrgent and gte(score, 80) -> "immediate-review",\n'
              '  isUrgent and not gte(score, 80) -> "escalate",\n'
              '  otherwise -> "standard-process"\n}\n'
              'passStatus = if (gte(score, 60)) "PASS" else "FAIL"\n'
              'out grade\nout plan\nout passStatus\n')
    assert run(engine, source, score=85, isUrgent=True) == {
        "grade": "B", "plan": "immediate-review", "passStatus": "PASS"}


def test_operators_records_and_interpolation(engine: Constellation) -> None:
    source = ('in a: Int\nin b: Int\nin p: {name: String, age: Int}\n'
              'sum = a + b * 2\ndiff = a - b\nbig = a > b and not (a == b)\n'
              'extra = p + {city: "Oslo"}\nname = p.name\nshort = extra[name, city]\n'
              'msg = "${name} is ${p.age}: ${big}"\n'
              'out sum\nout diff\nout big\nout short\nout msg\n')
    assert run(engine, source, a=7, b=3, p={"name": "Ada", "age": 36}) == {
        "sum": 13, "diff": 4, "big": True, "short": {"name": "Ada", "city": "Oslo"},
        "msg": "Ada is 36: true"}


def test_field_access_is_element_wise_on_lists(engine: Constellation) -> None:
    source = "in orders: List<{id: String, qty: Int}>\nids = orders.id\nout ids\n"
    assert run(engine, source, orders=[{"id": "a", "qty": 1}, {"id": "b", "qty": 2}]) == {
        "ids": ["a", "b"]}


def test_division_by_zero_is_a_module_failure(engine: Constellation) -> None:
    result = engine.run("in a: Int\nin b: Int\nq = a / b\nout q\n", {"a": 1, "b": 0})
    assert result.status is ExecutionStatus.FAILED
    assert "division by zero" in result.errors[0].message


def test_name_resolution_follows_use_declarations(engine: Constellation) -> None:
    assert run(engine, "in a: Int\ns = add(a, 1)\nout s\n", a=1) == {"s": 2}
    assert run(engine, "in a: Int\ns = stdlib.math.add(a, 1)\nout s\n", a=1) == {"s": 2}
    assert run(engine, 'use stdlib.string as str\nin t: String\nu = str.trim(t)\nout u\n',
               t=" x ") == {"u": "x"}
    found = codes(engine, "use stdlib.string\nin a: Int\ns = add(a, 1)\nout s\n")
    assert found[0][0] == "E110"
    assert "use stdlib.math" in found[0][3]
    assert codes(engine, "use stdlib.nope\nin a: Int\nout a\n")[0][0] == "E111"


def test_errors_are_located_and_reported_together(engine: Constellation) -> None:
    # (`x = 1` would rebind the input x, which is allowed; `y` is assigned twice.)
    found = codes(engine, "in x: Int\ny = Uppercse(x)\nz = Trim(x)\nw = q\ny = 1\n"
                          "v = Trim(\"a\") with retry: -1\nout y\nout nope\n")
    assert [c for c, *_ in found] == ["E110", "E122", "E130", "E131", "E141", "E130"]
    assert "did you mean 'Uppercase'" in found[0][3]
    assert found[0][1:3] == (2, 5)


def test_missing_output_is_an_error(engine: Constellation) -> None:
    assert codes(engine, "in x: Int\n")[0][0] == "E107"


@pytest.mark.parametrize(("options", "code"), [
    ("retry: -1", "E141"), ("concurrency: 0", "E141"), ("timeout: 0s", "E141"),
    ("throttle: 0/1s", "E141"), ("retry: 1s", "E142"), ("backoff: sideways", "E142"),
    ("fallback: 3", "E144"), ("colour: red", "E140"), ("retry: 1, retry: 2", "E140"),
])
def test_bad_options(engine: Constellation, options: str, code: str) -> None:
    source = f"in t: String\nu = Trim(t) with {options}\nout u\n"
    assert codes(engine, source)[0][0] == code


def test_options_and_warnings_are_carried(engine: Constellation) -> None:
    compiled = compile_source(
        'in t: String\nu = Trim(t) with retry: 12, delay: 100ms, backoff: linear, '
        'timeout: 2s, cache: 5min, throttle: 10/1s, priority: high, fallback: "?"\n'
        'v = Trim(t) with delay: 1s, cache_backend: "redis"\nout u\nout v\n',
        engine.modules)
    opts = {m.name: m.options for m in compiled.spec.modules}
    assert opts["Trim"].retry == 12 and opts["Trim"].timeout == 2.0  # noqa: PT018
    assert opts["Trim"].throttle == (10, 1.0) and opts["Trim"].priority == 80  # noqa: PT018
    assert opts["Trim"].fallback == "?" and opts["Trim"].cache == 300.0  # noqa: PT018
    assert sorted(w.code for w in compiled.warnings) == ["W201", "W203", "W204"]


def test_timeout_annotation_sets_the_pipeline_timeout(engine: Constellation) -> None:
    p = engine.compile("@timeout(2s)\nin x: Int\nout x\n")
    assert p.spec.timeout == 2.0


def test_optimizer_folds_constants_shares_subexpressions_and_drops_dead_code(
        engine: Constellation) -> None:
    p = engine.compile("in a: Int\nk = 2 * 3 + 1\nx = add(a, k)\ny = add(a, k)\n"
                       "unused = Uppercase(\"never\")\nout x\nout y\n")
    assert [m.module for m in p.spec.modules] == ["stdlib.math.add"]
    assert run(engine, "in a: Int\nk = 2 * 3 + 1\nx = add(a, k)\nout x\n", a=1) == {"x": 8}


def test_same_source_same_hash_and_the_cache_hits(engine: Constellation) -> None:
    source = "in t: String\nu = Uppercase(t)\nout u\n"
    before = engine.compile_cache_info()
    first = engine.compile(source)
    second = engine.compile(source)
    assert first.structural_hash == second.structural_hash
    after = engine.compile_cache_info()
    assert after["hits"] >= before["hits"] + 1


def test_deep_nesting_compiles(engine: Constellation) -> None:
    deep = "in a: Int\nx = " + "(" * 1000 + "a" + ")" * 1000 + "\nout x\n"
    assert run(engine, deep, a=5) == {"x": 5}
    chain = "in a: Int\nx = " + " + ".join(["a"] * 5000) + "\nout x\n"
    assert run(engine, chain, a=1) == {"x": 5000}


MATCH = ("type Circle = {radius: Int}\ntype Rect = {width: Int, height: Int}\n"
         "in shape: Circle | Rect\n"
         "area = match shape {\n  {radius} -> radius * radius * 3,\n"
         "  {width, height} -> width * height\n}\n"
         'kind = match shape { is Circle -> "round", _ -> "angular" }\nout area\nout kind\n')


@pytest.mark.parametrize(("shape", "expected"), [
    ({"radius": 2}, {"area": 12, "kind": "round"}),
    ({"width": 3, "height": 4}, {"area": 12, "kind": "angular"}),
    ({"tag": "{height: Int, width: Int}", "value": {"width": 1, "height": 5}},
     {"area": 5, "kind": "angular"}),
])
def test_union_types_and_match(engine: Constellation, shape: dict[str, object],
                               expected: dict[str, object]) -> None:
    from constellation.core.types import CUnion, from_json

    pipeline = engine.compile(MATCH)
    union = pipeline.inputs["shape"]
    assert isinstance(union, CUnion)
    result = engine.run(pipeline, {"shape": from_json(union, shape)})
    assert result.ok, result.errors
    assert dict(result.outputs) == expected


@pytest.mark.parametrize(("body", "code"), [
    ("{a} -> a", "E137"),                      # does not cover {b: Int}
    ("{c} -> 1, _ -> 2", "E136"),              # a pattern that never matches
    ("is Float -> 1, _ -> 2", "E136"),
    ('is A -> 1, is B -> "x"', "E122"),        # cases of different types
])
def test_match_errors(engine: Constellation, body: str, code: str) -> None:
    source = ("type A = {a: Int}\ntype B = {b: Int}\nin s: A | B\n"
              f"x = match s {{ {body} }}\nout x\n")
    assert codes(engine, source)[0][0] == code
