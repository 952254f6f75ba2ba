"""Type rules the compiler shares between expressions, lambdas and match cases."""

from __future__ import annotations

from typing import Any

from constellation.core.types import (
    NOTHING,
    CList,
    CNothing,
    CRecord,
    CSeq,
    CType,
    is_subtype,
)

__all__ = ["common_type", "field_names", "field_type", "is_recordish", "merge_type",
           "project_type"]


def common_type(types: Any) -> CType | None:
    """The type every one of ``types`` fits, if one of them is it (no union invented)."""
    ts: list[CType] = list(types)
    for candidate in ts:
        if all(is_subtype(t, candidate) for t in ts):
            return candidate
    if all(isinstance(t, CNothing) for t in ts):
        return NOTHING
    return None


def field_type(t: CType, name: str) -> CType | None:
    if isinstance(t, CRecord):
        return t.field_map.get(name)
    if isinstance(t, CList | CSeq):
        inner = field_type(t.element, name)
        if inner is None:
            return None
        return CList(inner) if isinstance(t, CList) else CSeq(inner)
    return None


def field_names(t: CType) -> list[str]:
    if isinstance(t, CRecord):
        return [n for n, _ in t.fields]
    if isinstance(t, CList | CSeq):
        return field_names(t.element)
    return []


def project_type(t: CType, names: tuple[str, ...]) -> CType | None:
    if isinstance(t, CRecord):
        fm = t.field_map
        if not all(n in fm for n in names):
            return None
        return CRecord.from_mapping({n: fm[n] for n in names})
    if isinstance(t, CList | CSeq):
        inner = project_type(t.element, names)
        if inner is None:
            return None
        return CList(inner) if isinstance(t, CList) else CSeq(inner)
    return None


def is_recordish(t: CType) -> bool:
    return isinstance(t, CRecord) or (isinstance(t, CList | CSeq)
                                      and isinstance(t.element, CRecord))


def merge_type(a: CType, b: CType) -> CType:
    def fields(t: CType) -> dict[str, CType]:
        inner = t.element if isinstance(t, CList | CSeq) else t
        assert isinstance(inner, CRecord)
        return inner.field_map

    merged = CRecord.from_mapping({**fields(a), **fields(b)})
    return CList(merged) if isinstance(a, CList | CSeq) or isinstance(b, CList | CSeq) \
        else merged
