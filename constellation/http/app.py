"""The FastAPI application of ``constellation serve``, on the public engine API.

Every error body is ``{"error": {"code", "message", "details"}}`` with the engine's
stable codes (and E6xx for HTTP-level problems); never a stack trace.
"""

from __future__ import annotations

import asyncio
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

from constellation.core.errors import CompilationError, ConstellationError, ShuttingDownError
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
from constellation.http.routes import jsonable, register_routes

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi.responses import JSONResponse, Response
    from starlette.requests import Request as StarletteRequest

    from constellation.engine import Constellation, Pipeline
    from constellation.http.auth import AuthProvider
    from constellation.http.settings import ServerSettings
    from constellation.lang.compiler import CompiledSource
    from constellation.spi import PrometheusMetrics

__all__ = ["ServerState", "create_app"]

T = TypeVar("T")

logger = logging.getLogger("constellation.http")

# HTTP status of each engine error code family; anything else is 400.
_STATUS = {"E401": 429, "E402": 503, "E204": 409}


class ServerState:
    """What the routes share: the engine, named pipelines, executions still running."""

    def __init__(self, engine: Constellation, settings: ServerSettings,
                 metrics: PrometheusMetrics | None) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.started = time.time()
        self.lock = threading.Lock()
        self.names: dict[str, str] = {}  # name -> structural hash
        self.pipelines: dict[str, tuple[Pipeline, float, str | None]] = {}  # hash -> ...
        self.live: dict[str, Any] = {}  # execution id -> Execution (async runs)
        self.compiler = CompilePool(settings.compile_workers, settings.compile_timeout)
        # One thread per compile worker, talking to it; compiles wait in its queue.
        self._threads = ThreadPoolExecutor(settings.compile_workers,
                                           thread_name_prefix="constellation-compile")
        # Compiled sources by (source hash, name, modules); touched on the event loop only.
        self._compiled: LRUCache[tuple[str, str, tuple[int, ...]], Pipeline] = LRUCache(maxsize=256)
        self._signatures: tuple[tuple[int, ...], Any] | None = None

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
            return self._pipeline_of(compiled)

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
        """Stop the compile workers: compiles running or waiting end with 503 (E402)."""
        self.compiler.close()
        self._threads.shutdown(wait=False)

    def add(self, pipeline: Pipeline, source: str | None) -> None:
        with self.lock:
            self.pipelines[pipeline.structural_hash] = (pipeline, time.time(), source)
            self.names[pipeline.name] = pipeline.structural_hash

    def _hash_of(self, ref: str) -> str | None:
        # A name or "sha256:<hash>"; the caller holds the lock.
        return ref[len("sha256:"):] if ref.startswith("sha256:") else self.names.get(ref)

    def find(self, ref: str) -> tuple[Pipeline, float, str | None] | None:
        with self.lock:
            h = self._hash_of(ref)
            return self.pipelines.get(h) if h else None

    def remove(self, ref: str) -> bool:
        with self.lock:
            h = self._hash_of(ref)
            if h is None or h not in self.pipelines:
                return False
            del self.pipelines[h]
            for name in [n for n, v in self.names.items() if v == h]:
                del self.names[name]
            return True


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
               metrics: PrometheusMetrics | None = None) -> FastAPI:
    """Build the application around a running engine.

    Args:
        engine: the engine serving requests (the caller owns it).
        settings: limits and protections.
        auth: API keys; None turns authentication off.
        metrics: the engine's Prometheus metrics, served at ``/metrics``.
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

    register_routes(app, state)
    # Innermost first: HEAD and 500s; then the protections; CORS outermost, so that its
    # headers are on every answer, refusals (401/403/413/429) included.
    app.add_middleware(ResponseMiddleware)
    app.add_middleware(ProtectionMiddleware, auth=auth, settings=settings)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "HEAD", "POST", "DELETE"],
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
