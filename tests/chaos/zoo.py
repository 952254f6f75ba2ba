"""Hostile modules, backends and pipelines shared by the chaos tests.

Every module here misbehaves in one way a user's code can: it raises any kind of
exception (``BaseException`` included), blocks, ignores its ``ctx``, returns a value of
the wrong type or one whose check itself fails, or runs a nested execution.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from constellation import module
from constellation.spi import InMemoryCacheBackend
from tests.faults import Deep, Inc, NastyStr

# The engine the nested-execution module submits to (set by the test that builds it).
CURRENT: dict[str, Any] = {"engine": None}


class CustomBaseError(BaseException):
    """A user-defined BaseException (not an Exception)."""


EXCEPTIONS: tuple[type[BaseException], ...] = (
    ValueError, SystemExit, KeyboardInterrupt, GeneratorExit, CustomBaseError)


@module
def Nap(x: int) -> int:
    time.sleep(0.003)
    return x


@module
def Sleepy(x: int) -> int:
    """Blocks 0.3 s and takes no ctx: it cannot be stopped."""
    time.sleep(0.3)
    return x


@module
def Deaf(x: int, ctx: Any) -> int:
    """Takes a ctx and never looks at it."""
    time.sleep(0.25)
    return x


@module
def Polite(x: int, ctx: Any) -> int:
    """Sleeps up to 0.4 s, returning early when cancelled."""
    ctx.cancel_event.wait(0.4)
    return x


@module
def Raiser(x: int) -> int:
    """Raises one of EXCEPTIONS, picked by x."""
    raise EXCEPTIONS[x % len(EXCEPTIONS)](f"raised by Raiser({x})")


_flaky_lock = threading.Lock()
_flaky_rng = random.Random(0)


@module
def Flaky(x: int) -> int:
    """Fails about half of the time, with an exception type picked by x."""
    with _flaky_lock:
        fail = _flaky_rng.random() < 0.5
    if fail:
        raise EXCEPTIONS[x % len(EXCEPTIONS)]("flaky")
    return x * 2


@module
def WrongType(x: int) -> int:
    return "not an int"  # type: ignore[return-value]


@module
def Nasty(x: int) -> str:
    return NastyStr("boom")


@module
def Nested(x: int) -> str:
    """Submits a nested execution on CURRENT['engine'] with a short deadline, waits."""
    engine = CURRENT["engine"]
    handle = engine.submit("in x: Int\na = Nap(x)\nb = Inc(a)\nout b", {"x": x},
                           timeout=0.1)
    return str(handle.result().status.value)


MODULES = [Inc, Nap, Sleepy, Deaf, Polite, Raiser, Flaky, WrongType, Deep, Nasty, Nested]

P = "in x: Int\n"

PIPELINES: dict[str, str] = {
    "chain": P + "a = Inc(x)\nb = Inc(a)\nc = Inc(b)\nout c",
    "fanout": P + "a = Nap(x)\nb = Inc(a)\nc = Nap(a)\nd = Inc(c)\nout b\nout d",
    "sleepy": P + "a = Sleepy(x)\nb = Inc(a)\nout b",
    "sleepy_timeout": P + "a = Sleepy(x) with timeout: 50ms, retry: 1\nout a",
    "sleepy_timeout_skip": P + "a = Sleepy(x) with timeout: 30ms, on_error: skip\nout a",
    "deaf": P + "a = Deaf(x)\nout a",
    "deaf_timeout": P + "a = Deaf(x) with timeout: 40ms, fallback: 7\nout a",
    "polite": P + "a = Polite(x)\nb = Inc(a)\nout b",
    "raise": P + "a = Raiser(x)\nout a",
    "raise_retry": P + "a = Raiser(x) with retry: 2, delay: 5ms\nout a",
    "raise_skip": P + "a = Raiser(x) with on_error: skip\nout a",
    "raise_log": P + "a = Raiser(x) with on_error: log\nout a",
    "raise_wrap": P + "a = Raiser(x) with on_error: wrap\nout a",
    "raise_fallback": P + "a = Raiser(x) with retry: 1, fallback: -1\nout a",
    "flaky_retry": P + "a = Flaky(x) with retry: 3\nout a",
    "flaky_cache": P + "a = Flaky(x) with cache: 1min, on_error: skip\nout a",
    "cached": P + "a = Inc(x) with cache: 1min\nb = Nap(a) with cache: 1s\nout b",
    "throttled": P + "a = Nap(x) with throttle: 50/1s\nb = Inc(a) with concurrency: 1\nout b",
    "concurrency": P + "a = Sleepy(x) with concurrency: 1\nout a",
    "wrong_type": P + "a = WrongType(x)\nout a",
    "wrong_type_fallback": P + "a = WrongType(x) with fallback: 3\nout a",
    "deep": P + "a = Deep(x)\nout a",
    "nasty": P + "a = Nasty(x)\nout a",
    "nasty_skip": P + "a = Nasty(x) with on_error: skip\nout a",
    "nested": P + "a = Nested(x)\nout a",
}


# --- backends --------------------------------------------------------------------------


class HostileListener:
    """A listener whose callbacks raise every kind of exception, or are a bit slow."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.calls = 0

    def _misbehave(self) -> None:
        with self.lock:
            self.calls += 1
            roll = self.rng.random()
            kind = self.rng.choice(EXCEPTIONS)
        if roll < 0.3:
            raise kind("from the listener")
        if roll < 0.35:
            time.sleep(0.005)

    def on_execution_start(self, event: Any) -> None:
        self._misbehave()

    def on_module_start(self, event: Any) -> None:
        self._misbehave()

    def on_module_complete(self, event: Any) -> None:
        self._misbehave()

    def on_module_failed(self, event: Any) -> None:
        self._misbehave()

    def on_execution_complete(self, event: Any) -> None:
        self._misbehave()


class HostileCache(InMemoryCacheBackend):
    """A cache whose get and set sometimes raise (BaseException too) or are slow."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def _roll(self) -> tuple[float, type[BaseException]]:
        with self.lock:
            return self.rng.random(), self.rng.choice(EXCEPTIONS)

    def get(self, key: str) -> Any:
        roll, kind = self._roll()
        if roll < 0.25:
            raise kind("cache get")
        if roll < 0.35:
            time.sleep(0.01)
        return super().get(key)

    def set(self, key: str, value: Any, ttl: float) -> None:
        roll, kind = self._roll()
        if roll < 0.25:
            raise kind("cache set")
        super().set(key, value, ttl)
