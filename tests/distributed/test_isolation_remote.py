"""Process isolation: the whole process group of a call is killed, and on an executor
the child process is started by the worker, on the executor's machine."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import pytest

from constellation import Constellation, ExecutionStatus, PipelineBuilder
from tests.distributed import modules as m
from tests.waiting import process_running, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(params=["threads", "process", "dask"])
def engine(request: pytest.FixtureRequest) -> Iterator[Constellation]:
    executor: Any = None
    if request.param == "process":
        executor = "process:1"
    elif request.param == "dask":
        executor = request.getfixturevalue("dask_client").get_executor()
    e = Constellation([m.spawn_and_sleep, m.isolated_parent], executor=executor)
    try:
        yield e
    finally:
        e.shutdown(drain_timeout=5)


def test_a_timed_out_isolated_call_loses_its_whole_process_group(
        engine: Constellation, tmp_path: Path) -> None:
    path = tmp_path / "pids"
    b = PipelineBuilder("iso")
    b.output("out", b.call("P.SpawnAndSleep", options={"timeout": 3.0}, path=str(path),
                           seconds=60.0))
    result = engine.run(b, {}, timeout=30)
    assert result.status is ExecutionStatus.FAILED
    assert result.errors[0].code == "E303", result.errors
    child, grandchild, _ = (int(p) for p in path.read_text().split())
    wait_for(lambda: not process_running(child) and not process_running(grandchild), timeout=10)


def test_an_isolated_call_runs_where_the_executor_runs(
        engine: Constellation, request: pytest.FixtureRequest) -> None:
    b = PipelineBuilder("where")
    b.output("out", b.call("P.IsolatedParent", x=1))
    result = engine.run(b, {}, timeout=60)
    assert result.ok, result.errors
    parent = result.outputs["out"]
    if "threads" in request.node.name:
        assert parent == os.getpid()
    else:
        assert parent != os.getpid()  # a worker of the pool or cluster started it
        if "dask" in request.node.name:
            workers = request.getfixturevalue("dask_client").run(os.getpid)
            assert parent in workers.values()


def test_isolated_call_cancelled_on_a_worker_is_killed(tmp_path: Path,
                                                      dask_client: Any) -> None:
    path = tmp_path / "pids"
    with Constellation([m.spawn_and_sleep], executor=dask_client.get_executor()) as e:
        b = PipelineBuilder("iso")
        b.output("out", b.call("P.SpawnAndSleep", path=str(path), seconds=60.0))
        execution = e.submit(b, {}, timeout=60)
        wait_for(path.exists, timeout=30)
        time.sleep(0.2)
        execution.cancel()
        assert execution.result(timeout=10).status is ExecutionStatus.CANCELLED
        child, grandchild, _ = (int(p) for p in path.read_text().split())
        wait_for(lambda: not process_running(child) and not process_running(grandchild), timeout=10)
