"""``constellation serve``: build the engine from settings, run uvicorn, drain on
SIGTERM/SIGINT (readiness turns 503, running executions finish, then exit 0)."""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from constellation.core.errors import CompilationError, ConfigurationError
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
    from constellation.spi import Backends, InMemoryExecutionStorage, SqliteExecutionStorage

    metrics: Any = None
    try:
        from constellation.spi import PrometheusMetrics

        metrics = PrometheusMetrics()
    except ConfigurationError:
        logger.warning("prometheus-client is not installed: /metrics will be empty")
    storage = InMemoryExecutionStorage() if settings.storage == "memory" \
        else SqliteExecutionStorage(settings.storage)
    engine = Constellation(
        load_plugins(settings.plugins), backends=Backends(metrics=metrics, storage=storage),
        scheduler=SchedulerConfig(max_concurrency=settings.max_concurrency,
                                  max_queue_size=settings.max_queue_size,
                                  worker_threads=settings.worker_threads),
        default_timeout=settings.default_timeout)
    app: FastAPI | None = None
    try:
        app = create_app(engine, settings, auth=_auth(settings), metrics=metrics)
        if settings.pipelines_dir:
            preload(app.state.constellation, Path(settings.pipelines_dir))
        app.state.constellation.compiler.start_worker()
    except BaseException:
        if app is not None:
            app.state.constellation.close()
        engine.shutdown(drain_timeout=1)
        raise
    return app, engine


def preload(state: ServerState, directory: Path) -> int:
    """Compile every ``*.cst`` in ``directory``, named by file stem.

    Raises:
        ConfigurationError: the directory is missing or a file does not compile.
    """
    if not directory.is_dir():
        raise ConfigurationError(f"pipelines directory {directory} does not exist",
                                 details={"field": "pipelines_dir"})
    count = 0
    for path in sorted(directory.glob("*.cst")):
        source = path.read_text()
        try:
            pipeline = state.engine.compile(source, name=path.stem)
        except CompilationError as exc:
            first = exc.errors[0]
            raise ConfigurationError(f"{path}:{first.line}:{first.column}: {first.code} "
                                     f"{first.message}", details={"file": str(path)}) from exc
        state.add(pipeline, source)
        count += 1
    logger.info("loaded %d pipeline(s) from %s", count, directory)
    return count


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
        close = getattr(engine._storage, "close", None)
        if callable(close):
            close()
    return 0
