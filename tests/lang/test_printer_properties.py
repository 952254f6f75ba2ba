"""Property: every tree the parser can produce survives print → parse unchanged."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constellation.lang import ast as A
from constellation.lang.parser import parse, parse_expression
from constellation.lang.printer import print_expr, print_pipeline

KEYWORDS = {"type", "in", "out", "use", "as", "with", "lazy", "when", "or", "and", "not",
            "if", "else", "branch", "otherwise", "match", "is", "true", "false"}

idents = st.from_regex(r"[a-z][a-z0-9]{0,3}(-[a-z0-9]{1,2})?", fullmatch=True).filter(
    lambda s: s not in KEYWORDS)
type_names = st.sampled_from(["String", "Int", "Float", "Boolean", "Person", "Order"])
funcs = st.one_of(idents, st.builds(lambda a, b: f"{a}.{b}", idents, idents))


def types(depth: int = 2) -> st.SearchStrategy[A.TypeExpr]:
    primary: st.SearchStrategy[A.TypeExpr] = type_names.map(A.TName)
    if depth > 0:
        inner = types(depth - 1)
        primary = st.one_of(
            primary,
            st.builds(lambda n, a: A.TGeneric(n, (a,)), st.sampled_from(
                ["List", "Seq", "Optional"]), inner),
            st.builds(lambda k, v: A.TGeneric("Map", (k, v)), inner, inner),
            st.lists(st.tuples(idents, inner), max_size=2, unique_by=lambda f: f[0]).map(
                lambda fs: A.TRecord(tuple(fs))),
        )
    merge = st.one_of(primary, st.lists(primary, min_size=2, max_size=3).map(
        lambda ps: A.TMerge(tuple(ps))))
    return st.one_of(merge, st.lists(merge, min_size=2, max_size=3).map(
        lambda ms: A.TUnion(tuple(ms))))


# Interpolations cannot contain "}", so they only hold brace-free expressions.
simple_exprs = st.one_of(idents.map(A.Name), st.integers(-99, 99).map(A.IntLit),
                         st.builds(lambda f, a: A.Call(f, (A.Name(a),)), funcs, idents))
texts = st.text(alphabet='ab $\\"\n\t{}', min_size=1, max_size=4)


def strings() -> st.SearchStrategy[A.StringLit]:
    # Text parts never touch each other: the parser merges adjacent text.
    part_lists = st.lists(st.one_of(texts, simple_exprs), max_size=4).map(_merge_texts)
    return part_lists.map(lambda ps: A.StringLit(tuple(ps) if ps else ("",)))


def _merge_texts(parts: list[object]) -> list[object]:
    out: list[object] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] = out[-1] + p  # type: ignore[operator]
        else:
            out.append(p)
    return out


leaves = st.one_of(
    idents.map(A.Name),
    st.integers(-10**6, 10**6).map(A.IntLit),
    st.integers(0, 10**6).map(lambda n: A.FloatLit(n / 100)),
    st.booleans().map(A.BoolLit),
    strings(),
)


def extend(e: st.SearchStrategy[A.Expr]) -> st.SearchStrategy[A.Expr]:
    two_plus = st.lists(e, min_size=2, max_size=3)
    patterns = st.one_of(
        st.lists(idents, min_size=1, max_size=2, unique=True).map(
            lambda fs: A.PRecord(tuple(fs))),
        st.just(A.PWildcard()), type_names.map(lambda n: A.PType(A.TName(n))))
    return st.one_of(
        st.builds(lambda f, args: A.Call(f, tuple(args)), funcs, st.lists(e, max_size=3)),
        st.builds(lambda f, args, n: A.Call(f, tuple(args), (
            A.Option("retry", A.IntLit(n)), A.Option("timeout", A.Duration(n + 1, "s")))),
                  funcs, st.lists(e, max_size=2), st.integers(0, 5)),
        st.builds(lambda first, op, rest: A.Arith(first, tuple((op, r) for r in rest)),
                  e, st.sampled_from(["+", "-"]), st.lists(e, min_size=1, max_size=2)),
        st.builds(lambda first, op, rest: A.Arith(first, tuple((op, r) for r in rest)),
                  e, st.sampled_from(["*", "/"]), st.lists(e, min_size=1, max_size=2)),
        st.builds(A.Compare, e, st.sampled_from(["==", "!=", "<", ">", "<=", ">="]), e),
        st.builds(lambda op, xs: A.BoolOp(op, tuple(xs)), st.sampled_from(["and", "or"]),
                  two_plus),
        st.builds(A.Not, e), st.builds(A.Guard, e, e), st.builds(A.Coalesce, e, e),
        st.builds(A.If, e, e, e),
        st.builds(lambda cs, o: A.Branch(tuple(cs), o), st.lists(st.tuples(e, e),
                                                                 max_size=2), e),
        st.builds(lambda s, cs: A.Match(s, tuple(cs)), e,
                  st.lists(st.tuples(patterns, e), min_size=1, max_size=2)),
        st.builds(lambda ps, b: A.Lambda(tuple(ps), b),
                  st.lists(st.tuples(idents, st.none() | type_names.map(A.TName)),
                           max_size=2, unique_by=lambda p: p[0]), e),
        st.builds(A.FieldAccess, e, idents),
        st.builds(lambda t, fs, b: A.Project(t, tuple(fs), b), e,
                  st.lists(idents, min_size=1, max_size=2), st.sampled_from(["[", "{"])),
        st.lists(e, max_size=3).map(lambda xs: A.ListLit(tuple(xs))),
        st.lists(st.tuples(idents, e), min_size=1, max_size=2).map(
            lambda fs: A.RecordLit(tuple(fs))),
    )


exprs = st.recursive(leaves, extend, max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exprs)
def test_expressions_survive_print_then_parse(e: A.Expr) -> None:
    assert parse_expression(print_expr(e)) == e


durations = st.builds(A.Duration, st.integers(1, 500), st.sampled_from(["ms", "s", "min",
                                                                        "h", "d"]))
options = st.one_of(
    st.builds(lambda n: A.Option("retry", A.IntLit(n)), st.integers(0, 9)),
    st.builds(lambda d: A.Option("timeout", d), durations),
    st.builds(lambda n, d: A.Option("throttle", A.Rate(n, d)), st.integers(1, 100),
              durations),
    st.just(A.Option("lazy", None)),
    st.builds(lambda e: A.Option("fallback", e), exprs),
)


@st.composite
def pipelines(draw: st.DrawFn) -> A.Pipeline:
    decls: list[A.Declaration] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["type", "in", "use", "assign", "call"]))
        name = draw(idents)
        if kind == "type":
            decls.append(A.TypeDef(draw(type_names), draw(types())))
        elif kind == "in":
            examples = draw(st.lists(exprs.map(lambda v: A.Annotation("example", v)),
                                     max_size=1))
            decls.append(A.Input(name, draw(types()), tuple(examples)))
        elif kind == "use":
            decls.append(A.Use(draw(funcs), draw(st.none() | idents)))
        elif kind == "assign":
            decls.append(A.Assign(name, draw(exprs)))
        else:
            call = A.Call(draw(funcs), tuple(draw(st.lists(exprs, max_size=2))),
                          tuple(draw(st.lists(options, min_size=1, max_size=3))))
            decls.append(A.Assign(name, call))
    decls.append(A.Output(draw(idents)))
    timeout = draw(st.lists(durations.map(lambda d: A.Annotation("timeout", d)),
                            max_size=1))
    return A.Pipeline(tuple(decls), tuple(timeout))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipelines())
def test_pipelines_survive_print_then_parse(p: A.Pipeline) -> None:
    assert parse(print_pipeline(p)) == p
