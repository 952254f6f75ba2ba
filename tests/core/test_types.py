"""CType: mapping from Python hints, subtyping, checking values, JSON, type strings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, Optional, TypedDict

import pytest

from constellation.core.errors import InputTypeError
from constellation.core.hints import from_annotation
from constellation.core.type_syntax import TypeSyntaxError, parse_type
from constellation.core.types import (
    BOOLEAN,
    FLOAT,
    INT,
    NOTHING,
    STRING,
    CList,
    CMap,
    COptional,
    CRecord,
    CSeq,
    CUnion,
    Tagged,
    coerce,
    from_json,
    is_subtype,
    render,
    to_json,
    zero_value,
)


class Person(TypedDict):
    name: str
    age: int
    nickname: NotRequired[str]


@dataclass
class Point:
    x: float
    y: float


@pytest.mark.parametrize(("hint", "expected"), [
    (str, "String"), (int, "Int"), (float, "Float"), (bool, "Boolean"),
    (list[int], "List<Int>"), (dict[str, float], "Map<String, Float>"),
    (int | None, "Optional<Int>"), (Optional[str], "Optional<String>"),  # noqa: UP045
    (list[dict[str, list[bool]]], "List<Map<String, List<Boolean>>>"),
    (int | str, "Int | String"),
    (Person, "{age: Int, name: String, nickname: Optional<String>}"),
    (Point, "{x: Float, y: Float}"),
])
def test_python_hints_map_to_ctypes(hint: object, expected: str) -> None:
    assert render(from_annotation(hint)) == expected


@pytest.mark.parametrize("hint", [complex, set[int], object, list, tuple[int, int]])
def test_unsupported_hints_raise_a_clear_type_error(hint: object) -> None:
    with pytest.raises(TypeError, match="has no Constellation type"):
        from_annotation(hint)


def test_record_width_and_depth_subtyping() -> None:
    wide = CRecord.of(a=INT, b=STRING, c=CRecord.of(x=INT, y=INT))
    narrow = CRecord.of(a=INT, c=CRecord.of(x=INT))
    assert is_subtype(wide, narrow)
    assert not is_subtype(narrow, wide)


def test_collections_are_covariant_and_list_is_a_seq() -> None:
    rec_ab = CRecord.of(a=INT, b=INT)
    rec_a = CRecord.of(a=INT)
    assert is_subtype(CList(rec_ab), CList(rec_a))
    assert is_subtype(CList(INT), CSeq(INT))
    assert not is_subtype(CSeq(INT), CList(INT))
    assert is_subtype(COptional(rec_ab), COptional(rec_a))
    assert is_subtype(INT, COptional(INT))
    assert is_subtype(NOTHING, STRING)
    assert is_subtype(CList(NOTHING), CList(INT))


def test_map_keys_are_invariant_values_covariant() -> None:
    assert is_subtype(CMap(STRING, CRecord.of(a=INT, b=INT)), CMap(STRING, CRecord.of(a=INT)))
    assert not is_subtype(CMap(INT, INT), CMap(STRING, INT))


def test_union_subtyping() -> None:
    u = CUnion.of(INT, STRING)
    assert is_subtype(INT, u)
    assert is_subtype(CUnion.of(INT, STRING), CUnion.of(STRING, INT, BOOLEAN))
    assert not is_subtype(u, INT)


def test_coerce_accepts_and_normalizes() -> None:
    assert coerce(FLOAT, 3) == 3.0
    assert type(coerce(FLOAT, 3)) is float
    assert coerce(CList(INT), (1, 2)) == [1, 2]
    assert coerce(CRecord.of(x=FLOAT, y=FLOAT), Point(1.0, 2.0)) == {"x": 1.0, "y": 2.0}
    assert coerce(COptional(INT), None) is None
    assert coerce(CUnion.of(INT, STRING), "a") == Tagged("String", "a")


@pytest.mark.parametrize(("ctype", "value", "fragment"), [
    (INT, "3", "expected Int, got str"),
    (INT, True, "expected Int, got bool"),
    (INT, 2**70, "64-bit"),
    (STRING, None, "expected String, got null"),
    (CList(INT), [1, "x"], "input 'xs'[1]"),
    (CRecord.of(a=INT), {"b": 1}, "missing field 'a'"),
    (CRecord.of(a=INT), {"a": "1"}, "input 'xs'.a"),
    (CMap(STRING, INT), {"k": 1.5}, "expected Int"),
    (BOOLEAN, 1, "expected Boolean, got int"),
])
def test_coerce_names_the_path_and_types(ctype: object, value: object, fragment: str) -> None:
    with pytest.raises(InputTypeError) as info:
        coerce(ctype, value, "input 'xs'")  # type: ignore[arg-type]
    assert fragment in info.value.message
    assert info.value.code == "E202"


def test_json_round_trip_with_optional_union_and_int_keyed_map() -> None:
    t = CRecord.of(
        opt=COptional(INT),
        either=CUnion.of(INT, STRING),
        by_id=CMap(INT, STRING),
        names=CList(STRING),
    )
    value = {"opt": None, "either": Tagged("Int", 4), "by_id": {1: "a", 2: "b"},
             "names": ["x"]}
    data = to_json(t, value)
    assert data == {"opt": None, "either": {"tag": "Int", "value": 4},
                    "by_id": [[1, "a"], [2, "b"]], "names": ["x"]}
    assert from_json(t, data) == value


def test_from_json_detects_a_bare_union_variant() -> None:
    assert from_json(CUnion.of(INT, STRING), "hi") == Tagged("String", "hi")


def test_zero_values() -> None:
    assert zero_value(CRecord.of(a=INT, b=STRING, c=CList(INT), d=COptional(INT))) == {
        "a": 0, "b": "", "c": [], "d": None}
    assert zero_value(FLOAT) == 0.0
    assert zero_value(BOOLEAN) is False


@pytest.mark.parametrize("text", [
    "String", "List<Int>", "Map<String, List<Float>>", "Optional<Boolean>",
    "{age: Int, name: String}", "Int | String", "Seq<{id: String}>",
])
def test_parse_type_reads_what_render_writes(text: str) -> None:
    assert render(parse_type(text)) == text


@pytest.mark.parametrize("text", ["List<Int", "Strin", "Map<Int>", "{a Int}", "Int |"])
def test_parse_type_rejects_bad_text(text: str) -> None:
    with pytest.raises(TypeSyntaxError):
        parse_type(text)


def test_types_are_hashable_and_structural() -> None:
    assert CList(INT) == CList(INT)
    assert len({CRecord.of(a=INT, b=STRING), CRecord.of(b=STRING, a=INT)}) == 1
    assert repr(CList(INT)) == "CType(List<Int>)"
