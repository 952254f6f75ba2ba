"""The optional resilience example modules behave as the original's, per module set."""

from __future__ import annotations

import time

import pytest

from constellation import Constellation, ExecutionStatus
from constellation.examples.resilience import resilience_modules

NAMES = {"SlowQuery", "SlowApiCall", "ExpensiveCompute", "FlakyService",
         "TimeoutProneService", "RateLimitedApi", "ResourceIntensiveTask", "QuickCheck",
         "DeepAnalysis", "AlwaysFailsService"}


def test_the_set_has_the_originals_ten_modules_taking_and_giving_strings() -> None:
    modules = resilience_modules()
    assert {m.name for m in modules} == NAMES
    for m in modules:
        assert m.signature.endswith("-> String")
        assert [str(t) for t in m.inputs.values()] == ["String"]


def test_flaky_service_fails_two_calls_in_three_and_each_set_counts_its_own() -> None:
    flaky = {m.name: m for m in resilience_modules()}["FlakyService"]
    outcomes = []
    for _ in range(6):
        try:
            outcomes.append(flaky.func("r"))
        except RuntimeError:
            outcomes.append("failed")
    assert outcomes == ["failed", "failed", "Success for: r"] * 2
    fresh = {m.name: m for m in resilience_modules()}["FlakyService"]
    with pytest.raises(RuntimeError):  # a fresh set starts counting again
        fresh.func("r")


def test_quick_check_and_a_timeout_that_stops_a_slow_call() -> None:
    with Constellation(modules=resilience_modules()) as engine:
        result = engine.run("in d: String\nq = QuickCheck(d)\nout q\n",
                            {"d": "a Complex case"})
        assert result.outputs == {"q": "needs-deep-analysis"}
        started = time.monotonic()
        result = engine.run("in e: String\nr = SlowApiCall(e) with timeout: 50ms\nout r\n",
                            {"e": "/x"})
        assert result.status is ExecutionStatus.FAILED
        assert result.errors[0].code == "E303"
        assert time.monotonic() - started < 0.9  # the 1 s sleep was interrupted
