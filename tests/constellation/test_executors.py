"""Module code on other executors: a process pool, and dask.distributed."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from constellation import Constellation, PipelineBuilder
from tests.constellation.process_modules import pid, square


def pipeline() -> PipelineBuilder:
    b = PipelineBuilder("remote")
    x = b.input("x", int)
    b.output("pid", b.call("Pid", x=x))
    b.output("sq", b.call("Square", x=b.call("Square", x=x)))
    return b


def test_module_definitions_pickle_by_reference() -> None:
    assert pickle.loads(pickle.dumps(square)) is square


def test_modules_run_in_a_process_pool() -> None:
    # forkserver, not fork: forking a process with threads can hang the child on a lock
    # it inherited (seen: after the dask tests had started theirs).
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=context) as pool, \
            Constellation([pid, square], executor=pool) as e:
        result = e.run(pipeline(), {"x": 3}, timeout=60)
    assert result.ok, result.errors
    assert result.outputs["sq"] == 81
    assert result.outputs["pid"] != os.getpid()


def test_a_forking_process_pool_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    fork = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    spawn = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        with caplog.at_level("WARNING", logger="constellation.runtime"):
            Constellation([pid], executor=fork).shutdown()
        assert any("starts its workers by fork" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with caplog.at_level("WARNING", logger="constellation.runtime"):
            Constellation([pid], executor=spawn).shutdown()
        assert not any("by fork" in r.getMessage() for r in caplog.records)
    finally:
        fork.shutdown()
        spawn.shutdown()


def test_modules_run_on_dask_distributed() -> None:
    distributed = pytest.importorskip("distributed", reason="the 'distributed' extra")
    with distributed.Client(n_workers=1, threads_per_worker=2, processes=True,
                            dashboard_address="127.0.0.1:0") as client:
        executor = client.get_executor()
        with Constellation([pid, square], executor=executor) as e:
            result = e.run(pipeline(), {"x": 4}, timeout=60)
    assert result.ok, result.errors
    assert result.outputs["sq"] == 256
    assert result.outputs["pid"] != os.getpid()


def test_a_module_dask_cannot_serialize_fails_its_call_and_the_engine_goes_on() -> None:
    distributed = pytest.importorskip("distributed", reason="the 'distributed' extra")
    import threading

    from constellation import ExecutionStatus, module

    lock = threading.Lock()

    @module
    def Local(x: int) -> int:  # its code travels by value, but it holds a lock
        with lock:
            return x + 1

    with distributed.Client(n_workers=1, threads_per_worker=1, processes=True,
                            dashboard_address="127.0.0.1:0") as client, \
            Constellation([Local, square], executor=client.get_executor()) as e:
        bad = e.run("in x: Int\na = Local(x)\nout a", {"x": 1}, timeout=60)
        assert bad.status is ExecutionStatus.FAILED
        assert bad.errors[0].code == "E312", bad.errors[0]
        assert "Local" in bad.errors[0].message
        good = e.run("in x: Int\na = Square(x)\nout a", {"x": 5}, timeout=60)
    assert good.outputs == {"a": 25}, good.errors
