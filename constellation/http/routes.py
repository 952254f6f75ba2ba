"""The endpoints of the HTTP API (see docs/http-api.md)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from typing import TYPE_CHECKING, Any

from fastapi import Query, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from constellation.actors._handle import DEADLINE_GRACE
from constellation.core.options import Priority
from constellation.core.results import ExecutionStatus
from constellation.core.types import from_json, render, to_json
from constellation.engine import LifecycleState
from constellation.http.middleware import ClientGone, api_error
from constellation.http.middleware import JSONBody as JSONResponse
from constellation.http.models import (
    CompileRequest,
    CompileResponse,
    ErrorBody,
    ExecuteRequest,
    ExecutionList,
    ExecutionRecordBody,
    ExecutionResponse,
    ModuleList,
    PipelineDetail,
    PipelineList,
    ResumeRequest,
    RunRequest,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from constellation.actors._handle import Execution
    from constellation.core.results import ExecutionResult
    from constellation.engine import Pipeline
    from constellation.http.app import ServerState
    from constellation.spi import ExecutionRecord

__all__ = ["register_routes"]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": why} for status, why in (
        (400, "bad request: invalid JSON, wrong input types, a compile error"),
        (401, "missing or unknown API key (when keys are configured)"),
        (403, "the key's role may not do this"),
        (413, "request body too large"),
        (429, "rate limit exceeded (Retry-After) or scheduler queue full"),
        (503, "the server is draining or stopped"),
    )}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such pipeline or execution"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "refused: the stored pipelines conflict "
                                             "(E705, details.reason)"}}


def _types(mapping: dict[str, Any]) -> dict[str, str]:
    return {n: render(t) if t is not None else "Any" for n, t in mapping.items()}


def _inputs(pipeline: Pipeline, raw: dict[str, Any]) -> dict[str, Any]:
    types = pipeline.inputs
    return {n: from_json(types[n], v, f"input '{n}'") if n in types else v
            for n, v in raw.items()}


def _result_body(pipeline: Pipeline, result: ExecutionResult) -> dict[str, Any]:
    out_types = pipeline.outputs
    return {
        "execution_id": result.execution_id, "pipeline": result.pipeline,
        "structural_hash": result.structural_hash, "status": result.status.value,
        "outputs": {n: to_json(t, v) if (t := out_types.get(n)) is not None else v
                    for n, v in result.outputs.items()},
        "errors": [jsonable(e.to_dict()) for e in result.errors],
        "missing_inputs": dict(result.missing_inputs), "duration_ms": result.duration_ms,
    }


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (anything else rendered with ``str``)."""
    return json.loads(json.dumps(value, default=str))


def _no_pipeline(ref: str) -> Response:
    return api_error(404, "E601", f"no pipeline {ref!r}", {"ref": ref})


def _no_execution(execution_id: str, what: str = "execution") -> Response:
    return api_error(404, "E602", f"no {what} {execution_id!r}",
                     {"execution_id": execution_id})


def _pending_body(pipeline: Pipeline, execution: Execution) -> dict[str, Any]:
    return {"execution_id": execution.execution_id, "pipeline": pipeline.name,
            "structural_hash": pipeline.structural_hash,
            "status": execution.status.value, "outputs": {}, "errors": [],
            "missing_inputs": {}, "duration_ms": 0.0}


def _record_body(record: ExecutionRecord) -> dict[str, Any]:
    return {"execution_id": record.execution_id, "pipeline": record.pipeline,
            "structural_hash": record.structural_hash, "status": record.status,
            "inputs": dict(record.inputs), "outputs": dict(record.outputs),
            "errors": jsonable(list(record.errors)), "nodes": jsonable(dict(record.nodes)),
            "started_at": record.started_at, "ended_at": record.ended_at,
            "resumable": record.status == "suspended" and record.snapshot is not None}


def _summary(pipeline: Pipeline, compiled_at: float, version: int | None = None,
             aliases: list[str] | None = None) -> dict[str, Any]:
    return {"name": pipeline.name, "structural_hash": pipeline.structural_hash,
            "syntactic_hash": pipeline.syntactic_hash, "compiled_at": compiled_at,
            "modules": len(pipeline.plan.nodes), "inputs": _types(pipeline.inputs),
            "outputs": _types(pipeline.outputs), "version": version,
            "aliases": aliases or []}


def register_routes(app: FastAPI, state: ServerState) -> None:
    """Add every endpoint to ``app``."""
    engine = state.engine

    def submit(pipeline: Pipeline, raw_inputs: dict[str, Any], timeout: float | None,
               priority: int | str | None, run_async: bool) -> tuple[Execution, Response | None]:
        # On the event loop: checking the inputs and queueing never block. (The state
        # submits: a canary-routed run is counted on its side when it ends.)
        execution = state.submit(pipeline, _inputs(pipeline, raw_inputs), timeout=timeout,
                                 priority=Priority.NORMAL if priority is None else priority)
        if not run_async:
            return execution, None
        with state.lock:
            state.live[execution.execution_id] = execution
        execution.add_done_callback(lambda r: _forget(state, r.execution_id))
        return execution, JSONResponse(_pending_body(pipeline, execution), status_code=202)

    async def start(pipeline: Pipeline, raw_inputs: dict[str, Any], timeout: float | None,
                    priority: int | str | None, run_async: bool, request: Request
                    ) -> Response:
        execution, accepted = submit(pipeline, raw_inputs, timeout, priority, run_async)
        if accepted is not None:
            return accepted
        return await answer(pipeline, execution, timeout, request)

    async def answer(pipeline: Pipeline, execution: Execution, timeout: float | None,
                     request: Request) -> Response:
        # The execution's result, awaited on the loop (no thread held), as the response.
        limit = engine.default_timeout if timeout is None else min(timeout,
                                                                   engine.default_timeout)
        result = await _outcome(execution, request, limit)
        if result.status is ExecutionStatus.CANCELLED and \
                engine.state is not LifecycleState.RUNNING:
            # Cancelled because the server is stopping: retry elsewhere (it is recorded).
            return api_error(503, "E402", "the server shut down before the execution "
                                          "finished; it was cancelled",
                             {"execution_id": execution.execution_id, "status": "cancelled"})
        return JSONResponse(_result_body(pipeline, result))

    @app.post("/compile", response_model=CompileResponse, responses=ERRORS, tags=["pipelines"])
    async def compile_pipeline(body: CompileRequest, request: Request) -> dict[str, Any]:
        """Compile source; store it as a version of its name (a new structural hash
        adds a version and makes it current; a known one changes nothing)."""
        pipeline = await state.compile(body.source, body.name or "pipeline", request)
        version = await run_in_threadpool(state.add, pipeline, body.source)
        return {"name": pipeline.name, "version": version,
                "structural_hash": pipeline.structural_hash,
                "syntactic_hash": pipeline.syntactic_hash, "inputs": _types(pipeline.inputs),
                "outputs": _types(pipeline.outputs),
                "warnings": [{"code": w.code, "message": w.message, "line": w.line,
                              "column": w.column, "severity": w.severity}
                             for w in pipeline.warnings]}

    @app.post("/run", response_model=ExecutionResponse, tags=["executions"],
              responses={**ERRORS, 202: {"model": ExecutionResponse,
                                         "description": "accepted (async=true)"}})
    async def run(body: RunRequest, request: Request,
                  run_async: bool = Query(False, alias="async")) -> Response:
        """Compile and run source; ``?async=true`` returns the execution id at once."""
        pipeline = await state.compile(body.source, body.name or "pipeline", request)
        return await start(pipeline, body.inputs, body.timeout, body.priority, run_async,
                           request)

    @app.post("/execute", response_model=ExecutionResponse, tags=["executions"],
              responses={**ERRORS, **NOT_FOUND, 202: {"model": ExecutionResponse,
                                                      "description": "accepted (async)"}})
    async def execute(body: ExecuteRequest, request: Request,
                      run_async: bool = Query(False, alias="async")) -> Response:
        """Run a stored pipeline, by name (its current version, or its canary's
        candidate for the canary's share of runs), alias or ``sha256:<hash>``."""
        # A ref run recently is answered from memory, on the loop; otherwise off the
        # loop: the pipeline store (SQLite, PostgreSQL) may be read.
        pipeline = state.find_cached(body.ref)
        if pipeline is None:
            found = await asyncio.get_running_loop().run_in_executor(
                state.lookups, functools.partial(state.find, body.ref, route=True))
            if found is None:
                return _no_pipeline(body.ref)
            pipeline = found[0]
        return await start(pipeline, body.inputs, body.timeout, body.priority, run_async,
                           request)

    @app.get("/pipelines", response_model=PipelineList, responses=ERRORS, tags=["pipelines"])
    def pipelines() -> dict[str, Any]:
        """Stored pipelines: every name's current version."""
        return {"pipelines": [_summary(p, at, v, a) for p, at, v, a in state.listing()]}

    @app.get("/pipelines/{ref}", response_model=PipelineDetail,
             responses={**ERRORS, **NOT_FOUND}, tags=["pipelines"])
    def pipeline_detail(ref: str) -> Response | dict[str, Any]:
        """One pipeline: input and output schema, module calls, source."""
        found = state.find(ref)
        if found is None:
            return _no_pipeline(ref)
        pipeline, at, source = found
        version, aliases = state.describe(ref, pipeline)
        return {**_summary(pipeline, at, version, aliases), "source": source,
                "module_calls": [{"node": n.name, "module": n.module.name}
                                 for n in pipeline.plan.nodes]}

    @app.delete("/pipelines/{ref}", status_code=204,
                responses={**ERRORS, **NOT_FOUND, **CONFLICT}, tags=["pipelines"])
    def delete_pipeline(ref: str) -> Response:
        """Delete a name (all its versions and its canary), an alias, or a
        ``sha256:`` pipeline nothing refers to any more (admin)."""
        if not state.remove(ref):
            return _no_pipeline(ref)
        return Response(status_code=204)

    @app.get("/executions", response_model=ExecutionList, responses=ERRORS,
             tags=["executions"])
    def executions(pipeline: str | None = None,
                   status: ExecutionStatus | None = None,
                   limit: int = Query(50, ge=1, le=1000),
                   offset: int = Query(0, ge=0, le=10_000_000)) -> dict[str, Any]:
        """Recorded executions, newest first, filtered and paged."""
        records = engine.executions(pipeline=pipeline, status=status, limit=limit,
                                    offset=offset)
        return {"executions": [_record_body(r) for r in records], "limit": limit,
                "offset": offset}

    @app.get("/executions/{execution_id}", response_model=ExecutionRecordBody,
             responses={**ERRORS, **NOT_FOUND}, tags=["executions"])
    def execution(execution_id: str) -> Response | dict[str, Any]:
        """One recorded (or still running) execution."""
        record = engine.execution(execution_id)
        if record is not None:
            return _record_body(record)
        with state.lock:
            live = state.live.get(execution_id)
        if live is not None:  # queued or running: not recorded yet
            return {"execution_id": execution_id, "pipeline": live.pipeline,
                    "structural_hash": live.plan.structural_hash,
                    "status": live.status.value, "inputs": {}, "outputs": {},
                    "errors": [], "nodes": {}, "started_at": 0.0, "ended_at": 0.0,
                    "resumable": False}
        return _no_execution(execution_id)

    @app.post("/executions/{execution_id}/cancel", status_code=202,
              responses={**ERRORS, **NOT_FOUND}, tags=["executions"])
    def cancel(execution_id: str) -> Response:
        """Cancel a running execution (started with ``async=true``)."""
        with state.lock:
            live = state.live.get(execution_id)
        if live is None:
            if engine.execution(execution_id) is not None:
                return JSONResponse({"execution_id": execution_id, "cancelled": False},
                                    status_code=202)
            return _no_execution(execution_id, "running execution")
        return JSONResponse({"execution_id": execution_id, "cancelled": live.cancel()},
                            status_code=202)

    @app.post("/executions/{execution_id}/resume", response_model=ExecutionResponse,
              responses={**ERRORS, **NOT_FOUND,
                         409: {"model": ErrorBody, "description": "not resumable"}},
              tags=["executions"])
    async def resume(execution_id: str, body: ResumeRequest, request: Request) -> Response:
        """Give a suspended execution its missing inputs and wait for the result."""

        def claim() -> Response | tuple[Pipeline, Execution]:
            # Off the loop: the record, the stored pipeline and the resume claim are
            # storage reads and writes (SQLite, PostgreSQL).
            record = engine.execution(execution_id)
            if record is None:
                return _no_execution(execution_id)
            found = state.find(f"sha256:{record.structural_hash}")
            if found is None:
                return api_error(409, "E204", "the pipeline of this execution is not "
                                              "stored on this server any more",
                                 {"execution_id": execution_id,
                                  "reason": "unknown_pipeline"})
            pipeline = found[0]
            return pipeline, engine.resume(execution_id, _inputs(pipeline, body.inputs),
                                           pipeline=pipeline)

        claimed = await asyncio.get_running_loop().run_in_executor(state.lookups, claim)
        if isinstance(claimed, Response):
            return claimed
        # Awaited on the loop, as /run and /execute: no thread waits for the result.
        return await answer(*claimed, None, request)

    @app.get("/modules", response_model=ModuleList, responses=ERRORS, tags=["modules"])
    def modules() -> dict[str, Any]:
        """Registered modules and their signatures."""
        return {"modules": [{"name": m.name, "version": m.version,
                             "description": m.description or "",
                             "inputs": _types(dict(m.inputs)), "output": render(m.output)}
                            for m in engine.modules.values()]}

    def health_body() -> tuple[int, dict[str, Any]]:
        ok = engine.state is LifecycleState.RUNNING
        return (200 if ok else 503), {"status": "ok" if ok else engine.state.value}

    # Health and metrics run on the event loop itself (async, nothing blocking): no
    # load on the thread pool or the engine can delay them.
    @app.get("/health", tags=["health"], responses={503: {"description": "not running"}})
    async def health() -> Response:
        """``{"status": "ok"}``; 503 while draining or stopped."""
        code, body = health_body()
        return JSONResponse(body, status_code=code)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"], responses={503: {"description": "draining"}})
    async def ready() -> Response:
        """Ready for work: 503 while draining or stopped."""
        code, body = health_body()
        return JSONResponse(body, status_code=code)

    @app.get("/health/detail", tags=["health"])
    def detail() -> dict[str, Any]:
        """Scheduler, queue, breakers, storage (with the record writer's counters) and
        event delivery."""
        sched = engine.scheduler
        try:
            engine.executions(limit=1)
            storage: dict[str, Any] = {"ok": True}
        except Exception as exc:  # a health page reports, never fails
            storage = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        storage["backend"] = type(engine._storage).__name__
        health = engine.health()
        storage["records"] = health["records"]  # backlog, written, failed, dropped ...
        return {"status": engine.state.value, "uptime_s": round(time.time() - state.started, 3),
                "scheduler": {"inflight": engine.inflight_count,
                              "queued": engine.queued_count,
                              "rejected": engine.rejected_count,
                              "max_concurrency": sched.max_concurrency,
                              "max_queue_size": sched.max_queue_size},
                "circuit_breakers": engine.circuit_breakers(), "storage": storage,
                "events": health["events"], "pipelines": len(state.pipelines)}

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        if state.metrics is None:
            return PlainTextResponse("", media_type="text/plain; version=0.0.4")
        return Response(state.metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")


async def _outcome(execution: Execution, request: Request, limit: float) -> ExecutionResult:
    """The execution's result, awaited on the event loop: no thread waits for it.

    The engine completes an asyncio future (where the execution ends, through
    ``call_soon_threadsafe``). If the client disconnects first, the request ends
    (ClientGone) and nothing of it is left waiting; the execution runs on and is recorded.
    Bounded: every execution ends by its deadline (``limit`` seconds after it was
    submitted at most); should the engine not end it within the grace period after
    that, ``Execution.result`` (which ends an overdue execution itself) is asked.

    Raises:
        ClientGone: the client went away.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ExecutionResult] = loop.create_future()

    def settle(result: ExecutionResult) -> None:
        if not future.done():
            future.set_result(result)

    def done(result: ExecutionResult) -> None:  # on the engine's callback thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, result)

    execution._add_waker(done)  # only wakes the loop: called where the execution ends
    gone = loop.create_task(_disconnected(request))

    def client_left(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        task.exception()  # retrieved: a receive that failed means the client is gone too
        if not future.done():
            future.set_exception(ClientGone())

    gone.add_done_callback(client_left)

    def overdue() -> None:
        if not future.done():
            future.set_exception(TimeoutError())

    timer = loop.call_later(limit + DEADLINE_GRACE + 1.0, overdue)
    try:
        return await future
    except TimeoutError:
        return await run_in_threadpool(execution.result)  # ends it, it is overdue
    finally:
        timer.cancel()
        gone.cancel()


async def _disconnected(request: Request) -> None:
    # The body has been read: the next message is the disconnect (or nothing).
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _forget(state: ServerState, execution_id: str) -> None:
    with state.lock:
        state.live.pop(execution_id, None)


