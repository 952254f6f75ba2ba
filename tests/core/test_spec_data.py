"""spec_to_data / spec_from_data: every example pipeline and builder spec comes back
equal (and with the same structural hash) through msgpack and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

from constellation import Constellation, PipelineBuilder
from constellation.core.spec_data import spec_from_data, spec_to_data
from constellation.core.types import INT, CRecord, Tagged

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "examples" / "pipelines").glob("*.cst"))


@pytest.fixture(scope="module")
def engine() -> Constellation:
    e = Constellation()
    yield e  # type: ignore[misc]
    e.shutdown(drain_timeout=5)


def _through_storage(data: object) -> object:
    packed = msgpack.unpackb(msgpack.packb(data, use_bin_type=True), raw=False,
                             strict_map_key=False)
    return json.loads(json.dumps(packed))


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_every_example_pipeline_comes_back_equal(engine: Constellation, path: Path) -> None:
    spec = engine.compile(path.read_text(), name=path.stem).spec
    back = spec_from_data(_through_storage(spec_to_data(spec)))
    assert back == spec
    assert back.structural_hash == spec.structural_hash


def test_a_builder_spec_with_literals_and_options_comes_back_equal() -> None:
    b = PipelineBuilder("b", description="d")
    text = b.input("text", str)
    b.output("o", b.call("Trim", text=text))
    b.output("n", b.literal({"a": 1, "t": (1, "x")}, CRecord.of(a=INT)))  # t: extra, kept
    spec = b.build()
    back = spec_from_data(_through_storage(spec_to_data(spec)))
    assert back == spec
    assert back.structural_hash == spec.structural_hash


def test_values_keep_their_python_shape() -> None:
    from constellation.core.spec_data import _unvalue, _value

    value = {1: (Tagged("Int", 3), [None, 1.5, True]), "k": INT}
    assert _unvalue(_through_storage(_value(value))) == value


@pytest.mark.parametrize("data", [None, {}, {"format": 2}, {"format": 1, "name": "x"},
                                  {"format": 1, "name": "x", "description": "",
                                   "timeout": None, "inputs": [["a"]], "outputs": [],
                                   "data": [], "modules": []}])
def test_what_is_not_a_stored_spec_is_a_value_error(data: object) -> None:
    with pytest.raises(ValueError, match="not a stored pipeline"):
        spec_from_data(data)


def test_an_unstorable_value_is_a_type_error() -> None:
    from constellation.core.spec_data import _value

    with pytest.raises(TypeError, match="cannot store"):
        _value(object())
