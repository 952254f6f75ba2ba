"""Where module code runs: executors named by strings, and shipping module code to dask.

``Constellation(executor=...)`` takes an ``Executor``, a dask ``Client`` or one of these
strings (the engine then owns what it builds and shuts it down with itself):

=====================  ===========================================================
``"threads"``          the engine's own thread pool (the default);
``"threads:N"``        with ``N`` worker threads
``"process"``          an engine-owned process pool, one process per core
``"process:N"``        with ``N`` processes
``"tcp://host:port"``  a dask.distributed scheduler (also ``tls://``; ``dask://`` is
                       read as ``tcp://``)
=====================  ===========================================================

:func:`parse_executor` checks a string (a daemon validates ``--executor`` with it
before building anything); :func:`build_executor` builds a standalone executor from
one, which the caller owns.

:class:`ShipModules` is a dask ``WorkerPlugin`` that installs module files on every
worker (also on workers that join later): see docs/distributed.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from constellation._ship import ShipModules as ShipModules

__all__ = ["ExecutorSpec", "ShipModules", "build_executor", "connect_client",
           "parse_executor"]

_DASK_SCHEMES = ("tcp://", "tls://", "dask://", "inproc://", "ucx://", "ws://", "wss://")


@dataclass(frozen=True)
class ExecutorSpec:
    """A parsed executor string.

    Attributes:
        kind: ``"threads"``, ``"process"`` or ``"dask"``.
        workers: threads or processes (None: the default).
        address: the dask scheduler's address.
        connect_timeout: seconds to wait for the scheduler when connecting.
    """

    kind: str
    workers: int | None = None
    address: str | None = None
    connect_timeout: float = 10.0


def parse_executor(spec: str) -> ExecutorSpec:
    """Read ``"threads[:N]"``, ``"process[:N]"`` or a dask scheduler address.

    Raises:
        ConfigurationError: anything else (``details["field"] == "executor"``).
    """
    if not isinstance(spec, str):
        raise ConfigurationError(f"executor must be a string here, got {spec!r}",
                                 details={"field": "executor"})
    text = spec.strip()
    if text.startswith(_DASK_SCHEMES):
        address = "tcp://" + text[len("dask://"):] if text.startswith("dask://") else text
        rest = address.split("://", 1)[1]
        if not rest or rest.startswith(":"):
            raise ConfigurationError(f"executor {spec!r}: the scheduler address needs a "
                                     "host (tcp://host:port)", details={"field": "executor"})
        return ExecutorSpec("dask", address=address)
    kind, _, count = text.partition(":")
    kind = {"processes": "process", "thread": "threads"}.get(kind, kind)
    if kind not in ("threads", "process"):
        raise ConfigurationError(
            f"executor {spec!r} is not one of 'threads', 'threads:N', 'process', "
            "'process:N' or a dask scheduler address such as 'tcp://127.0.0.1:8786'",
            details={"field": "executor"})
    workers = None
    if count:
        if not count.isdigit() or int(count) < 1:
            raise ConfigurationError(f"executor {spec!r}: the count after ':' must be a "
                                     "positive integer", details={"field": "executor"})
        workers = int(count)
    return ExecutorSpec(kind, workers=workers)


def build_executor(spec: str | ExecutorSpec) -> Executor:
    """A standalone executor for ``spec``; the caller shuts it down.

    ``"threads[:N]"`` gives a ``ThreadPoolExecutor``, ``"process[:N]"`` a
    ``ProcessPoolExecutor`` (``spawn``), a scheduler address a dask ``ClientExecutor``
    whose ``shutdown()`` also closes its client. (``Constellation(executor="...")``
    builds and owns the same, and replaces a broken process pool.)

    Raises:
        ConfigurationError: a bad string, dask missing, or an unreachable scheduler.
    """
    parsed = parse_executor(spec) if isinstance(spec, str) else spec
    if parsed.kind == "threads":
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(parsed.workers, thread_name_prefix="constellation-worker")
    if parsed.kind == "process":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(parsed.workers,
                                   mp_context=multiprocessing.get_context("spawn"))
    client = connect_client(parsed)  # checks that dask is there
    import distributed.cfexecutor

    base: Any = distributed.cfexecutor.ClientExecutor

    class _OwnedClientExecutor(base):  # type: ignore[misc]
        def shutdown(self, wait: bool = True, **_: Any) -> None:
            super().shutdown(wait=wait)
            self._client.close(timeout=5)

    executor: Executor = _OwnedClientExecutor(client)
    return executor


def connect_client(spec: ExecutorSpec) -> Any:
    """A ``distributed.Client`` connected to ``spec.address`` (the caller closes it).

    A ``tcp://`` address is probed first: a scheduler that is not there is reported at
    once, without building a client (a client that fails to connect leaves its event
    loop thread behind).

    Raises:
        ConfigurationError: dask is missing, or the scheduler cannot be reached.
    """
    try:
        import distributed
    except ImportError:
        raise ConfigurationError("a dask executor needs dask.distributed: pip install "
                                 "'constellation-engine[distributed]'",
                                 details={"field": "executor"}) from None
    address = spec.address or ""
    if address.startswith("tcp://"):
        import socket

        host, _, port = address[len("tcp://"):].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port or 8786)),
                                          timeout=spec.connect_timeout):
                pass
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot connect to the dask scheduler at {address}: "
                f"{type(exc).__name__}: {exc}", details={"field": "executor"}) from exc
    connect: Any = distributed.Client
    try:
        return connect(address, timeout=spec.connect_timeout)
    except Exception as exc:
        raise ConfigurationError(f"cannot connect to the dask scheduler at {address}: "
                                 f"{type(exc).__name__}: {exc}",
                                 details={"field": "executor"}) from exc


def __getattr__(name: str) -> Any:
    # ShipModules subclasses dask's WorkerPlugin: dask is imported only when it is used.
    if name == "ShipModules":
        from constellation._ship import ShipModules

        return ShipModules
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
