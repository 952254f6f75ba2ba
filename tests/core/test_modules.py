"""@module: signatures from type hints, defaults, and clear errors for unusable functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from constellation import ConfigurationError, ModuleDefinition, module
from constellation.core.types import render


def test_signature_comes_from_type_hints() -> None:
    @module("Greet", version="2.1")
    def greet(name: str, times: int, shout: bool | None) -> list[str]:
        """Greets someone.

        More text.
        """
        return []

    assert isinstance(greet, ModuleDefinition)
    assert greet.signature == "Greet(name: String, times: Int, shout: Optional<Boolean>) -> " \
                              "List<String>"
    assert greet.version == "2.1"
    assert greet.description == "Greets someone."


def test_bare_decorator_uses_the_function_name() -> None:
    @module
    def double(x: int) -> int:
        return 2 * x

    assert double.name == "double"
    assert double(4) == 8  # still callable as a function


def test_ctx_parameter_is_not_an_input() -> None:
    @module("WithCtx")
    def f(x: int, ctx: Any) -> int:
        return x

    assert list(f.inputs) == ["x"]
    assert f.takes_ctx


def test_dataclass_parameters_and_results_are_records() -> None:
    @dataclass
    class Box:
        w: int
        h: int

    @module("Area")
    def area(box: Box) -> int:
        return box.w * box.h

    assert render(area.inputs["box"]) == "{h: Int, w: Int}"
    assert area.prepare_args({"box": {"w": 2, "h": 3}})["box"] == Box(2, 3)


def test_option_defaults_are_validated() -> None:
    @module("Flaky", retry=2, timeout=1.5)
    def flaky(x: int) -> int:
        return x

    assert flaky.options.retry == 2
    assert flaky.options.timeout == 1.5
    with pytest.raises(ConfigurationError, match="retry"):
        module("Bad", retry=-1)(flaky.func)
    with pytest.raises(ConfigurationError, match="nonsense"):
        module("Bad", nonsense=1)(flaky.func)


@pytest.mark.parametrize(("source", "fragment"), [
    ("def f(x) -> int: return 1", "needs a type hint"),
    ("def f(x: int): return 1", "needs a return type hint"),
    ("def f(*xs: int) -> int: return 1", "plain named parameter"),
    ("def f(x: complex) -> int: return 1", "has no Constellation type"),  # bytes has a handler
])
def test_unusable_functions_give_configuration_errors(source: str, fragment: str) -> None:
    ns: dict[str, Any] = {}
    exec(source, ns)
    with pytest.raises(ConfigurationError, match=fragment):
        module("F")(ns["f"])


def test_bad_version_and_isolation() -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="version"):
        module("F", version="one")(f)
    with pytest.raises(ConfigurationError, match="isolation"):
        module("F", isolation="fiber")(f)
