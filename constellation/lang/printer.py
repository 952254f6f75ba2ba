"""Print a syntax tree back to constellation-lang source.

``parse(print_pipeline(p)) == p`` for every tree the parser can produce: operands are
parenthesized exactly where precedence or associativity requires it, strings are
escaped, and a chain such as ``a + b + c`` stays one chain.

Known limit of the language, not of the printer: the text of an interpolation
``"${...}"`` cannot contain ``}``.
"""

from __future__ import annotations

from typing import Any

from constellation.lang import ast as A

__all__ = ["print_expr", "print_pipeline", "print_type"]

# Binding strength, loosest first; an operand printed where a stronger level is needed
# gets parentheses.
LAMBDA, COALESCE, GUARD, OR, AND, NOT, COMPARE, ADD, MUL, POSTFIX, PRIMARY = range(11)


def print_pipeline(pipeline: A.Pipeline) -> str:
    """The whole program, one declaration per line."""
    lines = [_annotation(a) for a in pipeline.annotations]
    for d in pipeline.declarations:
        lines.extend(_declaration(d))
    return "\n".join(lines) + "\n"


def _annotation(a: A.Annotation) -> str:
    if a.value is None:
        return f"@{a.name}()"
    if isinstance(a.value, A.Duration):
        return f"@{a.name}({_duration(a.value)})"
    return f"@{a.name}({print_expr(a.value)})"


def _declaration(d: A.Declaration) -> list[str]:
    if isinstance(d, A.TypeDef):
        return [f"type {d.name} = {print_type(d.type)}"]
    if isinstance(d, A.Input):
        return [*(_annotation(a) for a in d.annotations), f"in {d.name}: {print_type(d.type)}"]
    if isinstance(d, A.Output):
        return [f"out {d.name}"]
    if isinstance(d, A.Use):
        return [f"use {d.path}" + (f" as {d.alias}" if d.alias else "")]
    value = d.value
    if isinstance(value, A.Call) and value.options:
        opts = ", ".join(_option(o) for o in value.options)
        return [f"{d.name} = {_call(value)} with {opts}"]
    return [f"{d.name} = {print_expr(value)}"]


def _option(o: A.Option) -> str:
    if o.value is None:
        return o.name
    if isinstance(o.value, A.Duration):
        return f"{o.name}: {_duration(o.value)}"
    if isinstance(o.value, A.Rate):
        return f"{o.name}: {o.value.count}/{_duration(o.value.per)}"
    return f"{o.name}: {print_expr(o.value)}"


def _duration(d: A.Duration) -> str:
    return f"{d.amount}{d.unit}"


def print_type(t: A.TypeExpr) -> str:
    """A type expression."""
    match t:
        case A.TName(name):
            return name
        case A.TGeneric(name, args):
            return f"{name}<{', '.join(print_type(a) for a in args)}>"
        case A.TRecord(fields):
            return "{" + ", ".join(f"{n}: {print_type(ft)}" for n, ft in fields) + "}"
        case A.TUnion(members):
            return " | ".join(print_type(m) for m in members)
        case A.TMerge(parts):
            return " + ".join(print_type(p) for p in parts)
    raise TypeError(f"not a type expression: {t!r}")


def _level(e: Any) -> int:
    match e:
        case A.Lambda() | A.If():
            return LAMBDA  # an if's else-branch would swallow what follows it
        case A.Coalesce():
            return COALESCE
        case A.Guard():
            return GUARD
        case A.BoolOp(op="or"):
            return OR
        case A.BoolOp():
            return AND
        case A.Not():
            return NOT
        case A.Compare():
            return COMPARE
        case A.Arith(rest=rest):
            return ADD if rest and rest[0][0] in "+-" else MUL
        case A.FieldAccess() | A.Project():
            return POSTFIX
    return PRIMARY


def print_expr(e: A.Expr, min_level: int = LAMBDA) -> str:
    """An expression, parenthesized if it binds looser than ``min_level``."""
    text = _expr(e)
    return f"({text})" if _level(e) < min_level else text


def _expr(e: Any) -> str:
    match e:
        case A.Name(name):
            return name
        case A.IntLit(value):
            return str(value)
        case A.FloatLit(value):
            return _float(value)
        case A.BoolLit(value):
            return "true" if value else "false"
        case A.StringLit(parts):
            return '"' + "".join(_string_part(p) for p in parts) + '"'
        case A.ListLit(items):
            return "[" + ", ".join(print_expr(i) for i in items) + "]"
        case A.RecordLit(fields):
            return "{" + ", ".join(f"{n}: {print_expr(v)}" for n, v in fields) + "}"
        case A.Call(options=options) if options:
            # Options need parentheses unless the call is a whole assignment
            # (handled in _declaration): "f(x) with retry: 1" would swallow what follows.
            opts = ", ".join(_option(o) for o in options)
            return f"({_call(e)} with {opts})"
        case A.Call():
            return _call(e)
        case A.Arith(first, rest):
            level = _level(e)
            text = print_expr(first, level + 1)
            for op, operand in rest:
                text += f" {op} {print_expr(operand, level + 1)}"
            return text
        case A.Compare(left, op, right):
            return f"{print_expr(left, ADD)} {op} {print_expr(right, ADD)}"
        case A.BoolOp(op, operands):
            inner = AND if op == "or" else NOT
            return f" {op} ".join(print_expr(o, inner) for o in operands)
        case A.Not(operand):
            return f"not {print_expr(operand, NOT)}"
        case A.Guard(value, condition):
            return f"{print_expr(value, OR)} when {print_expr(condition, OR)}"
        case A.Coalesce(left, right):
            return f"{print_expr(left, GUARD)} ?? {print_expr(right, COALESCE)}"
        case A.If(condition, then, otherwise):
            return f"if ({print_expr(condition)}) {print_expr(then)} else {print_expr(otherwise)}"
        case A.Branch(cases, otherwise):
            body = ", ".join(f"{print_expr(c)} -> {print_expr(v)}" for c, v in cases)
            sep = ", " if cases else ""
            return f"branch {{ {body}{sep}otherwise -> {print_expr(otherwise)} }}"
        case A.Match(subject, cases):
            body = ", ".join(f"{_pattern(p)} -> {print_expr(v)}" for p, v in cases)
            return f"match {print_expr(subject, PRIMARY)} {{ {body} }}"
        case A.Lambda(params, body):
            ps = ", ".join(n if t is None else f"{n}: {print_type(t)}" for n, t in params)
            return f"({ps}) => {print_expr(body)}"
        case A.FieldAccess(target, field):
            return f"{print_expr(target, POSTFIX)}.{field}"
        case A.Project(target, fields, brackets):
            close = "]" if brackets == "[" else "}"
            return f"{print_expr(target, POSTFIX)}{brackets}{', '.join(fields)}{close}"
    raise TypeError(f"not an expression: {e!r}")


def _call(c: A.Call) -> str:
    return f"{c.func}({', '.join(print_expr(a) for a in c.args)})"


def _pattern(p: A.Pattern) -> str:
    match p:
        case A.PRecord(fields):
            return "{" + ", ".join(fields) + "}"
        case A.PWildcard():
            return "_"
        case A.PType(type_):
            return f"is {print_type(type_)}"
    raise TypeError(f"not a pattern: {p!r}")


_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\t": "\\t",
                   "\r": "\\r"}


def _string_part(part: Any) -> str:
    if isinstance(part, str):
        return "".join(_STRING_ESCAPES.get(ch, ch) for ch in part)
    return "${" + print_expr(part) + "}"


def _float(value: float) -> str:
    text = repr(value)
    if "e" in text or "inf" in text or "nan" in text:
        text = f"{value:.17f}".rstrip("0")
        if text.endswith("."):
            text += "0"
    return text
