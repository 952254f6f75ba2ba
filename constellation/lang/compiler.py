"""Compile constellation-lang source to a typed DagSpec.

parse → resolve names and check types (every problem collected, with its position) →
emit data and module nodes, removing common subexpressions and folding constants as
they are emitted (:mod:`constellation.lang.emission`) → drop nodes no output needs.
Module calls become module nodes; everything else (literals, field access,
conditionals, guards, interpolation, lambdas over lists) becomes an inline transform.

Every walk over the tree runs on :mod:`constellation.lang.trampoline`, not on the call
stack, so expressions nested to any depth compile (or fail with a located error), never
with a ``RecursionError``. Two limits remain, both reported as E150: types nested more
than :data:`MAX_NESTING` levels (their values are walked recursively when checked and
encoded at run time), and lambda or match-case bodies nested that deep (the runtime
evaluates them as nested closures). At most :data:`MAX_ERRORS` errors are reported.

Name resolution follows the original engine (see :mod:`constellation.lang.resolution`).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from constellation.core.dag import DagSpec, DataNode
from constellation.core.errors import CompilationError, Diagnostic
from constellation.core.handlers import handled_type
from constellation.core.types import (
    BOOLEAN,
    FLOAT,
    GENERIC_ARITY,
    HANDLERS,
    INT,
    NOTHING,
    SCALAR_TYPES,
    STRING,
    CInt,
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
from constellation.lang.call_options import NO_OPTIONS, check_options
from constellation.lang.collector import collector_paused
from constellation.lang.emission import Emission, Value, type_depth
from constellation.lang.lambdas import ARITH, ORDER, LambdaCompiler
from constellation.lang.limits import MAX_ERRORS, MAX_NESTING
from constellation.lang.parser import SourceLines, parse
from constellation.lang.resolution import Resolver, suggest
from constellation.lang.trampoline import Step, run
from constellation.lang.type_rules import (
    common_type,
    field_names,
    field_type,
    is_recordish,
    merge_type,
    project_type,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from constellation.core.modules import ModuleDefinition
    from constellation.core.options import CallOptions

__all__ = ["MAX_ERRORS", "MAX_NESTING", "CompiledSource", "compile_source", "compile_tree",
           "source_hash"]


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


class _Failed(Exception):  # noqa: N818 - a signal, not an error to show
    """Internal: the expression has an error that was already reported."""


class _TooManyErrors(Exception):  # noqa: N818 - a signal: stop compiling
    """Internal: MAX_ERRORS errors were reported."""


def source_hash(source: str) -> str:
    """SHA-256 (hex) of the source text; defined for every ``str``, lone surrogates too."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def compile_source(source: str, modules: Mapping[str, ModuleDefinition],
                   name: str = "pipeline") -> CompiledSource:
    """Compile constellation-lang ``source`` against ``modules``.

    Raises:
        CompilationError: every syntax, name, type and option error, located (at most
            :data:`MAX_ERRORS`).
    """
    with collector_paused(len(source)):
        return compile_tree(parse(source), source, modules, name)


def compile_tree(tree: A.Pipeline, source: str, modules: Mapping[str, ModuleDefinition],
                 name: str = "pipeline") -> CompiledSource:
    """Check and emit an already parsed pipeline (``source`` is its text, for snippets
    and the syntactic hash): the second half of :func:`compile_source`.

    Raises:
        CompilationError: every name, type and option error, located (at most
            :data:`MAX_ERRORS`).
    """
    compiler = _Compiler(source, modules, name)
    with collector_paused(len(source)):
        spec = compiler.run(tree)
    errors = [d for d in compiler.diagnostics if d.severity == "error"]
    if errors:
        raise CompilationError(errors)
    assert spec is not None
    return CompiledSource(spec, tuple(d for d in compiler.diagnostics
                                      if d.severity == "warning"), source_hash(source))


class _Compiler(Emission):
    Failed = _Failed  # raised by fail(); other compiler modules catch it through here

    def __init__(self, source: str, modules: Mapping[str, ModuleDefinition], name: str
                 ) -> None:
        super().__init__(modules, name)
        self.source = source
        self.lines = SourceLines(source)
        self.diagnostics: list[Diagnostic] = []
        self.error_count = 0
        self.env: dict[str, Value] = {}
        self.lambdas: dict[str, A.Lambda] = {}  # names bound to a standalone lambda
        self.aliases: dict[str, CType] = {}
        self.uses: list[A.Use] = []
        self.resolver = Resolver(modules, self.uses)

    # --- diagnostics ---------------------------------------------------------------------

    def error(self, code: str, message: str, pos: A.Pos | None,
              severity: str = "error") -> None:
        if severity == "error":
            self.error_count += 1
            if self.error_count > MAX_ERRORS:
                self.diagnostics.append(Diagnostic(
                    "E151", f"more than {MAX_ERRORS} errors; the compiler stopped here",
                    *self._where(pos)))
                raise _TooManyErrors
        self.diagnostics.append(Diagnostic(code, message, *self._where(pos), severity))

    def _where(self, pos: A.Pos | None) -> tuple[int, int, str]:
        if pos is None:
            return 0, 0, ""
        return pos.line, pos.column, self.lines.snippet(pos.line, pos.column)

    def fail(self, code: str, message: str, pos: A.Pos | None) -> _Failed:
        self.error(code, message, pos)
        return _Failed()

    # --- program -------------------------------------------------------------------------

    def run(self, tree: A.Pipeline) -> DagSpec | None:
        try:
            return self._program(tree)
        except _TooManyErrors:
            return None

    def _program(self, tree: A.Pipeline) -> DagSpec | None:
        inputs: dict[str, str] = {}
        outputs: dict[str, str] = {}
        declared: dict[str, A.Pos | None] = {}
        rebound: set[str] = set()
        for decl in tree.declarations:
            if isinstance(decl, A.Use):
                self._use(decl)
        for decl in tree.declarations:
            if isinstance(decl, A.TypeDef):
                with contextlib.suppress(_Failed):
                    self.aliases[decl.name] = self.type_of(decl.type)
            elif isinstance(decl, A.Input | A.Assign):
                if decl.name in declared:
                    # As in the original, an assignment may rebind an input's name
                    # (`job = Slow(job)`); anything else is declared twice.
                    if not (isinstance(decl, A.Assign) and decl.name in inputs
                            and decl.name not in rebound):
                        self.error("E131", f"'{decl.name}' is declared twice (first on "
                                           f"line {_line(declared[decl.name])})", decl.pos)
                        continue
                    rebound.add(decl.name)
                declared[decl.name] = decl.pos
                if isinstance(decl, A.Input):
                    self._input(decl, inputs)
                else:
                    self._assign(decl)
            elif isinstance(decl, A.Output):
                if decl.name in outputs:
                    self.error("E131", f"output '{decl.name}' is declared twice", decl.pos)
                elif decl.name in self.lambdas:
                    self.error("E128", f"'{decl.name}' is a lambda, not a value: it cannot "
                                       "be an output", decl.pos)
                elif decl.name in self.env:
                    outputs[decl.name] = self.env[decl.name].ref
                elif decl.name not in declared:
                    self.error("E130", f"undefined name '{decl.name}'"
                                       f"{suggest(decl.name, self.env)}", decl.pos)
        timeout = None
        for ann in tree.annotations:
            if ann.name == "timeout" and isinstance(ann.value, A.Duration):
                timeout = ann.value.seconds
        if self.error_count:
            return None
        return self.finish(inputs, outputs, timeout)

    def _assign(self, decl: A.Assign) -> None:
        # The right side is compiled first: in `job = Slow(job)` it reads the input.
        if isinstance(decl.value, A.Lambda):
            with contextlib.suppress(_Failed):
                self._standalone_lambda(decl.name, decl.value)
                self.env.pop(decl.name, None)
            return
        with contextlib.suppress(_Failed):
            self.env[decl.name] = self.expr(decl.value)

    def _standalone_lambda(self, name: str, lam: A.Lambda) -> None:
        # `t = ((x: Int) => x)`: checked here, usable by name as the lambda of
        # filter/map/all/any. Its parameters need types: nothing else tells them.
        bindings: dict[str, tuple[tuple[Any, ...], CType]] = {}
        for pname, ptype in lam.params:
            if ptype is None:
                raise self.fail("E128", f"the lambda '{name}' is not an argument of filter, "
                                        "map, all or any, so its parameters need types: "
                                        f"({pname}: Int) => ...", lam.pos)
            bindings[pname] = (("param",), self.type_of(ptype))
        LambdaCompiler(self, bindings, []).compile(lam.body)
        self.lambdas[name] = lam

    def _use(self, decl: A.Use) -> None:
        if not self.resolver.known_namespace(decl.path):
            raise_at = suggest(decl.path, self.resolver.namespaces())
            self.error("E111", f"unknown namespace '{decl.path}'{raise_at}", decl.pos)
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
            if not _example_fits(example.type, ctype):
                self.error("E132", f"@example of '{decl.name}' is {render(example.type)}, "
                                   f"but the input is {render(ctype)}", ann.pos)
        did = f"in:{decl.name}"
        self.data[did] = DataNode(did, decl.name, ctype)
        inputs[decl.name] = did
        self.env[decl.name] = Value(did, ctype, depth=type_depth(ctype))

    # --- types ---------------------------------------------------------------------------

    def type_of(self, t: A.TypeExpr) -> CType:
        return run(self._type(t, 0))

    def _type(self, t: A.TypeExpr, depth: int) -> Step[CType]:
        if depth > MAX_NESTING:
            raise self.fail("E150", f"this type nests more than {MAX_NESTING} levels deep",
                            t.pos)
        match t:
            case A.TName(name):
                found = SCALAR_TYPES.get(name) or self.aliases.get(name) \
                    or handled_type(name)
                if found is None:
                    known = [*SCALAR_TYPES, *self.aliases, *HANDLERS]
                    raise self.fail("E133", f"unknown type '{name}'{suggest(name, known)}",
                                    t.pos)
                if depth + type_depth(found) > MAX_NESTING:
                    raise self.fail("E150", f"this type nests more than {MAX_NESTING} "
                                            "levels deep", t.pos)
                return found
            case A.TGeneric(name, args):
                if name not in GENERIC_ARITY:
                    raise self.fail("E133", f"unknown generic type '{name}'", t.pos)
                if len(args) != GENERIC_ARITY[name]:
                    raise self.fail("E133", f"{name} takes {GENERIC_ARITY[name]} type "
                                            "argument(s)", t.pos)
                arg_types = []
                for a in args:
                    arg_types.append((yield self._type(a, depth + 1)))  # noqa: PERF401 - yield cannot be in a comprehension
                return generic_type(name, arg_types)
            case A.TRecord(fields):
                ftypes = {}
                for n, ft in fields:
                    ftypes[n] = yield self._type(ft, depth + 1)
                return CRecord.from_mapping(ftypes)
            case A.TUnion(members):
                mtypes = []
                for m in members:
                    mtypes.append((yield self._type(m, depth + 1)))  # noqa: PERF401 - yield cannot be in a comprehension
                return CUnion.of(*mtypes)
            case A.TMerge(parts):
                merged: dict[str, CType] = {}
                for p in parts:
                    pt = yield self._type(p, depth)
                    if not isinstance(pt, CRecord):
                        raise self.fail("E134", f"only record types can be merged with +, "
                                                f"not {render(pt)}", p.pos)
                    merged.update(pt.field_map)
                return CRecord.from_mapping(merged)
        raise self.fail("E133", "not a type", None)  # pragma: no cover

    def _nested(self, ctype: CType, parts: Iterable[Value], pos: A.Pos | None) -> int:
        """The depth of a value built from ``parts``; E150 past the limit."""
        depth = 1 + max((p.depth for p in parts), default=0)
        if depth > MAX_NESTING:
            raise self.fail("E150", f"this value's type nests more than {MAX_NESTING} "
                                    f"levels deep ({render(ctype)[:40]}...)", pos)
        return depth

    # --- expressions ---------------------------------------------------------------------

    def expr(self, e: A.Expr) -> Value:
        return run(self._expr(e))

    def _quick(self, e: A.Expr) -> Value | None:
        """The value of a name or a literal, without a step on the trampoline (most
        operands are one); None for anything else."""
        kind = type(e)
        if kind is A.Name:
            return self.env.get(e.name)  # type: ignore[union-attr]
        if kind is A.IntLit:
            return self.literal(e.value, INT)  # type: ignore[union-attr]
        return None

    def _operand(self, e: A.Expr) -> Step[Value]:
        """``yield from self._operand(e)``: ``e``'s value, quickly when it is simple."""
        value = self._quick(e)
        if value is None:
            value = yield self._expr(e)
        return value

    def _expr(self, e: A.Expr) -> Step[Value]:
        match e:
            case A.Name(name):
                if name not in self.env:
                    if name in self.lambdas:
                        raise self.fail("E128", f"'{name}' is a lambda: it can only be the "
                                                "argument of filter, map, all or any", e.pos)
                    raise self.fail("E130", f"undefined name '{name}'"
                                            f"{suggest(name, self.env)}", e.pos)
                return self.env[name]
            case A.IntLit():
                return self.literal(e.value, INT)
            case A.FloatLit():
                return self.literal(e.value, FLOAT)
            case A.BoolLit():
                return self.literal(e.value, BOOLEAN)
            case A.StringLit(parts):
                return (yield from self._string(parts))
            case A.ListLit(items):
                values = []
                for i in items:
                    values.append((yield self._expr(i)))  # noqa: PERF401 - yield cannot be in a comprehension
                elem = common_type(v.type for v in values) if values else NOTHING
                if elem is None:
                    raise self.fail("E122", "list items have different types: " + ", ".join(
                        render(v.type) for v in values), e.pos)
                ltype = CList(elem)
                return self.transform("list", (), values, ltype, "list",
                                      self._nested(ltype, values, e.pos))
            case A.RecordLit(fields):
                names = tuple(n for n, _ in fields)
                if len(set(names)) != len(names):
                    raise self.fail("E131", "a record literal names a field twice", e.pos)
                values = []
                for _, v in fields:
                    values.append((yield self._expr(v)))
                rtype = CRecord.from_mapping({n: v.type for n, v in
                                              zip(names, values, strict=True)})
                return self.transform("record", (("names", names),), values, rtype, "record",
                                      self._nested(rtype, values, e.pos))
            case A.Call():
                return (yield from self._call(e))
            case A.Arith():
                return (yield from self._arith(e))
            case A.Compare(left, op, right):
                a = yield self._expr(left)
                b = yield self._expr(right)
                return self._compare(a, op, b, e.pos)
            case A.BoolOp(op, operands):
                values = []
                for o in operands:
                    values.append(self._expect((yield self._expr(o)), BOOLEAN, o, f"'{op}'"))
                return self.transform(op, (), values, BOOLEAN, op)
            case A.Not(operand):
                value = self._expect((yield self._expr(operand)), BOOLEAN, operand, "'not'")
                return self.transform("not", (), [value], BOOLEAN, "not")
            case A.Guard(value, condition):
                guarded = yield self._expr(value)
                cond = self._expect((yield self._expr(condition)), BOOLEAN, condition,
                                    "'when'")
                if isinstance(guarded.type, COptional):
                    return self.transform("guard", (), [guarded, cond], guarded.type,
                                          "guard", guarded.depth)
                opt = COptional(guarded.type)
                return self.transform("guard", (), [guarded, cond], opt, "guard",
                                      self._nested(opt, [guarded], e.pos))
            case A.Coalesce(left, right):
                first = yield self._expr(left)
                second = yield self._expr(right)
                return self._coalesce(first, second, left, right)
            case A.If(condition, then, otherwise):
                test = self._expect((yield self._expr(condition)), BOOLEAN, condition, "'if'")
                yes = yield self._expr(then)
                no = yield self._expr(otherwise)
                return self._choice("if", (), [test], [yes, no])
            case A.Branch(cases, otherwise):
                conds = []
                for c, _ in cases:
                    conds.append(self._expect((yield self._expr(c)), BOOLEAN, c,
                                              "a branch case"))
                results = []
                for _, r in cases:
                    results.append((yield self._expr(r)))
                results.append((yield self._expr(otherwise)))
                return self._choice("branch", (("cases", len(cases)),), conds, results)
            case A.FieldAccess(target, name):
                record = yield self._expr(target)
                field_t = field_type(record.type, name)
                if field_t is None:
                    raise self.fail("E135", f"{render(record.type)} has no field '{name}'"
                                    + suggest(name, field_names(record.type)), e.pos)
                return self.transform("field", (("name", name),), [record], field_t,
                                      f".{name}", record.depth)
            case A.Project(target, names, _):
                source = yield self._expr(target)
                proj_t = project_type(source.type, names)
                if proj_t is None:
                    raise self.fail("E135", f"cannot project {', '.join(names)} from "
                                            f"{render(source.type)}", e.pos)
                return self.transform("project", (("names", tuple(names)),), [source], proj_t,
                                      "project", source.depth)
            case A.Lambda():
                raise self.fail("E128", "a lambda can only be an argument of filter, map, "
                                        "all or any (or assigned to a name, with typed "
                                        "parameters)", e.pos)
            case A.Match(subject, cases):
                return self._match((yield self._expr(subject)), cases, e.pos)
        raise self.fail("E199", f"unsupported expression {type(e).__name__}", None)

    def _expect(self, v: Value, t: CType, node: Any, what: str) -> Value:
        if not is_subtype(v.type, t):
            raise self.fail("E122", f"{what} needs {render(t)}, got {render(v.type)}",
                            getattr(node, "pos", None))
        return v

    def _coalesce(self, first: Value, second: Value, left: A.Expr, right: A.Expr
                  ) -> Value:
        if not isinstance(first.type, COptional):
            raise self.fail("E122", f"'??' needs an Optional value on its left, got "
                                    f"{render(first.type)} (which is never missing)",
                            left.pos)
        inner = first.type.inner
        if not (is_subtype(second.type, inner) or is_subtype(second.type, first.type)):
            raise self.fail("E122", f"'??' needs a fallback of type {render(inner)}, "
                                    f"got {render(second.type)}", right.pos)
        result: CType = second.type if isinstance(second.type, COptional) else inner
        return self.transform("coalesce", (), [first, second], result, "coalesce",
                              max(first.depth, second.depth))

    def _choice(self, op: str, params: tuple[tuple[str, Any], ...], conds: list[Value],
                results: list[Value]) -> Value:
        # Branches of different types make a union (as in the original): each value is
        # tagged with its variant so that match and JSON see a proper union value.
        ctype = common_type(r.type for r in results)
        if ctype is None:
            ctype = CUnion.of(*(r.type for r in results))
            results = [self.tagged(r, ctype) for r in results]
        return self.transform(op, params, conds + results, ctype, op,
                              max(r.depth for r in results))

    def _string(self, parts: tuple[Any, ...]) -> Step[Value]:
        if all(isinstance(p, str) for p in parts):
            return self.literal("".join(parts), STRING)
        template: list[str | int] = []
        values: list[Value] = []
        for p in parts:
            if isinstance(p, str):
                template.append(p)
            else:
                template.append(len(values))
                values.append((yield self._expr(p)))
        return self.transform("interpolate", (("parts", tuple(template)),), values, STRING,
                              "interpolation")

    def operator_module(self, name: str, op: str, pos: A.Pos | None) -> ModuleDefinition:
        """The standard-library module an operator maps to (E110 if it is not
        registered, as with ``Constellation(stdlib=False)``)."""
        mdef = self.modules.get(name)
        if mdef is None:
            raise self.fail("E110", f"'{op}' needs the standard-library module {name}, "
                                    "which is not registered", pos)
        return mdef

    def _arith(self, e: A.Arith) -> Step[Value]:
        acc = yield from self._operand(e.first)
        int_modules: dict[str, ModuleDefinition] = {}  # operator -> its module, once looked up
        for op, operand in e.rest:
            right = self._quick(operand)
            if right is None:
                right = yield self._expr(operand)
            if type(acc.type) is CInt and type(right.type) is CInt:  # the common case
                mdef = int_modules.get(op)
                if mdef is None:
                    mdef = int_modules[op] = self.operator_module(ARITH[op], op, operand.pos)
                acc = self.call(mdef, [acc, right], NO_OPTIONS, None)
                continue
            if op == "+" and is_recordish(acc.type) and is_recordish(right.type):
                acc = self.transform("merge", (), [acc, right],
                                     merge_type(acc.type, right.type), "merge",
                                     max(acc.depth, right.depth))
                continue
            for side in (acc, right):
                if not is_subtype(side.type, INT):
                    hint = "; join strings with concat(a, b) or \"${a}${b}\"" if isinstance(
                        side.type, CString) else ""
                    raise self.fail("E126", f"'{op}' needs Int operands, got "
                                            f"{render(side.type)}{hint}", operand.pos)
            acc = self.call(self.operator_module(ARITH[op], op, operand.pos), [acc, right],
                            NO_OPTIONS, None)
        return acc

    def _compare(self, a: Value, op: str, b: Value, pos: A.Pos | None) -> Value:
        ints = is_subtype(a.type, INT) and is_subtype(b.type, INT)
        strings = is_subtype(a.type, STRING) and is_subtype(b.type, STRING)
        if op in ("==", "!="):
            if ints:
                result = self.call(self.operator_module("stdlib.compare.eq-int", op, pos), [a, b],
                                   NO_OPTIONS, None)
            elif strings:
                result = self.call(self.operator_module("stdlib.compare.eq-string", op, pos),
                                   [a, b],
                                   NO_OPTIONS, None)
            elif a.type != b.type:
                # Operands of different types: a type mismatch, as in the original.
                raise self.fail("E122", f"'{op}' needs two values of the same type, got "
                                        f"{render(a.type)} and {render(b.type)}", pos)
            else:
                raise self.fail("E127", f"'{op}' compares two Ints or two Strings, not "
                                        f"{render(a.type)} values", pos)
            if op == "!=":
                result = self.transform("not", (), [result], BOOLEAN, "not")
            return result
        if not ints:
            raise self.fail("E127", f"'{op}' compares Ints, not {render(a.type)} and "
                                    f"{render(b.type)}", pos)
        return self.call(self.operator_module(ORDER[op], op, pos), [a, b], NO_OPTIONS, None)

    # --- calls -----------------------------------------------------------------------

    def resolve(self, name: str, pos: A.Pos | None) -> ModuleDefinition:
        found = self.resolver.resolve(name)
        if isinstance(found, tuple):
            raise self.fail(*found, pos)
        return found

    def higher_order(self, name: str) -> str | None:
        return self.resolver.higher_order(name)

    def _call(self, e: A.Call) -> Step[Value]:
        higher = self.higher_order(e.func)
        if higher is not None:
            if e.options:
                raise self.fail("E143", f"{e.func} is not a module: it takes no options",
                                e.pos)
            return (yield from self._hof(higher, e))
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
                v = self._quick(arg)
                if v is None:
                    v = yield self._expr(arg)
            except _Failed:
                failed = True
                continue
            if not is_subtype(v.type, ptype):
                self.error("E122", f"argument '{pname}' of {mdef.name} expects "
                                   f"{render(ptype)}, got {render(v.type)}", arg.pos)
                failed = True
            args.append(v)
        # A fallback's expression is compiled here (on the trampoline); its calls are
        # made lazy: they run only when the fallback is taken.
        fallback: Value | None = None
        for o in e.options:
            if o.name == "fallback" and o.value is not None and not isinstance(
                    o.value, A.Duration | A.Rate):
                self.lazy_calls += 1
                try:
                    fallback = yield self._expr(o.value)
                except _Failed:
                    failed = True
                finally:
                    self.lazy_calls -= 1
                break
        options = check_options(self, e.options, mdef, fallback)
        if failed or options is None:
            raise _Failed()
        if fallback is None or fallback.is_const:
            return self.call(mdef, args, options, None)
        return self._call_with_fallback(mdef, args, options, fallback)

    def _call_with_fallback(self, mdef: ModuleDefinition, args: list[Value],
                            options: CallOptions, fallback: Value) -> Value:
        # `F(a) with fallback: expr` for a non-constant expr: the call is made with
        # on_error: wrap (retry, timeout, cache ... apply to it as usual, and the
        # runtime wraps the outcome only once every attempt has failed), then an inline
        # `if` picks the call's value or, when it failed, the fallback. The fallback's
        # own calls are lazy, so they run only when it is picked.
        wrapped = self.call(mdef, args, replace(options, on_error="wrap"), None)
        ok = self.transform("field", (("name", "ok"),), [wrapped], BOOLEAN, ".ok")
        value = self.transform("field", (("name", "value"),), [wrapped],
                               COptional(mdef.output), ".value")
        return self.transform("if", (), [ok, value, fallback], mdef.output, "fallback",
                              max(value.depth, fallback.depth))

    def _hof(self, op: str, e: A.Call) -> Step[Value]:
        lam: Any = e.args[1] if len(e.args) == 2 else None
        if isinstance(lam, A.Name) and lam.name in self.lambdas:
            lam = self.lambdas[lam.name]
        if not isinstance(lam, A.Lambda):
            raise self.fail("E124", f"{op} takes a list and a lambda: {op}(items, (x) => ...)",
                            e.pos)
        items = yield self._expr(e.args[0])
        if not isinstance(items.type, CList | CSeq):
            raise self.fail("E122", f"{op} needs a list, got {render(items.type)}",
                            e.args[0].pos)
        elem = items.type.element
        if len(lam.params) != 1:
            raise self.fail("E128", f"the lambda of {op} takes one parameter", lam.pos)
        pname, ptype_ast = lam.params[0]
        if ptype_ast is not None:
            declared = self.type_of(ptype_ast)
            if not is_subtype(elem, declared):
                raise self.fail("E122", f"the lambda's parameter is {render(declared)}, but "
                                        f"the items are {render(elem)}", lam.pos)
            elem = declared
        captures: list[Value] = []
        body, body_type = LambdaCompiler(self, {pname: (("param",), elem)},
                                          captures).compile(lam.body)
        if op in ("filter", "all", "any") and not is_subtype(body_type, BOOLEAN):
            raise self.fail("E122", f"the lambda of {op} must give a Boolean, got "
                                    f"{render(body_type)}", lam.body.pos)
        depth = items.depth
        if op == "filter":
            result: CType = type(items.type)(items.type.element)
        elif op == "map":
            result = CList(body_type)
            depth = 1 + type_depth(body_type)
        else:
            result = BOOLEAN
            depth = 0
        return self.transform(op, (("body", body),), [items, *captures], result, op, depth)

    def _match(self, subject: Value, cases: tuple[tuple[A.Pattern, A.Expr], ...],
               pos: A.Pos | None) -> Value:
        st = subject.type
        members = list(st.members) if isinstance(st, CUnion) else [st]
        # Indexes over the variants, so that each case costs what it matches, not the
        # number of variants (a match over thousands of variants stays linear).
        by_tag = {render(m): i for i, m in enumerate(members)}
        by_field: dict[str, set[int]] = {}
        for i, m in enumerate(members):
            if isinstance(m, CRecord):
                for fname, _ in m.fields:
                    by_field.setdefault(fname, set()).add(i)
        covered: set[int] = set()
        compiled: list[tuple[str, Any, tuple[Any, ...]]] = []
        captures: list[Value] = []
        body_types: list[CType] = []
        for pattern, body in cases:
            bindings: dict[str, tuple[tuple[Any, ...], CType]] = {}
            data: Any
            if isinstance(pattern, A.PWildcard):
                kind, data = "any", None
                hits: list[int] | range = range(len(members))
            elif isinstance(pattern, A.PType):
                target = self.type_of(pattern.type)
                kind, data = "type", render(target)
                hits = [by_tag[data]] if data in by_tag else []
                if not hits:
                    raise self.fail("E136", f"'is {render(target)}' never matches a value "
                                            f"of type {render(st)}", pattern.pos)
            else:
                kind, data = "record", tuple(pattern.fields)
                sets = [by_field.get(f, set()) for f in pattern.fields]
                hits = sorted(set.intersection(*sets)) if sets else []
                if not hits:
                    raise self.fail("E136", f"the pattern {{{', '.join(pattern.fields)}}} "
                                            f"never matches a value of type {render(st)}",
                                    pattern.pos)
                for f in pattern.fields:
                    ftypes = [members[i].field_map[f] for i in hits]  # type: ignore[attr-defined]
                    ft = common_type(ftypes) or CUnion.of(*ftypes)
                    bindings[f] = (("field", ("param",), f), ft)
            covered.update(hits)
            node, t = LambdaCompiler(self, bindings, captures, in_match=True).compile(body)
            compiled.append((kind, data, node))
            body_types.append(t)
        if len(covered) < len(members):
            missing = [render(m) for i, m in enumerate(members) if i not in covered]
            raise self.fail("E137", f"match does not cover {', '.join(missing)}; add a case "
                                    "for it or a '_ -> ...' case", pos)
        result = common_type(body_types)
        if result is None:
            raise self.fail("E122", "the cases of 'match' have different types: "
                            + ", ".join(render(t) for t in body_types), pos)
        return self.transform("match", (("cases", tuple(compiled)),), [subject, *captures],
                              result, "match", 1 + type_depth(result))


def _example_fits(example: CType, declared: CType) -> bool:
    """Whether an ``@example`` value of type ``example`` has the input's exact type.

    As in the original, subtypes are not enough (``@example({a: 1, b: 2})`` is not a
    ``{a: Int}``). Two allowances, because the language has no literal for them: an
    empty list ``[]`` fits any list type, and a value of ``T`` fits ``Optional<T>``.
    """
    if example == declared:
        return True
    if isinstance(declared, COptional):
        return _example_fits(example, declared.inner)
    if isinstance(example, CList) and isinstance(declared, CList | CSeq):
        return example.element == NOTHING or _example_fits(example.element, declared.element)
    if isinstance(example, CRecord) and isinstance(declared, CRecord):
        have, want = example.field_map, declared.field_map
        return set(have) == set(want) and all(_example_fits(have[n], want[n]) for n in want)
    return False


def _line(pos: A.Pos | None) -> int:
    return pos.line if pos else 0
