"""Constellation's type system: ``CType`` values, subtyping, value checking and JSON.

Values at run time are plain Python values: ``str``, ``int``, ``float``, ``bool``,
``list``, ``dict`` and ``None``. A union value carries its variant as a
:class:`Tagged`. Types are immutable, hashable and compare structurally.

Python type hints map to CTypes in :mod:`constellation.core.hints`; type strings such as
``"List<Int>"`` are read by :mod:`constellation.core.type_syntax`.

Examples:
    >>> render(CList(INT))
    'List<Int>'
    >>> is_subtype(CRecord.of(a=INT, b=STRING), CRecord.of(a=INT))
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from constellation.core.errors import InputTypeError

__all__ = [
    "BOOLEAN",
    "EXACT_PY_TYPES",
    "FLOAT",
    "GENERIC_ARITY",
    "INT",
    "INT64_MAX",
    "INT64_MIN",
    "NOTHING",
    "SCALAR_TYPES",
    "STRING",
    "HANDLERS",
    "CBoolean",
    "CFloat",
    "CHandled",
    "CInt",
    "CList",
    "CMap",
    "CNothing",
    "COptional",
    "CRecord",
    "CSeq",
    "CString",
    "CType",
    "CUnion",
    "Tagged",
    "coerce",
    "from_json",
    "generic_type",
    "is_subtype",
    "render",
    "to_json",
    "zero_value",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class CType:
    """Base class of every Constellation type."""

    __slots__ = ()

    def __str__(self) -> str:
        return render(self)

    def __repr__(self) -> str:  # subclasses are dataclasses with repr=False
        return f"CType({render(self)})"


@dataclass(frozen=True, slots=True, repr=False)
class CString(CType):
    """Text."""


@dataclass(frozen=True, slots=True, repr=False)
class CInt(CType):
    """A 64-bit signed integer."""


@dataclass(frozen=True, slots=True, repr=False)
class CFloat(CType):
    """A double-precision float; an ``int`` is accepted and widened."""


@dataclass(frozen=True, slots=True, repr=False)
class CBoolean(CType):
    """``True`` or ``False``."""


@dataclass(frozen=True, slots=True, repr=False)
class CNothing(CType):
    """The bottom type: a subtype of everything (e.g. the element type of ``[]``)."""


@dataclass(frozen=True, slots=True, repr=False)
class CList(CType):
    """A list whose elements all have type ``element``."""

    element: CType


@dataclass(frozen=True, slots=True, repr=False)
class CSeq(CType):
    """A sequence; ``List<T>`` is a subtype of ``Seq<T>``."""

    element: CType


@dataclass(frozen=True, slots=True, repr=False)
class CMap(CType):
    """A map from ``key`` to ``value``; keys are invariant."""

    key: CType
    value: CType


@dataclass(frozen=True, slots=True, repr=False)
class COptional(CType):
    """A value of ``inner`` or ``None``."""

    inner: CType


@dataclass(frozen=True, slots=True, repr=False)
class CRecord(CType):
    """A record with named fields (kept sorted by name, so equality is structural)."""

    fields: tuple[tuple[str, CType], ...]

    @staticmethod
    def of(**fields: CType) -> CRecord:
        """Build a record type from keyword arguments."""
        return CRecord(tuple(sorted(fields.items())))

    @staticmethod
    def from_mapping(fields: Mapping[str, CType]) -> CRecord:
        """Build a record type from a name → type mapping."""
        return CRecord(tuple(sorted(fields.items())))

    @property
    def field_map(self) -> dict[str, CType]:
        """The fields as a dict."""
        return dict(self.fields)


@dataclass(frozen=True, slots=True, repr=False)
class CUnion(CType):
    """One of several types; values are :class:`Tagged` with the variant's name."""

    members: tuple[CType, ...]

    @staticmethod
    def of(*members: CType) -> CType:
        """Build a union, flattening nested unions and dropping duplicates."""
        flat = list(dict.fromkeys(  # dedupe in order; a set keeps thousands linear
            x for m in members for x in (m.members if isinstance(m, CUnion) else (m,))))
        if len(flat) == 1:
            return flat[0]
        return CUnion(tuple(sorted(flat, key=render)))

    def member(self, tag: str) -> CType | None:
        """Return the member whose tag is ``tag``, if any."""
        for m in self.members:
            if render(m) == tag:
                return m
        return None


@dataclass(frozen=True, slots=True, repr=False)
class CHandled(CType):
    """A Python type the language knows through a *type handler* (``DateTime``,
    ``Decimal``, ``DataFrame`` ...): checked, encoded and decoded by the handler
    registered under ``name`` (see :mod:`constellation.core.handlers`)."""

    name: str

    @property
    def handler(self) -> Any:
        """The registered handler (looked up at use: types stay plain data)."""
        found = HANDLERS.get(self.name)
        if found is None:
            raise InputTypeError(f"type {self.name} has no registered handler any more",
                                 details={"expected": self.name})
        return found


HANDLERS: dict[str, Any] = {}
"""Type handlers by language name (filled by :mod:`constellation.core.handlers`)."""


STRING = CString()
INT = CInt()
FLOAT = CFloat()
BOOLEAN = CBoolean()
NOTHING = CNothing()

SCALAR_TYPES: dict[str, CType] = {"String": STRING, "Int": INT, "Float": FLOAT,
                                  "Boolean": BOOLEAN}
"""The scalar types by the names the language gives them."""

GENERIC_ARITY = {"List": 1, "Seq": 1, "Candidates": 1, "Optional": 1, "Map": 2}
"""The generic type names and how many type arguments each takes."""


def generic_type(name: str, args: list[CType]) -> CType:
    """Build ``List<T>``, ``Seq<T>`` (``Candidates<T>``), ``Optional<T>`` or ``Map<K, V>``;
    the caller has checked ``name`` and the number of ``args`` against GENERIC_ARITY."""
    if name == "List":
        return CList(args[0])
    if name in ("Seq", "Candidates"):
        return CSeq(args[0])
    if name == "Optional":
        return COptional(args[0])
    return CMap(args[0], args[1])


@dataclass(frozen=True, slots=True)
class Tagged:
    """A value of a union type, with the name of the variant it belongs to.

    Attributes:
        tag: the rendered member type, e.g. ``"Int"`` or ``"{code: Int}"``.
        value: the value itself.
    """

    tag: str
    value: Any


def render(t: CType) -> str:
    """Render a type the way constellation-lang writes it (``Map<String, List<Int>>``).

    Iterative, so a type nested any number of levels deep renders without recursion.
    """
    out: list[str] = []
    stack: list[CType | str] = [t]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        name = _SCALAR_NAMES.get(item.__class__)
        if name is not None:
            out.append(name)
            continue
        if isinstance(item, CHandled):
            out.append(item.name)
            continue
        parts: list[CType | str]
        match item:
            case CList(e):
                parts = ["List<", e, ">"]
            case CSeq(e):
                parts = ["Seq<", e, ">"]
            case CMap(k, v):
                parts = ["Map<", k, ", ", v, ">"]
            case COptional(i):
                parts = ["Optional<", i, ">"]
            case CRecord(fields):
                parts = ["{"]
                for n, (fname, ft) in enumerate(fields):
                    parts += [f"{', ' if n else ''}{fname}: ", ft]
                parts.append("}")
            case CUnion(members):
                parts = []
                for n, m in enumerate(members):
                    parts += [" | "] if n else []
                    parts.append(m)
            case _:
                raise TypeError(f"not a CType: {item!r}")
        stack.extend(reversed(parts))
    return "".join(out)


_SCALAR_NAMES: dict[type, str] = {CString: "String", CInt: "Int", CFloat: "Float",
                                  CBoolean: "Boolean", CNothing: "Nothing"}


def is_subtype(sub: CType, sup: CType) -> bool:
    """Return whether a value of ``sub`` may be used where ``sup`` is expected.

    Records have width and depth subtyping; List, Seq and Optional are covariant and
    ``List<T> <: Seq<T>``; map keys are invariant, values covariant; ``Nothing`` is
    below everything; a type is below any union containing a supertype of it.
    """
    if sub == sup or isinstance(sub, CNothing):
        return True
    if isinstance(sup, CUnion):
        if isinstance(sub, CUnion):
            return all(is_subtype(m, sup) for m in sub.members)
        return any(is_subtype(sub, m) for m in sup.members)
    match sub, sup:
        case CList(a), CList(b) | CSeq(b):
            return is_subtype(a, b)
        case CSeq(a), CSeq(b):
            return is_subtype(a, b)
        case COptional(a), COptional(b):
            return is_subtype(a, b)
        case _, COptional(b):
            return is_subtype(sub, b)
        case CMap(ka, va), CMap(kb, vb):
            return ka == kb and is_subtype(va, vb)
        case CRecord(), CRecord():
            have = sub.field_map
            return all(n in have and is_subtype(have[n], ft) for n, ft in sup.fields)
    return False


def coerce(t: CType, value: Any, path: str = "value") -> Any:
    """Check ``value`` against ``t`` and return it in canonical form.

    Canonical form: ``int`` widened to ``float`` for Float; dataclass instances and
    other mappings turned into dicts (extra record fields are kept: width subtyping);
    tuples into lists; a union member given bare is tagged when exactly one member fits.

    Args:
        t: the expected type.
        value: the value to check.
        path: how to name the value in an error (``"input 'text'"``, ``"output[2].name"``).

    Raises:
        InputTypeError: the value does not fit, naming ``path`` and both types.
    """
    exact = EXACT_PY_TYPES.get(t.__class__)
    if exact is not None and type(value) is exact and (
            exact is not int or INT64_MIN <= value <= INT64_MAX):  # type: ignore[operator]
        return value  # the common case, without the pattern match below
    match t:
        case CString():
            if type(value) is str:
                return value
        case CInt():
            if type(value) is int:
                if INT64_MIN <= value <= INT64_MAX:
                    return value
                raise InputTypeError(
                    f"{path}: {value} does not fit in a 64-bit Int", details={"path": path}
                )
        case CFloat():
            if type(value) is float:
                return value
            if type(value) is int:
                return float(value)
        case CBoolean():
            if type(value) is bool:
                return value
        case CList(e) | CSeq(e):
            if isinstance(value, list | tuple):
                if isinstance(e, CString | CInt | CBoolean):
                    want = _SCALAR_PY[type(e)]
                    if all(type(v) is want for v in value):
                        return value if type(value) is list else list(value)
                return [coerce(e, v, f"{path}[{i}]") for i, v in enumerate(value)]
        case CMap(k, v):
            if isinstance(value, Mapping):
                return {coerce(k, key, f"{path} key"): coerce(v, val, f"{path}[{key!r}]")
                        for key, val in value.items()}
        case COptional(inner):
            return None if value is None else coerce(inner, value, path)
        case CRecord(fields):
            as_map = _as_mapping(value)
            if as_map is not None:
                out = dict(as_map)
                for name, ft in fields:
                    if name not in as_map:
                        if isinstance(ft, COptional):
                            out[name] = None
                            continue
                        raise InputTypeError(
                            f"{path}: missing field '{name}' of {render(t)}",
                            details={"path": path, "field": name, "expected": render(t)},
                        )
                    out[name] = coerce(ft, as_map[name], f"{path}.{name}")
                return out
        case CUnion(members):
            if isinstance(value, Tagged):
                m = t.member(value.tag)
                if m is None:
                    raise InputTypeError(
                        f"{path}: tag '{value.tag}' is not a variant of {render(t)}",
                        details={"path": path, "expected": render(t)},
                    )
                return Tagged(value.tag, coerce(m, value.value, path))
            fits = [m for m in members if _fits(m, value)]
            if len(fits) == 1:
                return Tagged(render(fits[0]), coerce(fits[0], value, path))
        case CNothing():
            pass
        case CHandled():
            return _handled(t, value, path)
    raise InputTypeError(
        f"{path}: expected {render(t)}, got {_describe(value)}",
        details={"path": path, "expected": render(t), "got": _describe(value)},
    )


def _handled(t: CHandled, value: Any, path: str) -> Any:
    handler = t.handler
    try:
        return handler.check(value)
    except InputTypeError:
        raise
    except Exception as exc:  # the handler's own refusal (TypeError, ValueError ...)
        raise InputTypeError(f"{path}: expected {t.name}, got {_describe(value)} "
                             f"({type(exc).__name__}: {exc})",
                             details={"path": path, "expected": t.name,
                                      "got": _describe(value)}) from None


_SCALAR_PY: dict[type, type] = {CString: str, CInt: int, CBoolean: bool}
EXACT_PY_TYPES: dict[type, type] = {CString: str, CInt: int, CBoolean: bool, CFloat: float}
"""Scalar CType class -> the Python type a canonical value has exactly (an Int must also
fit in 64 bits). The fast path of value checks, here and in the runtime."""


def _fits(t: CType, value: Any) -> bool:
    try:
        coerce(t, value)
    except InputTypeError:
        return False
    return True


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def zero_value(t: CType) -> Any:
    """The type's zero value ("", 0, 0.0, False, [], {}, None, a record of zeros)."""
    match t:
        case CString():
            return ""
        case CInt():
            return 0
        case CFloat():
            return 0.0
        case CBoolean():
            return False
        case CList() | CSeq():
            return []
        case CMap():
            return {}
        case CRecord(fields):
            return {n: zero_value(ft) for n, ft in fields}
        case CUnion(members):
            return Tagged(render(members[0]), zero_value(members[0]))
        case CHandled():
            return t.handler.zero()
    return None


def to_json(t: CType, value: Any) -> Any:
    """Turn a canonical value of ``t`` into JSON-ready data.

    Optional is ``null`` or the bare value; a union is ``{"tag": ..., "value": ...}``;
    a map with string keys is an object, any other map a list of ``[key, value]`` pairs.
    """
    match t:
        case CList(e) | CSeq(e):
            if isinstance(e, CString | CInt | CFloat | CBoolean):
                return list(value)
            return [to_json(e, v) for v in value]
        case CMap(k, v):
            if isinstance(k, CString):
                return {key: to_json(v, val) for key, val in value.items()}
            return [[to_json(k, key), to_json(v, val)] for key, val in value.items()]
        case COptional(inner):
            return None if value is None else to_json(inner, value)
        case CRecord(fields):
            out = dict(value)
            for n, ft in fields:
                out[n] = to_json(ft, value[n])
            return out
        case CUnion():
            if isinstance(value, Tagged):
                m = t.member(value.tag)
                return {"tag": value.tag, "value": to_json(m, value.value) if m else value.value}
        case CHandled():
            return t.handler.to_json(value)
    return value


def from_json(t: CType, data: Any, path: str = "value") -> Any:
    """Read JSON data as a value of ``t`` (the inverse of :func:`to_json`).

    A union accepts ``{"tag", "value"}`` or a bare value that fits exactly one variant.

    Raises:
        InputTypeError: the data does not fit the type.
    """
    match t:
        case CMap(k, v) if not isinstance(k, CString) and isinstance(data, list):
            out: dict[Any, Any] = {}
            for i, pair in enumerate(data):
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise InputTypeError(f"{path}[{i}]: expected a [key, value] pair",
                                         details={"path": path})
                out[from_json(k, pair[0], f"{path} key")] = from_json(v, pair[1], path)
            return out
        case CMap(k, v) if isinstance(data, dict):
            return {from_json(k, key, f"{path} key"): from_json(v, val, f"{path}[{key!r}]")
                    for key, val in data.items()}
        case CUnion() if isinstance(data, dict) and set(data) == {"tag", "value"}:
            m = t.member(str(data["tag"]))
            if m is None:
                raise InputTypeError(f"{path}: tag {data['tag']!r} is not a variant of "
                                     f"{render(t)}", details={"path": path})
            return Tagged(str(data["tag"]), from_json(m, data["value"], path))
        case CList(e) | CSeq(e) if isinstance(data, list):
            return [from_json(e, x, f"{path}[{i}]") for i, x in enumerate(data)]
        case COptional(inner):
            return None if data is None else from_json(inner, data, path)
        case CRecord(fields) if isinstance(data, dict):
            rec = dict(data)
            for n, ft in fields:
                if n in data:
                    rec[n] = from_json(ft, data[n], f"{path}.{n}")
            return coerce(t, rec, path)
        case CHandled():
            handler = t.handler
            try:
                value = handler.from_json(data)
            except InputTypeError:
                raise
            except Exception as exc:
                raise InputTypeError(f"{path}: {_describe(data)} is not the JSON of a "
                                     f"{t.name} ({type(exc).__name__}: {exc})",
                                     details={"path": path, "expected": t.name}) from None
            return coerce(t, value, path)
    return coerce(t, data, path)
