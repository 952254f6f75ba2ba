"""Call options applied at run time: retry, delays, timeout, fallback, on_error, cache,
throttle, concurrency, priority -- on run, submit and the builder."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import pytest

from constellation import (
    Backends,
    CompilationError,
    ExecutionStatus,
    PipelineBuilder,
    module,
)
from constellation.spi import InMemoryCacheBackend
from constellation.testing import ManualClock
from tests.waiting import wait_for


def flaky(failures: int) -> tuple[Any, list[float]]:
    """A module failing ``failures`` times, then returning x * 2; and its call times."""
    calls: list[float] = []

    @module("Flaky")
    def flaky_module(x: int) -> int:
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise ValueError(f"failure {len(calls)}")
        return x * 2

    return flaky_module, calls


def test_retry_two_succeeds_on_the_third_attempt(engine_factory: Any) -> None:
    mod, calls = flaky(2)
    engine = engine_factory([mod])
    result = engine.run("in x: Int\ny = Flaky(x) with retry: 2\nout y", {"x": 4})
    assert result.status is ExecutionStatus.COMPLETED
    assert result.outputs == {"y": 8}
    assert result.modules["Flaky"].attempts == 3
    assert len(calls) == 3


def test_retry_exhausted_fails_with_the_last_error(engine_factory: Any) -> None:
    mod, calls = flaky(5)
    engine = engine_factory([mod])
    result = engine.run("in x: Int\ny = Flaky(x) with retry: 2\nout y", {"x": 4})
    assert len(calls) == 3
    assert result.status is ExecutionStatus.FAILED
    assert result.errors[0].code == "E300"
    assert "failure 3" in result.errors[0].message
    assert result.modules["Flaky"].attempts == 3


def test_fallback_is_the_output_when_retries_are_exhausted(engine_factory: Any) -> None:
    mod, calls = flaky(2)
    engine = engine_factory([mod])
    result = engine.run("in x: Int\ny = Flaky(x) with retry: 1, fallback: -1\nout y",
                        {"x": 4})
    assert result.status is ExecutionStatus.COMPLETED
    assert result.outputs == {"y": -1}
    assert len(calls) == 2


@pytest.mark.parametrize(("backoff", "expected"), [
    ("exponential", [1.0, 2.0, 4.0]),
    ("linear", [1.0, 2.0, 3.0]),
    ("fixed", [1.0, 1.0, 1.0]),
])
def test_retry_delays_follow_the_backoff(engine_factory: Any, backoff: str,
                                         expected: list[float]) -> None:
    clock = ManualClock()
    attempts: list[float] = []

    @module("Flaky")
    def flaky_module(x: int) -> int:
        attempts.append(clock())
        if len(attempts) <= 3:
            raise ValueError("not yet")
        return x

    engine = engine_factory([flaky_module], clock=clock)
    execution = engine.submit(
        f"in x: Int\ny = Flaky(x) with retry: 3, delay: 1s, backoff: {backoff}\nout y",
        {"x": 1})
    for n, delay in enumerate(expected, start=1):
        wait_for(lambda n=n: len(attempts) == n)  # type: ignore[misc]
        time.sleep(0.05)
        clock.advance(delay - 0.001)  # just short of the delay: nothing happens
        time.sleep(0.05)
        assert len(attempts) == n
        clock.advance(0.001)
    result = execution.result(timeout=5)
    assert result.status is ExecutionStatus.COMPLETED
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps == pytest.approx(expected)


def test_module_defaults_apply_and_call_options_override(engine_factory: Any) -> None:
    calls: list[int] = []

    @module(retry=3)
    def Sometimes(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise RuntimeError("flaky")
        return x

    engine = engine_factory([Sometimes])
    assert engine.run("in x: Int\ny = Sometimes(x)\nout y", {"x": 1}).outputs == {"y": 1}
    calls.clear()
    result = engine.run("in x: Int\ny = Sometimes(x) with retry: 0\nout y", {"x": 1})
    assert result.status is ExecutionStatus.FAILED
    assert calls == [1]


def test_builder_options_are_applied(engine_factory: Any) -> None:
    mod, _ = flaky(1)
    engine = engine_factory([mod])
    b = PipelineBuilder("built")
    b.output("y", b.call("Flaky", x=b.input("x", int), options={"retry": 1}))
    assert engine.run(b, {"x": 3}).outputs == {"y": 6}


def test_on_error_skip_log_and_wrap(engine_factory: Any,
                                    caplog: pytest.LogCaptureFixture) -> None:
    @module
    def Broken(x: int) -> dict[str, int]:
        raise ValueError("always")

    @module
    def Fine(x: int) -> int:
        return x + 1

    engine = engine_factory([Broken, Fine])
    skip = engine.run("in x: Int\ny = Broken(x) with on_error: skip\nout y", {"x": 1})
    assert skip.status is ExecutionStatus.COMPLETED
    assert skip.outputs == {"y": {}}
    with caplog.at_level(logging.WARNING, logger="constellation.runtime"):
        logged = engine.run("in x: Int\ny = Fine(x) with on_error: log\n"
                            "z = Broken(x) with on_error: log\nout y\nout z", {"x": 1})
    assert logged.outputs == {"y": 2, "z": {}}
    assert any("on_error: log" in r.getMessage() for r in caplog.records)
    src = ("in x: Int\na = Broken(x) with on_error: wrap\nb = Fine(x) with on_error: wrap\n"
           "v = b.value ?? 0\nout a\nout b\nout v")
    wrapped = engine.run(src, {"x": 1})
    assert wrapped.status is ExecutionStatus.COMPLETED
    assert wrapped.outputs["a"]["ok"] is False
    assert wrapped.outputs["a"]["code"] == "E300"
    assert "always" in wrapped.outputs["a"]["error"]
    assert wrapped.outputs["b"] == {"ok": True, "value": 2, "error": None, "code": None}
    assert wrapped.outputs["v"] == 2


def test_wrap_changes_the_type_the_compiler_sees(engine_factory: Any) -> None:
    @module
    def Fine(x: int) -> int:
        return x

    engine = engine_factory([Fine])
    with pytest.raises(CompilationError):
        engine.compile("in x: Int\ny = Fine(x) with on_error: wrap\nz = y + 1\nout z")


def test_per_attempt_timeout_on_a_module_that_does_not_cooperate(engine_factory: Any
                                                                 ) -> None:
    release = threading.Event()

    @module
    def Stuck(x: int) -> int:
        release.wait(30)  # ignores cancellation entirely
        return x

    @module
    def Quick(x: int) -> int:
        return x + 1

    engine = engine_factory([Stuck, Quick], scheduler=None)
    try:
        started = time.monotonic()
        result = engine.run("in x: Int\ny = Stuck(x) with timeout: 100ms\nout y", {"x": 1})
        assert time.monotonic() - started < 5
        assert result.status is ExecutionStatus.FAILED
        assert result.errors[0].code == "E303"
        skipped = engine.run("in x: Int\ny = Stuck(x) with timeout: 100ms, on_error: skip\n"
                             "out y", {"x": 1})
        assert skipped.outputs == {"y": 0}
        # The engine keeps serving, although two worker threads are stuck.
        for i in range(20):
            assert engine.run("in x: Int\ny = Quick(x)\nout y", {"x": i}).outputs == {
                "y": i + 1}
        assert engine._runtime.abandoned == 2
    finally:
        release.set()


def test_timeout_retries_each_attempt(engine_factory: Any) -> None:
    calls: list[int] = []
    release = threading.Event()

    @module
    def SlowThenFast(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            release.wait(30)
        return x

    engine = engine_factory([SlowThenFast])
    try:
        result = engine.run("in x: Int\ny = SlowThenFast(x) with timeout: 100ms, retry: 1\n"
                            "out y", {"x": 5})
        assert result.outputs == {"y": 5}
        assert result.modules["SlowThenFast"].attempts == 2
    finally:
        release.set()


def _counting(name: str) -> tuple[Any, list[int]]:
    calls: list[int] = []

    @module(name)
    def counted(x: int) -> int:
        calls.append(x)
        return x * 10

    return counted, calls


def test_cache_runs_the_module_once_for_identical_runs(engine_factory: Any) -> None:
    clock = ManualClock()
    mod, calls = _counting("Costly")
    cache = InMemoryCacheBackend(clock=clock)
    engine = engine_factory([mod], backends=Backends(cache=cache))
    src = "in x: Int\ny = Costly(x) with cache: 10min\nout y"
    assert engine.run(src, {"x": 1}).outputs == {"y": 10}
    assert engine.run(src, {"x": 1}).outputs == {"y": 10}
    assert calls == [1]
    assert engine.run(src, {"x": 2}).outputs == {"y": 20}  # a different input misses
    assert calls == [1, 2]
    clock.advance(599)
    engine.run(src, {"x": 1})
    assert calls == [1, 2]
    clock.advance(2)  # past the 10 minutes
    assert engine.run(src, {"x": 1}).outputs == {"y": 10}
    assert calls == [1, 2, 1]
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 3)


def test_cache_is_shared_across_pipelines_but_not_across_modules(engine_factory: Any
                                                                ) -> None:
    a, a_calls = _counting("A")
    b, b_calls = _counting("B")
    engine = engine_factory([a, b])
    engine.run("in x: Int\ny = A(x) with cache: 1min\nout y", {"x": 1})
    engine.run("in n: Int\nm = A(n) with cache: 1min\nk = B(n) with cache: 1min\n"
               "out m\nout k", {"n": 1})
    assert a_calls == [1]
    assert b_calls == [1]


def test_unknown_cache_backend_is_a_compile_error(engine_factory: Any) -> None:
    mod, _ = _counting("Costly")
    engine = engine_factory([mod])
    with pytest.raises(CompilationError) as info:
        engine.compile('in x: Int\ny = Costly(x) with cache: 1s, cache_backend: "nope"\n'
                       "out y")
    assert info.value.errors[0].code == "E146"
    assert "registered: memory, redis" in info.value.errors[0].message


def test_concurrency_limit_is_shared_across_executions(engine_factory: Any) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    @module
    def Limited(x: int) -> int:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return x

    engine = engine_factory([Limited])
    src = "in x: Int\ny = Limited(x) with concurrency: 2\nout y"
    executions = [engine.submit(src, {"x": i}) for i in range(12)]
    assert [e.result(timeout=10).outputs["y"] for e in executions] == list(range(12))
    assert state["max"] == 2


def test_throttle_is_a_token_bucket(engine_factory: Any) -> None:
    clock = ManualClock()
    mod, calls = _counting("Rated")
    engine = engine_factory([mod], clock=clock)
    src = "in x: Int\ny = Rated(x) with throttle: 2/1s\nout y"
    executions = [engine.submit(src, {"x": i}) for i in range(5)]
    wait_for(lambda: len(calls) == 2)
    time.sleep(0.1)
    assert len(calls) == 2  # the bucket is empty until the clock moves
    clock.advance(0.5)  # one token back
    wait_for(lambda: len(calls) == 3)
    clock.advance(1.0)  # two more
    wait_for(lambda: len(calls) == 5)
    assert all(e.result(timeout=5).status is ExecutionStatus.COMPLETED for e in executions)


def test_waiting_calls_are_served_by_priority(engine_factory: Any) -> None:
    gate = threading.Event()
    order: list[str] = []

    @module
    def Serial(tag: str) -> str:
        gate.wait(10)
        order.append(tag)
        return tag

    engine = engine_factory([Serial])
    first = engine.submit('y = Serial("first") with concurrency: 1\nout y')
    wait_for(lambda: engine.inflight_count == 1)
    time.sleep(0.05)
    low = engine.submit('y = Serial("low") with concurrency: 1, priority: low\nout y')
    high = engine.submit('y = Serial("high") with concurrency: 1, priority: critical\nout y')
    time.sleep(0.1)
    gate.set()
    for e in (first, low, high):
        assert e.result(timeout=5).status is ExecutionStatus.COMPLETED
    assert order == ["first", "high", "low"]
