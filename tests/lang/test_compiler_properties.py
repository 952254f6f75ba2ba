"""Properties of the compiler over generated, well-typed programs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constellation import Constellation
from constellation.lang.compiler import compile_source

if TYPE_CHECKING:
    from collections.abc import Iterator


@st.composite
def programs(draw: st.DrawFn) -> tuple[str, dict[str, int], dict[str, int]]:
    """Int programs over two inputs, with the values Python computes for them."""
    env = {"a": draw(st.integers(-50, 50)), "b": draw(st.integers(-50, 50))}
    lines = ["in a: Int", "in b: Int"]
    names = ["a", "b"]
    for i in range(draw(st.integers(1, 8))):
        x, y = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        k = draw(st.integers(-9, 9))
        form = draw(st.sampled_from(["+", "-", "*", "add", "max", "lit"]))
        name = f"v{i}"
        if form in "+-*":
            lines.append(f"{name} = {x} {form} {y} {'+' if k >= 0 else '-'} {abs(k)}")
            value = {"+": env[x] + env[y], "-": env[x] - env[y], "*": env[x] * env[y]}[form]
            env[name] = value + k
        elif form == "add":
            lines.append(f"{name} = add({x}, {k})")
            env[name] = env[x] + k
        elif form == "max":
            lines.append(f"{name} = max({x}, {y})")
            env[name] = max(env[x], env[y])
        else:
            lines.append(f"{name} = {k} * 2 + 1")
            env[name] = k * 2 + 1
        names.append(name)
    outs = draw(st.lists(st.sampled_from(names[2:]), min_size=1, max_size=3, unique=True))
    lines += [f"out {o}" for o in outs]
    return "\n".join(lines) + "\n", {"a": env["a"], "b": env["b"]}, {o: env[o] for o in outs}


@pytest.fixture(scope="module")
def engine() -> Iterator[Constellation]:
    with Constellation() as e:
        yield e


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(programs())
def test_same_source_same_hash_and_python_semantics(
        engine: Constellation, program: tuple[str, dict[str, int], dict[str, Any]]) -> None:
    source, inputs, expected = program
    first = compile_source(source, engine.modules).spec.structural_hash
    second = compile_source(source, engine.modules).spec.structural_hash
    assert first == second
    result = engine.run(source, inputs)
    assert result.ok, result.errors
    assert dict(result.outputs) == expected
