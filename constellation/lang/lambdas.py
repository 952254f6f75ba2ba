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
    CUnion,
    is_subtype,
    render,
)
from constellation.lang import ast as A
from constellation.lang.limits import MAX_NESTING
from constellation.lang.resolution import suggest
from constellation.lang.trampoline import Step, run
from constellation.lang.type_rules import common_type, field_type

if TYPE_CHECKING:
    from constellation.lang.compiler import _Compiler
    from constellation.lang.emission import Value

__all__ = ["ARITH", "ORDER", "LambdaCompiler"]

ARITH = {"+": "stdlib.math.add", "-": "stdlib.math.subtract", "*": "stdlib.math.multiply",
         "/": "stdlib.math.divide"}
ORDER = {"<": "stdlib.compare.lt", ">": "stdlib.compare.gt", "<=": "stdlib.compare.lte",
         ">=": "stdlib.compare.gte"}


class LambdaCompiler:
    """Compiles a lambda body into the tuple form run by ``filter``/``map``/``all``/``any``.

    Outer names the body uses are captured: they become extra inputs of the transform.
    The walk runs on the trampoline; bodies nested deeper than ``MAX_NESTING`` are an
    error (E150), because the runtime evaluates them as nested closures.
    """

    def __init__(self, outer: _Compiler, bindings: dict[str, tuple[tuple[Any, ...], CType]],
                 captures: list[Value], *, in_match: bool = False) -> None:
        self.outer = outer
        self.bindings = bindings  # names bound inside: a lambda's parameter, match fields
        self.captures = captures
        self.capture_index: dict[str, int] = {}
        self.where = "a match case" if in_match else "a lambda"

    def compile(self, e: A.Expr) -> tuple[tuple[Any, ...], CType]:
        """The body's tuple form and its type.

        Raises:
            _Failed: an error, already reported to the outer compiler.
        """
        return run(self._compile(e, 0))

    def _compile(self, e: A.Expr, depth: int) -> Step[tuple[tuple[Any, ...], CType]]:
        o = self.outer
        if depth > MAX_NESTING:
            raise o.fail("E150", f"the body of {self.where} nests more than {MAX_NESTING} "
                                 "levels deep; assign parts of it to names outside", e.pos)
        sub = depth + 1
        match e:
            case A.Name(name) if name in self.bindings:
                return self.bindings[name]
            case A.Name(name):
                if name not in o.env:
                    raise o.fail("E130", f"undefined name '{name}' in {self.where}"
                                         f"{suggest(name, [*o.env, *self.bindings])}", e.pos)
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
                        nodes.append((yield self._compile(part, sub))[0])
                return ("interp", tuple(template), tuple(nodes)), STRING
            case A.Call(func, args) if o.higher_order(func) is not None:
                raise o.fail("E128", f"{func} cannot be used inside {self.where}: "
                                     "filter, map, all and any do not nest; compute it "
                                     "outside and use the name", e.pos)
            case A.Call(func, args) if not e.options:
                mdef = o.resolve(func, e.pos)
                params = list(mdef.inputs.items())
                if len(args) != len(params):
                    raise o.fail("E124", f"{func} takes {len(params)} argument(s), got "
                                         f"{len(args)}", e.pos)
                compiled = []
                for (pname, ptype), arg in zip(params, args, strict=True):
                    node, t = yield self._compile(arg, sub)
                    if not is_subtype(t, ptype):
                        raise o.fail("E122", f"argument '{pname}' of {mdef.name} expects "
                                             f"{render(ptype)}, got {render(t)}", arg.pos)
                    compiled.append(node)
                return ("call", mdef.name, tuple(compiled)), mdef.output
            case A.Call():
                raise o.fail("E128", f"a call with options cannot be used inside "
                                     f"{self.where}; call it outside and use the name", e.pos)
            case A.Arith(first, rest):
                node, t = yield self._compile(first, sub)
                for op, operand in rest:
                    rnode, rt = yield self._compile(operand, sub)
                    if not (is_subtype(t, INT) and is_subtype(rt, INT)):
                        raise o.fail("E126", f"'{op}' needs Int operands", operand.pos)
                    o.operator_module(ARITH[op], op, operand.pos)
                    node, t = ("call", ARITH[op], (node, rnode)), INT
                return node, t
            case A.Compare(left, op, right):
                a, at = yield self._compile(left, sub)
                b, bt = yield self._compile(right, sub)
                ints = is_subtype(at, INT) and is_subtype(bt, INT)
                if op in ("==", "!="):
                    if ints:
                        o.operator_module("stdlib.compare.eq-int", op, e.pos)
                        node = ("call", "stdlib.compare.eq-int", (a, b))
                    elif is_subtype(at, STRING) and is_subtype(bt, STRING):
                        o.operator_module("stdlib.compare.eq-string", op, e.pos)
                        node = ("call", "stdlib.compare.eq-string", (a, b))
                    elif at != bt:
                        raise o.fail("E122", f"'{op}' needs two values of the same type, "
                                             f"got {render(at)} and {render(bt)}", e.pos)
                    else:
                        raise o.fail("E127", f"'{op}' compares two Ints or two Strings",
                                     e.pos)
                    return (("not", node) if op == "!=" else node), BOOLEAN
                if not ints:
                    raise o.fail("E127", f"'{op}' compares Ints", e.pos)
                o.operator_module(ORDER[op], op, e.pos)
                return ("call", ORDER[op], (a, b)), BOOLEAN
            case A.BoolOp(op, operands):
                nodes = []
                for x in operands:
                    nodes.append((yield from self._bool(x, sub)))
                return (op, tuple(nodes)), BOOLEAN
            case A.Not(operand):
                return ("not", (yield from self._bool(operand, sub))), BOOLEAN
            case A.If(condition, then, otherwise):
                c = yield from self._bool(condition, sub)
                a, at = yield self._compile(then, sub)
                b, bt = yield self._compile(otherwise, sub)
                if_type = common_type([at, bt])
                if if_type is None:  # a union, as outside lambdas: tag each side
                    if_type = CUnion.of(at, bt)
                    a, b = _tag(a, at), _tag(b, bt)
                return ("if", c, a, b), if_type
            case A.FieldAccess(target, name):
                node, t = yield self._compile(target, sub)
                ft = field_type(t, name)
                if ft is None:
                    raise o.fail("E135", f"{render(t)} has no field '{name}'", e.pos)
                return ("field", node, name), ft
            case A.ListLit(items):
                compiled_items = []
                for i in items:
                    compiled_items.append((yield self._compile(i, sub)))  # noqa: PERF401 - yield cannot be in a comprehension
                elem = common_type(t for _, t in compiled_items) if compiled_items \
                    else NOTHING
                if elem is None:
                    raise o.fail("E122", "list items have different types", e.pos)
                return ("list", tuple(n for n, _ in compiled_items)), CList(elem)
            case A.RecordLit(fields):
                compiled_fields = []
                for _, v in fields:
                    compiled_fields.append((yield self._compile(v, sub)))
                names = tuple(n for n, _ in fields)
                return (("record", names, tuple(n for n, _ in compiled_fields)),
                        CRecord.from_mapping({n: t for n, (_, t) in
                                              zip(names, compiled_fields, strict=True)}))
            case A.Guard(value, condition):
                v, vt = yield self._compile(value, sub)
                return ("guard", v, (yield from self._bool(condition, sub))), (
                    vt if isinstance(vt, COptional) else COptional(vt))
            case A.Coalesce(left, right):
                a, at = yield self._compile(left, sub)
                b, bt = yield self._compile(right, sub)
                if not isinstance(at, COptional):
                    raise o.fail("E122", f"'??' needs an Optional value on its left, got "
                                         f"{render(at)}", left.pos)
                if not (is_subtype(bt, at.inner) or is_subtype(bt, at)):
                    raise o.fail("E122", f"'??' needs a fallback of type "
                                         f"{render(at.inner)}, got {render(bt)}", right.pos)
                return ("coalesce", a, b), bt if isinstance(bt, COptional) else at.inner
            case A.Match():
                raise o.fail("E128", f"a match cannot be used inside {self.where}; match "
                                     "outside it and use the name", e.pos)
            case A.Lambda():
                raise o.fail("E128", f"a lambda cannot be used inside {self.where}", e.pos)
            case A.Branch():
                raise o.fail("E128", f"branch cannot be used inside {self.where}; use "
                                     "if (...) ... else ...", e.pos)
            case A.Project():
                raise o.fail("E128", f"a projection cannot be used inside {self.where}; "
                                     "use field access (x.name)", e.pos)
        raise o.fail("E128", f"{type(e).__name__} is not supported inside {self.where}",
                     e.pos)

    def _bool(self, e: A.Expr, depth: int) -> Step[tuple[Any, ...]]:
        node, t = yield self._compile(e, depth)
        if not is_subtype(t, BOOLEAN):
            raise self.outer.fail("E122", f"expected a Boolean, got {render(t)}", e.pos)
        return node  # type: ignore[no-any-return]


def _tag(node: tuple[Any, ...], t: CType) -> tuple[Any, ...]:
    return node if isinstance(t, CUnion) else ("tag", render(t), node)
