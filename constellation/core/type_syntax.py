"""Type strings → CTypes: ``"Map<String, List<Int>>"``, ``"{name: String}"``, ``"Int | String"``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from constellation.core.types import (
    GENERIC_ARITY,
    SCALAR_TYPES,
    CRecord,
    CType,
    CUnion,
    generic_type,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TypeSyntaxError", "parse_type"]

class TypeSyntaxError(ValueError):
    """A type string such as ``List<Int`` could not be read."""


_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(.))")



def parse_type(text: str, aliases: Mapping[str, CType] | None = None) -> CType:
    """Read a type written as in constellation-lang: ``Map<String, List<Int>>``,
    ``{name: String, age: Int}``, ``Int | String``, ``Optional<Float>``.

    Args:
        text: the type expression.
        aliases: named types that may appear in it.

    Raises:
        TypeSyntaxError: the text is not a type expression, or names an unknown type.
    """
    tokens = [m.group(1) or m.group(2) for m in _TOKEN.finditer(text) if m.group(0).strip()]
    pos = 0
    from constellation.core.handlers import handled_type

    names = {**SCALAR_TYPES, **(aliases or {})}

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise TypeSyntaxError(f"in type {text!r}: expected {expected or 'a type'}, "
                                  f"found {tok or 'end of text'}")
        pos += 1
        return tok

    def union() -> CType:
        members = [primary()]
        while peek() == "|":
            take("|")
            members.append(primary())
        return CUnion.of(*members)

    def primary() -> CType:
        tok = take()
        if tok == "{":
            fields: dict[str, CType] = {}
            while peek() != "}":
                name = take()
                take(":")
                fields[name] = union()
                if peek() == ",":
                    take(",")
            take("}")
            return CRecord.from_mapping(fields)
        generic = GENERIC_ARITY
        if tok in generic and peek() == "<":
            take("<")
            args = [union()]
            while peek() == ",":
                take(",")
                args.append(union())
            take(">")
            if len(args) != generic[tok]:
                raise TypeSyntaxError(f"in type {text!r}: {tok} takes {generic[tok]} argument(s)")
            return generic_type(tok, args)
        if tok in names:
            return names[tok]
        handled = handled_type(tok)
        if handled is not None:
            return handled
        raise TypeSyntaxError(f"in type {text!r}: unknown type {tok!r}")

    result = union()
    if peek() is not None:
        raise TypeSyntaxError(f"in type {text!r}: unexpected {peek()!r}")
    return result
