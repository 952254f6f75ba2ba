"""``constellation serve``: build the engine from settings, run uvicorn, drain on
SIGTERM/SIGINT (readiness turns 503, running executions finish, then exit 0)."""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from constellation.core.errors import ConfigurationError
from constellation.core.modules import ModuleDefinition
from constellation.engine import Constellation, SchedulerConfig
from constellation.http.app import create_app
from constellation.http.auth import EnvKeys, FileKeys, StaticKeys

if TYPE_CHECKING:
    from fastapi import FastAPI

    from constellation.http.app import ServerState
    from constellation.http.settings import ServerSettings

__all__ = ["build", "serve"]

logger = logging.getLogger("constellation.http")


def load_plugins(names: tuple[str, ...]) -> list[ModuleDefinition]:
    """The ``@module`` definitions at the top level of each named Python module.

    Raises:
        ConfigurationError: a plugin cannot be imported or defines no module.
    """
    found: list[ModuleDefinition] = []
    for name in names:
        try:
            mod = importlib.import_module(name)
        except Exception as exc:
            raise ConfigurationError(f"cannot import plugin {name!r}: {exc}",
                                     details={"field": "plugins", "plugin": name}) from exc
        defs = [v for v in vars(mod).values() if isinstance(v, ModuleDefinition)]
        if not defs:
            raise ConfigurationError(f"plugin {name!r} defines no @module",
                                     details={"field": "plugins", "plugin": name})
        found.extend(defs)
    return found


def _auth(settings: ServerSettings) -> StaticKeys | None:
    keys = EnvKeys()
    if settings.api_keys_file:
        keys.add(FileKeys(settings.api_keys_file))
    return keys if len(keys) else None


def build(settings: ServerSettings) -> tuple[FastAPI, Constellation]:
    """The application and its engine, pipelines preloaded.

    Raises:
        ConfigurationError: a bad setting, plugin or pipeline file (with its location).
    """
    from constellation.events import EventHub
    from constellation.spi import (
        Backends,
        InMemoryExecutionStorage,
        InMemoryPipelineStore,
        SqliteExecutionStorage,
        SqlitePipelineStore,
    )

    metrics: Any = None
    try:
        from constellation.spi import PrometheusMetrics

        metrics = PrometheusMetrics()
    except ConfigurationError:
        logger.warning("prometheus-client is not installed: /metrics will be empty")
    # Execution records and stored pipelines (versions, aliases, canaries) share the
    # one SQLite file: both survive a restart.
    storage: Any
    pipelines: Any
    if settings.storage == "memory":
        storage, pipelines = InMemoryExecutionStorage(), InMemoryPipelineStore()
    else:
        storage = SqliteExecutionStorage(settings.storage)
        pipelines = SqlitePipelineStore(settings.storage)
    events = EventHub()  # what /executions/events streams
    try:
        engine = Constellation(
            load_plugins(settings.plugins),
            backends=Backends(metrics=metrics, storage=storage, pipelines=pipelines,
                              listener=events),
            scheduler=SchedulerConfig(max_concurrency=settings.max_concurrency,
                                      max_queue_size=settings.max_queue_size,
                                      worker_threads=settings.worker_threads),
            default_timeout=settings.default_timeout, executor=settings.executor)
    except BaseException:
        _close(storage, pipelines)
        raise
    app: FastAPI | None = None
    try:
        app = create_app(engine, settings, auth=_auth(settings), metrics=metrics,
                         events=events)
        if settings.pipelines_dir:
            preload(app.state.constellation, Path(settings.pipelines_dir))
            if settings.watch:
                app.state.constellation.pipelines_dir.start()
        app.state.constellation.compiler.start_worker()
    except BaseException:
        if app is not None:
            app.state.constellation.close()
        engine.shutdown(drain_timeout=1)
        _close(storage, pipelines)
        raise
    return app, engine


def _close(*backends: Any) -> None:
    for backend in backends:
        close = getattr(backend, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # closing at exit: report, go on
                logger.exception("closing %s failed", type(backend).__name__)


def preload(state: ServerState, directory: Path) -> int:
    """Compile every ``*.cst`` in ``directory``, each saved as a version of its file
    stem (a file whose source did not change adds no version).

    Raises:
        ConfigurationError: the directory is missing or a file does not compile.
    """
    from constellation.http.reloading import PipelineDir

    if not directory.is_dir():
        raise ConfigurationError(f"pipelines directory {directory} does not exist",
                                 details={"field": "pipelines_dir"})
    loader = state.pipelines_dir or PipelineDir(state, directory, 1.0)
    results = loader.load_all()
    for result in results:
        if result.error is not None:
            raise ConfigurationError(result.location(), details={"file": result.file})
    added = sum(r.changed for r in results)
    logger.info("loaded %d pipeline(s) from %s (%d new version(s))", len(results),
                directory, added)
    return len(results)


class _DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM/SIGINT drains the engine before the server stops."""

    def __init__(self, config: uvicorn.Config, engine: Constellation,
                 drain_timeout: float, state: ServerState) -> None:
        super().__init__(config)
        self.engine = engine
        self.state = state
        self.drain_timeout = drain_timeout
        self._draining = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._draining:  # a second signal: stop waiting
            logger.info("signal %s again: cancelling every execution", sig)
            self.engine.cancel_all()
            # Not uvicorn's handler: it would re-raise the signal once the server has
            # stopped, and the process would die of it instead of exiting 0.
            self.should_exit = True
            return
        self._draining = True
        logger.info("signal %s: draining (up to %s s); readiness is now 503", sig,
                    self.drain_timeout)
        threading.Thread(target=self._drain, name="constellation-drain", daemon=True).start()

    def _drain(self) -> None:
        self.state.close()  # compiles stop at once (503): their pipelines would be lost
        drained = self.engine.shutdown(self.drain_timeout)
        logger.info("drained (%s); stopping the server",
                    "all finished" if drained else "the rest cancelled")
        self.should_exit = True


def _log_to_stderr() -> None:
    # The daemon's own messages (drain, unexpected errors with their traceback) go where
    # uvicorn's go, unless the embedder configured the logger.
    http_log = logging.getLogger("constellation.http")
    if not http_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        http_log.addHandler(handler)
        http_log.setLevel(logging.INFO)


def serve(settings: ServerSettings) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the exit code (0 after a drain).

    Raises:
        ConfigurationError: a bad setting, plugin or pipeline file.
    """
    _log_to_stderr()
    app, engine = build(settings)
    # Proxy headers only from the proxies named (uvicorn would believe 127.0.0.1's).
    trusted = list(settings.forwarded_allow_ips)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="off",
                            log_level="info", timeout_graceful_shutdown=5,
                            proxy_headers=bool(trusted),
                            forwarded_allow_ips=trusted or None)
    server = _DrainingServer(config, engine, settings.drain_timeout, app.state.constellation)
    try:
        server.run()
    finally:
        app.state.constellation.close()
        engine.shutdown(drain_timeout=1)
        _close(engine._storage, engine.pipelines.store)
    return 0
