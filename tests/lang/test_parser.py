"""The constellation-lang parser: every construct, located errors, deep input."""

from __future__ import annotations

import pytest

from constellation.core.errors import CompilationError
from constellation.lang import ast as A
from constellation.lang.parser import parse, parse_expression
from constellation.lang.printer import print_pipeline


def expr(text: str) -> A.Expr:
    return parse_expression(text)


def errors(source: str) -> list[tuple[str, int, int, str]]:
    with pytest.raises(CompilationError) as info:
        parse(source)
    return [(d.code, d.line, d.column, d.message) for d in info.value.errors]


EXAMPLES = {
    "simple": '@example("Hello, World!")\nin message: String\n\n# upper-case it\n'
              "result = Uppercase(message)\n\nout result\n",
    "text": "in document: String\ncleaned = Trim(document)\nnormalized = Lowercase(cleaned)\n"
            "words = WordCount(normalized)\nout cleaned\nout normalized\nout words\n",
    "guard": "in flag: Boolean\nin value: Int\nin fallback: Int\nguarded = value when flag\n"
             "result = guarded ?? fallback\nout result\n",
    "lambdas": "use stdlib.collection\nuse stdlib.compare\nuse stdlib.math\n"
               "in numbers: List<Int>\npositives = filter(numbers, (x) => gt(x, 0))\n"
               "result = map(positives, (x) => multiply(x, 2))\nout result\n",
    "branch": 'use stdlib.compare\nin score: Int\ngrade = branch {\n  gte(score, 90) -> "A",\n'
              '  gte(score, 80) -> "B",\n  otherwise -> "F"\n}\n'
              'passStatus = if (gte(score, 60)) "PASS" else "FAIL"\nout grade\nout passStatus\n',
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_reference_programs_parse_and_print_back(name: str) -> None:
    tree = parse(EXAMPLES[name])
    assert parse(print_pipeline(tree)) == tree


def test_declarations() -> None:
    p = parse('@timeout(30s)\ntype P = {name: String} + {age: Int}\nuse stdlib.string as str\n'
              '@example(3)\nin n: List<Map<String, Optional<Int>>>\ny = n\nout y\n')
    assert p.annotations == (A.Annotation("timeout", A.Duration(30, "s")),)
    typedef, use, inp, _assign, out = p.declarations
    assert typedef == A.TypeDef("P", A.TMerge((
        A.TRecord((("name", A.TName("String")),)), A.TRecord((("age", A.TName("Int")),)))))
    assert use == A.Use("stdlib.string", "str")
    assert inp.annotations == (A.Annotation("example", A.IntLit(3)),)
    assert inp.type == A.TGeneric("List", (A.TGeneric("Map", (
        A.TName("String"), A.TGeneric("Optional", (A.TName("Int"),)))),))
    assert out == A.Output("y")


def test_precedence_and_associativity() -> None:
    assert expr("a + b * c") == A.Arith(A.Name("a"), (
        ("+", A.Arith(A.Name("b"), (("*", A.Name("c")),))),))
    assert expr("a - b - c") == A.Arith(A.Name("a"), (("-", A.Name("b")), ("-", A.Name("c"))))
    assert expr("a ?? b ?? c") == A.Coalesce(A.Name("a"), A.Coalesce(A.Name("b"), A.Name("c")))
    assert expr("not a and b or c") == A.BoolOp("or", (
        A.BoolOp("and", (A.Not(A.Name("a")), A.Name("b"))), A.Name("c")))
    assert expr("x when a < b") == A.Guard(A.Name("x"), A.Compare(A.Name("a"), "<",
                                                                  A.Name("b")))
    assert expr("a.b[c, d]{e}") == A.Project(A.Project(A.FieldAccess(A.Name("a"), "b"),
                                                       ("c", "d"), "["), ("e",), "{")


def test_identifiers_may_contain_hyphens_and_subtraction_needs_spaces() -> None:
    assert expr("list-sum(xs)") == A.Call("list-sum", (A.Name("xs"),))
    assert expr("a-b") == A.Name("a-b")
    assert expr("a - b") == A.Arith(A.Name("a"), (("-", A.Name("b")),))
    assert expr("a - -5") == A.Arith(A.Name("a"), (("-", A.IntLit(-5)),))


def test_literals_and_strings() -> None:
    assert expr("[1, -2, 3.25, true]") == A.ListLit((A.IntLit(1), A.IntLit(-2),
                                                     A.FloatLit(3.25), A.BoolLit(True)))
    assert expr('{name: "A", age: 3}') == A.RecordLit((("name", A.StringLit(("A",))),
                                                       ("age", A.IntLit(3))))
    assert expr(r'"a\n\t\"q\" \$x ${name}!"') == A.StringLit(
        ('a\n\t"q" $x ', A.Name("name"), "!"))
    assert expr('"${f("x")}"') == A.StringLit((A.Call("f", (A.StringLit(("x",)),)),))


def test_calls_with_options() -> None:
    p = parse("in x: Int\ny = stdlib.math.add(x, 1) with retry: 3, timeout: 30s, "
              "throttle: 100/1min, backoff: exponential, lazy, priority: high, "
              'cache_backend: "redis", fallback: 0\nout y\n')
    call = p.declarations[1].value
    assert isinstance(call, A.Call)
    assert call.func == "stdlib.math.add"
    assert [o.name for o in call.options] == ["retry", "timeout", "throttle", "backoff",
                                             "lazy", "priority", "cache_backend", "fallback"]
    assert call.options[2].value == A.Rate(100, A.Duration(1, "min"))
    assert call.options[1].value.seconds == 30  # type: ignore[union-attr]


def test_calls_with_options_inside_parentheses() -> None:
    assert expr("f((g(x) with retry: 1), y)") == A.Call("f", (
        A.Call("g", (A.Name("x"),), (A.Option("retry", A.IntLit(1)),)), A.Name("y")))


def test_match_lambda_and_branch() -> None:
    assert expr("match v { {a, b} -> a, is Int -> 1, _ -> 0 }") == A.Match(A.Name("v"), (
        (A.PRecord(("a", "b")), A.Name("a")), (A.PType(A.TName("Int")), A.IntLit(1)),
        (A.PWildcard(), A.IntLit(0))))
    assert expr("(x: Int, y) => x") == A.Lambda((("x", A.TName("Int")), ("y", None)),
                                                A.Name("x"))
    assert expr("branch { a -> 1, otherwise -> 2 }") == A.Branch(((A.Name("a"),
                                                                   A.IntLit(1)),), A.IntLit(2))


def test_positions_are_recorded() -> None:
    p = parse("in x: Int\n\n  y = f(x)\nout y\n")
    assign = p.declarations[1]
    assert assign.pos == A.Pos(3, 3)
    assert assign.value.pos == A.Pos(3, 7)  # type: ignore[union-attr]


@pytest.mark.parametrize(("source", "code", "line", "column", "fragment"), [
    ("in x: Int\ny = \nout y", "E101", 3, 1, "unexpected 'out'"),
    ('in x: String\ny = "abc\nout y', "E102", 2, 5, "unterminated string"),
    ("in x: Int\ny = x $ 1\nout y", "E103", 2, 7, "unexpected character"),
    ('in x: String\ny = "\\q"\nout y', "E104", 2, 5, "unknown escape"),
    ("in x: Int\ny = (x + 1) => x\nout y", "E105", 2, 5, "lambda parameters"),
    ("@example(1)\nout x", "E106", 1, 1, "must be followed by an input"),
    ("in x: Int\n@timeout(5s)\nout x", "E106", 2, 1, "before every declaration"),
    ("@retry(3)\nin x: Int\nout x", "E106", 1, 1, "unknown annotation"),
    ("in x: Int\ny = x", "E107", 2, 1, "declares no output"),
    ("in x: Int\nif = 3\nout x", "E101", 2, 1, "unexpected 'if'"),
])
def test_errors_are_located(source: str, code: str, line: int, column: int,
                            fragment: str) -> None:
    found = errors(source)
    assert (found[0][0], found[0][1], found[0][2]) == (code, line, column), found
    assert fragment in found[0][3]


def test_error_snippet_has_a_caret() -> None:
    with pytest.raises(CompilationError) as info:
        parse("in x: Int\ny = x $ 1\nout y")
    assert info.value.errors[0].snippet == "y = x $ 1\n      ^"


def test_deep_nesting_and_long_chains_do_not_recurse() -> None:
    deep = parse("in a: Int\nx = " + "(" * 1000 + "a" + ")" * 1000 + "\nout x")
    assert deep.declarations[1] == A.Assign("x", A.Name("a"))
    chain = parse("in a: Int\nx = " + " + ".join(["a"] * 5000) + "\nout x")
    value = chain.declarations[1].value  # type: ignore[union-attr]
    assert isinstance(value, A.Arith)
    assert len(value.rest) == 4999
    assert parse(print_pipeline(chain)) == chain


def test_non_string_source_is_a_compilation_error() -> None:
    with pytest.raises(CompilationError):
        parse(42)  # type: ignore[arg-type]
