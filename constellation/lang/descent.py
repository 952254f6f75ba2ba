"""The fast path of the parser: a hand-written tokenizer and recursive-descent parser.

It accepts exactly the programs of ``grammar.lark``, builds the same syntax tree
(positions included) as the lark path in :mod:`constellation.lang.parser`, and finds
the same problems that lark's tree builder reports (bad escapes, lambda parameters that
are not names, ``${...}`` that do not parse, groups that are no lambda), in the same
order. On a syntax error, or anything it does not take, it gives up
(:class:`NotFast`) and the caller parses with lark, whose diagnostics are the
reference. Lark's LALR parser spends most
of its time reducing through the eleven precedence levels of every operand; this one
parses each level as a loop, several times faster.

The descent runs on the trampoline (:mod:`constellation.lang.trampoline`): where it
meets a nested expression or type it yields it, so nesting depth costs heap, not
stack. Precedence levels are ``yield from`` delegations (a constant depth per
expression).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from constellation.lang import ast as A
from constellation.lang.trampoline import Step, run

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["NotFast", "parse_expression_fast", "parse_items_fast"]

_KEYWORDS = ("type", "in", "out", "use", "as", "with", "lazy", "when", "or", "and", "not",
             "if", "else", "branch", "otherwise", "match", "is", "true", "false")
_KW = "|".join(_KEYWORDS)

# The terminals of grammar.lark, in lark's order of priority. A "-" followed by digits
# is an INT only where an operand is expected (lark's contextual lexer); see _tokens.
_TOKEN = re.compile(
    r"(?:[ \t\f\r\n]+|#[^\n]*)*"  # whitespace and comments before the token
    # Single-character operators that start no other terminal, first: most tokens of
    # an operator chain are one (each later alternative would be tried in turn).
    r"(?:(?P<SYM>[+*/(){}\[\],:|@.])"
    r"|(?P<RATE>\d+/\d+(?:ms|min|s|h|d)(?![A-Za-z0-9_]))"
    r"|(?P<DURATION>\d+(?:ms|min|s|h|d)(?![A-Za-z0-9_]))"
    r"|(?P<FLOAT>\d+\.\d+)"
    # A name right before "(" (the parser joins "a.b.f(" from its parts: matching the
    # dots here would rescan a long field-access chain at every name, quadratically).
    # (Possessive: a shorter part of a name is never followed by "(", so no backtracking.)
    rf"|(?P<CALLEE>(?!(?:{_KW})(?![A-Za-z0-9_\-.]))[A-Za-z_][A-Za-z0-9_-]*+(?=\())"
    r"|(?P<NEGINT>-\d+)"
    r"|(?P<INT>\d+)"
    r"|(?P<IDENT>[A-Za-z_][A-Za-z0-9_-]*)"  # a whole keyword (or "_") is not a name
    r'|(?P<STRING>"(?:\\.|\$\{[^}]*\}|[^"\\$]|\$(?!\{))*")'
    r"|(?P<OP>==|!=|<=|>=|\?\?|->|=>|[<>+\-*/=(){}\[\],:.|@_])"
    r"|(?P<END>\Z)"
    r"|(?P<ERROR>.))", re.S)
_LINE = re.compile("\n")

_WORDS = {k: k.upper() for k in _KEYWORDS} | {"_": "_"}
# Tokens after which an operand has just ended: a "-" there is subtraction.
_ENDS_OPERAND = {"IDENT", "INT", "FLOAT", "STRING", "TRUE", "FALSE", ")", "]", "}",
                 "DURATION", "RATE"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$"}
_INTERP = re.compile(r"\$\{([^}]*)\}")
_ADD = {"+", "-"}
_MUL = {"*", "/"}
_COMPARE = {"==", "!=", "<=", ">=", "<", ">"}
# Tokens that continue an expression after an operand.
_CONTINUES = _ADD | _MUL | _COMPARE | {"??", "WHEN", "OR", "AND", ".", "[", "{"}
# Tokens that bind an operand tighter than + and - (see _Parser.plain_operand).
_TIGHTER = _MUL | {".", "[", "{"}


BAD_LAMBDA_MESSAGE = ("lambda parameters must be names, as in (x) => ... or "
                      "(x: Int) => ...")


def bad_escape_message(escape: str) -> str:
    """The E104 message for the escape ``\\<escape>``."""
    return f"unknown escape '\\{escape}' in a string; use " r'\n \t \r \\ \" or \$'


Problem = tuple[str, str, A.Pos | None]
"""A problem found while building the tree: code, message, position."""


class Group(list):  # type: ignore[type-arg]
    """``( ... )``: a parenthesized expression, or the parameter list of a lambda; its
    items are ``(expression, type or None)``. One that is neither is left in the tree
    for the parser's group resolution to report (E101)."""

    def __init__(self, items: list[Any], pos: A.Pos | None) -> None:
        super().__init__(items)
        self.pos = pos


class NotFast(Exception):  # noqa: N818 - a signal to use the lark path
    """The fast path does not take this source (it may be invalid): use lark.

    Attributes:
        item_offset: where the declaration (or annotation) before the one it gave up
            in starts, in characters; everything before it was parsed. Lark can be
            asked about the rest alone: a syntax error there is the program's first.
    """

    def __init__(self, item_offset: int = 0) -> None:
        super().__init__(item_offset)
        self.item_offset = item_offset


def parse_items_fast(source: str) -> tuple[list[Any], list[Problem], set[int]]:
    """The declarations and annotations of a whole program, in order; the problems
    found building them, in lark's order (bad escapes, lambda parameters that are not
    names, ``${...}`` that do not parse); and the indexes of the items that hold a
    :class:`Group` to resolve (and report).

    Raises:
        NotFast: the lark path must parse it.
    """
    p = _Parser(source)
    try:
        items = run(p.items())
    except NotFast:
        raise NotFast(p.offsets[p.resume_start]) from None
    if p.bad_character:  # the tokens ended early, at a character nothing takes
        raise NotFast(p.offsets[p.resume_start])
    return items, p.problems, p.group_items


def parse_expression_fast(source: str) -> A.Expr:
    """One expression (the text of a ``${...}``) without any problem.

    Raises:
        NotFast: the lark path must parse it.
    """
    p = _Parser(source)
    e = run(p.expr())
    p.expect("$END")
    if p.problems or p.group_items:
        raise NotFast
    return e


class _Parser:
    def __init__(self, source: str) -> None:
        kinds: list[str] = []
        texts: list[str] = []
        offsets: list[int] = []
        add_kind, add_text, add_offset = kinds.append, texts.append, offsets.append
        words = _WORDS
        prev = ""
        bad_character = False
        parens: list[bool] = []  # for each open "(": whether it follows "if"
        for m in _TOKEN.finditer(source):
            kind = m.lastgroup
            if kind == "END":
                break
            text = m.group(kind)  # type: ignore[arg-type]
            at = m.start(kind)  # type: ignore[arg-type]
            if kind == "IDENT":
                kind = words.get(text, "IDENT")
            elif kind == "SYM" or kind == "OP":
                kind = text
                if kind == "(":
                    parens.append(prev == "IF")
                elif kind == ")" and parens and parens.pop():
                    kind = "IF)"  # the end of an if's condition: an operand follows
            elif kind == "NEGINT":
                if prev in _ENDS_OPERAND:  # subtraction: "-" then the number
                    add_kind("-")
                    add_text("-")
                    add_offset(at)
                    add_kind("INT")
                    add_text(text[1:])
                    add_offset(at + 1)
                    prev = "INT"
                    continue
                kind = "INT"
            elif kind == "ERROR" or kind is None:
                # Stop here; the parse fails at this point, in its declaration.
                bad_character = True
                break
            prev = kind
            if kind == "IF)":
                kind = ")"
            add_kind(kind)
            add_text(text)
            add_offset(at)
        add_kind("$END")
        add_text("")
        add_offset(len(source))
        self.kinds = kinds
        self.texts = texts
        self.offsets = offsets
        self.line_starts = [0, *(m.end() for m in _LINE.finditer(source))]
        self.i = 0
        self.bad_character = bad_character
        # The first token of the item before the one being parsed: lark, asked from
        # there, is in the same state as on the whole source where this item starts
        # (the previous item might still go on, so its start is needed too).
        self.resume_start = 0
        self.item_start = 0
        self.call_ends: dict[int, int] = {}  # a call's first token -> the one after it
        self.problems: list[Problem] = []
        self.group_items: set[int] = set()  # items holding a Group to resolve
        self.item_count = 0

    # --- tokens ------------------------------------------------------------------------

    def pos_at(self, i: int) -> A.Pos:
        """The position of token ``i`` (computed when needed: most are never asked)."""
        offset = self.offsets[i]
        line = bisect_right(self.line_starts, offset)
        return A.Pos(line, offset - self.line_starts[line - 1] + 1)

    def peek(self, ahead: int = 0) -> str:
        return self.kinds[self.i + ahead]

    def take(self) -> tuple[str, A.Pos]:
        i = self.i
        self.i = i + 1
        return self.texts[i], self.pos_at(i)

    def take_pos(self) -> A.Pos:
        i = self.i
        self.i = i + 1
        return self.pos_at(i)

    def take_text(self) -> str:
        i = self.i
        self.i = i + 1
        return self.texts[i]

    def expect(self, kind: str) -> str:
        i = self.i
        if self.kinds[i] != kind:
            raise NotFast
        self.i = i + 1
        return self.texts[i]

    def accept(self, kind: str) -> bool:
        if self.kinds[self.i] == kind:
            self.i += 1
            return True
        return False

    # --- declarations ------------------------------------------------------------------

    def items(self) -> Step[list[Any]]:
        items: list[Any] = []
        while True:
            self.resume_start, self.item_start = self.item_start, self.i
            self.item_count = len(items)
            k = self.peek()
            if k == "$END":
                return items
            if k == "@":
                items.append((yield from self.annotation()))
            elif k == "TYPE":
                pos = self.take_pos()
                name = self.expect("IDENT")
                self.expect("=")
                items.append(A.TypeDef(name, (yield self.type_expr()), pos))
            elif k == "IN":
                pos = self.take_pos()
                name = self.expect("IDENT")
                self.expect(":")
                items.append(A.Input(name, (yield self.type_expr()), (), pos))
            elif k == "OUT":
                pos = self.take_pos()
                name = self.expect("IDENT")
                items.append(A.Output(name, pos))
            elif k == "USE":
                pos = self.take_pos()
                parts = [self.expect("IDENT")]
                while self.accept("."):
                    parts.append(self.expect("IDENT"))
                alias = self.expect("IDENT") if self.accept("AS") else None
                items.append(A.Use(".".join(parts), alias, pos))
            elif k == "IDENT":
                name, pos = self.take()
                self.expect("=")
                items.append(A.Assign(name, (yield from self.rhs()), pos))
            else:
                raise NotFast

    def annotation(self) -> Step[A.Annotation]:
        pos = self.take_pos()
        k = self.peek()
        if k not in ("IDENT", "CALLEE") or "." in self.texts[self.i]:
            raise NotFast
        name = self.take_text()
        self.expect("(")
        value: Any = None
        if self.peek() == "DURATION":
            value = self.duration(*self.take())
        elif self.peek() != ")":
            value = yield self.expr()
        self.expect(")")
        return A.Annotation(name, value, pos)

    def rhs(self) -> Step[A.Expr]:
        """``expr`` or ``call WITH option, ...``."""
        start = self.i
        e: A.Expr = yield self.expr()
        if self.peek() == "WITH":
            # Options follow a call that is the whole expression (no parentheses).
            if self.call_ends.get(start) != self.i or not isinstance(e, A.Call):
                raise NotFast
            self.i += 1
            options = yield from self.options()
            return A.Call(e.func, e.args, tuple(options), e.pos)
        return e

    def options(self) -> Step[list[A.Option]]:
        options = []
        while True:
            k = self.peek()
            if k == "LAZY" and self.peek(1) != ":":
                pos = self.take_pos()
                options.append(A.Option("lazy", None, pos))
            elif k in ("IDENT", "LAZY"):
                name, pos = self.take()
                self.expect(":")
                vk = self.peek()
                value: Any
                if vk == "DURATION":
                    value = self.duration(*self.take())
                elif vk == "RATE":
                    text, rpos = self.take()
                    count, per = text.split("/", 1)
                    d = self.duration(per, rpos)
                    value = A.Rate(int(count), d, rpos)
                else:
                    value = yield self.expr()
                options.append(A.Option(name, value, pos))
            else:
                raise NotFast
            if not self.accept(","):
                return options

    @staticmethod
    def duration(text: str, pos: A.Pos) -> A.Duration:
        digits = text.rstrip("mshind")
        return A.Duration(int(digits), text[len(digits):], pos)

    # --- types -------------------------------------------------------------------------

    def type_expr(self) -> Step[A.TypeExpr]:
        pos = self.pos_at(self.i)
        members = [(yield from self.type_merge())]
        while self.accept("|"):
            members.append((yield from self.type_merge()))
        return members[0] if len(members) == 1 else A.TUnion(tuple(members), pos)

    def type_merge(self) -> Step[A.TypeExpr]:
        pos = self.pos_at(self.i)
        parts = [(yield from self.type_primary())]
        while self.accept("+"):
            parts.append((yield from self.type_primary()))
        return parts[0] if len(parts) == 1 else A.TMerge(tuple(parts), pos)

    def type_primary(self) -> Step[A.TypeExpr]:
        k = self.peek()
        if k == "IDENT":
            name, pos = self.take()
            if not self.accept("<"):
                return A.TName(name, pos)
            args = [(yield self.type_expr())]
            while self.accept(","):
                args.append((yield self.type_expr()))
            self.expect(">")
            return A.TGeneric(name, tuple(args), pos)
        if k == "{":
            pos = self.take_pos()
            fields = []
            if self.peek() != "}":
                while True:
                    fname = self.expect("IDENT")
                    self.expect(":")
                    fields.append((fname, (yield self.type_expr())))
                    if not self.accept(","):
                        break
            self.expect("}")
            return A.TRecord(tuple(fields), pos)
        raise NotFast

    # --- expressions, loosest first ----------------------------------------------------
    # Each level takes the operand already parsed (``first``: a parenthesized group at
    # the start of an expression, which could have been a lambda's parameters) and the
    # index of the token the operand starts at: a node's position is its first token's,
    # as lark records it.

    def expr(self) -> Step[A.Expr]:
        """``lambda | coalesce``."""
        start = self.i
        first: A.Expr | None = None
        k = self.kinds[start]
        if k != "(" and k != "NOT":
            # Most operands are followed by no operator: skip the levels then.
            first = yield from self.postfix(None, start)
            if self.kinds[self.i] not in _CONTINUES:
                return first
        elif k == "(":
            group, pos = yield from self.group()
            if self.peek() == "=>":
                self.i += 1
                body = yield self.expr()
                params = []
                for item, type_ in group:
                    if not isinstance(item, A.Name):  # as lark's builder: reported, left out
                        self.problems.append(("E105", BAD_LAMBDA_MESSAGE, pos))
                        continue
                    params.append((item.name, type_))
                return A.Lambda(tuple(params), body, pos)
            first = self.resolved(group, pos)
            if self.kinds[self.i] not in _CONTINUES:
                return first
        return (yield from self.coalesce(first, start))

    def coalesce(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        starts = [start]
        operands = [(yield from self.guard(first, start))]
        while self.accept("??"):
            starts.append(self.i)
            operands.append((yield from self.guard(None, self.i)))
        e = operands[-1]
        for left, at in zip(reversed(operands[:-1]), reversed(starts[:-1]), strict=True):
            e = A.Coalesce(left, e, self.pos_at(at))
        return e

    def guard(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        value = yield from self.bool_or(first, start)
        if self.accept("WHEN"):
            condition = yield from self.bool_or(None, self.i)
            return A.Guard(value, condition, self.pos_at(start))
        return value

    def bool_or(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        operands = [(yield from self.bool_and(first, start))]
        while self.accept("OR"):
            operands.append((yield from self.bool_and(None, self.i)))
        if len(operands) == 1:
            return operands[0]
        return A.BoolOp("or", tuple(operands), self.pos_at(start))

    def bool_and(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        operands = [(yield from self.not_expr(first, start))]
        while self.accept("AND"):
            operands.append((yield from self.not_expr(None, self.i)))
        if len(operands) == 1:
            return operands[0]
        return A.BoolOp("and", tuple(operands), self.pos_at(start))

    def not_expr(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        nots: list[A.Pos] = []
        if first is None:
            while self.peek() == "NOT":
                nots.append(self.take()[1])
        e = yield from self.compare(first, self.i if nots else start)
        for pos in reversed(nots):
            e = A.Not(e, pos)
        return e

    def compare(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        left = yield from self.additive(first, start)
        if self.peek() in _COMPARE:
            op = self.take_text()
            right = yield from self.additive(None, self.i)
            return A.Compare(left, op, right, self.pos_at(start))
        return left

    def additive(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        head = yield from self.multiplicative(first, start)
        rest = []
        kinds = self.kinds
        while kinds[self.i] in _ADD:
            op = self.take_text()
            operand = self.plain_operand()
            if operand is None:
                operand = yield from self.multiplicative(None, self.i)
            rest.append((op, operand))
        return A.Arith(head, tuple(rest), self.pos_at(start)) if rest else head

    def plain_operand(self) -> A.Expr | None:
        """A name or an integer that nothing binding tighter follows (most terms of a
        long chain): what :meth:`multiplicative` would return, without its generator
        levels; None for anything else."""
        i = self.i
        k = self.kinds[i]
        if (k != "IDENT" and k != "INT") or self.kinds[i + 1] in _TIGHTER:
            return None
        self.i = i + 1
        if k == "IDENT":
            return A.Name(self.texts[i], self.pos_at(i))
        return A.IntLit(int(self.texts[i]), self.pos_at(i))

    def multiplicative(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        head = yield from self.postfix(first, start)
        rest = []
        while self.peek() in _MUL:
            op = self.take_text()
            rest.append((op, (yield from self.postfix(None, self.i))))
        return A.Arith(head, tuple(rest), self.pos_at(start)) if rest else head

    def postfix(self, first: A.Expr | None, start: int) -> Step[A.Expr]:
        e = (yield from self.primary()) if first is None else first
        while True:
            k = self.peek()
            if k == ".":
                self.i += 1
                e = A.FieldAccess(e, self.expect("IDENT"), self.pos_at(start))
            elif k in ("[", "{"):
                self.i += 1
                names = [self.expect("IDENT")]
                while self.accept(","):
                    names.append(self.expect("IDENT"))
                self.expect("]" if k == "[" else "}")
                e = A.Project(e, tuple(names), k, self.pos_at(start))
            else:
                return e

    def qualified_callee(self) -> str | None:
        """``a.b.f`` when the tokens from here are ``a . b . f(`` with no space between
        (a qualified call; the current token then is ``f``); None otherwise."""
        kinds, texts, offsets = self.kinds, self.texts, self.offsets
        j = self.i
        while (kinds[j] == "IDENT" and kinds[j + 1] == "."
               and offsets[j] + len(texts[j]) == offsets[j + 1]
               and offsets[j + 1] + 1 == offsets[j + 2]):
            j += 2
            if kinds[j] == "CALLEE":
                name = "".join(texts[self.i:j + 1])
                self.i = j
                return name
        return None

    def call(self, func: str, start: int) -> Step[A.Call]:
        """A call whose name ends at the current token (a ``CALLEE``) and starts at
        token ``start``."""
        self.i += 1
        self.expect("(")
        args = []
        if self.peek() != ")":
            args.append((yield self.expr()))
            while self.accept(","):
                args.append((yield self.expr()))
        self.expect(")")
        self.call_ends[start] = self.i
        return A.Call(func, tuple(args), (), self.pos_at(start))

    def primary(self) -> Step[A.Expr]:
        k = self.peek()
        if k == "IDENT" and self.kinds[self.i + 1] == ".":
            start = self.i
            qualified = self.qualified_callee()
            if qualified is not None:
                return (yield from self.call(qualified, start))
        if k == "IDENT":
            name, pos = self.take()
            return A.Name(name, pos)
        if k == "CALLEE":
            return (yield from self.call(self.texts[self.i], self.i))
        if k == "INT":
            text, pos = self.take()
            return A.IntLit(int(text), pos)
        if k == "FLOAT":
            text, pos = self.take()
            return A.FloatLit(float(text), pos)
        if k == "STRING":
            text, pos = self.take()
            problems = self.problems
            return A.StringLit(string_parts(
                text[1:-1], _parse_interpolated,
                lambda code, message: problems.append((code, message, pos))), pos)
        if k == "TRUE" or k == "FALSE":
            pos = self.take_pos()
            return A.BoolLit(k == "TRUE", pos)
        if k == "(":
            group, pos = yield from self.group()
            return self.resolved(group, pos)  # type: ignore[no-any-return]
        if k == "[":
            pos = self.take_pos()
            items = []
            if self.peek() != "]":
                items.append((yield self.expr()))
                while self.accept(","):
                    items.append((yield self.expr()))
            self.expect("]")
            return A.ListLit(tuple(items), pos)
        if k == "{":
            pos = self.take_pos()
            fields = []
            while True:
                name = self.expect("IDENT")
                self.expect(":")
                fields.append((name, (yield self.expr())))
                if not self.accept(","):
                    break
            self.expect("}")
            return A.RecordLit(tuple(fields), pos)
        if k == "IF":
            pos = self.take_pos()
            self.expect("(")
            condition = yield self.expr()
            self.expect(")")
            then = yield self.expr()
            self.expect("ELSE")
            otherwise = yield self.expr()
            return A.If(condition, then, otherwise, pos)
        if k == "BRANCH":
            pos = self.take_pos()
            self.expect("{")
            cases = []
            while not self.accept("OTHERWISE"):
                c = yield self.expr()
                self.expect("->")
                cases.append((c, (yield self.expr())))
                self.expect(",")
            self.expect("->")
            otherwise = yield self.expr()
            self.accept(",")
            self.expect("}")
            return A.Branch(tuple(cases), otherwise, pos)
        if k == "MATCH":
            pos = self.take_pos()
            subject = yield from self.primary()
            self.expect("{")
            match_cases = [(yield from self.match_case())]
            while self.accept(","):
                if self.peek() == "}":
                    break
                match_cases.append((yield from self.match_case()))
            self.expect("}")
            return A.Match(subject, tuple(match_cases), pos)
        raise NotFast

    def resolved(self, group: list[tuple[A.Expr, A.TypeExpr | None]], pos: A.Pos) -> Any:
        """A parenthesized expression: the expression itself; a group that is neither
        that nor a lambda's parameters stays, for group resolution to report."""
        if len(group) == 1 and group[0][1] is None:
            return group[0][0]
        self.group_items.add(self.item_count)
        return Group(group, pos)

    def match_case(self) -> Step[tuple[A.Pattern, A.Expr]]:
        k = self.peek()
        pattern: A.Pattern
        if k == "{":
            pos = self.take_pos()
            names = [self.expect("IDENT")]
            while self.accept(","):
                names.append(self.expect("IDENT"))
            self.expect("}")
            pattern = A.PRecord(tuple(names), pos)
        elif k == "_":
            pattern = A.PWildcard(self.take()[1])
        elif k == "IS":
            pos = self.take_pos()
            pattern = A.PType((yield from self.type_primary()), pos)
        else:
            raise NotFast
        self.expect("->")
        return pattern, (yield self.expr())

    def group(self) -> Step[tuple[list[tuple[A.Expr, A.TypeExpr | None]], A.Pos]]:
        """``( item, ... )``: each item an expression (or a call with options) and an
        optional ``: Type``."""
        pos = self.take_pos()
        items: list[tuple[A.Expr, A.TypeExpr | None]] = []
        if self.peek() != ")":
            while True:
                start = self.i
                e: A.Expr = yield self.expr()
                if self.peek() == "WITH":  # (call with options), as in rhs()
                    if self.call_ends.get(start) != self.i or not isinstance(e, A.Call):
                        raise NotFast
                    self.i += 1
                    options = yield from self.options()
                    e = A.Call(e.func, e.args, tuple(options), e.pos)
                type_ = (yield self.type_expr()) if self.accept(":") else None
                items.append((e, type_))
                if not self.accept(","):
                    break
        self.expect(")")
        return items, pos


def string_parts(body: str, parse: Callable[[str], A.Expr],
                 report: Callable[[str, str], None]) -> tuple[str | A.Expr, ...]:
    """The parts of a string literal's ``body``: text (escapes resolved) and the
    expressions of its ``${...}``. Both parsers use it: ``parse`` parses one
    interpolated expression (raising CompilationError), ``report(code, message)``
    records a problem at the literal.
    """
    if "\\" not in body and "$" not in body:
        return (body,)
    from constellation.core.errors import CompilationError

    parts: list[str | A.Expr] = []
    text: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            esc = body[i + 1] if i + 1 < len(body) else ""
            if esc not in _ESCAPES:
                report("E104", bad_escape_message(esc))
            text.append(_ESCAPES.get(esc, esc))
            i += 2
            continue
        m = _INTERP.match(body, i) if ch == "$" else None
        if m is not None:
            if text:
                parts.append("".join(text))
                text = []
            try:
                parts.append(parse(m.group(1)))
            except CompilationError as exc:
                for d in exc.errors:
                    report(d.code, f"in ${{...}} of a string: {d.message}")
            i = m.end()
            continue
        text.append(ch)
        i += 1
    if text or not parts:
        parts.append("".join(text))
    return tuple(parts)


def _parse_interpolated(source: str) -> A.Expr:
    try:
        return parse_expression_fast(source)
    except NotFast:  # lark reports it (the text is short), as lark's builder does
        from constellation.lang.parser import parse_expression

        return parse_expression(source)
