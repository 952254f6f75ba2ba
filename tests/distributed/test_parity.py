"""One executor-parity contract: every feature behaves the same on the engine's threads,
on a process pool (``executor="process"`` and a user's ``ProcessPoolExecutor``) and on a
real dask cluster (separate ``dask scheduler`` / ``dask worker`` processes, see
``conftest.py``).

Each test counts the module's real calls in a file, so that "the record says 4 attempts
but the module ran once" cannot pass.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from constellation import (
    CircuitBreakerConfig,
    Constellation,
    ExecutionStatus,
    PipelineBuilder,
    SchedulerConfig,
    module,
)
from tests.distributed import modules as m
from tests.distributed.conftest import have_distributed
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KINDS = ["threads", "process", "user-process", "dask"]
CAPACITY = 2  # calls that can run at once on every kind below
MODULES = [m.flaky, m.always_fail, m.count, m.named, m.ctx_info, m.slow_count, m.stuck,
           m.quick, m.cooperative, m.pid]


@pytest.fixture(scope="module")
def user_pool() -> Iterator[ProcessPoolExecutor]:
    import multiprocessing

    with ProcessPoolExecutor(CAPACITY, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(kind: str, request: pytest.FixtureRequest) -> Iterator[Constellation]:
    scheduler = SchedulerConfig(worker_threads=CAPACITY)
    executor: Any
    if kind == "threads":
        executor = None
    elif kind == "process":
        executor = "process"
    elif kind == "user-process":
        executor = request.getfixturevalue("user_pool")
    else:
        if not have_distributed():
            pytest.skip("dask.distributed is not installed")
        client = request.getfixturevalue("dask_client")
        executor = client.get_executor()
    e = Constellation(MODULES, executor=executor, scheduler=scheduler)
    try:
        yield e
    finally:
        e.shutdown(drain_timeout=5)


def one(name: str, options: dict[str, Any] | None = None, **args: Any) -> PipelineBuilder:
    b = PipelineBuilder("parity")
    b.output("out", b.call(name, options=options, **args))
    return b


def test_retry_runs_every_attempt(engine: Constellation, tmp_path: Path) -> None:
    path = str(tmp_path / "flaky")
    result = engine.run(one("P.Flaky", {"retry": 3}, path=path, fails=2), {}, timeout=60)
    assert result.ok, result.errors
    assert result.outputs["out"] == 3
    assert result.modules["P.Flaky"].attempts == 3
    assert m.runs(path) == 3

    path = str(tmp_path / "always")
    result = engine.run(one("P.AlwaysFail", {"retry": 3}, path=path), {}, timeout=60)
    assert result.status is ExecutionStatus.FAILED
    assert result.modules["P.AlwaysFail"].attempts == 4
    assert m.runs(path) == 4


def test_fallback_after_timeout(engine: Constellation) -> None:
    started = time.monotonic()
    result = engine.run(one("P.Stuck", {"timeout": 0.3, "fallback": -1}, seconds=2.0, i=1),
                        {}, timeout=30)
    assert result.ok, result.errors
    assert result.outputs["out"] == -1
    assert time.monotonic() - started < 1.6


def test_breaker_sees_every_failure(engine: Constellation, tmp_path: Path) -> None:
    engine.set_circuit_breaker("P.AlwaysFail", CircuitBreakerConfig(failure_threshold=2,
                                                                    reset_timeout=60))
    path = str(tmp_path / "breaker")
    codes = []
    for _ in range(3):
        result = engine.run(one("P.AlwaysFail", path=path), {}, timeout=60)
        assert result.status is ExecutionStatus.FAILED
        codes.append(result.errors[0].code)
    assert m.runs(path) == 2  # two failures reached the module, the third was refused
    assert codes[:2] == ["E300", "E300"], codes
    assert codes[2] != "E300", codes


def test_identical_calls_are_never_merged(engine: Constellation, tmp_path: Path) -> None:
    path = str(tmp_path / "count")
    b = PipelineBuilder("twice")
    b.output("a", b.call("P.Count", path=path, x=1))
    b.output("b", b.call("P.Count", path=path, x=1))
    for _ in range(2):
        result = engine.run(b, {}, timeout=60)
        assert result.ok, result.errors
        assert result.outputs == {"a": 1, "b": 1}
    assert m.runs(path) == 4


def test_parameters_named_like_executor_options(engine: Constellation) -> None:
    args = {"key": "k", "priority": 7, "workers": "w", "retries": 2, "pure": True,
            "resources": "r", "fn": "f", "allow_other_workers": True, "actor": True,
            "actors": False, "fifo_timeout": "1s", "x": 3}
    result = engine.run(one("P.Named", **args), {}, timeout=60)
    assert result.ok, result.errors
    assert result.outputs["out"] == "k|7|w|2|True|r|f|True|True|False|1s|3"


def test_ctx_attempt_deadline_and_cleanups(engine: Constellation, kind: str,
                                           tmp_path: Path) -> None:
    path = str(tmp_path / "ctx")
    result = engine.run(one("P.CtxInfo", path=path), {}, timeout=60)
    assert result.ok, result.errors
    assert result.outputs["out"] == "2|True|False"
    assert result.modules["P.CtxInfo"].attempts == 2
    wait_for(lambda: m.runs(path) == 2, timeout=10)
    lines = sorted((tmp_path / "ctx").read_text().split("\n")[:2])
    assert [line.split()[:2] for line in lines] == [["cleanup", "1"], ["cleanup", "2"]]
    pids = {int(line.split()[2]) for line in lines}
    assert (pids == {os.getpid()}) == (kind == "threads"), pids


def test_cancel_reaches_a_running_call(engine: Constellation, tmp_path: Path) -> None:
    path = str(tmp_path / "coop")
    execution = engine.submit(one("P.Cooperative", path=path), {}, timeout=60)
    wait_for(lambda: m.runs(path) >= 1, timeout=30)
    assert execution.cancel()
    assert execution.result(timeout=10).status is ExecutionStatus.CANCELLED
    wait_for(lambda: m.runs(path) >= 2, timeout=10)
    assert "stopped cancelled=True" in (tmp_path / "coop").read_text()


def test_deadline_reaches_a_running_call(engine: Constellation, tmp_path: Path) -> None:
    path = str(tmp_path / "coop")
    started = time.monotonic()
    result = engine.run(one("P.Cooperative", path=path), {}, timeout=2.0)
    assert result.status is ExecutionStatus.TIMED_OUT
    assert time.monotonic() - started < 4
    wait_for(lambda: m.runs(path) >= 2, timeout=10)
    assert "stopped cancelled=True" in (tmp_path / "coop").read_text()


def test_cancel_never_starts_queued_calls(engine: Constellation, tmp_path: Path) -> None:
    path = str(tmp_path / "queued")
    b = PipelineBuilder("eight")
    for i in range(8):
        b.output(f"o{i}", b.call("P.SlowCount", path=path, seconds=0.5, i=i))
    execution = engine.submit(b, {}, timeout=60)
    wait_for(lambda: m.runs(path) >= 1, timeout=30)
    assert execution.cancel()
    assert execution.result(timeout=10).status is ExecutionStatus.CANCELLED
    time.sleep(1.3)  # long enough for queued calls to start, were they not cancelled
    assert m.runs(path) <= CAPACITY


def test_stuck_calls_do_not_block_the_next_run(engine: Constellation) -> None:
    wide = PipelineBuilder("wide")  # first a burst of calls that queue on every slot
    for i in range(40):
        wide.output(f"o{i}", wide.call("P.Quick", x=i))
    assert engine.run(wide, {}, timeout=60).ok
    b = PipelineBuilder("stuck")
    for i in range(CAPACITY):
        b.output(f"o{i}", b.call("P.Stuck", options={"timeout": 0.5}, seconds=3.5, i=i))
    result = engine.run(b, {}, timeout=30)
    assert result.status is ExecutionStatus.FAILED
    assert {e.code for e in result.errors} == {"E303"}, result.errors
    time.sleep(0.5)
    quick = PipelineBuilder("after")
    quick.output("a", quick.call("P.Quick", x=1))
    quick.output("b", quick.call("P.Quick", x=2))
    after = engine.run(quick, {}, timeout=2.0)  # the stuck calls sleep on to 3.5 s
    assert after.ok, (after.status, after.errors)
    assert after.outputs == {"a": 2, "b": 3}


def test_a_module_defined_in_a_function(engine: Constellation) -> None:
    @module("P.Local")
    def local(x: int) -> int:  # not importable: its code travels by value
        return x * 10

    engine.register(local)
    result = engine.run(one("P.Local", x=4), {}, timeout=60)
    assert result.ok, result.errors
    assert result.outputs["out"] == 40
