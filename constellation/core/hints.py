"""Python type hints → CTypes: how ``@module`` reads a function's signature."""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

from constellation.core.handlers import handler_for
from constellation.core.types import (
    BOOLEAN,
    FLOAT,
    INT,
    STRING,
    CHandled,
    CList,
    CMap,
    COptional,
    CRecord,
    CType,
    CUnion,
)

__all__ = ["from_annotation"]

_PY_SCALARS: dict[Any, CType] = {str: STRING, int: INT, float: FLOAT, bool: BOOLEAN}


def from_annotation(annotation: Any, where: str = "annotation") -> CType:
    """Map a Python type hint to a CType.

    ``str``/``int``/``float``/``bool`` map to the scalars, ``list[T]`` to List, ``dict[str, T]``
    (or any ``dict[K, V]``) to Map, ``T | None`` to Optional, other unions to a union, and
    TypedDict or dataclass classes to records. A CType is returned as is.

    Raises:
        TypeError: the hint has no Constellation equivalent (``where`` says whose it is).
    """
    if isinstance(annotation, CType):
        return annotation
    if annotation in _PY_SCALARS:
        return _PY_SCALARS[annotation]
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (list, typing.Sequence, collections.abc.Sequence):
        return CList(from_annotation(args[0], where)) if args else _bad(annotation, where)
    if origin in (dict, typing.Mapping, collections.abc.Mapping):
        if len(args) != 2:
            return _bad(annotation, where)
        return CMap(from_annotation(args[0], where), from_annotation(args[1], where))
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        inner = CUnion.of(*(from_annotation(a, where) for a in non_none))
        return COptional(inner) if len(non_none) < len(args) else inner
    if isinstance(annotation, type):
        if is_typeddict(annotation):
            # include_extras keeps NotRequired[...] visible: with string annotations
            # (``from __future__ import annotations``) __optional_keys__ misses them.
            hints = get_type_hints(annotation, include_extras=True)
            optional_keys = set(getattr(annotation, "__optional_keys__", frozenset()))
            fields = {}
            for n, h in hints.items():
                if get_origin(h) in (typing.NotRequired, typing.Required):
                    if get_origin(h) is typing.NotRequired:
                        optional_keys.add(n)
                    h = get_args(h)[0]
                ft = from_annotation(h, f"{where}.{n}")
                fields[n] = COptional(ft) if n in optional_keys and not isinstance(
                    ft, COptional) else ft
            return CRecord.from_mapping(fields)
        if dataclasses.is_dataclass(annotation):
            hints = get_type_hints(annotation)
            return CRecord.from_mapping(
                {f.name: from_annotation(hints[f.name], f"{where}.{f.name}")
                 for f in dataclasses.fields(annotation)}
            )
    handler = handler_for(annotation)
    if handler is not None:
        return CHandled(handler.name)
    return _bad(annotation, where)


def _bad(annotation: Any, where: str) -> CType:
    raise TypeError(
        f"{where}: {annotation!r} has no Constellation type; use str, int, float, bool, "
        "list[T], dict[K, V], T | None, a TypedDict, a dataclass, or a type with a "
        "registered type handler (constellation.core.handlers: datetime, date, bytes, "
        "Decimal, UUID, typing.Any built in)"
    )
