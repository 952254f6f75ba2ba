"""Resilience in one script: retries with backoff, a fallback, a per-call timeout,
on_error: wrap, a cache, a circuit breaker, cancellation through ctx, and resuming a
suspended execution. Prints a JSON summary (checked by the tests).

    python examples/resilient_calls.py
"""

from __future__ import annotations

import json
import threading
from typing import Any

from constellation import CircuitBreakerConfig, Constellation, module

attempts: dict[str, int] = {"Flaky": 0, "Expensive": 0, "Down": 0}
release = threading.Event()
patient_started = threading.Event()


@module
def Flaky(city: str) -> str:
    """Fails twice, then answers (a service that is warming up)."""
    attempts["Flaky"] += 1
    if attempts["Flaky"] <= 2:
        raise ConnectionError("service warming up")
    return f"sunny in {city}"


@module
def Expensive(n: int) -> int:
    """Counts its calls: the cache should spare the second one."""
    attempts["Expensive"] += 1
    return n * n


@module
def Hangs(n: int) -> int:
    """Never answers in time (and does not look at ctx)."""
    release.wait(10)
    return n


@module
def Down(n: int) -> int:
    """A dependency that is down."""
    attempts["Down"] += 1
    raise ConnectionError("connection refused")


@module
def Patient(n: int, ctx: Any) -> int:
    """Works until cancelled, then stops and cleans up."""
    ctx.on_cleanup(lambda: cleanups.append("released"))
    patient_started.set()
    ctx.cancel_event.wait(30)
    return n


cleanups: list[str] = []

PIPELINE = """
in city: String
in n: Int
weather = Flaky(city) with retry: 3, delay: 10ms, backoff: exponential
square = Expensive(n) with cache: 10min
late = Hangs(n) with timeout: 100ms, fallback: -1
wrapped = Down(n) with on_error: wrap
out weather
out square
out late
out wrapped
"""


def main() -> None:
    summary: dict[str, Any] = {}
    with Constellation([Flaky, Expensive, Hangs, Down, Patient], circuit_breakers={
            "Down": CircuitBreakerConfig(failure_threshold=1, reset_timeout=60)}) as engine:
        first = engine.run(PIPELINE, {"city": "Lyon", "n": 7})
        second = engine.run(PIPELINE, {"city": "Lyon", "n": 7})
        release.set()
        summary["status"] = first.status.value
        summary["outputs"] = first.outputs
        summary["flaky_attempts"] = first.modules["Flaky"].attempts
        summary["expensive_calls"] = attempts["Expensive"]
        summary["second_wrapped_code"] = second.outputs["wrapped"]["code"]  # breaker open
        summary["down_calls"] = attempts["Down"]
        summary["breaker"] = engine.circuit_breakers()["Down"]["state"]

        execution = engine.submit("in n: Int\np = Patient(n)\nout p",
                                  {"n": 1})
        patient_started.wait(10)
        execution.cancel()
        cancelled = execution.result()
        summary["cancelled"] = {"status": cancelled.status.value,
                                "outputs": cancelled.outputs, "cleanups": cleanups}

        join = "in a: String\nin b: String\nj = concat(a, b)\nout j"
        suspended = engine.run(join, {"a": "half-"})
        resumed = engine.resume(suspended.execution_id, {"b": "done"}).result()
        summary["resumed"] = {"before": suspended.status.value,
                              "after": resumed.status.value, "outputs": resumed.outputs}
    print(json.dumps(summary, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
