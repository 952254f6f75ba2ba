"""The constellation-lang syntax tree.

Nodes are frozen dataclasses. Every node carries its source position in ``pos``, which
takes no part in equality, so a tree parsed from printed source equals the original
(``parse(print_pipeline(tree)) == tree``).
"""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass
from dataclasses import field as _field  # FieldAccess has a field named "field"
from typing import Union

from constellation.core._frozen import quick_init

__all__ = [
    "Annotation", "Arith", "Assign", "BoolLit", "BoolOp", "Branch", "Call", "Coalesce",
    "Compare", "Declaration", "Duration", "Expr", "FieldAccess", "FloatLit", "Guard", "If",
    "Input", "IntLit", "Lambda", "ListLit", "Match", "Name", "Not", "Option", "Output",
    "PRecord", "PType", "PWildcard", "Pattern", "Pipeline", "Pos", "Project", "Rate",
    "RecordLit", "StringLit", "TGeneric", "TMerge", "TName", "TRecord", "TUnion", "TypeDef",
    "TypeExpr", "Use",
]


@dataclass(frozen=True, slots=True)
class Pos:
    """A 1-based line and column in the source."""

    line: int
    column: int



# --- type expressions --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TName:
    """A named type: ``String``, ``Int``, or an alias from ``type``."""

    name: str
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TGeneric:
    """``List<T>``, ``Seq<T>``, ``Optional<T>``, ``Map<K, V>``, ``Candidates<T>``."""

    name: str
    args: tuple[TypeExpr, ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TRecord:
    """``{name: String, age: Int}``."""

    fields: tuple[tuple[str, TypeExpr], ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TUnion:
    """``A | B``."""

    members: tuple[TypeExpr, ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TMerge:
    """``A + B``: record type merge, the right side wins."""

    parts: tuple[TypeExpr, ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


TypeExpr = Union[TName, TGeneric, TRecord, TUnion, TMerge]  # noqa: UP007


# --- expressions ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Name:
    """A variable (an input or an assigned name)."""

    name: str
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class IntLit:
    """An integer literal (may be negative)."""

    value: int
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FloatLit:
    """A float literal ``digits.digits``."""

    value: float
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BoolLit:
    """``true`` or ``false``."""

    value: bool
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StringLit:
    """A string; ``parts`` alternate text and interpolated expressions (``"${x}"``)."""

    parts: tuple[str | Expr, ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ListLit:
    """``[a, b, c]``."""

    items: tuple[Expr, ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RecordLit:
    """``{name: "A", age: 3}``."""

    fields: tuple[tuple[str, Expr], ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Duration:
    """``30s``, ``5min``, ``100ms``: an amount and a unit (ms, s, min, h, d)."""

    amount: int
    unit: str
    pos: Pos | None = _field(default=None, compare=False, repr=False)

    @property
    def seconds(self) -> float:
        """The duration in seconds."""
        return self.amount * _UNIT_SECONDS[self.unit]


_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Rate:
    """``100/1min``: a count per duration."""

    count: int
    per: Duration
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Option:
    """One ``with`` option: ``retry: 3``; ``value`` is None for a bare ``lazy``."""

    name: str
    value: Expr | Duration | Rate | None
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    """``f(a, b)`` or ``stdlib.math.add(a, b) with retry: 3``."""

    func: str
    args: tuple[Expr, ...]
    options: tuple[Option, ...] = ()
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Arith:
    """A left-associative chain at one precedence level: ``a + b - c`` or ``a * b / c``."""

    first: Expr
    rest: tuple[tuple[str, Expr], ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Compare:
    """``a < b`` (comparisons do not chain)."""

    left: Expr
    op: str
    right: Expr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BoolOp:
    """``a and b and c`` or ``a or b``."""

    op: str
    operands: tuple[Expr, ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    """``not a``."""

    operand: Expr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Guard:
    """``value when condition``: Optional of the value."""

    value: Expr
    condition: Expr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Coalesce:
    """``a ?? b`` (right-associative)."""

    left: Expr
    right: Expr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class If:
    """``if (c) a else b``."""

    condition: Expr
    then: Expr
    otherwise: Expr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Branch:
    """``branch { c1 -> v1, c2 -> v2, otherwise -> v }``."""

    cases: tuple[tuple[Expr, Expr], ...]
    otherwise: Expr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PRecord:
    """A record pattern ``{a, b}``: matches records with these fields and binds them."""

    fields: tuple[str, ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PWildcard:
    """``_``."""

    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PType:
    """``is Type``."""

    type: TypeExpr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


Pattern = Union[PRecord, PWildcard, PType]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class Match:
    """``match e { pattern -> value, ... }``."""

    subject: Expr
    cases: tuple[tuple[Pattern, Expr], ...]
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Lambda:
    """``(x) => body`` or ``(x: Int) => body``."""

    params: tuple[tuple[str, TypeExpr | None], ...]
    body: Expr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FieldAccess:
    """``e.field`` (element-wise on lists of records)."""

    target: Expr
    field: str
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Project:
    """``e[a, b]`` or ``e{a, b}``: a record with only these fields."""

    target: Expr
    fields: tuple[str, ...]
    brackets: str  # "[" or "{"
    pos: Pos | None = _field(default=None, compare=False, repr=False)


Expr = Union[  # noqa: UP007
    Name, IntLit, FloatLit, BoolLit, StringLit, ListLit, RecordLit, Call, Arith, Compare,
    BoolOp, Not, Guard, Coalesce, If, Branch, Match, Lambda, FieldAccess, Project,
]


# --- declarations --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Annotation:
    """``@example(expr)`` on an input, or ``@timeout(30s)`` on the pipeline."""

    name: str
    value: Expr | Duration | None
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TypeDef:
    """``type Name = TypeExpr``."""

    name: str
    type: TypeExpr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Input:
    """``in name: Type``, with its annotations."""

    name: str
    type: TypeExpr
    annotations: tuple[Annotation, ...] = ()
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Output:
    """``out name``."""

    name: str
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Use:
    """``use stdlib.math`` or ``use stdlib.string as str``."""

    path: str
    alias: str | None = None
    pos: Pos | None = _field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Assign:
    """``name = expr``."""

    name: str
    value: Expr
    pos: Pos | None = _field(default=None, compare=False, repr=False)


Declaration = Union[TypeDef, Input, Output, Use, Assign]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A whole program: pipeline-level annotations (``@timeout``) and declarations."""

    declarations: tuple[Declaration, ...]
    annotations: tuple[Annotation, ...] = ()
    pos: Pos | None = _field(default=None, compare=False, repr=False)


def _quicker_nodes() -> None:
    # A 1 MB program has hundreds of thousands of nodes: each node class gets the quicker
    # __init__ of constellation.core._frozen (same signature, same instances).
    for obj in list(globals().values()):
        if isinstance(obj, type) and obj.__module__ == __name__ and is_dataclass(obj):
            quick_init(obj)


_quicker_nodes()
