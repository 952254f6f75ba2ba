"""``async def`` modules: awaited on the engine's event loop, mixed with plain ones;
``await engine.run_async(...)`` and ``await execution`` from asyncio code."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from constellation import (
    Constellation,
    ExecutionStatus,
    PipelineBuilder,
    SchedulerConfig,
    module,
)
from tests.waiting import wait_for

state = {"running": 0, "peak": 0, "cancelled": 0, "threads": set()}
lock = threading.Lock()


@module("aio.Fetch")
async def fetch(key: str, seconds: float) -> str:
    with lock:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        state["threads"].add(threading.current_thread().name)
    try:
        await asyncio.sleep(seconds)
        return key.upper()
    except asyncio.CancelledError:
        with lock:
            state["cancelled"] += 1
        raise
    finally:
        with lock:
            state["running"] -= 1


@module("aio.Fail")
async def fail(key: str) -> str:
    await asyncio.sleep(0)
    raise ValueError(f"no {key}")


@module("aio.Join")
def join(a: str, b: str) -> str:
    return f"{a}+{b}"


MIXED = """in k: String
in s: Float
a = aio.Fetch(k, s)
b = aio.Fetch("x", s)
j = aio.Join(a, b)
out j
"""


def _reset() -> None:
    with lock:
        state.update(running=0, peak=0, cancelled=0, threads=set())


def test_sync_and_async_modules_mix_from_sync_code() -> None:
    _reset()
    with Constellation([fetch, join]) as engine:
        result = engine.run(MIXED, {"k": "ab", "s": 0.01})
    assert result.ok, result.errors
    assert result.outputs == {"j": "AB+X"}
    assert state["threads"] == {"constellation-async"}


def test_run_async_and_await_execution_from_asyncio() -> None:
    _reset()
    engine = Constellation([fetch, join])

    async def main() -> tuple[object, object]:
        first = await engine.run_async(MIXED, {"k": "q", "s": 0.01})
        pipeline = engine.compile(MIXED)
        second = await engine.submit(pipeline, {"k": "r", "s": 0.01})
        return first, second

    try:
        first, second = asyncio.run(main())
    finally:
        engine.shutdown()
    assert first.outputs == {"j": "Q+X"}  # type: ignore[attr-defined]
    assert second.outputs == {"j": "R+X"}  # type: ignore[attr-defined]


def test_cancelling_the_execution_cancels_the_modules_task() -> None:
    _reset()
    b = PipelineBuilder("slow")
    b.output("o", b.call(fetch, key=b.input("k", str), seconds=30.0))
    with Constellation([fetch]) as engine:
        handle = engine.submit(b, {"k": "z"})
        wait_for(lambda: state["running"] == 1)
        handle.cancel()
        assert handle.result(5).status is ExecutionStatus.CANCELLED
        wait_for(lambda: state["cancelled"] == 1, timeout=5)
        assert state["running"] == 0


def test_a_timeout_option_cancels_the_attempt_and_retries() -> None:
    _reset()
    b = PipelineBuilder("timeouts")
    b.output("o", b.call(fetch, key=b.input("k", str), seconds=30.0,
                         options={"timeout": "50ms", "retry": 1}))
    with Constellation([fetch]) as engine:
        result = engine.run(b, {"k": "t"})
    assert result.errors[0].code == "E303"
    assert result.modules["aio.Fetch"].attempts == 2
    wait_for(lambda: state["cancelled"] == 2, timeout=5)


def test_cancelling_the_awaiting_task_cancels_the_execution() -> None:
    _reset()
    b = PipelineBuilder("slow")
    b.output("o", b.call(fetch, key=b.input("k", str), seconds=30.0))
    engine = Constellation([fetch])

    async def main() -> object:
        handle = engine.submit(b, {"k": "w"})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(handle, 0.2)
        return handle

    try:
        handle = asyncio.run(main())
        assert handle.result(5).status is ExecutionStatus.CANCELLED  # type: ignore[attr-defined]
        wait_for(lambda: state["cancelled"] == 1, timeout=5)
    finally:
        engine.shutdown()


def test_a_raising_coroutine_is_a_module_failure() -> None:
    with Constellation([fail]) as engine:
        result = engine.run("in k: String\nx = aio.Fail(k)\nout x\n", {"k": "key"})
    assert result.status is ExecutionStatus.FAILED
    assert result.errors[0].code == "E300"
    assert "ValueError: no key" in result.errors[0].message


def test_waiting_calls_hold_no_thread() -> None:
    _reset()
    b = PipelineBuilder("wide")
    k = b.input("k", str)
    outs = [b.call(fetch, key=k, seconds=0.3) for _ in range(40)]
    b.output("o", b.call(join, a=outs[0], b=outs[-1]))
    with Constellation([fetch, join], scheduler=SchedulerConfig(
            worker_threads=2, max_concurrency=4)) as engine:
        started = time.monotonic()
        result = engine.run(b, {"k": "w"})
        elapsed = time.monotonic() - started
    assert result.ok, result.errors
    assert state["peak"] == 40  # all 40 awaited at once, on 2 worker threads
    assert elapsed < 20  # (bounded; not a speed test)


def test_async_modules_cannot_be_process_isolated() -> None:
    from constellation import ConfigurationError

    async def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="cannot be process-isolated"):
        module("aio.Bad", isolation="process")(f)



def test_await_wakes_from_where_the_execution_ends_and_after_done_callbacks() -> None:
    # The awaiting side's waker runs where the execution ends (no callback-thread hop)
    # when it is the only callback; after the user's own callbacks when there are some.
    _reset()
    seen: list[tuple[str, str]] = []

    def note(what: str) -> object:
        return lambda r: seen.append((what, threading.current_thread().name))

    with Constellation([fetch, join]) as engine:
        pipeline = engine.compile(MIXED)
        alone = engine.submit(pipeline, {"k": "a", "s": 0.01})
        alone._add_waker(note("waker alone"))  # type: ignore[arg-type]
        alone.result(10)
        both = engine.submit(pipeline, {"k": "b", "s": 0.01})
        both.add_done_callback(note("callback"))  # type: ignore[arg-type]
        both._add_waker(note("waker after"))  # type: ignore[arg-type]
        both.result(10)

        async def main() -> object:
            handle = engine.submit(pipeline, {"k": "c", "s": 0.01})
            handle.add_done_callback(note("before await"))  # type: ignore[arg-type]
            result = await handle
            seen.append(("awaited", ""))
            return result

        assert asyncio.run(main()).outputs == {"j": "C+X"}  # type: ignore[attr-defined]
    kinds = [k for k, _ in seen]
    assert kinds == ["waker alone", "callback", "waker after", "before await", "awaited"]
    threads = dict(seen)
    assert not threads["waker alone"].startswith("constellation-callbacks")
    assert threads["callback"].startswith("constellation-callbacks")
    assert threads["waker after"] == threads["callback"]  # in order, on that thread
