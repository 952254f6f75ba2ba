"""Call options from Python: the language's forms, clear errors, retry conditions."""

from __future__ import annotations

from typing import Any

import pytest

from constellation import (
    ConfigurationError,
    Constellation,
    ExecutionStatus,
    PipelineBuilder,
    module,
)
from constellation.core.options import CallOptions, call_options
from constellation.lang.call_options import NO_OPTIONS


def test_the_languages_forms_are_accepted() -> None:
    opts = call_options({"retry": 2, "timeout": "5s", "delay": "100ms", "cache": "10min",
                         "throttle": "5/1s", "backoff": "exponential", "priority": "high",
                         "concurrency": 4, "on_error": "log", "lazy": True})
    assert opts == CallOptions(retry=2, timeout=5.0, delay=0.1, cache=600.0, throttle=(5, 1.0),
                               backoff="exponential", priority=80, concurrency=4,
                               on_error="log", lazy=True)
    assert call_options({"timeout": 2, "throttle": (100, 60)}) == CallOptions(
        timeout=2.0, throttle=(100, 60.0))
    assert call_options({"throttle": "10/min"}).throttle == (10, 60.0)


@module("opts.Inc")
def _Inc(x: int) -> int:
    return x + 1


def test_calls_without_options_share_one_options_object() -> None:
    # A DagSpec's structural hash renders each distinct options object once: a builder's
    # calls without options must not make one each (it was two thirds of the hash).
    assert call_options(None) is call_options({}) is call_options({"retry": None})
    assert call_options(None) == CallOptions()
    assert call_options(None) is NO_OPTIONS  # the language's calls without `with` too
    b = PipelineBuilder("many")
    ref = b.input("x", int)
    for _ in range(5):
        ref = b.call(_Inc, x=ref)
    b.output("y", b.call(_Inc, x=ref, options={"retry": 1}))
    spec = b.build()
    assert len({id(m.options) for m in spec.modules}) == 2
    assert spec.modules[-1].options == CallOptions(retry=1)


@pytest.mark.parametrize(("options", "message"), [
    ({"retyr": 2}, "unknown option 'retyr'; did you mean 'retry'?"),
    ({"throttle": "5/1x"}, "option throttle: must be a rate such as 100/1min"),
    ({"throttle": "five per second"}, "option throttle: must be a rate"),
    ({"timeout": -1}, "option timeout: must be a duration such as 30s"),
    ({"timeout": "soon"}, "option timeout: must be a duration"),
    ({"timeout": float("inf")}, "option timeout: must be a duration"),
    ({"retry": "2"}, "option retry: must be an integer >= 0"),
    ({"retry": True}, "option retry: must be an integer >= 0"),
    ({"retry": -1}, "option retry: must be an integer >= 0"),
    ({"priority": "urgent"}, "option priority: must be critical, high"),
    ({"backoff": "sometimes"}, "option backoff: must be one of exponential, linear, fixed"),
    ({"retry_on": 3}, "option retry_on: must be an exception type or a tuple of them"),
    ({"retry_on": (ValueError, int)}, "option retry_on: must be an exception type"),
    ({"retry_if": "yes"}, "option retry_if: must be a callable"),
    ({"zzz": 1}, "unknown option 'zzz' (options: retry, timeout"),
])
def test_bad_options_are_configuration_errors_naming_the_call(options: dict[str, Any],
                                                              message: str) -> None:
    b = PipelineBuilder("p")
    with pytest.raises(ConfigurationError) as info:
        b.call("Trim", text=b.input("t", str), options=options)
    assert info.value.message.startswith("node 'Trim': ")
    assert message in info.value.message
    with pytest.raises(ConfigurationError) as on_module:
        module("m.X", **options)(lambda text: text)  # type: ignore[arg-type]
    assert on_module.value.message.startswith("module m.X: ")
    assert message in on_module.value.message


def test_options_must_be_a_mapping() -> None:
    b = PipelineBuilder("p")
    with pytest.raises(ConfigurationError, match="options must be a mapping"):
        b.call("Trim", text=b.input("t", str), options=[("retry", 2)])  # type: ignore[arg-type]


calls: list[str] = []


@module("cond.Flaky", retry=3, retry_on=ConnectionError)
def flaky(kind: str) -> str:
    calls.append(kind)
    if kind == "network":
        raise ConnectionError("reset")
    raise ValueError("bad input")


def _run(kind: str, **options: Any) -> Any:
    b = PipelineBuilder("cond")
    b.output("o", b.call(flaky, kind=b.input("k", str), options=options or None))
    with Constellation([flaky]) as engine:
        return engine.run(b, {"k": kind})


def test_retry_on_retries_only_the_named_exceptions() -> None:
    calls.clear()
    result = _run("network")
    assert result.status is ExecutionStatus.FAILED
    assert calls == ["network"] * 4  # the first call and 3 retries
    assert result.modules["cond.Flaky"].attempts == 4
    calls.clear()
    result = _run("input")
    assert calls == ["input"]  # a ValueError is not retried
    assert result.modules["cond.Flaky"].attempts == 1


def test_retry_if_decides_from_the_exception_and_a_raising_predicate_stops() -> None:
    calls.clear()
    _run("input", retry_on=None, retry_if=lambda exc: "bad" in str(exc))
    # A call's own retry_on=None does not unset the module's default: ValueError is
    # still not a ConnectionError.
    assert calls == ["input"]
    calls.clear()
    _run("input", retry_on=(ValueError,), retry_if=lambda exc: "bad" in str(exc))
    assert calls == ["input"] * 4
    calls.clear()

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    result = _run("network", retry_if=broken)
    assert calls == ["network"]
    assert result.status is ExecutionStatus.FAILED
    assert result.errors[0].code == "E300"


def test_a_timed_out_attempt_is_tested_as_the_engines_timeout_error() -> None:
    import time

    from constellation.core.errors import ModuleTimeoutError

    seen: list[str] = []

    @module("cond.Slow")
    def slow(x: int) -> int:
        seen.append("call")
        time.sleep(0.3)
        return x

    b = PipelineBuilder("slow")
    b.output("o", b.call(slow, x=b.input("x", int), options={
        "retry": 1, "timeout": "50ms", "retry_on": ModuleTimeoutError}))
    with Constellation([slow]) as engine:
        result = engine.run(b, {"x": 1})
    assert result.errors[0].code == "E303"
    assert result.modules["cond.Slow"].attempts == 2


def test_python_only_options_are_refused_by_the_language_with_a_reason() -> None:
    from constellation import CompilationError

    with Constellation() as engine, pytest.raises(CompilationError) as info:
        engine.compile("in t: String\nu = Trim(t) with retry_on: 3\nout u\n")
    assert info.value.errors[0].code == "E140"
    assert "can be set from Python only" in info.value.errors[0].message
