"""Parse constellation-lang source into a :class:`~constellation.lang.ast.Pipeline`.

The grammar (``grammar.lark``) is LALR(1) and lark is the reference parser. Programs
are parsed by the hand-written parser of :mod:`constellation.lang.descent`, which
builds the same tree and reports the same problems several times faster; where it
stops at a syntax error, lark parses from the declaration before that point and its
diagnostic is reported; the few programs it does not take otherwise are parsed by lark
whole (its tree becomes AST nodes without recursion, ``Transformer_NonRecursive``).
Either way deeply nested parentheses or long operator chains cannot overflow the
stack. Syntax errors become a
:class:`~constellation.core.errors.CompilationError` whose diagnostics carry code, line,
column and a caret under the offending spot.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lark import Lark, Token, Tree, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken
from lark.visitors import Transformer_NonRecursive

from constellation.core.errors import CompilationError, Diagnostic
from constellation.lang import ast as A
from constellation.lang.collector import collector_paused
from constellation.lang.descent import (
    BAD_LAMBDA_MESSAGE,
    Group,
    NotFast,
    parse_expression_fast,
    parse_items_fast,
    string_parts,
)

if TYPE_CHECKING:
    from collections.abc import Container

__all__ = ["SourceLines", "decode_source", "parse", "parse_expression", "snippet"]

# Error codes of this module (see docs/error-reference.md).
E_SYNTAX = "E101"
E_UNTERMINATED = "E102"
E_BAD_CHARACTER = "E103"
E_BAD_LAMBDA = "E105"
E_ANNOTATION = "E106"
E_NO_OUTPUT = "E107"
E_SURROGATE = "E108"
E_NOT_UTF8 = "E109"

_SURROGATE = re.compile("[\ud800-\udfff]")

_KEYWORDS = {"type", "in", "out", "use", "as", "with", "lazy", "when", "or", "and", "not",
             "if", "else", "branch", "otherwise", "match", "is", "true", "false"}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = (Path(__file__).with_name("grammar.lark")).read_text()
    return Lark(grammar, parser="lalr", start=["start", "expr"], propagate_positions=True,
                maybe_placeholders=True)


def snippet(source: str, line: int, column: int) -> str:
    """The source line and a caret under ``column`` (both 1-based)."""
    return SourceLines(source).snippet(line, column)


class SourceLines:
    """A source split into lines once, for the caret snippets of many diagnostics.

    Lines end at ``\n`` only, as the parser counts them.
    """

    def __init__(self, source: str) -> None:
        self._source = source
        self._lines: list[str] | None = None

    def snippet(self, line: int, column: int) -> str:
        """The source line and a caret under ``column`` (both 1-based), or ``""``."""
        if self._lines is None:
            self._lines = self._source.split("\n")
        if not 1 <= line <= len(self._lines):
            return ""
        text = self._lines[line - 1].rstrip("\r")
        return f"{text}\n{' ' * (max(column, 1) - 1)}^"


def decode_source(data: bytes) -> str:
    """Source text from bytes read from a file or a request: UTF-8 (a BOM is dropped).

    Raises:
        CompilationError: E109, at the line and column of the first byte that is not
            UTF-8 (the column counts the characters before it on its line, plus one).
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = exc.start
        before = data[:bad].decode("utf-8-sig", "replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        text = data.decode("utf-8-sig", "replace")
        raise _error(text, E_NOT_UTF8, f"the source is not UTF-8 text: byte "
                                       f"0x{data[bad]:02x} cannot be decoded "
                                       f"({exc.reason})", line, column) from None


def _check_text(source: str) -> None:
    # A lone surrogate is a str but not text: it cannot be encoded (hashing, JSON,
    # storage would fail later), so it is refused here, located.
    bad = _SURROGATE.search(source)
    if bad is not None:
        at = bad.start()
        line = source.count("\n", 0, at) + 1
        column = at - (source.rfind("\n", 0, at) + 1) + 1
        raise _error(source, E_SURROGATE, f"the source holds a lone surrogate "
                                          f"U+{ord(bad.group()):04X}, which is not a "
                                          "character (write the character itself)",
                     line, column)


def parse(source: str) -> A.Pipeline:
    """Parse a whole pipeline.

    Raises:
        CompilationError: a syntax error (E101-E107), located, with a caret snippet.
    """
    if not isinstance(source, str):
        raise CompilationError([Diagnostic(E_SYNTAX, "source must be a string, got "
                                                     f"{type(source).__name__}")])
    _check_text(source)
    with collector_paused(len(source)):
        try:
            items, problems, group_items = parse_items_fast(source)
        except NotFast as gave_up:
            # Not a valid program as it stands: lark parses it and reports why. A
            # syntax error is found by parsing from the declaration the fast path gave
            # up in (everything before it parsed), which keeps a late error in a large
            # file cheap; the whole source is parsed only if there is none.
            if gave_up.item_offset:
                _raise_syntax_error_after(source, gave_up.item_offset)
            return _parse_with_lark(source)
        # As on the lark path: the assembly's problems first, then the tree's.
        pipeline = _assemble(items, source, groups=group_items)
        if problems:
            lines = SourceLines(source)
            raise CompilationError([
                Diagnostic(code, message, *((pos.line, pos.column,
                                              lines.snippet(pos.line, pos.column))
                                             if pos else (0, 0, "")))
                for code, message, pos in problems])
        return pipeline


def _raise_syntax_error_after(source: str, offset: int) -> None:
    """Raise the syntax error lark finds in ``source[offset:]`` (which starts at a
    declaration), located in ``source``; return if it finds none."""
    try:
        _parse_tree(source[offset:], "start")
    except CompilationError as exc:
        base_line = source.count("\n", 0, offset)
        base_column = offset - (source.rfind("\n", 0, offset) + 1)
        lines = SourceLines(source)
        moved = []
        for d in exc.errors:
            line = d.line + base_line
            column = d.column + (base_column if d.line == 1 else 0)
            moved.append(Diagnostic(d.code, d.message, line, column,
                                    lines.snippet(line, column), d.severity))
        raise CompilationError(moved) from None


def _parse_with_lark(source: str) -> A.Pipeline:
    """The reference path of :func:`parse` (tests compare the fast path with it)."""
    tree = _parse_tree(source, "start")
    builder = _Builder(source)
    items = builder.transform(tree)
    pipeline = _assemble(items, source)
    if builder.problems:
        raise CompilationError(builder.problems)
    return pipeline


def parse_expression(source: str) -> A.Expr:
    """Parse one expression (used for ``${...}`` and by tools)."""
    _check_text(source)
    try:
        return parse_expression_fast(source)
    except NotFast:
        pass
    tree = _parse_tree(source, "expr")
    builder = _Builder(source)
    expr = builder.transform(tree)
    problems = list(builder.problems)

    def problem(code: str, message: str, pos: A.Pos | None) -> None:
        line, col = (pos.line, pos.column) if pos else (0, 0)
        problems.append(Diagnostic(code, message, line, col,
                                   snippet(source, line, col) if pos else ""))

    expr = _resolve_groups(expr, problem)
    if problems:
        raise CompilationError(problems)
    return expr  # type: ignore[no-any-return]


def _parse_tree(source: str, start: str) -> Tree[Token]:
    try:
        return _lark().parse(source, start=start)
    except UnexpectedCharacters as exc:
        at = exc.pos_in_stream or 0
        char = source[at] if at < len(source) else ""
        if char == '"':
            raise _error(source, E_UNTERMINATED, "unterminated string", exc.line,
                         exc.column) from None
        raise _error(source, E_BAD_CHARACTER, f"unexpected character {char!r}", exc.line,
                     exc.column) from None
    except UnexpectedEOF as exc:
        expected = _describe_expected(exc.expected)
        lines = source.splitlines() or [""]
        raise _error(source, E_SYNTAX, f"unexpected end of input; expected {expected}",
                     len(lines), len(lines[-1]) + 1) from None
    except UnexpectedToken as exc:
        tok = exc.token
        found = "end of input" if tok.type == "$END" else repr(str(tok))
        expected = _describe_expected(exc.expected)
        message = f"unexpected {found}; expected {expected}"
        if tok.type == "IDENT" and str(tok) not in _KEYWORDS:
            close = difflib.get_close_matches(str(tok), _KEYWORDS, n=1, cutoff=0.75)
            if close:
                message += f" (did you mean '{close[0]}'?)"
        line = tok.line if tok.line is not None else 1
        column = tok.column if tok.column is not None else 1
        raise _error(source, E_SYNTAX, message, line, column) from None
    except LarkError as exc:  # pragma: no cover - lark's other errors, never seen in tests
        raise CompilationError([Diagnostic(E_SYNTAX, f"syntax error: {exc}")]) from None


_TERMINAL_NAMES = {
    "IDENT": "a name", "CALLEE": "a function call", "INT": "an integer", "FLOAT": "a float",
    "STRING": "a string", "DURATION": "a duration such as 30s", "RATE": "a rate such as 10/1s",
    "COMP_OP": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "'*' or '/'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'",
    "RBRACE": "'}'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "DOT": "'.'",
    "MORETHAN": "'>'", "LESSTHAN": "'<'", "VBAR": "'|'", "PLUS": "'+'", "AT": "'@'",
}


def _describe_expected(expected: Any) -> str:
    names = []
    for t in sorted(expected or ()):
        if t.startswith("__ANON") or t in ("$END",):
            continue
        name = _TERMINAL_NAMES.get(t, f"'{t.lower()}'" if t.isupper() else t)
        if name not in names:
            names.append(name)
    if not names:
        return "something else"
    if len(names) > 6:
        names = [*names[:6], "..."]
    return ", ".join(names)


def _error(source: str, code: str, message: str, line: int, column: int) -> CompilationError:
    return CompilationError([Diagnostic(code, message, line, column,
                                        snippet(source, line, column))])


def _pos(meta_or_token: Any) -> A.Pos | None:
    line = getattr(meta_or_token, "line", None)
    column = getattr(meta_or_token, "column", None)
    if line is None or column is None:
        return None
    return A.Pos(line, column)


def _unwrap(children: list[Any]) -> Any:
    return children[0]




class _Builder(Transformer_NonRecursive[Token, Any]):
    """Parse tree → AST. Problems that are not syntax errors are collected in order."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.problems: list[Diagnostic] = []

    def _problem(self, code: str, message: str, pos: A.Pos | None) -> None:
        line, col = (pos.line, pos.column) if pos else (0, 0)
        self.problems.append(Diagnostic(code, message, line, col,
                                        snippet(self.source, line, col) if pos else ""))

    # --- items and declarations ------------------------------------------------------

    def start(self, children: list[Any]) -> list[Any]:
        return children

    @v_args(meta=True)
    def annotation(self, meta: Any, children: list[Any]) -> A.Annotation:
        name, value = children
        return A.Annotation(str(name), value, _pos(meta))

    @v_args(meta=True)
    def type_def(self, meta: Any, children: list[Any]) -> A.TypeDef:
        _, name, type_ = children
        return A.TypeDef(str(name), type_, _pos(meta))

    @v_args(meta=True)
    def input_decl(self, meta: Any, children: list[Any]) -> A.Input:
        _, name, type_ = children
        return A.Input(str(name), type_, (), _pos(meta))

    @v_args(meta=True)
    def output_decl(self, meta: Any, children: list[Any]) -> A.Output:
        return A.Output(str(children[1]), _pos(meta))

    @v_args(meta=True)
    def use_decl(self, meta: Any, children: list[Any]) -> A.Use:
        _, path, _as, alias = children
        return A.Use(path, str(alias) if alias is not None else None, _pos(meta))

    def dotted(self, children: list[Any]) -> str:
        return ".".join(str(c) for c in children)

    @v_args(meta=True)
    def assignment(self, meta: Any, children: list[Any]) -> A.Assign:
        name, value = children
        return A.Assign(str(name), value, _pos(meta))

    def call_with(self, children: list[Any]) -> A.Call:
        call, _with, *options = children
        return A.Call(call.func, call.args, tuple(options), call.pos)

    @v_args(meta=True)
    def bare_option(self, meta: Any, children: list[Any]) -> A.Option:
        return A.Option("lazy", None, _pos(meta))

    @v_args(meta=True)
    def option(self, meta: Any, children: list[Any]) -> A.Option:
        name, value = children
        return A.Option(str(name), value, _pos(meta))

    def duration(self, children: list[Any]) -> A.Duration:
        return _duration(children[0])

    def rate(self, children: list[Any]) -> A.Rate:
        tok = children[0]
        count, per = str(tok).split("/", 1)
        d = _duration(per, tok)
        return A.Rate(int(count), d, _pos(tok))

    # --- types -------------------------------------------------------------------------

    @v_args(meta=True)
    def type_union(self, meta: Any, children: list[Any]) -> A.TypeExpr:
        if len(children) == 1:
            return children[0]  # type: ignore[no-any-return]
        return A.TUnion(tuple(children), _pos(meta))

    @v_args(meta=True)
    def type_merge(self, meta: Any, children: list[Any]) -> A.TypeExpr:
        if len(children) == 1:
            return children[0]  # type: ignore[no-any-return]
        return A.TMerge(tuple(children), _pos(meta))

    @v_args(meta=True)
    def type_generic(self, meta: Any, children: list[Any]) -> A.TGeneric:
        name, *args = children
        return A.TGeneric(str(name), tuple(args), _pos(meta))

    @v_args(meta=True)
    def type_record(self, meta: Any, children: list[Any]) -> A.TRecord:
        return A.TRecord(tuple(c for c in children if c is not None), _pos(meta))

    def type_field(self, children: list[Any]) -> tuple[str, A.TypeExpr]:
        return (str(children[0]), children[1])

    def type_name(self, children: list[Any]) -> A.TName:
        tok = children[0]
        return A.TName(str(tok), _pos(tok))

    # --- expressions -------------------------------------------------------------------

    @v_args(meta=True)
    def lambda_(self, meta: Any, children: list[Any]) -> A.Expr:
        group, body = children
        params: list[tuple[str, A.TypeExpr | None]] = []
        for item in group:
            expr, type_ = item
            if not isinstance(expr, A.Name):
                self._problem(E_BAD_LAMBDA, BAD_LAMBDA_MESSAGE, _pos(meta))
                continue
            params.append((expr.name, type_))
        return A.Lambda(tuple(params), body, _pos(meta))

    @v_args(meta=True)
    def coalesce(self, meta: Any, children: list[Any]) -> A.Coalesce:
        return A.Coalesce(children[0], children[1], _pos(meta))

    @v_args(meta=True)
    def guard(self, meta: Any, children: list[Any]) -> A.Guard:
        return A.Guard(children[0], children[2], _pos(meta))

    @v_args(meta=True)
    def bool_or(self, meta: Any, children: list[Any]) -> A.Expr:
        return self._bool("or", meta, children)

    @v_args(meta=True)
    def bool_and(self, meta: Any, children: list[Any]) -> A.Expr:
        return self._bool("and", meta, children)

    def _bool(self, op: str, meta: Any, children: list[Any]) -> A.Expr:
        operands = [c for c in children if not isinstance(c, Token)]
        if len(operands) == 1:
            return operands[0]  # type: ignore[no-any-return]
        return A.BoolOp(op, tuple(operands), _pos(meta))

    @v_args(meta=True)
    def not_(self, meta: Any, children: list[Any]) -> A.Not:
        return A.Not(children[1], _pos(meta))

    @v_args(meta=True)
    def compare(self, meta: Any, children: list[Any]) -> A.Compare:
        left, op, right = children
        return A.Compare(left, str(op), right, _pos(meta))

    @v_args(meta=True)
    def arith(self, meta: Any, children: list[Any]) -> A.Expr:
        if len(children) == 1:
            return children[0]  # type: ignore[no-any-return]
        rest = tuple((str(children[i]), children[i + 1]) for i in range(1, len(children), 2))
        return A.Arith(children[0], rest, _pos(meta))

    @v_args(meta=True)
    def field_access(self, meta: Any, children: list[Any]) -> A.FieldAccess:
        return A.FieldAccess(children[0], str(children[1]), _pos(meta))

    @v_args(meta=True)
    def project_brackets(self, meta: Any, children: list[Any]) -> A.Project:
        return A.Project(children[0], tuple(str(c) for c in children[1:]), "[", _pos(meta))

    @v_args(meta=True)
    def project_braces(self, meta: Any, children: list[Any]) -> A.Project:
        return A.Project(children[0], tuple(str(c) for c in children[1:]), "{", _pos(meta))

    @v_args(meta=True)
    def if_expr(self, meta: Any, children: list[Any]) -> A.If:
        _, cond, then, _else, otherwise = children
        return A.If(cond, then, otherwise, _pos(meta))

    @v_args(meta=True)
    def branch(self, meta: Any, children: list[Any]) -> A.Branch:
        cases = tuple(c for c in children if isinstance(c, tuple))
        rest = [c for c in children if not isinstance(c, tuple | Token) and c is not None]
        return A.Branch(cases, rest[-1], _pos(meta))

    def branch_case(self, children: list[Any]) -> tuple[A.Expr, A.Expr]:
        return (children[0], children[1])

    @v_args(meta=True)
    def match(self, meta: Any, children: list[Any]) -> A.Match:
        _, subject, *cases = children
        return A.Match(subject, tuple(c for c in cases if c is not None), _pos(meta))

    def match_case(self, children: list[Any]) -> tuple[A.Pattern, A.Expr]:
        return (children[0], children[1])

    @v_args(meta=True)
    def pattern_record(self, meta: Any, children: list[Any]) -> A.PRecord:
        return A.PRecord(tuple(str(c) for c in children), _pos(meta))

    @v_args(meta=True)
    def pattern_wildcard(self, meta: Any, children: list[Any]) -> A.PWildcard:
        return A.PWildcard(_pos(meta))

    @v_args(meta=True)
    def pattern_type(self, meta: Any, children: list[Any]) -> A.PType:
        return A.PType(children[1], _pos(meta))

    @v_args(meta=True)
    def group(self, meta: Any, children: list[Any]) -> Any:
        items = [c for c in children if c is not None]
        return _Group(items, _pos(meta))

    def group_item(self, children: list[Any]) -> tuple[A.Expr, A.TypeExpr | None]:
        return (children[0], children[1])

    @v_args(meta=True)
    def call(self, meta: Any, children: list[Any]) -> A.Call:
        callee, *args = children
        return A.Call(str(callee), tuple(a for a in args if a is not None), (), _pos(meta))

    def name(self, children: list[Any]) -> A.Name:
        tok = children[0]
        return A.Name(str(tok), _pos(tok))

    def int_lit(self, children: list[Any]) -> A.IntLit:
        return A.IntLit(int(children[0]), _pos(children[0]))

    def float_lit(self, children: list[Any]) -> A.FloatLit:
        return A.FloatLit(float(children[0]), _pos(children[0]))

    def true_lit(self, children: list[Any]) -> A.BoolLit:
        return A.BoolLit(True, _pos(children[0]))

    def false_lit(self, children: list[Any]) -> A.BoolLit:
        return A.BoolLit(False, _pos(children[0]))

    @v_args(meta=True)
    def list_lit(self, meta: Any, children: list[Any]) -> A.ListLit:
        return A.ListLit(tuple(c for c in children if c is not None), _pos(meta))

    @v_args(meta=True)
    def record_lit(self, meta: Any, children: list[Any]) -> A.RecordLit:
        return A.RecordLit(tuple(children), _pos(meta))

    def record_field(self, children: list[Any]) -> tuple[str, A.Expr]:
        return (str(children[0]), children[1])

    def string_lit(self, children: list[Any]) -> A.StringLit:
        tok = children[0]
        pos = _pos(tok)
        return A.StringLit(string_parts(
            str(tok)[1:-1], parse_expression,
            lambda code, message: self._problem(code, message, pos)), pos)

    def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
        if data == "lambda":  # a Python keyword, so not a method name
            return self.lambda_(meta, children)
        return super().__default__(data, children, meta)  # type: ignore[no-untyped-call]


_Group = Group  # one class on both paths: group resolution recognizes either


def _duration(text: Any, tok: Any = None) -> A.Duration:
    m = re.fullmatch(r"(\d+)(ms|min|s|h|d)", str(text))
    assert m is not None
    return A.Duration(int(m.group(1)), m.group(2), _pos(tok if tok is not None else text))


def _assemble(items: list[Any], source: str, *, groups: Container[int] | None = None
              ) -> A.Pipeline:
    """Resolve groups (in every item, or only in the items ``groups`` lists: the fast
    path resolved the others), attach annotations, check the pipeline's shape."""
    problems: list[Diagnostic] = []
    pipeline_annotations: list[A.Annotation] = []
    pending: list[A.Annotation] = []
    declarations: list[A.Declaration] = []

    def problem(code: str, message: str, pos: A.Pos | None) -> None:
        line, col = (pos.line, pos.column) if pos else (0, 0)
        problems.append(Diagnostic(code, message, line, col,
                                   snippet(source, line, col) if pos else ""))

    for index, item in enumerate(items):
        if groups is None or index in groups:
            item = _resolve_groups(item, problem)
        if isinstance(item, A.Annotation):
            if item.name == "timeout":
                if declarations or pending:
                    problem(E_ANNOTATION, "@timeout(...) must come before every declaration",
                            item.pos)
                elif not isinstance(item.value, A.Duration):
                    problem(E_ANNOTATION, "@timeout takes a duration, as in @timeout(30s)",
                            item.pos)
                else:
                    pipeline_annotations.append(item)
            elif item.name == "example":
                pending.append(item)
            else:
                problem(E_ANNOTATION, f"unknown annotation @{item.name}; use @example(...) "
                                      "before an input or @timeout(...) first", item.pos)
            continue
        if pending:
            if isinstance(item, A.Input):
                item = A.Input(item.name, item.type, tuple(pending), item.pos)
            else:
                problem(E_ANNOTATION, "@example(...) must be followed by an input "
                                      "declaration (in name: Type)", pending[0].pos)
            pending = []
        declarations.append(item)
    if pending:
        problem(E_ANNOTATION, "@example(...) must be followed by an input declaration",
                pending[0].pos)
    if not any(isinstance(d, A.Output) for d in declarations):
        lines = source.splitlines() or [""]
        problems.append(Diagnostic(E_NO_OUTPUT, "the pipeline declares no output; add "
                                                "'out name' for each result to return",
                                   len(lines), 1, snippet(source, len(lines), 1)))
    if problems:
        raise CompilationError(problems)
    return A.Pipeline(tuple(declarations), tuple(pipeline_annotations), A.Pos(1, 1))


def _resolve_groups(node: Any, problem: Any) -> Any:
    """Replace parenthesized groups by the expression they hold (iteratively)."""
    return _GroupResolver(problem).run(node)


class _GroupResolver:
    # Groups only appear where an expression is expected; a group of one untyped item is
    # that item, anything else outside a lambda is an error. Done without recursion so
    # deep nesting is safe.
    def __init__(self, problem: Any) -> None:
        self.problem = problem

    def run(self, root: Any) -> Any:
        memo: dict[int, Any] = {}
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in memo:
                continue
            kids = _children(node)
            if not ready:
                stack.append((node, True))
                stack.extend((k, False) for k in kids if id(k) not in memo)
                continue
            memo[id(node)] = self._rebuild(node, memo)
        return memo[id(root)]

    def _rebuild(self, node: Any, memo: dict[int, Any]) -> Any:
        def get(x: Any) -> Any:
            return memo.get(id(x), x) if _is_node(x) else x

        if isinstance(node, _Group):
            if len(node) == 1 and node[0][1] is None:
                return get(node[0][0])
            self.problem(E_SYNTAX, "a parenthesized group with several items (or a type) "
                                   "must be followed by => to make a lambda", node.pos)
            return A.Name("<error>", node.pos)
        if isinstance(node, tuple):
            return tuple(get(x) for x in node)
        if isinstance(node, A.Lambda):
            return A.Lambda(node.params, get(node.body), node.pos)
        if hasattr(node, "__dataclass_fields__"):
            changes = {f: get(getattr(node, f)) for f in node.__dataclass_fields__
                       if f != "pos"}
            return type(node)(**changes, pos=node.pos)
        return node


def _is_node(x: Any) -> bool:
    return isinstance(x, tuple | _Group) or hasattr(x, "__dataclass_fields__")


def _children(node: Any) -> list[Any]:
    if isinstance(node, _Group):
        return [x for item in node for x in item if _is_node(x)]
    if isinstance(node, tuple):
        return [x for x in node if _is_node(x)]
    if isinstance(node, A.Lambda):
        return [node.body]
    if hasattr(node, "__dataclass_fields__"):
        return [getattr(node, f) for f in node.__dataclass_fields__
                if f != "pos" and _is_node(getattr(node, f))]
    return []
