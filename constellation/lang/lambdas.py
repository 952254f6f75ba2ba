"""Lambda bodies and match cases, compiled to the tuple form run by inline operations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constellation.core.types import (
    BOOLEAN,
    FLOAT,
    INT,
    NOTHING,
    STRING,
    CList,
    COptional,
    CRecord,
    CType,
    is_subtype,
    render,
)
from constellation.lang import ast as A
from constellation.lang.type_rules import common_type, field_type

if TYPE_CHECKING:
    from constellation.lang.compiler import _Compiler, _Value

__all__ = ["ARITH", "ORDER", "LambdaCompiler"]

ARITH = {"+": "stdlib.math.add", "-": "stdlib.math.subtract", "*": "stdlib.math.multiply",
         "/": "stdlib.math.divide"}
ORDER = {"<": "stdlib.compare.lt", ">": "stdlib.compare.gt", "<=": "stdlib.compare.lte",
         ">=": "stdlib.compare.gte"}


class LambdaCompiler:
    """Compiles a lambda body into the tuple form run by ``filter``/``map``/``all``/``any``.

    Outer names the body uses are captured: they become extra inputs of the transform.
    """

    def __init__(self, outer: _Compiler, bindings: dict[str, tuple[tuple[Any, ...], CType]],
                 captures: list[_Value]) -> None:
        self.outer = outer
        self.bindings = bindings  # names bound inside: a lambda's parameter, match fields
        self.captures = captures
        self.capture_index: dict[str, int] = {}

    def compile(self, e: A.Expr) -> tuple[tuple[Any, ...], CType]:
        o = self.outer
        match e:
            case A.Name(name) if name in self.bindings:
                return self.bindings[name]
            case A.Name(name):
                if name not in o.env:
                    raise o.fail("E130", f"undefined name '{name}' in the lambda", e.pos)
                if name not in self.capture_index:
                    self.capture_index[name] = len(self.captures)
                    self.captures.append(o.env[name])
                return ("cap", self.capture_index[name]), o.env[name].type
            case A.IntLit():
                return ("lit", e.value), INT
            case A.FloatLit():
                return ("lit", e.value), FLOAT
            case A.BoolLit():
                return ("lit", e.value), BOOLEAN
            case A.StringLit(parts) if all(isinstance(p, str) for p in parts):
                return ("lit", "".join(parts)), STRING  # type: ignore[arg-type]
            case A.StringLit(parts):
                template: list[str | int] = []
                nodes: list[tuple[Any, ...]] = []
                for part in parts:
                    if isinstance(part, str):
                        template.append(part)
                    else:
                        template.append(len(nodes))
                        nodes.append(self.compile(part)[0])
                return ("interp", tuple(template), tuple(nodes)), STRING
            case A.Call(func, args) if not e.options:
                mdef = o.resolve(func, e.pos)
                params = list(mdef.inputs.items())
                if len(args) != len(params):
                    raise o.fail("E124", f"{func} takes {len(params)} argument(s), got "
                                         f"{len(args)}", e.pos)
                compiled = []
                for (pname, ptype), arg in zip(params, args, strict=True):
                    node, t = self.compile(arg)
                    if not is_subtype(t, ptype):
                        raise o.fail("E122", f"argument '{pname}' of {mdef.name} expects "
                                             f"{render(ptype)}, got {render(t)}", arg.pos)
                    compiled.append(node)
                return ("call", mdef.name, tuple(compiled)), mdef.output
            case A.Arith(first, rest):
                node, t = self.compile(first)
                for op, operand in rest:
                    rnode, rt = self.compile(operand)
                    if not (is_subtype(t, INT) and is_subtype(rt, INT)):
                        raise o.fail("E126", f"'{op}' needs Int operands", operand.pos)
                    node, t = ("call", ARITH[op], (node, rnode)), INT
                return node, t
            case A.Compare(left, op, right):
                a, at = self.compile(left)
                b, bt = self.compile(right)
                if op in ("==", "!="):
                    if is_subtype(at, INT) and is_subtype(bt, INT):
                        node = ("call", "stdlib.compare.eq-int", (a, b))
                    elif is_subtype(at, STRING) and is_subtype(bt, STRING):
                        node = ("call", "stdlib.compare.eq-string", (a, b))
                    else:
                        raise o.fail("E127", f"'{op}' compares two Ints or two Strings",
                                     e.pos)
                    return (("not", node) if op == "!=" else node), BOOLEAN
                if not (is_subtype(at, INT) and is_subtype(bt, INT)):
                    raise o.fail("E127", f"'{op}' compares Ints", e.pos)
                return ("call", ORDER[op], (a, b)), BOOLEAN
            case A.BoolOp(op, operands):
                nodes = [self._bool(x) for x in operands]
                return (op, tuple(nodes)), BOOLEAN
            case A.Not(operand):
                return ("not", self._bool(operand)), BOOLEAN
            case A.If(condition, then, otherwise):
                c = self._bool(condition)
                a, at = self.compile(then)
                b, bt = self.compile(otherwise)
                if_type = common_type([at, bt])
                if if_type is None:
                    raise o.fail("E122", "the branches of 'if' have different types", e.pos)
                return ("if", c, a, b), if_type
            case A.FieldAccess(target, name):
                node, t = self.compile(target)
                ft = field_type(t, name)
                if ft is None:
                    raise o.fail("E135", f"{render(t)} has no field '{name}'", e.pos)
                return ("field", node, name), ft
            case A.ListLit(items):
                compiled = [self.compile(i) for i in items]
                elem = common_type(t for _, t in compiled) if compiled else NOTHING
                if elem is None:
                    raise o.fail("E122", "list items have different types", e.pos)
                return ("list", tuple(n for n, _ in compiled)), CList(elem)
            case A.RecordLit(fields):
                compiled = [self.compile(v) for _, v in fields]
                names = tuple(n for n, _ in fields)
                return (("record", names, tuple(n for n, _ in compiled)),
                        CRecord.from_mapping({n: t for n, (_, t) in
                                              zip(names, compiled, strict=True)}))
            case A.Guard(value, condition):
                v, vt = self.compile(value)
                return ("guard", v, self._bool(condition)), (
                    vt if isinstance(vt, COptional) else COptional(vt))
            case A.Coalesce(left, right):
                a, at = self.compile(left)
                b, bt = self.compile(right)
                return ("coalesce", a, b), bt
        raise o.fail("E128", f"{type(e).__name__} is not supported inside a lambda", e.pos)

    def _bool(self, e: A.Expr) -> tuple[Any, ...]:
        node, t = self.compile(e)
        if not is_subtype(t, BOOLEAN):
            raise self.outer.fail("E122", f"expected a Boolean, got {render(t)}", e.pos)
        return node
