"""Structural hashes pinned: computed before the compile-time work of issue 13 (the
canonical form built column by column, resolve returning an already typed spec as it is,
the quicker node constructors), they must not change -- stored hashes, the spec cache
and resume by hash rely on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import programs
from constellation import Constellation, PipelineBuilder
from constellation.core.dag import resolve
from constellation.stdlib import default_modules

ROOT = Path(__file__).resolve().parents[2]

EXAMPLES = {
    "examples/pipelines/arithmetic.cst":
        "9aabae8eeddc523dd6627255215ac00a1d1420791548751943f80fede4df159f",
    "examples/pipelines/branch-logic.cst":
        "3f5fad872b702935e2b3acd2b941449c3a59712d46af0cec1fcb90f3c7683c4e",
    "examples/pipelines/call-options.cst":
        "0cbb1f40e7f8073713468be777d1c778641afe7e29b6424f45a6dbc201d86b7f",
    "examples/pipelines/data-pipeline.cst":
        "61cdd32eefd9d658016c8642d9f89d46d103d5f9da0f4b0bd7acc8dcf0eab685",
    "examples/pipelines/guard-coalesce.cst":
        "a284589fae40eb0f99c337f898c03da6dabbee4aa7bfce3e4d18339b74034edf",
    "examples/pipelines/interpolation.cst":
        "3977cbfe9ab941023774cca8a0af86ad066e3d8a2f0882be6877bdd9862a3e6b",
    "examples/pipelines/lambdas.cst":
        "525b7b8835a524f3618448097856f55ff1b1df6b4286ca385808f8ddd59349cd",
    "examples/pipelines/namespaces.cst":
        "343ef23622cca432c63ca3f468c6781482022eccdcf8465ffbf88d378b736c96",
    "examples/pipelines/records-projection.cst":
        "59551df701419619ef7afb28d8003470bae12efea5d01e489ec9cbf82063b950",
    "examples/pipelines/text-analysis.cst":
        "a8040b6ff60dafd8711b90e39a5ffb2730bc36d902e5a0dd08e143fe7d90bb14",
    "examples/pipelines/union-match.cst":
        "f576cfb446c86fbb075839b1d6551d9fad1cd133b49f88f13a161c5bbfe3e28d",
}

GENERATED = {
    "hundred_lines":
        "64989ba83130168446816e57bc78f1626936628366fdbb8e0455f80aac78ebcd",
    "thousand_nodes":
        "e54b453cf6193b17c6033c3c0cc57efaa460d8e2bd47693d601086d4c71ab8fb",
    "assignments(2000)":
        "3b2f8d1dbaa44562c0f43cee491e9ccf0b26ad2ca06d4eba97334cf82d0f069b",
    "deep_parentheses(2000)":
        "6a0a3c1da7a3b188c95073d429b395f575702f74a9eaf9caca2ee9c5cc75063f",
    "long_chain(2000)":
        "987ac74c51bb1628895dd265bd4b3d6f385a259fde759d3e1b71c0f0f77ccb1d",
    "wide_match(2000)":
        "cbde3bd7c2cfd66e0185c0019f61aaac3a4b75519587e36a389e05e60cd39941",
}


@pytest.fixture(scope="module")
def engine() -> Constellation:
    return Constellation()


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_example_pipelines_hash_as_before(engine: Constellation, path: str) -> None:
    source = (ROOT / path).read_text()
    assert engine.compile(source).spec.structural_hash == EXAMPLES[path]


def generated(name: str) -> str:
    if "(" in name:  # a compile-scaling shape at a size, e.g. long_chain(2000)
        shape, size = name.rstrip(")").split("(")
        return programs.SCALING_SHAPES[shape](int(size))
    return getattr(programs, name)()  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_programs_hash_as_before(engine: Constellation, name: str) -> None:
    assert engine.compile(generated(name)).spec.structural_hash == GENERATED[name]


def builder_pipeline() -> PipelineBuilder:
    b = PipelineBuilder("p")
    doc = b.input("document", str)
    cleaned = b.call("Trim", text=doc,
                     options={"retry": 2, "timeout": 1.5, "fallback": ""})
    b.output("cleaned", cleaned)
    b.output("words", b.call("WordCount", text=cleaned,
                             options={"throttle": (5, 1.0), "on_error": "wrap"}))
    return b


def test_builder_specs_hash_as_before(engine: Constellation) -> None:
    spec = builder_pipeline().build()
    assert spec.structural_hash == \
        "f90821b9dabca5c5341d64e78788919a261198fb74d26e01ab4cd91794edcd82"
    assert engine.compile(spec).spec.structural_hash == \
        "4619178c3155f7811282b88f88da082cc04b18c582358dfb87264a07f069c5c6"


def test_resolve_types_an_untyped_spec_and_keeps_a_typed_one() -> None:
    modules = {m.name: m for m in default_modules()}
    spec = builder_pipeline().build()
    resolved = resolve(spec, modules)  # type: ignore[arg-type]
    assert resolved is not spec
    assert resolved.is_resolved
    assert not spec.is_resolved
    assert resolve(resolved, modules) is resolved  # type: ignore[arg-type]


@pytest.mark.parametrize(("source", "expected"), [
    ("in a: Int\nin b: Int\nunused = add(a, b)\nalso = multiply(unused, 2)\n"
     "x = add(a, 1)\ny = add(a, 1)\nout x\nout y\n",
     "814f99c5e5bf5c680902a25b5a3b3aae5ae37aa10e8046b623b99ed5c0bf0ffa"),
    ('in r: {name: String, age: Int}\nn = r.name\n'
     'm = r + {extra: 1.5, tags: ["a", "b"]}\nout n\nout m\n',
     "fc411de14f160146ebc4ae60bbb20a9847390dbc634b3d7bd9c9ba9a7dba0859"),
])
def test_dead_code_shared_calls_and_literals_hash_as_before(
        engine: Constellation, source: str, expected: str) -> None:
    assert engine.compile(source).spec.structural_hash == expected
