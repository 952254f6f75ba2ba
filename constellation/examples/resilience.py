"""Resilience demonstration modules: slow, unreliable and rate-limited services.

They behave as the original engine's example application's modules of the same names
(String in, String out), so that its cookbook's resilience pipelines run unchanged.
Each call of :func:`resilience_modules` builds a fresh set with its own call counters
(``FlakyService`` and ``TimeoutProneService`` count their calls), so tests and engines
do not share state. Sleeps wait on the call's cancellation event: a ``timeout``, a
cancelled or timed-out execution stops them at once.

| module | input | behaviour |
|---|---|---|
| SlowQuery | query | 500 ms, then ``"Result for: <query>"`` (``cache``) |
| SlowApiCall | endpoint | 1 s, then ``"API response from: <endpoint>"`` (``timeout``) |
| ExpensiveCompute | data | 2 s, then ``"Computed: <DATA>"`` (``cache``, ``lazy``) |
| FlakyService | request | fails twice, then ``"Success for: <request>"`` (``retry: 2``) |
| TimeoutProneService | request | first call 3 s, later ones 100 ms: ``"Response for: <request>"`` |
| RateLimitedApi | request | 50 ms, ``"Rate-limited response for: <request>"`` (``throttle``) |
| ResourceIntensiveTask | task | 200 ms, ``"Completed: <task>"`` (``concurrency``) |
| QuickCheck | data | 10 ms, ``"needs-deep-analysis"`` for "complex" data, else ``"valid"`` |
| DeepAnalysis | data | 1.5 s, ``"Deep analysis of: <data>"`` (``lazy``) |
| AlwaysFailsService | request | always fails (``on_error``, ``fallback``) |
"""

from __future__ import annotations

import itertools

# @module reads the parameters' hints at run time: CallContext must be importable.
from constellation.actors._context import CallContext  # noqa: TC001
from constellation.core.modules import ModuleDefinition, module

__all__ = ["resilience_modules"]


def resilience_modules(*, time_scale: float = 1.0) -> list[ModuleDefinition]:
    """A fresh set of the resilience demonstration modules.

    Args:
        time_scale: multiplies every simulated latency (tests use a small one).

    Returns:
        The ten modules, ready for ``Constellation(modules=...)``.
    """
    flaky_calls = itertools.count(1)
    timeout_prone_calls = itertools.count(1)

    def pause(ctx: CallContext, seconds: float) -> None:
        # Interruptible: a timeout or a cancelled execution sets the event.
        if ctx.cancel_event.wait(seconds * time_scale):
            raise TimeoutError("the call was stopped")

    @module("SlowQuery", description="A slow database query (500 ms); try cache")
    def slow_query(query: str, ctx: CallContext) -> str:
        pause(ctx, 0.5)
        return f"Result for: {query}"

    @module("SlowApiCall", description="A slow external API (1 s); try timeout or cache")
    def slow_api_call(endpoint: str, ctx: CallContext) -> str:
        pause(ctx, 1.0)
        return f"API response from: {endpoint}"

    @module("ExpensiveCompute", description="An expensive computation (2 s); try cache "
                                            "or lazy")
    def expensive_compute(data: str, ctx: CallContext) -> str:
        pause(ctx, 2.0)
        return f"Computed: {data.upper()}"

    @module("FlakyService", description="Fails two calls out of three; try retry: 2")
    def flaky_service(request: str) -> str:
        n = next(flaky_calls)
        if n % 3:
            raise RuntimeError(f"service temporarily unavailable (call {n})")
        return f"Success for: {request}"

    @module("TimeoutProneService", description="The first call takes 3 s, later ones "
                                               "100 ms; try timeout with retry")
    def timeout_prone_service(request: str, ctx: CallContext) -> str:
        pause(ctx, 3.0 if next(timeout_prone_calls) == 1 else 0.1)
        return f"Response for: {request}"

    @module("RateLimitedApi", description="An API with a rate limit (50 ms a call); try "
                                          "throttle")
    def rate_limited_api(request: str, ctx: CallContext) -> str:
        pause(ctx, 0.05)
        return f"Rate-limited response for: {request}"

    @module("ResourceIntensiveTask", description="A heavy task (200 ms); try concurrency")
    def resource_intensive_task(task: str, ctx: CallContext) -> str:
        pause(ctx, 0.2)
        return f"Completed: {task}"

    @module("QuickCheck", description="A fast check (10 ms): 'valid', or "
                                      "'needs-deep-analysis' for complex data")
    def quick_check(data: str, ctx: CallContext) -> str:
        pause(ctx, 0.01)
        return "needs-deep-analysis" if "complex" in data.lower() else "valid"

    @module("DeepAnalysis", description="An expensive analysis (1.5 s); try lazy")
    def deep_analysis(data: str, ctx: CallContext) -> str:
        pause(ctx, 1.5)
        return f"Deep analysis of: {data}"

    @module("AlwaysFailsService", description="Always fails; try on_error or fallback")
    def always_fails_service(request: str) -> str:
        raise RuntimeError(f"service failed for: {request}")

    return [slow_query, slow_api_call, expensive_compute, flaky_service,
            timeout_prone_service, rate_limited_api, resource_intensive_task, quick_check,
            deep_analysis, always_fails_service]
