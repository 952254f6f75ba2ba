"""DagSpec and PipelineBuilder: structure, hashes, and compile-time checks."""

from __future__ import annotations

from typing import Any

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
from constellation.core.types import INT, COptional, Tagged
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


def _nested(depth: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(depth - 1):
        v = [v]
    return v


def test_a_literal_nested_deeper_than_the_languages_limit_is_refused_clearly() -> None:
    from constellation.core.builder import MAX_NESTING
    from constellation.lang.limits import MAX_NESTING as LANGUAGE_LIMIT

    assert MAX_NESTING == LANGUAGE_LIMIT
    b = PipelineBuilder("deep")
    ok = b.literal(_nested(MAX_NESTING), "Any")
    b.output("o", ok)
    assert len(b.build().structural_hash) == 64  # hashed without a RecursionError
    for deep in (_nested(MAX_NESTING + 1), _nested(10_000), {"k": _nested(10_000)}):
        with pytest.raises(ConfigurationError, match="nests more than 200 levels"):
            b.literal(deep, "Any")


def test_a_large_literal_gets_a_short_name() -> None:
    b = PipelineBuilder("big")
    ref = b.literal(list(range(100_000)))
    assert len(ref.name) < 80
    assert ref.name.startswith("literal [0, 1, 2")


def test_a_literal_that_does_not_fit_its_type_is_refused_and_one_that_does_is_canonical(
) -> None:
    class Shown:
        def __repr__(self) -> str:
            return "Shown"

    b = PipelineBuilder("typed")
    with pytest.raises(ConfigurationError, match="expected String"):
        b.literal(Shown(), "String")
    with pytest.raises(ConfigurationError, match="expected Int"):
        b.literal([1, "two"], "List<Int>")
    ref = b.literal(2, "Float")  # an Int widened, as an input's would be
    b.output("two", ref)
    node = next(d for d in b.build().data if d.id == ref.data_id)
    assert node.transform is not None
    assert dict(node.transform.params)["value"] == 2.0
    assert type(dict(node.transform.params)["value"]) is float


def test_literals_that_cannot_be_checked_are_refused_clearly() -> None:
    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    b = PipelineBuilder("hostile")
    tagged: Any = 1
    key: Any = 1
    for _ in range(10_000):
        tagged = Tagged("Int", tagged)
        key = (key,)
    deep_type: Any = INT
    for _ in range(2_000):
        deep_type = COptional(deep_type)
    for value, ctype, match in [
            (tagged, "Any", "nests more than 200"),
            ({key: 1}, "Any", "nests more than 200"),
            (1, deep_type, "nests too deep"),
            (BadRepr(), "String", "cannot be checked"),
            ({BadRepr(): 1}, "Map<Any, Int>", "cannot be checked")]:
        with pytest.raises(ConfigurationError, match=match):
            b.literal(value, ctype)


def test_a_literal_is_copied_when_it_is_given() -> None:
    b = PipelineBuilder("copied")
    mine = [1, 2]
    b.output("o", b.literal(mine))
    mine.append(3)
    spec = b.build()
    lit = next(d for d in spec.data if d.transform is not None)
    assert lit.transform is not None
    assert dict(lit.transform.params)["value"] == [1, 2]


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
