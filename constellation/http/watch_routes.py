"""Watching the daemon: the event stream, pipeline graphs, and the dashboard page.

- ``GET /executions/events`` (readonly): Server-Sent Events -- every execution and
  module event of the engine's listener, as JSON (``event: <type>``, ``data: {...}``),
  filtered by ``execution_id`` and ``pipeline``. Each client has a bounded buffer (the
  daemon's :class:`~constellation.events.EventHub`): a client that reads too slowly gets a
  last ``dropped`` event and is disconnected, never the engine; a client that goes away
  is unsubscribed at once. A comment line every ``keepalive`` seconds keeps proxies
  from closing an idle stream.
- ``GET /pipelines/{ref}/graph`` (readonly): the pipeline's DAG as JSON (nodes, edges;
  the model ``Pipeline.to_dot()`` draws), for the dashboard or any client.
- ``GET /dashboard``: a static page (no build step, no JavaScript library) over the same
  API; off with ``--no-dashboard``. The page carries no data: it loads without a key,
  and asks for one when the API does.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from constellation.core.errors import ConfigurationError
from constellation.http.middleware import api_error
from constellation.http.routes import ERRORS, NOT_FOUND

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from constellation.events import EventHub
    from constellation.http.app import ServerState

__all__ = ["register_watch_routes"]

KEEPALIVE = 15.0  # seconds between comment lines on an idle stream


def _json(event: dict[str, Any]) -> str:
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return json.dumps({k: clean(v) for k, v in event.items()}, separators=(",", ":"),
                      default=str)


def register_watch_routes(app: FastAPI, state: ServerState, events: EventHub | None, *,
                          dashboard: bool = True, keepalive: float = KEEPALIVE) -> None:
    """Add the routes of the module docstring to ``app`` (the event stream only when the
    engine's listener feeds ``events``)."""
    if events is not None:
        _register_events(app, events, keepalive)
    _register_graph(app, state)
    if dashboard:
        _register_dashboard(app)


def _register_events(app: FastAPI, events: EventHub, keepalive: float) -> None:
    @app.get("/executions/events", tags=["executions"], response_class=StreamingResponse,
             response_model=None,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "a stream of execution and module events"},
                        503: {"description": "too many event subscribers (E625)"}})
    async def execution_events(request: Request, execution_id: str | None = Query(None),
                               pipeline: str | None = Query(None)) -> Response:
        """Server-Sent Events: execution and module events as they happen."""
        try:
            sub = events.subscribe(execution_id=execution_id, pipeline=pipeline)
        except ConfigurationError as exc:
            return api_error(503, "E625", exc.message, {}, {"Retry-After": "5"})

        async def stream() -> AsyncIterator[str]:
            with sub:
                yield ": connected\n\n"
                while True:
                    event = await sub.next(keepalive)
                    if event is None:
                        if sub.closed:
                            return
                        if await request.is_disconnected():
                            return
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: {event['type']}\ndata: {_json(event)}\n\n"
                    if event["type"] == "dropped":
                        return

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})


def _register_graph(app: FastAPI, state: ServerState) -> None:
    @app.get("/pipelines/{ref}/graph", tags=["pipelines"], response_model=None,
             responses={**ERRORS, **NOT_FOUND})
    def pipeline_graph(ref: str) -> Response | dict[str, Any]:
        """The pipeline's DAG: inputs, module calls, outputs and the edges between them."""
        from constellation.core.graph import graph_of

        found = state.find(ref)
        if found is None:
            return api_error(404, "E601", f"no pipeline {ref!r}", {"ref": ref})
        return graph_of(found[0].spec).as_dict()


def _register_dashboard(app: FastAPI) -> None:
    page = resources.files("constellation.http").joinpath("static/dashboard.html")
    html = page.read_text(encoding="utf-8")

    @app.get("/dashboard", tags=["health"], response_class=HTMLResponse,
             include_in_schema=False)
    async def dashboard_page() -> HTMLResponse:
        """The dashboard (a static page over this API)."""
        return HTMLResponse(html, headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                       "style-src 'unsafe-inline'; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff"})
