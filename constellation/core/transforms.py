"""Inline transforms: small operations on data nodes that run without the worker pool.

Each operation has a type rule (:func:`infer_transform_type`) and an evaluator
(:func:`evaluate`). The language compiler adds its operations (conditionals, guards,
arithmetic, lambdas ...) to the same table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constellation.core.types import (
    NOTHING,
    CList,
    COptional,
    CRecord,
    CSeq,
    CType,
    CUnion,
    render,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from constellation.core.dag import Transform

__all__ = ["evaluate", "infer_transform_type"]


def _field_type(t: CType, name: str) -> CType:
    if isinstance(t, CRecord):
        fields = t.field_map
        if name in fields:
            return fields[name]
        raise TypeError(f"{render(t)} has no field '{name}'")
    if isinstance(t, CList | CSeq):
        # Element-wise on lists of records: orders.id : List<String>.
        return type(t)(_field_type(t.element, name))
    raise TypeError(f"field access '.{name}' needs a record, got {render(t)}")


def _get_field(value: Any, name: str) -> Any:
    if isinstance(value, list):
        return [_get_field(v, name) for v in value]
    return value[name]


def _list_type(args: Sequence[CType]) -> CType:
    if not args:
        return CList(NOTHING)
    return CList(CUnion.of(*args))


_TYPE_RULES: dict[str, Callable[[dict[str, Any], Sequence[CType]], CType]] = {
    "literal": lambda p, _a: p["type"],
    "field": lambda p, a: _field_type(a[0], p["name"]),
    "record": lambda p, a: CRecord.from_mapping(dict(zip(p["names"], a, strict=True))),
    "list": lambda _p, a: _list_type(a),
    "optional": lambda _p, a: COptional(a[0]),
}

_EVALUATORS: dict[str, Callable[[dict[str, Any], Sequence[Any]], Any]] = {
    "literal": lambda p, _a: p["value"],
    "field": lambda p, a: _get_field(a[0], p["name"]),
    "record": lambda p, a: dict(zip(p["names"], a, strict=True)),
    "list": lambda _p, a: list(a),
    "optional": lambda _p, a: a[0],
}


def infer_transform_type(transform: Transform, arg_types: Sequence[CType]) -> CType:
    """Return the type a transform produces from arguments of ``arg_types``.

    Raises:
        TypeError: the operation is unknown or does not apply to these types.
    """
    rule = _TYPE_RULES.get(transform.op)
    if rule is None:
        raise TypeError(f"unknown inline operation '{transform.op}'")
    return rule(transform.param_map, arg_types)


def evaluate(transform: Transform, args: Sequence[Any]) -> Any:
    """Compute a transform's value from its (already checked) argument values."""
    return _EVALUATORS[transform.op](transform.param_map, args)
