"""Executors named by strings (what a daemon's --executor builds), and what cannot run
on an executor being refused when a pipeline is compiled."""

from __future__ import annotations

from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from constellation import CompilationError, Constellation, ExecutionStatus, PipelineBuilder
from constellation.core.errors import ConfigurationError
from constellation.executors import ExecutorSpec, build_executor, parse_executor
from tests.distributed import modules as m

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.distributed.conftest import Cluster


@pytest.mark.parametrize(("text", "spec"), [
    ("threads", ExecutorSpec("threads")),
    ("threads:3", ExecutorSpec("threads", workers=3)),
    ("process", ExecutorSpec("process")),
    ("process:4", ExecutorSpec("process", workers=4)),
    ("processes:2", ExecutorSpec("process", workers=2)),
    ("tcp://10.0.0.5:8786", ExecutorSpec("dask", address="tcp://10.0.0.5:8786")),
    ("dask://sched:8786", ExecutorSpec("dask", address="tcp://sched:8786")),
    ("tls://sched:8786", ExecutorSpec("dask", address="tls://sched:8786")),
])
def test_parse_executor(text: str, spec: ExecutorSpec) -> None:
    assert parse_executor(text) == spec


@pytest.mark.parametrize("text", ["", "thread-pool", "process:0", "process:x",
                                  "process:-1", "tcp://", "tcp://:8786", "dask"])
def test_parse_executor_refuses(text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_executor(text)
    assert info.value.details["field"] == "executor"


def quick() -> PipelineBuilder:
    b = PipelineBuilder("cfg")
    b.output("out", b.call("P.Pid", x=0))
    return b


def test_engine_owned_executors_from_strings(dask_cluster: Cluster) -> None:
    import os

    with Constellation([m.pid], executor="threads:3") as e:
        assert e.run(quick(), {}, timeout=30).outputs["out"] == os.getpid()
        assert e._runtime.workers.max_threads == 3
    with Constellation([m.pid], executor="process:1") as e:
        assert e.run(quick(), {}, timeout=60).outputs["out"] != os.getpid()
    e = Constellation([m.pid], executor=dask_cluster.address)
    try:
        assert e.run(quick(), {}, timeout=60).outputs["out"] != os.getpid()
        client = e._runtime.runner.client  # type: ignore[attr-defined]
    finally:
        e.shutdown(drain_timeout=5)
    assert client.status == "closed"  # the engine owned it


def test_an_unreachable_scheduler_is_a_configuration_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    spec = ExecutorSpec("dask", address=f"tcp://127.0.0.1:{port}", connect_timeout=1.0)
    with pytest.raises(ConfigurationError, match="cannot connect"):
        build_executor(spec)


def test_build_executor(dask_cluster: Cluster) -> None:
    with build_executor("threads:2") as ex:
        assert isinstance(ex, ThreadPoolExecutor)
        assert ex.submit(sum, [1, 2]).result(timeout=10) == 3
    with build_executor("process:1") as ex:
        assert isinstance(ex, ProcessPoolExecutor)
        assert ex.submit(sum, [1, 2]).result(timeout=60) == 3
    ex = build_executor(dask_cluster.address)
    client = ex._client  # type: ignore[attr-defined]
    assert ex.submit(sum, [1, 2]).result(timeout=60) == 3
    with Constellation([m.pid], executor=ex) as e:
        assert e.run(quick(), {}, timeout=60).ok
    ex.shutdown()
    assert client.status == "closed"


class InlineExecutor(Executor):
    """An executor of a kind the engine does not know: runs calls at once, here."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def test_ctx_on_an_unknown_executor_is_refused_at_compile_time() -> None:
    with Constellation([m.cooperative, m.quick], executor=InlineExecutor()) as e:
        b = PipelineBuilder("ctx")
        b.output("out", b.call("P.Cooperative", path="/nonexistent"))
        with pytest.raises(CompilationError, match="takes ctx") as info:
            e.compile(b)
        assert info.value.errors[0].code == "E146"
        ok = PipelineBuilder("plain")
        ok.output("out", ok.call("P.Quick", x=1, options={"retry": 1}))
        assert e.run(ok, {}, timeout=10).outputs == {"out": 2}


def test_a_dask_client_itself_is_an_executor(dask_client: Any) -> None:
    with Constellation([m.pid, m.count], executor=dask_client) as e:
        result = e.run(quick(), {}, timeout=60)
    assert result.status is ExecutionStatus.COMPLETED, result.errors


def test_the_dask_executors_own_options_are_kept(dask_client: Any) -> None:
    pids = dask_client.run(__import__("os").getpid)
    address, pid = sorted(pids.items())[0]
    executor = dask_client.get_executor(workers=[address], pure=True)
    with Constellation([m.pid], executor=executor) as e:
        b = PipelineBuilder("pinned")
        for i in range(4):
            b.output(f"o{i}", b.call("P.Pid", x=i))
        result = e.run(b, {}, timeout=60)
    assert result.ok, result.errors
    assert set(result.outputs.values()) == {pid}


class BlockingExecutor(Executor):
    """``submit`` blocks until released (an executor whose queue is full, say)."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.release.wait(30)
        raise RuntimeError("released")


class SilentExecutor(Executor):
    """Takes every call and never answers (a lost task)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return Future()


def test_an_executor_that_blocks_or_never_answers_ends_at_the_deadline() -> None:
    import time

    blocking = BlockingExecutor()
    for executor in (blocking, SilentExecutor()):
        e = Constellation([m.quick], executor=executor)
        try:
            b = PipelineBuilder("blocked")
            b.output("out", b.call("P.Quick", x=1))
            started = time.monotonic()
            result = e.run(b, {}, timeout=1.0)
            assert result.status is ExecutionStatus.TIMED_OUT
            assert time.monotonic() - started < 3.5
        finally:
            blocking.release.set()
            e.shutdown(drain_timeout=2)
