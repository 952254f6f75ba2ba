"""Inline transforms: small operations on data nodes that run without the worker pool.

Each operation has a type rule (:func:`infer_transform_type`) and an evaluator
(:func:`evaluate`). The language compiler adds its operations (conditionals, guards,
arithmetic, lambdas ...) to the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from constellation.core.types import (
    NOTHING,
    CList,
    CRecord,
    CSeq,
    CType,
    CUnion,
    Tagged,
    render,
)

if TYPE_CHECKING:
    from constellation.core.dag import Transform
    from constellation.core.modules import ModuleDefinition

__all__ = ["PURE_OPS", "SELECTIVE_OPS", "compile_transform", "evaluate", "first_selector",
           "infer_transform_type", "select_step"]


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


def _render(value: Any) -> str:
    # String interpolation: None is "", booleans as the language writes them, lists
    # as [a, b], a union value as its value.
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, Tagged):
        return _render(value.value)
    return str(value)


def _project(value: Any, names: Sequence[str]) -> Any:
    if isinstance(value, list):
        return [_project(v, names) for v in value]
    return {n: value[n] for n in names}


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise ValueError(f"merging lists of different lengths ({len(a)} and {len(b)})")
        return [{**x, **y} for x, y in zip(a, b, strict=True)]
    if isinstance(a, list):
        return [{**x, **b} for x in a]
    return {**a, **b}


def _branch(p: dict[str, Any], a: Sequence[Any]) -> Any:
    n = p["cases"]
    for i in range(n):
        if a[i]:
            return a[n + i]
    return a[2 * n]


_TYPE_RULES: dict[str, Callable[[dict[str, Any], Sequence[CType]], CType]] = {
    "literal": lambda p, _a: p["type"],
    "field": lambda p, a: _field_type(a[0], p["name"]),
    "record": lambda p, a: CRecord.from_mapping(dict(zip(p["names"], a, strict=True))),
    "list": lambda _p, a: _list_type(a),
}

_EVALUATORS: dict[str, Callable[[dict[str, Any], Sequence[Any]], Any]] = {
    "literal": lambda p, _a: p["value"],
    "field": lambda p, a: _get_field(a[0], p["name"]),
    "record": lambda p, a: dict(zip(p["names"], a, strict=True)),
    "list": lambda _p, a: list(a),
    "project": lambda p, a: _project(a[0], p["names"]),
    "merge": lambda _p, a: _merge(a[0], a[1]),
    "interpolate": lambda p, a: "".join(
        part if isinstance(part, str) else _render(a[part]) for part in p["parts"]),
    "guard": lambda _p, a: a[0] if a[1] else None,
    "coalesce": lambda _p, a: a[0] if a[0] is not None else a[1],
    "if": lambda _p, a: a[1] if a[0] else a[2],
    "branch": _branch,
    "and": lambda _p, a: all(a),
    "or": lambda _p, a: any(a),
    "not": lambda _p, a: not a[0],
    "tag": lambda p, a: Tagged(p["tag"], a[0]),  # a value of a union: its variant's tag
}

# Operations whose result depends only on their inputs: safe to fold at compile time.
PURE_OPS = frozenset(_EVALUATORS)

# Operations that pick one of their inputs: with lazy calls among those inputs the
# runtime evaluates them step by step (see select_step) and computes only what is picked.
SELECTIVE_OPS = frozenset({"if", "coalesce", "guard", "branch"})


def first_selector(transform: Transform) -> int:
    """The input position a selective operation always reads first."""
    return 1 if transform.op == "guard" else 0


def select_step(transform: Transform) -> Callable[[Callable[[int], tuple[bool, Any]]],
                                                  tuple[int | None, Any]]:
    """A stepwise evaluator of a selective operation.

    The returned function takes ``get(position) -> (available, value)`` and returns
    ``(position, None)`` when it needs that input next, or ``(None, result)``.
    """
    op = transform.op
    if op not in SELECTIVE_OPS:
        raise ValueError(f"{op} is not a selective operation")
    cases = transform.param_map.get("cases", 0)

    def step(get: Callable[[int], tuple[bool, Any]]) -> tuple[int | None, Any]:
        if op == "if":
            ok, cond = get(0)
            if not ok:
                return 0, None
            pick = 1 if cond else 2
        elif op == "coalesce":
            ok, first = get(0)
            if not ok:
                return 0, None
            if first is not None:
                return None, first
            pick = 1
        elif op == "guard":
            ok, cond = get(1)
            if not ok:
                return 1, None
            if not cond:
                return None, None
            pick = 0
        else:  # branch: conditions 0..n-1, results n..2n-1, otherwise 2n
            pick = 2 * cases
            for i in range(cases):
                ok, cond = get(i)
                if not ok:
                    return i, None
                if cond:
                    pick = cases + i
                    break
        ok, value = get(pick)
        return (None, value) if ok else (pick, None)

    return step


def infer_transform_type(transform: Transform, arg_types: Sequence[CType]) -> CType:
    """Return the type a transform produces from arguments of ``arg_types``.

    Raises:
        TypeError: the operation is unknown or does not apply to these types.
    """
    rule = _TYPE_RULES.get(transform.op)
    if rule is None:
        raise TypeError(f"operation '{transform.op}' needs its type given by the compiler")
    return rule(transform.param_map, arg_types)


def evaluate(transform: Transform, args: Sequence[Any]) -> Any:
    """Compute a transform's value from its (already checked) argument values."""
    return _EVALUATORS[transform.op](transform.param_map, args)


def compile_transform(transform: Transform,
                      modules: Mapping[str, ModuleDefinition] | None = None
                      ) -> Callable[[Sequence[Any]], Any]:
    """Bind a transform once, for repeated evaluation (the runtime's per-plan step).

    Lambda operations (``filter``, ``map``, ``all``, ``any``) turn their body into a
    Python closure here, resolving the module functions it calls in ``modules``.
    """
    params = transform.param_map
    if transform.op == "match":
        return _match_closure(params["cases"], modules or {})
    if transform.op in _HIGHER_ORDER:
        body = _lambda_closure(params["body"], modules or {})
        return _HIGHER_ORDER[transform.op](body)
    fn = _EVALUATORS[transform.op]
    return lambda args: fn(params, args)


# --- lambdas -----------------------------------------------------------------------------
# A lambda body is a small tree of tuples, hashable and JSON-able so that it is part of
# the DagSpec's structure: ("param",) ("cap", i) ("lit", v) ("call", module, (args...))
# ("field", e, name) ("not", e) ("and", (es...)) ("or", (es...)) ("if", c, a, b)
# ("guard", v, c) ("coalesce", a, b) ("list", (es...)) ("record", names, (es...))
# ("interp", template, (es...)) where the template holds text and indexes into es,
# ("tag", tag, e) a value of a union type, tagged with its variant.
# Inputs of the transform: the list first, then the captured values in order.

Body = Callable[[Any, Sequence[Any]], Any]


def _lambda_closure(node: Any, modules: Mapping[str, ModuleDefinition]) -> Body:
    kind = node[0]
    if kind == "param":
        return lambda x, caps: x
    if kind == "cap":
        i = node[1]
        return lambda x, caps: caps[i]
    if kind == "lit":
        v = node[1]
        return lambda x, caps: v
    if kind == "call":
        func = modules[node[1]].func
        args = [_lambda_closure(a, modules) for a in node[2]]
        return lambda x, caps: func(*(a(x, caps) for a in args))
    if kind == "field":
        inner = _lambda_closure(node[1], modules)
        name = node[2]
        return lambda x, caps: _get_field(inner(x, caps), name)
    if kind == "not":
        inner = _lambda_closure(node[1], modules)
        return lambda x, caps: not inner(x, caps)
    if kind in ("and", "or", "list"):
        parts = [_lambda_closure(a, modules) for a in node[1]]
        if kind == "and":
            return lambda x, caps: all(p(x, caps) for p in parts)
        if kind == "or":
            return lambda x, caps: any(p(x, caps) for p in parts)
        return lambda x, caps: [p(x, caps) for p in parts]
    if kind == "record":
        names = node[1]
        parts = [_lambda_closure(a, modules) for a in node[2]]
        return lambda x, caps: {n: p(x, caps) for n, p in zip(names, parts, strict=True)}
    if kind == "if":
        c, a, b = (_lambda_closure(n, modules) for n in node[1:])
        return lambda x, caps: a(x, caps) if c(x, caps) else b(x, caps)
    if kind == "guard":
        v, c = (_lambda_closure(n, modules) for n in node[1:])
        return lambda x, caps: v(x, caps) if c(x, caps) else None
    if kind == "interp":
        template = node[1]
        parts = [_lambda_closure(a, modules) for a in node[2]]
        return lambda x, caps: "".join(
            p if isinstance(p, str) else _render(parts[p](x, caps)) for p in template)
    if kind == "tag":
        tag, inner = node[1], _lambda_closure(node[2], modules)
        return lambda x, caps: Tagged(tag, inner(x, caps))
    if kind == "coalesce":
        a, b = (_lambda_closure(n, modules) for n in node[1:])

        def coalesce(x: Any, caps: Sequence[Any]) -> Any:
            v = a(x, caps)
            return v if v is not None else b(x, caps)

        return coalesce
    raise ValueError(f"unknown lambda node {kind!r}")


def _match_closure(cases: Sequence[tuple[str, Any, Any]],
                   modules: Mapping[str, ModuleDefinition]) -> Callable[[Sequence[Any]], Any]:
    # Inputs: the subject, then captured values. A union subject is a Tagged value:
    # patterns look at its tag and bind fields of its value.
    compiled = [(kind, data, _lambda_closure(body, modules)) for kind, data, body in cases]

    def run(args: Sequence[Any]) -> Any:
        subject, caps = args[0], args[1:]
        tag = subject.tag if isinstance(subject, Tagged) else None
        value = subject.value if isinstance(subject, Tagged) else subject
        for kind, data, body in compiled:
            if (kind == "any" or (kind == "type" and (tag == data or tag is None))
                    or (kind == "record" and isinstance(value, dict)
                        and all(f in value for f in data))):
                return body(value, caps)
        raise ValueError(f"no case of the match fits the value {subject!r}")

    return run


_HIGHER_ORDER: dict[str, Callable[[Body], Callable[[Sequence[Any]], Any]]] = {
    "filter": lambda body: lambda a: [x for x in a[0] if body(x, a[1:])],
    "map": lambda body: lambda a: [body(x, a[1:]) for x in a[0]],
    "all": lambda body: lambda a: all(body(x, a[1:]) for x in a[0]),
    "any": lambda body: lambda a: any(body(x, a[1:]) for x in a[0]),
}
