"""The FastAPI application of ``constellation serve``, on the public engine API.

Every error body is ``{"error": {"code", "message", "details"}}`` with the engine's
stable codes (and E6xx for HTTP-level problems); never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from cachetools import LRUCache
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException

from constellation._engine_types import Pipeline
from constellation._pipelines import hash_of
from constellation.core.errors import (
    CompilationError,
    ConstellationError,
    ShuttingDownError,
    UnknownHashError,
    UnknownPipelineError,
    UnknownVersionError,
)
from constellation.http.compiling import (
    CompileCancelled,
    CompilePool,
    compiler_failure,
    module_signatures,
)
from constellation.http.middleware import (
    ClientGone,
    ProtectionMiddleware,
    ResponseMiddleware,
    api_error,
)
from constellation.http.models import ErrorBody
from constellation.http.openapi import declare_security
from constellation.http.pipeline_routes import register_pipeline_routes
from constellation.http.routes import jsonable, register_routes
from constellation.http.watch_routes import register_watch_routes

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from fastapi.responses import JSONResponse, Response
    from starlette.requests import Request as StarletteRequest

    from constellation._pipelines import RoutedRun
    from constellation.actors._handle import Execution
    from constellation.core.options import Priority
    from constellation.engine import Constellation
    from constellation.events import EventHub
    from constellation.http.auth import AuthProvider
    from constellation.http.reloading import PipelineDir
    from constellation.http.settings import ServerSettings
    from constellation.lang.compiler import CompiledSource
    from constellation.spi import PrometheusMetrics
    from constellation.spi._pipelines import StoredPipeline

__all__ = ["ServerState", "create_app"]

T = TypeVar("T")

logger = logging.getLogger("constellation.http")

# HTTP status of each engine error code family; anything else is 400.
_STATUS = {"E401": 429, "E402": 503, "E204": 409,
           # stored pipelines: unknown name / version / hash / canary, and conflicts
           "E702": 404, "E703": 404, "E704": 404, "E705": 409, "E706": 404}


class ServerState:
    """What the routes share: the engine, executions still running, and the stored
    pipelines -- ``engine.pipelines`` (versions per name, aliases, canaries), over the
    engine's PipelineStore (the daemon's SQLite file: they survive restarts)."""

    def __init__(self, engine: Constellation, settings: ServerSettings,
                 metrics: PrometheusMetrics | None) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.started = time.time()
        self.lock = threading.Lock()
        self._entries: LRUCache[str, StoredPipeline] = LRUCache(maxsize=1024)
        self.live: dict[str, Any] = {}  # execution id -> Execution (async runs)
        self.compiler = CompilePool(settings.compile_workers, settings.compile_timeout)
        # One thread per compile worker, talking to it; compiles wait in its queue.
        # Pipeline lookups that may read the store (SQLite), off the event loop: two
        # threads at most, however many requests wait.
        self.lookups = ThreadPoolExecutor(2, thread_name_prefix="constellation-lookup")
        self._threads = ThreadPoolExecutor(settings.compile_workers,
                                           thread_name_prefix="constellation-compile")
        # Compiled sources by (source hash, name, modules); touched on the event loop only.
        self._compiled: LRUCache[tuple[str, str, tuple[int, ...]], Pipeline] = LRUCache(maxsize=256)
        self._signatures: tuple[tuple[int, ...], Any] | None = None
        self.pipelines_dir: PipelineDir | None = None
        if settings.pipelines_dir:
            from pathlib import Path

            from constellation.http.reloading import PipelineDir

            self.pipelines_dir = PipelineDir(self, Path(settings.pipelines_dir),
                                             settings.watch_interval)

    async def compile(self, source: str, name: str, request: StarletteRequest) -> Pipeline:
        """Compile untrusted ``source`` in a compile worker, within ``compile_timeout``;
        stopped (the worker killed) when the client disconnects.

        Raises:
            CompilationError: it does not compile; E152 when the compiler failed.
            CompileTimeoutError: it took longer than ``compile_timeout`` (E609).
            ClientGone: the client went away; the compile was stopped.
        """
        engine = self.engine
        ids = tuple(id(m) for m in engine.modules.values())
        if self._signatures is None or self._signatures[0] != ids:
            self._signatures = (ids, module_signatures(engine.modules))
        signatures = self._signatures[1]
        key = (hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(), name, ids)
        started = time.perf_counter()
        observer = getattr(getattr(engine, "_runtime", None), "observer", None)
        cached = self._compiled.get(key)
        if cached is not None:
            if observer is not None:  # counted as the engine counts its cache hits
                observer.compiled(True, (time.perf_counter() - started) * 1000.0)
            return cached
        if self.compiler.closed:
            raise ShuttingDownError("the server is shutting down")
        deadline = time.monotonic() + self.compiler.timeout  # waiting included

        def work(cancel: threading.Event) -> Pipeline:
            compiled = self.compiler.compile(source, name, signatures, cancel, deadline)
            pipeline = self._pipeline_of(compiled)
            pipeline.source = source  # stored as its source text (engine.pipelines)
            return pipeline

        pipeline = await _until_disconnect(request, self._threads, work)
        if observer is not None:
            observer.compiled(False, (time.perf_counter() - started) * 1000.0)
        self._compiled[key] = pipeline
        return pipeline

    def _pipeline_of(self, compiled: CompiledSource) -> Pipeline:
        # What Constellation.compile does with source text once it is compiled: the
        # plan, from the typed graph (the worker did this step too, within the budget,
        # so it takes about as long here).
        from constellation.engine import Pipeline

        shared = self.engine.compile(compiled.spec)
        pipeline = Pipeline(shared.spec, shared.plan, self.engine)
        pipeline.syntactic_hash = compiled.syntactic_hash
        pipeline.warnings = compiled.warnings
        return pipeline

    def close(self) -> None:
        """Stop the compile workers: compiles running or waiting end with 503 (E402);
        and the watcher of the pipelines directory."""
        if self.pipelines_dir is not None:
            self.pipelines_dir.stop()
        self.compiler.close()
        self._threads.shutdown(wait=False)
        self.lookups.shutdown(wait=False)

    # --- stored pipelines: engine.pipelines, over the daemon's PipelineStore ------------

    def add(self, pipeline: Pipeline, source: str | None) -> int:
        """Store ``pipeline`` as a version of its name; the version (a known structural
        hash adds none: its version is returned).

        Raises:
            ConfigurationError: the name is not a valid pipeline name.
            PipelineConflictError: the name is an alias (E705).
            PipelineStoreError: the store failed (E701).
        """
        if source is not None and pipeline.source is None:
            pipeline.source = source
        return self.engine.pipelines.save(pipeline.name, pipeline)

    def find(self, ref: str, *, route: bool = False
             ) -> tuple[Pipeline, float, str | None] | None:
        """The pipeline a ref names (a name's current version, an alias, or
        ``sha256:<hash>``), when it was stored and its source; None when nothing is
        stored by that ref.

        With ``route`` (runs by ref: ``/execute``) a name with a canary gives the side
        this run is routed to; submit it with :meth:`submit`, which counts its end on
        that side. Call it once per run.

        Raises:
            PipelineStoreError, CompilationError: the store failed, or the stored
                pipeline does not rebuild (see ``engine.pipelines.get``).
        """
        catalog = self.engine.pipelines
        try:
            if route:
                routed = catalog.route(ref)
                pipeline = routed.pipeline
                if routed.stats is not None:
                    pipeline = _RoutedPipeline.of(routed)
            else:
                pipeline = catalog.get(ref)
            entry = self.entry(pipeline.structural_hash)
        except (UnknownPipelineError, UnknownHashError):
            return None
        return pipeline, entry.created_at, entry.source

    def find_cached(self, ref: str) -> Pipeline | None:
        """``find(ref, route=True)``'s pipeline if memory alone answers it (a ref run
        recently; see ``PipelineCatalog.route_cached``): never blocks, so the event
        loop calls it first. None: ask :meth:`find` off the loop (nothing was counted)."""
        routed = self.engine.pipelines.route_cached(ref)
        if routed is None:
            return None
        if routed.stats is not None:
            return _RoutedPipeline.of(routed)
        return routed.pipeline

    def entry(self, structural_hash: str) -> StoredPipeline:
        """What the store keeps of a pipeline (entries never change: cached).

        Raises:
            UnknownHashError: no such stored pipeline.
        """
        entry = self._entries.get(structural_hash)
        if entry is None:
            entry = self.engine.pipelines.entry(f"sha256:{structural_hash}")
            self._entries[structural_hash] = entry
        return entry

    def submit(self, pipeline: Pipeline, inputs: Mapping[str, Any], *,
               timeout: float | None, priority: Priority | int | str) -> Execution:
        """``engine.submit``; a pipeline from ``find(ref, route=True)`` is counted on
        its canary side."""
        if isinstance(pipeline, _RoutedPipeline):
            return pipeline.routed.submit(inputs, timeout=timeout, priority=priority)
        return self.engine.submit(pipeline, inputs, timeout=timeout, priority=priority)

    def remove(self, ref: str) -> bool:
        """Delete a name (every version and its canary), an alias, or a ``sha256:``
        pipeline nothing refers to; False when there is nothing by that ref.

        Raises:
            PipelineConflictError: the hash is still used (E705, ``used_by``).
        """
        try:
            self.engine.pipelines.delete(ref)
        except (UnknownPipelineError, UnknownHashError):
            return False
        self._entries.clear()  # a deleted hash may be stored again, from other source
        return True

    def describe(self, ref: str, pipeline: Pipeline) -> tuple[int | None, list[str]]:
        """The version ``ref`` names (a name's current version; None for an alias or a
        hash) and the aliases of the pipeline's structural hash."""
        catalog = self.engine.pipelines
        version = None
        if hash_of(ref) is None:
            with contextlib.suppress(UnknownPipelineError):  # an alias
                version = catalog.current(ref).version
        return version, sorted(a for a, h in catalog.aliases().items()
                               if h == pipeline.structural_hash)

    @property
    def pipelines(self) -> list[str]:
        """The stored names (empty when the store cannot be read: for health pages)."""
        try:
            return self.engine.pipelines.names()
        except ConstellationError:
            return []

    def listing(self) -> list[tuple[Pipeline, float, int, list[str]]]:
        """Every name's current version: ``(pipeline, stored at, version, aliases of
        its hash)``, by name. A stored pipeline that no longer rebuilds is left out
        (logged); ``GET /pipelines/{name}`` reports why."""
        catalog = self.engine.pipelines
        aliases: dict[str, list[str]] = {}
        for alias, h in sorted(catalog.aliases().items()):
            aliases.setdefault(h, []).append(alias)
        found = []
        for name in catalog.names():
            try:
                current = catalog.current(name)
                pipeline = catalog.get(name, current.version)
                entry = self.entry(pipeline.structural_hash)
            except (UnknownPipelineError, UnknownHashError, UnknownVersionError):
                continue  # deleted meanwhile
            except ConstellationError as exc:
                logger.warning("stored pipeline %r does not rebuild: %s", name, exc.message)
                continue
            found.append((pipeline, entry.created_at, current.version,
                          aliases.get(pipeline.structural_hash, [])))
        return found


class _RoutedPipeline(Pipeline):
    """A pipeline routed to one side of a canary (``ServerState.find(route=True)``)."""

    __slots__ = ("routed",)

    routed: RoutedRun

    @classmethod
    def of(cls, routed: RoutedRun) -> _RoutedPipeline:
        base = routed.pipeline
        pipeline = cls.__new__(cls)
        for slot in Pipeline.__slots__:
            setattr(pipeline, slot, getattr(base, slot))
        pipeline.routed = routed
        return pipeline


async def _until_disconnect(request: StarletteRequest, threads: ThreadPoolExecutor,
                            work: Callable[[threading.Event], T]) -> T:
    """``work(cancel)`` on one of ``threads``; when the client disconnects (or this
    coroutine is cancelled) ``cancel`` is set, and ``work`` stops or never starts."""
    cancel = threading.Event()
    try:
        task = asyncio.get_running_loop().run_in_executor(threads, work, cancel)
    except RuntimeError:  # the threads were shut down: close() came first
        raise ShuttingDownError("the server is shutting down") from None
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        racing: set[asyncio.Future[Any]] = {task, gone}
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            cancel.set()
            task.cancel()  # still queued: it never runs; running: it sees ``cancel``
        gone.cancel()
    if task.cancelled():
        raise ClientGone
    try:
        return task.result()
    except CompileCancelled:
        raise ClientGone from None
    except ConstellationError:
        raise
    except Exception as exc:  # not a compile error: the compile failed
        logger.exception("compiling request source failed")
        raise compiler_failure(type(exc).__name__) from exc


async def _disconnected(request: StarletteRequest) -> None:
    # The body has been read: the next message is the disconnect (or nothing).
    while (await request.receive())["type"] != "http.disconnect":
        pass


def status_for(error: ConstellationError) -> int:
    """The HTTP status an engine error maps to."""
    reason = error.details.get("reason") if isinstance(error.details, dict) else None
    if error.code == "E701":  # the pipeline store failed (503) or holds a bad entry
        return 503 if reason == "backend" else 500
    if error.code == "E703" and reason == "no_previous_version":
        return 409
    return _STATUS.get(error.code, 400)


def error_response(error: ConstellationError) -> JSONResponse:
    """An engine error as an HTTP response."""
    details = error.to_dict()["details"]
    if isinstance(error, CompilationError):
        details = {"errors": [{"code": d.code, "message": d.message, "line": d.line,
                               "column": d.column, "severity": d.severity}
                              for d in error.errors]}
    status = status_for(error)
    # A full queue (E401) is as temporary as a rate limit: say when to come back.
    headers = {"Retry-After": "1"} if status == 429 else None
    return api_error(status, error.code, error.message, jsonable(details), headers)


def create_app(engine: Constellation, settings: ServerSettings, *,
               auth: AuthProvider | None = None,
               metrics: PrometheusMetrics | None = None,
               events: EventHub | None = None) -> FastAPI:
    """Build the application around a running engine.

    Args:
        engine: the engine serving requests (the caller owns it).
        settings: limits and protections.
        auth: API keys; None turns authentication off.
        metrics: the engine's Prometheus metrics, served at ``/metrics``.
        events: the hub the engine's listener feeds, streamed at
            ``/executions/events`` (None: that route answers 503).
    """
    from constellation import __version__

    app = FastAPI(title="Constellation", version=__version__,
                  description="Compile and run constellation-lang pipelines.",
                  responses={400: {"model": ErrorBody}})
    state = ServerState(engine, settings, metrics)
    app.state.constellation = state

    @app.exception_handler(ConstellationError)
    async def _engine_error(_request: Request, exc: ConstellationError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> Response:
        problems = [{"location": ".".join(str(p) for p in e.get("loc", ())),
                     "message": e.get("msg", "")} for e in exc.errors()]
        first = problems[0] if problems else {"location": "", "message": "bad request"}
        return api_error(400, "E600", f"invalid request: {first['location']}: "
                                      f"{first['message']}", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            located = await _undecodable_body(request)
            if located is not None:
                return error_response(located)
        code = {404: "E607", 405: "E608"}.get(exc.status_code, "E600")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(app, request)
        return api_error(exc.status_code, code, str(exc.detail), {}, headers or None)

    @app.exception_handler(ClientGone)
    async def _client_gone(_request: Request, _exc: ClientGone) -> Response:
        # Nobody reads this answer; 499 is what proxies log for it.
        return api_error(499, "E610", "the client closed the connection", {})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error serving a request")
        return api_error(500, "E500", "internal error (logged on the server)", {})

    # First: /executions/events must match before /executions/{execution_id}.
    register_watch_routes(app, state, events, dashboard=settings.dashboard)
    register_routes(app, state)
    register_pipeline_routes(app, state)
    # Innermost first: HEAD and 500s; then the protections; CORS outermost, so that its
    # headers are on every answer, refusals (401/403/413/429) included.
    app.add_middleware(ResponseMiddleware)
    app.add_middleware(ProtectionMiddleware, auth=auth, settings=settings)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"],
                           expose_headers=["Retry-After", "WWW-Authenticate"])
    _publish_errors_in_openapi(app)
    return app


def _allowed(app: FastAPI, request: Request) -> str:
    """The ``Allow`` header of a 405: the methods of every route at this path."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _publish_errors_in_openapi(app: FastAPI) -> None:
    """Our validation errors are 400s in our error format, never FastAPI's 422: say so."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        for path in schema.get("paths", {}).values():
            for op in path.values():
                responses = op.get("responses", {})
                responses.pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        declare_security(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _undecodable_body(request: Request) -> ConstellationError | None:
    """E109 at the first byte that is not UTF-8, when that is why the body was refused."""
    from constellation.core.errors import CompilationError
    from constellation.lang.parser import decode_source

    try:
        body = await request.body()
    except Exception:  # the body is gone: nothing more to say than the parser did
        return None
    try:
        decode_source(body)
    except CompilationError as exc:
        return exc
    return None
