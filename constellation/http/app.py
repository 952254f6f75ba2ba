"""The FastAPI application of ``constellation serve``, on the public engine API.

Every error body is ``{"error": {"code", "message", "details"}}`` with the engine's
stable codes (and E6xx for HTTP-level problems); never a stack trace.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException

from constellation.core.errors import CompilationError, ConstellationError
from constellation.http.middleware import ProtectionMiddleware, api_error
from constellation.http.models import ErrorBody
from constellation.http.routes import jsonable, register_routes

if TYPE_CHECKING:
    from fastapi.responses import JSONResponse, Response

    from constellation.engine import Constellation, Pipeline
    from constellation.http.auth import AuthProvider
    from constellation.http.settings import ServerSettings
    from constellation.spi import PrometheusMetrics

__all__ = ["ServerState", "create_app"]

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
    return api_error(status_for(error), error.code, error.message, jsonable(details))


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
        return api_error(exc.status_code, code, str(exc.detail), {})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error serving a request")
        return api_error(500, "E500", "internal error (logged on the server)", {})

    register_routes(app, state)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    app.add_middleware(ProtectionMiddleware, auth=auth, settings=settings)
    _publish_errors_in_openapi(app)
    return app


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
