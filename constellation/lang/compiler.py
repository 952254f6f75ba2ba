"""Compile constellation-lang source to a typed DagSpec.

parse → resolve names and check types (every problem collected, with its position) →
emit data and module nodes, removing common subexpressions and folding constants as
they are emitted → drop nodes no output needs. Module calls become module nodes;
everything else (literals, field access, conditionals, guards, interpolation, lambdas
over lists) becomes an inline transform.

Name resolution follows the original engine: with no ``use`` declaration every
standard-library function resolves by its simple name; once a ``use`` exists only the
imported namespaces (and aliases) do. Fully qualified names always resolve, and
modules without a namespace (``Uppercase``) always resolve by name.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from constellation.core.dag import DagSpec, DataNode, ModuleNode, Transform
from constellation.core.errors import CompilationError, Diagnostic
from constellation.core.options import CallOptions, call_output_type
from constellation.core.transforms import PURE_OPS, evaluate
from constellation.core.types import (
    BOOLEAN,
    FLOAT,
    GENERIC_ARITY,
    INT,
    NOTHING,
    SCALAR_TYPES,
    STRING,
    CList,
    COptional,
    CRecord,
    CSeq,
    CString,
    CType,
    CUnion,
    generic_type,
    is_subtype,
    render,
)
from constellation.lang import ast as A
from constellation.lang.call_options import check_options
from constellation.lang.lambdas import ARITH, ORDER, LambdaCompiler
from constellation.lang.parser import parse, snippet
from constellation.lang.type_rules import (
    common_type,
    field_names,
    field_type,
    is_recordish,
    merge_type,
    project_type,
)
from constellation.stdlib.functions import HIGHER_ORDER

if TYPE_CHECKING:
    from collections.abc import Mapping

    from constellation.core.modules import ModuleDefinition

__all__ = ["CompiledSource", "compile_source"]

# Standard-library modules whose calls may be evaluated while compiling.
_FOLDABLE_PREFIXES = ("stdlib.math.", "stdlib.string.", "stdlib.list.", "stdlib.bool.",
                      "stdlib.compare.", "stdlib.convert.")


@dataclass(frozen=True)
class CompiledSource:
    """What :func:`compile_source` returns.

    Attributes:
        spec: the typed DagSpec.
        warnings: non-fatal diagnostics (severity ``"warning"``).
        syntactic_hash: SHA-256 of the source text.
    """

    spec: DagSpec
    warnings: tuple[Diagnostic, ...] = ()
    syntactic_hash: str = ""


@dataclass
class _Value:
    ref: str
    type: CType
    const: Any = field(default=None)
    is_const: bool = False


class _Failed(Exception):  # noqa: N818 - a signal, not an error to show
    """Internal: the expression has an error that was already reported."""


def compile_source(source: str, modules: Mapping[str, ModuleDefinition],
                   name: str = "pipeline") -> CompiledSource:
    """Compile constellation-lang ``source`` against ``modules``.

    Raises:
        CompilationError: every syntax, name, type and option error, located.
    """
    tree = parse(source)
    compiler = _Compiler(source, modules, name)
    spec = compiler.run(tree)
    errors = [d for d in compiler.diagnostics if d.severity == "error"]
    if errors:
        raise CompilationError(errors)
    assert spec is not None
    return CompiledSource(spec, tuple(d for d in compiler.diagnostics
                                      if d.severity == "warning"),
                          hashlib.sha256(source.encode()).hexdigest())


class _Compiler:
    Failed = _Failed  # raised by fail(); other compiler modules catch it through here

    def __init__(self, source: str, modules: Mapping[str, ModuleDefinition], name: str
                 ) -> None:
        self.source = source
        self.modules = modules
        self.name = name
        self.diagnostics: list[Diagnostic] = []
        self.data: dict[str, DataNode] = {}
        self.calls: list[ModuleNode] = []
        self.cse: dict[Any, _Value] = {}
        self.env: dict[str, _Value] = {}
        self.aliases: dict[str, CType] = {}
        self.uses: list[A.Use] = []
        self.counter = 0
        self.call_counts: dict[str, int] = {}

    # --- diagnostics ---------------------------------------------------------------------

    def error(self, code: str, message: str, pos: A.Pos | None,
              severity: str = "error") -> None:
        line, col = (pos.line, pos.column) if pos else (0, 0)
        self.diagnostics.append(Diagnostic(code, message, line, col,
                                           snippet(self.source, line, col) if pos else "",
                                           severity))

    def fail(self, code: str, message: str, pos: A.Pos | None) -> _Failed:
        self.error(code, message, pos)
        return _Failed()

    # --- program -------------------------------------------------------------------------

    def run(self, tree: A.Pipeline) -> DagSpec | None:
        inputs: dict[str, str] = {}
        outputs: dict[str, str] = {}
        declared: dict[str, A.Pos | None] = {}
        for decl in tree.declarations:
            if isinstance(decl, A.Use):
                self._use(decl)
        for decl in tree.declarations:
            if isinstance(decl, A.TypeDef):
                with contextlib.suppress(_Failed):
                    self.aliases[decl.name] = self.type_of(decl.type)
            elif isinstance(decl, A.Input | A.Assign):
                if decl.name in declared:
                    self.error("E131", f"'{decl.name}' is declared twice (first on line "
                                       f"{_line(declared[decl.name])})", decl.pos)
                    continue
                declared[decl.name] = decl.pos
                if isinstance(decl, A.Input):
                    self._input(decl, inputs)
                else:
                    with contextlib.suppress(_Failed):
                        self.env[decl.name] = self.expr(decl.value, top=decl.name)
            elif isinstance(decl, A.Output):
                if decl.name in outputs:
                    self.error("E131", f"output '{decl.name}' is declared twice", decl.pos)
                elif decl.name in self.env:
                    outputs[decl.name] = self.env[decl.name].ref
                elif decl.name not in declared:
                    self.error("E130", f"undefined name '{decl.name}'"
                                       f"{self._suggest(decl.name, list(self.env))}", decl.pos)
        timeout = None
        for ann in tree.annotations:
            if ann.name == "timeout" and isinstance(ann.value, A.Duration):
                timeout = ann.value.seconds
        if any(d.severity == "error" for d in self.diagnostics):
            return None
        return self._finish(inputs, outputs, timeout)

    def _use(self, decl: A.Use) -> None:
        prefix = decl.path + "."
        if not any(n.startswith(prefix) for n in self.modules) and decl.path not in (
                "stdlib.collection",):
            namespaces = sorted({n.rsplit(".", 1)[0] for n in self.modules if "." in n})
            self.error("E111", f"unknown namespace '{decl.path}'"
                               f"{self._suggest(decl.path, namespaces)}", decl.pos)
            return
        self.uses.append(decl)

    def _input(self, decl: A.Input, inputs: dict[str, str]) -> None:
        try:
            ctype = self.type_of(decl.type)
        except _Failed:
            return
        for ann in decl.annotations:
            if isinstance(ann.value, A.Duration) or ann.value is None:
                self.error("E106", "@example takes a value", ann.pos)
                continue
            try:
                example = self.expr(ann.value)
            except _Failed:
                continue
            if not is_subtype(example.type, ctype):
                self.error("E132", f"@example of '{decl.name}' is {render(example.type)}, "
                                   f"but the input is {render(ctype)}", ann.pos)
        did = f"in:{decl.name}"
        self.data[did] = DataNode(did, decl.name, ctype)
        inputs[decl.name] = did
        self.env[decl.name] = _Value(did, ctype)

    def _finish(self, inputs: dict[str, str], outputs: dict[str, str],
                timeout: float | None) -> DagSpec:
        # Dead code: keep what an output needs (and every declared input).
        producers = {m.output: m for m in self.calls}
        needed: set[str] = set(inputs.values())
        stack = list(outputs.values())
        while stack:
            did = stack.pop()
            if did in needed:
                continue
            needed.add(did)
            node = self.data[did]
            stack.extend(node.inputs)
            if did in producers:
                stack.extend(ref for _, ref in producers[did].args)
        data = tuple(d for d in self.data.values() if d.id in needed)
        calls = tuple(m for m in self.calls if m.output in needed)
        return DagSpec(self.name, tuple(inputs.items()), data, calls, tuple(outputs.items()),
                       timeout)

    # --- types ---------------------------------------------------------------------------

    def type_of(self, t: A.TypeExpr) -> CType:
        match t:
            case A.TName(name):
                found = SCALAR_TYPES.get(name) or self.aliases.get(name)
                if found is None:
                    known = [*SCALAR_TYPES, *self.aliases]
                    raise self.fail("E133", f"unknown type '{name}'"
                                            f"{self._suggest(name, known)}", t.pos)
                return found
            case A.TGeneric(name, args):
                if name not in GENERIC_ARITY:
                    raise self.fail("E133", f"unknown generic type '{name}'", t.pos)
                if len(args) != GENERIC_ARITY[name]:
                    raise self.fail("E133", f"{name} takes {GENERIC_ARITY[name]} type "
                                            "argument(s)", t.pos)
                return generic_type(name, [self.type_of(a) for a in args])
            case A.TRecord(fields):
                return CRecord.from_mapping({n: self.type_of(ft) for n, ft in fields})
            case A.TUnion(members):
                return CUnion.of(*(self.type_of(m) for m in members))
            case A.TMerge(parts):
                merged: dict[str, CType] = {}
                for p in parts:
                    pt = self.type_of(p)
                    if not isinstance(pt, CRecord):
                        raise self.fail("E134", f"only record types can be merged with +, "
                                                f"not {render(pt)}", p.pos)
                    merged.update(pt.field_map)
                return CRecord.from_mapping(merged)
        raise self.fail("E133", "not a type", None)  # pragma: no cover

    # --- emission ------------------------------------------------------------------------

    def transform(self, op: str, params: tuple[tuple[str, Any], ...],
                  args: list[_Value], ctype: CType, label: str) -> _Value:
        if op in PURE_OPS and all(a.is_const for a in args):
            try:
                value = evaluate(Transform(op, params), [a.const for a in args])
            except Exception:  # leave it to run time, where the failure is reported
                pass
            else:
                return self.literal(value, ctype)
        key = ("t", op, params, tuple(a.ref for a in args))
        if key in self.cse:
            return self.cse[key]
        self.counter += 1
        did = f"t:{self.counter}"
        self.data[did] = DataNode(did, label, ctype, Transform(op, params),
                                  tuple(a.ref for a in args))
        value = _Value(did, ctype)
        self.cse[key] = value
        return value

    def literal(self, value: Any, ctype: CType) -> _Value:
        key = ("lit", render(ctype), _freeze(value))
        if key in self.cse:
            return self.cse[key]
        self.counter += 1
        did = f"lit:{self.counter}"
        self.data[did] = DataNode(did, f"literal {value!r}"[:60], ctype,
                                  Transform("literal", (("type", ctype), ("value", value))))
        result = _Value(did, ctype, value, True)
        self.cse[key] = result
        return result

    def call(self, mdef: ModuleDefinition, args: list[_Value], options: CallOptions,
             label: str | None) -> _Value:
        if (not options.as_dict() and mdef.name.startswith(_FOLDABLE_PREFIXES)
                and all(a.is_const for a in args)):
            try:
                value = mdef.func(*(a.const for a in args))
                value = mdef.check_output(value)
            except Exception:
                pass
            else:
                return self.literal(value, mdef.output)
        params = list(mdef.inputs)
        bound = tuple(sorted(zip(params, (a.ref for a in args), strict=True)))
        key = ("call", mdef.name, bound, tuple(sorted(options.as_dict().items(),
                                                      key=lambda kv: kv[0])).__repr__())
        if key in self.cse:
            return self.cse[key]
        base = label or mdef.name.rsplit(".", 1)[-1]
        n = self.call_counts.get(base, 0) + 1
        self.call_counts[base] = n
        node_name = base if n == 1 else f"{base}#{n}"
        out = f"{node_name}.out"
        out_type = call_output_type(mdef.output, mdef.options.merged(options))
        self.data[out] = DataNode(out, out, out_type)
        self.calls.append(ModuleNode(f"mod:{node_name}", node_name, mdef.name, bound, out,
                                     options))
        value = _Value(out, out_type)
        self.cse[key] = value
        return value

    # --- expressions ---------------------------------------------------------------------

    def expr(self, e: A.Expr, top: str | None = None) -> _Value:
        match e:
            case A.Name(name):
                if name not in self.env:
                    raise self.fail("E130", f"undefined name '{name}'"
                                            f"{self._suggest(name, list(self.env))}", e.pos)
                return self.env[name]
            case A.IntLit():
                return self.literal(e.value, INT)
            case A.FloatLit():
                return self.literal(e.value, FLOAT)
            case A.BoolLit():
                return self.literal(e.value, BOOLEAN)
            case A.StringLit(parts):
                return self._string(parts, e.pos)
            case A.ListLit(items):
                values = [self.expr(i) for i in items]
                elem = common_type(v.type for v in values) if values else NOTHING
                if elem is None:
                    raise self.fail("E122", "list items have different types: " + ", ".join(
                        render(v.type) for v in values), e.pos)
                return self.transform("list", (), values, CList(elem), "list")
            case A.RecordLit(fields):
                names = tuple(n for n, _ in fields)
                if len(set(names)) != len(names):
                    raise self.fail("E131", "a record literal names a field twice", e.pos)
                values = [self.expr(v) for _, v in fields]
                rtype = CRecord.from_mapping({n: v.type for n, v in
                                              zip(names, values, strict=True)})
                return self.transform("record", (("names", names),), values, rtype, "record")
            case A.Call():
                return self._call(e, top)
            case A.Arith():
                return self._arith(e)
            case A.Compare(left, op, right):
                return self._compare(self.expr(left), op, self.expr(right), e.pos)
            case A.BoolOp(op, operands):
                values = [self._expect(self.expr(o), BOOLEAN, o, f"'{op}'") for o in operands]
                return self.transform(op, (), values, BOOLEAN, op)
            case A.Not(operand):
                value = self._expect(self.expr(operand), BOOLEAN, operand, "'not'")
                return self.transform("not", (), [value], BOOLEAN, "not")
            case A.Guard(value, condition):
                guarded = self.expr(value)
                cond = self._expect(self.expr(condition), BOOLEAN, condition, "'when'")
                opt: CType = guarded.type if isinstance(guarded.type, COptional) \
                    else COptional(guarded.type)
                return self.transform("guard", (), [guarded, cond], opt, "guard")
            case A.Coalesce(left, right):
                first, second = self.expr(left), self.expr(right)
                inner: CType = first.type.inner if isinstance(first.type, COptional) \
                    else first.type
                if not (is_subtype(second.type, inner) or is_subtype(second.type, first.type)):
                    raise self.fail("E122", f"'??' needs a fallback of type {render(inner)}, "
                                            f"got {render(second.type)}", right.pos)
                result: CType = second.type if isinstance(second.type, COptional) else inner
                return self.transform("coalesce", (), [first, second], result, "coalesce")
            case A.If(condition, then, otherwise):
                test = self._expect(self.expr(condition), BOOLEAN, condition, "'if'")
                yes, no = self.expr(then), self.expr(otherwise)
                if_type = common_type([yes.type, no.type])
                if if_type is None:
                    raise self.fail("E122", f"the branches of 'if' have different types: "
                                            f"{render(yes.type)} and {render(no.type)}", e.pos)
                return self.transform("if", (), [test, yes, no], if_type, "if")
            case A.Branch(cases, otherwise):
                conds = [self._expect(self.expr(c), BOOLEAN, c, "a branch case")
                         for c, _ in cases]
                results = [self.expr(r) for _, r in cases] + [self.expr(otherwise)]
                branch_type = common_type(r.type for r in results)
                if branch_type is None:
                    raise self.fail("E122", "the cases of 'branch' have different types: "
                                    + ", ".join(render(r.type) for r in results), e.pos)
                return self.transform("branch", (("cases", len(cases)),), conds + results,
                                      branch_type, "branch")
            case A.FieldAccess(target, name):
                record = self.expr(target)
                field_t = field_type(record.type, name)
                if field_t is None:
                    raise self.fail("E135", f"{render(record.type)} has no field '{name}'"
                                    + self._suggest(name, field_names(record.type)), e.pos)
                return self.transform("field", (("name", name),), [record], field_t,
                                      f".{name}")
            case A.Project(target, names, _):
                source = self.expr(target)
                proj_t = project_type(source.type, names)
                if proj_t is None:
                    raise self.fail("E135", f"cannot project {', '.join(names)} from "
                                            f"{render(source.type)}", e.pos)
                return self.transform("project", (("names", tuple(names)),), [source], proj_t,
                                      "project")
            case A.Lambda():
                raise self.fail("E128", "a lambda can only be an argument of filter, map, "
                                        "all or any", e.pos)
            case A.Match(subject, cases):
                return self._match(self.expr(subject), cases, e.pos)
        raise self.fail("E199", f"unsupported expression {type(e).__name__}", None)

    def _expect(self, v: _Value, t: CType, node: Any, what: str) -> _Value:
        if not is_subtype(v.type, t):
            raise self.fail("E122", f"{what} needs {render(t)}, got {render(v.type)}",
                            getattr(node, "pos", None))
        return v

    def _string(self, parts: tuple[Any, ...], pos: A.Pos | None) -> _Value:
        if all(isinstance(p, str) for p in parts):
            return self.literal("".join(parts), STRING)
        template: list[str | int] = []
        values: list[_Value] = []
        for p in parts:
            if isinstance(p, str):
                template.append(p)
            else:
                template.append(len(values))
                values.append(self.expr(p))
        return self.transform("interpolate", (("parts", tuple(template)),), values, STRING,
                              "interpolation")

    def _arith(self, e: A.Arith) -> _Value:
        acc = self.expr(e.first)
        for op, operand in e.rest:
            right = self.expr(operand)
            if op == "+" and is_recordish(acc.type) and is_recordish(right.type):
                acc = self.transform("merge", (), [acc, right],
                                     merge_type(acc.type, right.type), "merge")
                continue
            for side in (acc, right):
                if not is_subtype(side.type, INT):
                    hint = "; join strings with concat(a, b) or \"${a}${b}\"" if isinstance(
                        side.type, CString) else ""
                    raise self.fail("E126", f"'{op}' needs Int operands, got "
                                            f"{render(side.type)}{hint}", operand.pos)
            acc = self.call(self.modules[ARITH[op]], [acc, right], CallOptions(), None)
        return acc

    def _compare(self, a: _Value, op: str, b: _Value, pos: A.Pos | None) -> _Value:
        if op in ("==", "!="):
            if is_subtype(a.type, INT) and is_subtype(b.type, INT):
                result = self.call(self.modules["stdlib.compare.eq-int"], [a, b],
                                   CallOptions(), None)
            elif is_subtype(a.type, STRING) and is_subtype(b.type, STRING):
                result = self.call(self.modules["stdlib.compare.eq-string"], [a, b],
                                   CallOptions(), None)
            else:
                raise self.fail("E127", f"'{op}' compares two Ints or two Strings, not "
                                        f"{render(a.type)} and {render(b.type)}", pos)
            if op == "!=":
                result = self.transform("not", (), [result], BOOLEAN, "not")
            return result
        if not (is_subtype(a.type, INT) and is_subtype(b.type, INT)):
            raise self.fail("E127", f"'{op}' compares Ints, not {render(a.type)} and "
                                    f"{render(b.type)}", pos)
        return self.call(self.modules[ORDER[op]], [a, b], CallOptions(), None)

    # --- calls -----------------------------------------------------------------------

    def _call(self, e: A.Call, top: str | None) -> _Value:
        higher = self._higher_order(e.func)
        if higher is not None:
            if e.options:
                raise self.fail("E143", f"{e.func} is not a module: it takes no options",
                                e.pos)
            return self._hof(higher, e)
        mdef = self.resolve(e.func, e.pos)
        params = list(mdef.inputs.items())
        if len(e.args) != len(params):
            sig = mdef.signature
            raise self.fail("E124", f"{e.func} takes {len(params)} argument(s), got "
                                    f"{len(e.args)}: {sig}", e.pos)
        args = []
        failed = False
        for (pname, ptype), arg in zip(params, e.args, strict=True):
            try:
                v = self.expr(arg)
            except _Failed:
                failed = True
                continue
            if not is_subtype(v.type, ptype):
                self.error("E122", f"argument '{pname}' of {mdef.name} expects "
                                   f"{render(ptype)}, got {render(v.type)}", arg.pos)
                failed = True
            args.append(v)
        options = check_options(self, e.options, mdef)
        if failed or options is None:
            raise _Failed()
        return self.call(mdef, args, options, None)

    def _visible_namespaces(self) -> list[str]:
        return [u.path for u in self.uses if u.alias is None]

    def resolve(self, name: str, pos: A.Pos | None) -> ModuleDefinition:
        if name in self.modules:
            return self.modules[name]
        if "." in name:
            head, rest = name.split(".", 1)
            for u in self.uses:
                if u.alias == head and f"{u.path}.{rest}" in self.modules:
                    return self.modules[f"{u.path}.{rest}"]
        else:
            if self.uses:
                candidates = [f"{ns}.{name}" for ns in self._visible_namespaces()]
            else:
                candidates = [n for n in self.modules
                              if n.startswith("stdlib.") and n.rsplit(".", 1)[-1] == name]
            found = [c for c in candidates if c in self.modules]
            if len(found) == 1:
                return self.modules[found[0]]
            if len(found) > 1:
                raise self.fail("E112", f"'{name}' is ambiguous: {', '.join(found)}; use the "
                                        "full name", pos)
        visible = self._visible_names()
        hint = self._suggest(name, visible)
        if not hint and "." not in name and self.uses:
            hidden = [n for n in self.modules if n.rsplit(".", 1)[-1] == name]
            if hidden:
                hint = f"; it is in {hidden[0].rsplit('.', 1)[0]}: add 'use " \
                       f"{hidden[0].rsplit('.', 1)[0]}' or call {hidden[0]}"
        raise self.fail("E110", f"unknown function '{name}'{hint}", pos)

    def _visible_names(self) -> list[str]:
        names = [n for n in self.modules if not n.startswith("stdlib.")]
        names += [n for n in self.modules if n.startswith("stdlib.")]
        if not self.uses:
            names += [n.rsplit(".", 1)[-1] for n in self.modules if n.startswith("stdlib.")]
        else:
            for ns in self._visible_namespaces():
                names += [n.rsplit(".", 1)[-1] for n in self.modules
                          if n.startswith(ns + ".")]
        names += list(HIGHER_ORDER)
        return names

    def _higher_order(self, name: str) -> str | None:
        for short, full in HIGHER_ORDER.items():
            if name == full:
                return short
            if name == short and (not self.uses or "stdlib.collection" in
                                  self._visible_namespaces()):
                return short
            if "." in name:
                head, rest = name.split(".", 1)
                if rest == short and any(u.alias == head and u.path == "stdlib.collection"
                                         for u in self.uses):
                    return short
        return None

    def _hof(self, op: str, e: A.Call) -> _Value:
        if len(e.args) != 2 or not isinstance(e.args[1], A.Lambda):
            raise self.fail("E124", f"{op} takes a list and a lambda: {op}(items, (x) => ...)",
                            e.pos)
        items = self.expr(e.args[0])
        if not isinstance(items.type, CList | CSeq):
            raise self.fail("E122", f"{op} needs a list, got {render(items.type)}",
                            e.args[0].pos)
        elem = items.type.element
        lam = e.args[1]
        if len(lam.params) != 1:
            raise self.fail("E128", f"the lambda of {op} takes one parameter", lam.pos)
        pname, ptype_ast = lam.params[0]
        if ptype_ast is not None:
            declared = self.type_of(ptype_ast)
            if not is_subtype(elem, declared):
                raise self.fail("E122", f"the lambda's parameter is {render(declared)}, but "
                                        f"the items are {render(elem)}", lam.pos)
            elem = declared
        captures: list[_Value] = []
        body, body_type = LambdaCompiler(self, {pname: (("param",), elem)},
                                          captures).compile(lam.body)
        if op in ("filter", "all", "any") and not is_subtype(body_type, BOOLEAN):
            raise self.fail("E122", f"the lambda of {op} must give a Boolean, got "
                                    f"{render(body_type)}", lam.body.pos)
        if op == "filter":
            result: CType = type(items.type)(items.type.element)
        elif op == "map":
            result = CList(body_type)
        else:
            result = BOOLEAN
        return self.transform(op, (("body", body),), [items, *captures], result, op)

    def _match(self, subject: _Value, cases: tuple[tuple[A.Pattern, A.Expr], ...],
               pos: A.Pos | None) -> _Value:
        st = subject.type
        members = list(st.members) if isinstance(st, CUnion) else [st]
        covered: set[int] = set()
        compiled: list[tuple[str, Any, tuple[Any, ...]]] = []
        captures: list[_Value] = []
        body_types: list[CType] = []
        for pattern, body in cases:
            bindings: dict[str, tuple[tuple[Any, ...], CType]] = {}
            data: Any
            if isinstance(pattern, A.PWildcard):
                kind, data = "any", None
                hits = list(range(len(members)))
            elif isinstance(pattern, A.PType):
                target = self.type_of(pattern.type)
                kind, data = "type", render(target)
                hits = [i for i, m in enumerate(members) if render(m) == data]
                if not hits:
                    raise self.fail("E136", f"'is {render(target)}' never matches a value "
                                            f"of type {render(st)}", pattern.pos)
            else:
                kind, data = "record", tuple(pattern.fields)
                hits = [i for i, m in enumerate(members) if isinstance(m, CRecord)
                        and all(f in m.field_map for f in pattern.fields)]
                if not hits:
                    raise self.fail("E136", f"the pattern {{{', '.join(pattern.fields)}}} "
                                            f"never matches a value of type {render(st)}",
                                    pattern.pos)
                for f in pattern.fields:
                    ftypes = [members[i].field_map[f] for i in hits]  # type: ignore[attr-defined]
                    ft = common_type(ftypes) or CUnion.of(*ftypes)
                    bindings[f] = (("field", ("param",), f), ft)
            covered.update(hits)
            node, t = LambdaCompiler(self, bindings, captures).compile(body)
            compiled.append((kind, data, node))
            body_types.append(t)
        missing = [render(m) for i, m in enumerate(members) if i not in covered]
        if missing:
            raise self.fail("E137", f"match does not cover {', '.join(missing)}; add a case "
                                    "for it or a '_ -> ...' case", pos)
        result = common_type(body_types)
        if result is None:
            raise self.fail("E122", "the cases of 'match' have different types: "
                            + ", ".join(render(t) for t in body_types), pos)
        return self.transform("match", (("cases", tuple(compiled)),), [subject, *captures],
                              result, "match")

    @staticmethod
    def _suggest(name: str, candidates: list[str]) -> str:
        close = difflib.get_close_matches(name, candidates, n=1)
        return f"; did you mean '{close[0]}'?" if close else ""


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(_freeze(v) for v in value))
    return (type(value).__name__, value)


def _line(pos: A.Pos | None) -> int:
    return pos.line if pos else 0

