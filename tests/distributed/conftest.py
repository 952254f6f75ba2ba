"""A real dask cluster for the executor-parity suite: one ``dask scheduler`` and two
``dask worker`` processes on loopback, started as subprocesses.

Ports are chosen by the scheduler (``--port 0``) and published in a scheduler file; no
dashboard is started (8787 is never needed). Every process runs in a session of its
own, so teardown kills each whole process group (worker nannies and their workers
included), also when a test or the startup fails. Startup is bounded
(``STARTUP_TIMEOUT``). The workers get the repository root on ``PYTHONPATH``, so
``tests.distributed.modules`` imports there.

Under ``CI=true`` a missing ``distributed`` is a failure; locally the dask cases skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import IN_CI

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 45.0


def have_distributed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("dask.distributed is required under CI=true (pip install -e '.[test]')")
        return False
    return True


@dataclass
class Cluster:
    """A running scheduler and its workers (subprocesses)."""

    address: str
    scheduler_file: Path
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: Path | None = None

    def client(self, **kwargs: Any) -> Any:
        import distributed

        return distributed.Client(self.address, timeout=20, **kwargs)

    def kill_scheduler(self) -> None:
        _kill_group(self.scheduler)

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            _kill_group(p)
        for p in [*self.workers, self.scheduler]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)

    def log_tail(self) -> str:
        if self.logs is None:
            return ""
        out = [f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:])
               for f in sorted(self.logs.glob("*.log"))]
        return "\n".join(out)


def _kill_group(p: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def start_cluster(tmp: Path, workers: int = 2, nthreads: int = 1) -> Cluster:
    """Start a scheduler and ``workers`` workers; raise if not up within the bound."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    sfile = tmp / "scheduler.json"

    def spawn(args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (tmp / log).open("wb")
        try:
            return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            out.close()

    scheduler = spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                       "--port", "0", "--no-dashboard",
                       # Its HTTP server (/metrics) starts even without a dashboard, on
                       # 8787 unless told: another process may hold that port.
                       "--dashboard-address", "127.0.0.1:0",
                       "--scheduler-file", str(sfile),
                       # Should pytest itself be killed: the scheduler ends once no client
                       # is left for a while, and its workers 30 s after it.
                       "--idle-timeout", "120s"],
                      "scheduler.log")
    cluster = Cluster("", sfile, scheduler, logs=tmp)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not sfile.exists() or not sfile.read_text().strip():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the dask scheduler did not start\n" + cluster.log_tail())
            time.sleep(0.05)
        cluster.address = json.loads(sfile.read_text())["address"]
        for i in range(workers):
            cluster.workers.append(spawn(
                ["distributed.cli.dask_worker", cluster.address, "--host", "127.0.0.1",
                 "--nthreads", str(nthreads), "--nworkers", "1", "--no-dashboard",
                 "--name", f"w{i}", "--death-timeout", "30",
                 "--local-directory", str(tmp / f"w{i}")], f"worker{i}.log"))
        client = cluster.client()
        try:
            client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
        finally:
            client.close(timeout=10)
    except BaseException:
        tail = cluster.log_tail()
        cluster.stop()
        if isinstance(tail, str) and tail:
            sys.stderr.write(tail + "\n")
        raise
    return cluster


@pytest.fixture(scope="package")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster of this test package (torn down after its last test, so that no dask
    thread outlives it into other tests): 2 workers of 1 thread each."""
    if not have_distributed():
        pytest.skip("dask.distributed is not installed (pip install -e '.[distributed]')")
    cluster = start_cluster(tmp_path_factory.mktemp("dask-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="package")
def dask_client(dask_cluster: Cluster) -> Iterator[Any]:
    client = dask_cluster.client()
    try:
        yield client
    finally:
        client.close(timeout=10)
