"""What a cluster's failures do to calls: a dead worker, a lost scheduler, a broken
process pool. The cluster tests start clusters of their own (they kill parts of it)."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import pytest

from constellation import Constellation, ExecutionStatus, PipelineBuilder
from tests.distributed import modules as m
from tests.distributed.conftest import have_distributed, start_cluster
from tests.waiting import process_running, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.distributed.conftest import Cluster


def one(name: str, **args: object) -> PipelineBuilder:
    b = PipelineBuilder("faults")
    b.output("out", b.call(name, **args))
    return b


@pytest.fixture(scope="module")
def faulty_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of 1 worker for this file's tests, in order: the first kills the
    worker (its nanny restarts it), the second the scheduler."""
    if not have_distributed():
        pytest.skip("dask.distributed is not installed (pip install -e '.[distributed]')")
    cluster = start_cluster(tmp_path_factory.mktemp("faulty"), workers=1, nthreads=1)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_dead_worker_is_re_run_by_dask_at_least_once(faulty_cluster: Cluster,
                                                       tmp_path: Path) -> None:
    # dask re-runs a task whose worker died (at-least-once): the engine sees one
    # attempt, which succeeds; the module ran twice. Its retry policy never fired.
    path = str(tmp_path / "kill")
    with faulty_cluster.client() as client, \
            Constellation([m.kill_worker_once], executor=client.get_executor()) as e:
        result = e.run(one("P.KillWorkerOnce", path=path, x=7), {}, timeout=60)
    assert result.ok, result.errors
    assert result.outputs["out"] == 7
    assert result.modules["P.KillWorkerOnce"].attempts == 1
    assert m.runs(path) == 2


def test_a_lost_scheduler_fails_calls_fast_not_at_their_deadline(
        faulty_cluster: Cluster, tmp_path: Path) -> None:
    path = str(tmp_path / "slow")
    with faulty_cluster.client() as client, \
            Constellation([m.slow_count, m.quick], executor=client.get_executor()) as e:
        assert e.run(one("P.Quick", x=1), {}, timeout=30).outputs == {"out": 2}
        running = e.submit(one("P.SlowCount", path=path, seconds=20.0, i=1), {},
                           timeout=60)
        wait_for(lambda: m.runs(path) == 1, timeout=30)
        started = time.monotonic()
        faulty_cluster.kill_scheduler()
        lost = running.result(timeout=30)
        assert lost.status is ExecutionStatus.FAILED
        assert lost.errors[0].code == "E312", lost.errors
        assert time.monotonic() - started < 15
        # Later calls are refused at once while the client has no scheduler.
        started = time.monotonic()
        later = e.run(one("P.Quick", x=1), {}, timeout=60)
        assert later.status is ExecutionStatus.FAILED
        assert later.errors[0].code == "E312", later.errors
        assert time.monotonic() - started < 15


def test_a_broken_user_pool_fails_the_call_and_is_replaced(tmp_path: Path) -> None:
    import multiprocessing

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    path = str(tmp_path / "die")
    try:
        with Constellation([m.kill_worker_once, m.quick], executor=pool) as e:
            dead = e.run(one("P.KillWorkerOnce", path=path, x=1), {}, timeout=60)
            assert dead.status is ExecutionStatus.FAILED
            assert dead.errors[0].code == "E312"
            assert "BrokenProcessPool" in dead.errors[0].message
            again = e.run(one("P.KillWorkerOnce", path=path, x=3), {}, timeout=60)
            assert again.ok, again.errors
            assert again.outputs == {"out": 3}
            replaced = e._runtime.runner
            assert getattr(replaced, "replaced", 0) == 1
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_an_owned_pool_stuck_in_a_call_is_reaped_at_shutdown() -> None:
    e = Constellation([m.stuck, m.pid], executor="process:1")
    try:
        worker = e.run(one("P.Pid", x=0), {}, timeout=60).outputs["out"]
        result = e.run(one("P.Stuck", seconds=60.0, i=1), {}, timeout=1.0)
        assert result.status is ExecutionStatus.TIMED_OUT
    finally:
        started = time.monotonic()
        e.shutdown(drain_timeout=2)
    assert time.monotonic() - started < 5

    wait_for(lambda: not process_running(worker), timeout=10)
