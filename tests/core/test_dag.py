"""DagSpec and PipelineBuilder: structure, hashes, and compile-time checks."""

from __future__ import annotations

import pytest

from constellation import (
    CompilationError,
    ConfigurationError,
    Constellation,
    PipelineBuilder,
    UnknownModuleError,
    module,
)
from constellation.core.dag import resolve
from constellation.stdlib import default_modules


@pytest.fixture
def modules() -> dict[str, object]:
    return {m.name: m for m in default_modules()}


def text_pipeline(name: str = "p") -> PipelineBuilder:
    b = PipelineBuilder(name)
    doc = b.input("document", str)
    cleaned = b.call("Trim", text=doc)
    b.output("cleaned", cleaned)
    b.output("words", b.call("WordCount", text=cleaned))
    return b


def test_same_structure_same_hash_whatever_the_name() -> None:
    assert text_pipeline("a").build().structural_hash == \
        text_pipeline("b").build().structural_hash


def test_different_structure_different_hash() -> None:
    b = text_pipeline()
    b.output("upper", b.call("Uppercase", text=b.input("other", str)))
    assert b.build().structural_hash != text_pipeline().build().structural_hash


def test_options_are_part_of_the_structure() -> None:
    def build(retry: int) -> str:
        b = PipelineBuilder("p")
        b.output("o", b.call("Trim", text=b.input("t", str), options={"retry": retry}))
        return b.build().structural_hash

    assert build(1) != build(2)


def test_resolve_types_every_value(modules: dict[str, object]) -> None:
    spec = resolve(text_pipeline().build(), modules)  # type: ignore[arg-type]
    assert {k: str(v) for k, v in spec.output_types.items()} == {"cleaned": "String",
                                                                 "words": "Int"}


def test_unknown_module_suggests_the_closest_name(modules: dict[str, object]) -> None:
    b = PipelineBuilder("p")
    b.output("o", b.call("Uppercse", text=b.input("t", str)))
    with pytest.raises(UnknownModuleError) as info:
        resolve(b.build(), modules)  # type: ignore[arg-type]
    assert info.value.code == "E110"
    assert "did you mean 'Uppercase'" in info.value.errors[0].message


def test_every_call_problem_is_reported_together(modules: dict[str, object]) -> None:
    b = PipelineBuilder("p")
    n = b.input("n", int)
    b.output("a", b.call("Uppercase", text=n))          # wrong type
    b.output("b", b.call("Replace", text=n, find="x"))  # wrong type + missing argument
    b.output("c", b.call("Trim", txt=b.input("s", str)))  # unknown + missing parameter
    b.output("d", b.call("Nope", x=n))                  # unknown module
    with pytest.raises(CompilationError) as info:
        resolve(b.build(), modules)  # type: ignore[arg-type]
    codes = sorted(e.code for e in info.value.errors)
    assert codes == ["E110", "E121", "E121", "E122", "E122", "E123"]
    assert any("did you mean 'text'" in e.message for e in info.value.errors)


def test_builder_rejects_duplicates_and_foreign_refs() -> None:
    b = PipelineBuilder("p")
    x = b.input("x", int)
    with pytest.raises(ConfigurationError, match="declared twice"):
        b.input("x", int)
    other = PipelineBuilder("q").input("y", int)
    with pytest.raises(ConfigurationError, match="another PipelineBuilder"):
        b.call("SumList", numbers=other)
    b.output("o", x)
    with pytest.raises(ConfigurationError, match="declared twice"):
        b.output("o", x)
    with pytest.raises(ConfigurationError, match="no output"):
        PipelineBuilder("empty").build()
    with pytest.raises(ConfigurationError, match="cannot infer"):
        b.call("SumList", numbers=[object()])


def test_builder_rejects_a_node_name_used_twice() -> None:
    b = PipelineBuilder("p")
    x = b.input("x", int)
    b.call("Inc", x=x)  # named Inc
    b.call("Inc", x=x, node="Inc#3")  # the name the third Inc would get
    b.call("Inc", x=x)  # Inc#2
    with pytest.raises(ConfigurationError, match="node name 'Inc#3' is used twice"):
        b.call("Inc", x=x)
    with pytest.raises(ConfigurationError, match="node name 'Inc' is used twice"):
        b.call("Other", x=x, node="Inc")
    # A call refused for its options reserves no name.
    with pytest.raises(ConfigurationError, match="unknown option"):
        b.call("Other", x=x, node="Mine", options={"retyr": 1})
    b.output("o", b.call("Other", x=x, node="Mine"))
    assert [m.name for m in b.build().modules] == ["Inc", "Inc#3", "Inc#2", "Mine"]


def test_types_given_as_strings_and_literals_inferred() -> None:
    b = PipelineBuilder("p")
    nums = b.input("nums", "List<Int>")
    b.output("o", b.call("FilterGreaterThan", numbers=nums, threshold=2))
    with Constellation() as engine:
        assert engine.run(b, {"nums": [1, 2, 3, 4]}).outputs == {"o": [3, 4]}


def test_modules_can_be_passed_as_definitions() -> None:
    @module("Triple")
    def triple(x: int) -> int:
        return 3 * x

    b = PipelineBuilder("p")
    b.output("o", b.call(triple, x=b.input("x", int)))
    spec = b.build()
    assert spec.is_resolved
    with Constellation([triple]) as engine:
        assert engine.run(spec, {"x": 5}).outputs == {"o": 15}


def test_field_access_and_records() -> None:
    @module("Person")
    def person(name: str) -> dict[str, str]:
        return {"name": name, "greeting": f"hi {name}"}

    b = PipelineBuilder("p")
    rec = b.record(a=b.input("a", int), b="text")
    b.output("a", b.field(rec, "a"))
    b.output("rec", rec)
    with Constellation() as engine:
        assert engine.run(b, {"a": 1}).outputs == {"a": 1, "rec": {"a": 1, "b": "text"}}
