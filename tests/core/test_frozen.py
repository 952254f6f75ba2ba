"""quick_init: the quicker __init__ builds the same frozen instances as the dataclass's."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import pytest

from constellation.core._frozen import quick_init
from constellation.core.dag import DataNode, ModuleNode
from constellation.core.options import CallOptions


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)


@quick_init
@dataclass(frozen=True, slots=True)
class Quick:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)


def test_same_fields_defaults_and_factories_as_the_dataclass() -> None:
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))
    for args, kwargs in [((1,), {}), ((1, "x"), {}), ((1,), {"c": [2]}),
                         ((), {"a": 3, "b": "y", "c": [4]})]:
        q, p = Quick(*args, **kwargs), Plain(*args, **kwargs)
        assert (q.a, q.b, q.c) == (p.a, p.b, p.c)
    assert Quick(1).c is not Quick(1).c  # a new list each time
    with pytest.raises(TypeError):
        Quick()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, "x", [], 4)  # type: ignore[call-arg]


def test_instances_stay_frozen_equal_hashable_and_replaceable() -> None:
    node = DataNode("d", "n", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "m"  # type: ignore[misc]
    assert node == DataNode("d", "n", None, None, ())
    assert hash(node) == hash(DataNode("d", "n", None))
    assert dataclasses.replace(node, name="m") == DataNode("d", "m", None)
    assert repr(node) == "DataNode(id='d', name='n', ctype=None, transform=None, inputs=())"
    call = ModuleNode("mod:f", "f", "F", (("x", "d"),), "f.out")
    assert call.options == CallOptions()
    assert "options: 'CallOptions' = <factory>" in str(inspect.signature(ModuleNode))


def test_refuses_what_it_does_not_handle() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        a: int = field(kw_only=True)

    @dataclass(slots=True)
    class NotFrozen:
        a: int

    for cls in (NoSlots, KeywordOnly, NotFrozen):
        with pytest.raises(TypeError):
            quick_init(cls)
