"""Property tests: every value of a type checks against it and survives JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from constellation.core.type_syntax import parse_type
from constellation.core.types import (
    BOOLEAN,
    FLOAT,
    INT,
    STRING,
    CList,
    CMap,
    COptional,
    CRecord,
    CType,
    CUnion,
    Tagged,
    coerce,
    from_json,
    is_subtype,
    render,
    to_json,
)

names = st.text(alphabet="abcdefghij", min_size=1, max_size=4)
scalars = st.sampled_from([STRING, INT, FLOAT, BOOLEAN])


def _extend(children: st.SearchStrategy[CType]) -> st.SearchStrategy[CType]:
    return st.one_of(
        children.map(CList),
        st.tuples(st.sampled_from([STRING, INT]), children).map(lambda kv: CMap(*kv)),
        children.filter(lambda t: not isinstance(t, COptional)).map(COptional),
        st.dictionaries(names, children, min_size=1, max_size=3).map(CRecord.from_mapping),
    )


ctypes = st.recursive(scalars, _extend, max_leaves=6)


def values_of(t: CType) -> st.SearchStrategy[Any]:
    match t:
        case _ if t == STRING:
            return st.text(max_size=5)
        case _ if t == INT:
            return st.integers(min_value=-(2**63), max_value=2**63 - 1)
        case _ if t == FLOAT:
            return st.floats(allow_nan=False, allow_infinity=False)
        case _ if t == BOOLEAN:
            return st.booleans()
        case CList(e):
            return st.lists(values_of(e), max_size=3)
        case CMap(k, v):
            return st.dictionaries(values_of(k), values_of(v), max_size=3)
        case COptional(inner):
            return st.none() | values_of(inner)
        case CRecord(fields):
            return st.fixed_dictionaries({n: values_of(ft) for n, ft in fields})
    raise AssertionError(t)


typed_values = ctypes.flatmap(lambda t: st.tuples(st.just(t), values_of(t)))


@settings(max_examples=300, deadline=None)
@given(typed_values)
def test_every_value_of_a_type_checks_and_round_trips_through_json(tv: tuple[CType, Any]
                                                                   ) -> None:
    t, value = tv
    canonical = coerce(t, value)
    assert canonical == value
    wire = json.loads(json.dumps(to_json(t, canonical)))
    assert from_json(t, wire) == canonical


@settings(max_examples=300, deadline=None)
@given(ctypes)
def test_rendered_types_parse_back_and_subtyping_is_reflexive(t: CType) -> None:
    assert parse_type(render(t)) == t
    assert is_subtype(t, t)
    assert is_subtype(t, COptional(t))
    assert is_subtype(CList(t), CList(t))


@given(st.integers(-(2**40), 2**40) | st.text(max_size=5))
def test_union_values_are_tagged_with_the_member_they_fit(value: int | str) -> None:
    u = CUnion.of(INT, STRING)
    tagged = coerce(u, value)
    assert tagged == Tagged("Int" if isinstance(value, int) else "String", value)
    assert from_json(u, to_json(u, tagged)) == tagged
