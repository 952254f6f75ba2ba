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
from constellation.lang.trampoline import Step, run

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
        return [f"{d.name} = {run(_call_steps(value))}"]
    return [f"{d.name} = {print_expr(value)}"]


def _duration(d: A.Duration) -> str:
    return f"{d.amount}{d.unit}"


def print_type(t: A.TypeExpr) -> str:
    """A type expression (nested to any depth, without recursion)."""
    return run(_type_steps(t))


def _types(items: Any) -> Step[list[str]]:
    out: list[str] = []
    for item in items:
        out.append((yield _type_steps(item)))  # noqa: PERF401 - yield cannot be in a comprehension
    return out


def _type_steps(t: A.TypeExpr) -> Step[str]:
    match t:
        case A.TName(name):
            return name
        case A.TGeneric(name, args):
            return f"{name}<{', '.join((yield from _types(args)))}>"
        case A.TRecord(fields):
            texts = yield from _types(ft for _, ft in fields)
            return "{" + ", ".join(f"{n}: {ft}" for (n, _), ft in zip(fields, texts,
                                                                       strict=True)) + "}"
        case A.TUnion(members):
            return " | ".join((yield from _types(members)))
        case A.TMerge(parts):
            return " + ".join((yield from _types(parts)))
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
    """An expression, parenthesized if it binds looser than ``min_level``.

    Runs on the trampoline: expressions nested to any depth print without recursion.
    """
    return run(_print(e, min_level))


def _print(e: Any, min_level: int = LAMBDA) -> Step[str]:
    text = yield _expr(e)
    return f"({text})" if _level(e) < min_level else text


def _all(items: Any, min_level: int = LAMBDA) -> Step[list[str]]:
    out: list[str] = []
    for item in items:
        out.append((yield _print(item, min_level)))  # noqa: PERF401 - yield cannot be in a comprehension
    return out


def _expr(e: Any) -> Step[str]:
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
            texts = []
            for p in parts:
                texts.append(_text(p) if isinstance(p, str) else  # noqa: PERF401 - yield cannot be in a comprehension
                             "${" + (yield _print(p)) + "}")
            return '"' + "".join(texts) + '"'
        case A.ListLit(items):
            return "[" + ", ".join((yield from _all(items))) + "]"
        case A.RecordLit(fields):
            values = yield from _all(v for _, v in fields)
            return "{" + ", ".join(f"{n}: {v}" for (n, _), v in zip(fields, values,
                                                                     strict=True)) + "}"
        case A.Call(options=options) if options:
            # Options need parentheses unless the call is a whole assignment
            # (handled in _declaration): "f(x) with retry: 1" would swallow what follows.
            return f"({(yield from _call_steps(e))})"
        case A.Call():
            return (yield from _call_steps(e))
        case A.Arith(first, rest):
            level = _level(e)
            text: str = yield _print(first, level + 1)
            operands = yield from _all((operand for _, operand in rest), level + 1)
            for (op, _), operand_text in zip(rest, operands, strict=True):
                text += f" {op} {operand_text}"
            return text
        case A.Compare(left, op, right):
            return f"{(yield _print(left, ADD))} {op} {(yield _print(right, ADD))}"
        case A.BoolOp(op, operands):
            inner = AND if op == "or" else NOT
            return f" {op} ".join((yield from _all(operands, inner)))
        case A.Not(operand):
            return f"not {(yield _print(operand, NOT))}"
        case A.Guard(value, condition):
            return f"{(yield _print(value, OR))} when {(yield _print(condition, OR))}"
        case A.Coalesce(left, right):
            return f"{(yield _print(left, GUARD))} ?? {(yield _print(right, COALESCE))}"
        case A.If(condition, then, otherwise):
            c, a, b = yield from _all((condition, then, otherwise))
            return f"if ({c}) {a} else {b}"
        case A.Branch(cases, otherwise):
            texts = yield from _all([x for case in cases for x in case] + [otherwise])
            body = ", ".join(f"{texts[2 * i]} -> {texts[2 * i + 1]}" for i in range(len(cases)))
            sep = ", " if cases else ""
            return f"branch {{ {body}{sep}otherwise -> {texts[-1]} }}"
        case A.Match(subject, cases):
            subject_text = yield _print(subject, PRIMARY)
            values = yield from _all(v for _, v in cases)
            body = ", ".join(f"{_pattern(p)} -> {v}" for (p, _), v in zip(cases, values,
                                                                           strict=True))
            return f"match {subject_text} {{ {body} }}"
        case A.Lambda(params, body):
            ps = ", ".join(n if t is None else f"{n}: {print_type(t)}" for n, t in params)
            return f"({ps}) => {(yield _print(body))}"
        case A.FieldAccess(target, field):
            return f"{(yield _print(target, POSTFIX))}.{field}"
        case A.Project(target, fields, brackets):
            close = "]" if brackets == "[" else "}"
            return f"{(yield _print(target, POSTFIX))}{brackets}{', '.join(fields)}{close}"
    raise TypeError(f"not an expression: {e!r}")


def _call_steps(c: A.Call) -> Step[str]:
    args = yield from _all(c.args)
    text = f"{c.func}({', '.join(args)})"
    if c.options:
        opts = []
        for o in c.options:
            opts.append((yield from _option_steps(o)))  # noqa: PERF401 - yield cannot be in a comprehension
        text += " with " + ", ".join(opts)
    return text


def _option_steps(o: A.Option) -> Step[str]:
    if o.value is None:
        return o.name
    if isinstance(o.value, A.Duration):
        return f"{o.name}: {_duration(o.value)}"
    if isinstance(o.value, A.Rate):
        return f"{o.name}: {o.value.count}/{_duration(o.value.per)}"
    return f"{o.name}: {(yield _print(o.value))}"


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


def _text(part: str) -> str:
    return "".join(_STRING_ESCAPES.get(ch, ch) for ch in part)


def _float(value: float) -> str:
    text = repr(value)
    if "e" in text or "inf" in text or "nan" in text:
        text = f"{value:.17f}".rstrip("0")
        if text.endswith("."):
            text += "0"
    return text
