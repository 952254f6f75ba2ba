"""Stored-pipeline management over HTTP -- versions, rollback, aliases, canaries,
reloading ``--pipelines-dir`` -- plus direct module calls and namespaces (see
docs/http-api.md). Everything goes through ``engine.pipelines`` (the engine's
PipelineStore); engine errors keep their codes (E702-E706 are 404 or 409).

Roles (``constellation.http.middleware.required_role``): every change here is admin,
``POST /modules/{name}/invoke`` is execute, reads are readonly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastapi import Path, Request, Response
from starlette.concurrency import run_in_threadpool

from constellation.core.options import Priority
from constellation.core.results import ExecutionStatus
from constellation.core.types import from_json, render, to_json
from constellation.http.middleware import api_error
from constellation.http.models import ErrorBody
from constellation.http.pipeline_models import (
    AliasList,
    AliasRequest,
    AliasResponse,
    CanaryBody,
    CanaryRequest,
    CurrentVersion,
    InvokeRequest,
    InvokeResponse,
    NamespaceDetail,
    NamespaceList,
    ReloadResponse,
    VersionList,
)
from constellation.http.routes import CONFLICT, ERRORS, jsonable

if TYPE_CHECKING:
    from fastapi import FastAPI

    from constellation._canary import CanaryStatus
    from constellation.core.modules import ModuleDefinition
    from constellation.engine import Pipeline
    from constellation.http.app import ServerState

__all__ = ["register_pipeline_routes"]

TAGS: list[str | Any] = ["pipelines"]
UNKNOWN: dict[int | str, dict[str, Any]] = {404: {
    "model": ErrorBody, "description": "no such pipeline, version, hash or canary "
                                       "(E702-E704, E706)"}}
MANAGE: dict[int | str, dict[str, Any]] = {**ERRORS, **UNKNOWN, **CONFLICT}

_HOF = {"filter": ("(items: List<T>, f: (T) => Boolean)", "List<T>",
                   "the items for which f is true"),
        "map": ("(items: List<T>, f: (T) => U)", "List<U>", "f of every item"),
        "all": ("(items: List<T>, f: (T) => Boolean)", "Boolean",
                "whether f is true for every item"),
        "any": ("(items: List<T>, f: (T) => Boolean)", "Boolean",
                "whether f is true for some item")}

VERSION = Path(ge=1, le=2**62, description="a version of the name (1, 2, 3 ...)")


def _canary_body(status: CanaryStatus) -> dict[str, Any]:
    body = status.as_dict()
    for side in ("current", "candidate"):  # JSON has no NaN or infinity
        for k in ("mean_ms", "max_ms"):
            if not math.isfinite(body[side][k]):
                body[side][k] = 0.0
    return body


def register_pipeline_routes(app: FastAPI, state: ServerState) -> None:
    """Add the management, invoke and namespace endpoints to ``app``."""
    engine = state.engine
    catalog = engine.pipelines

    def current_body(name: str) -> dict[str, Any]:
        current = catalog.current(name)
        return {"name": name, "version": current.version,
                "structural_hash": current.structural_hash}

    # --- versions and rollback ----------------------------------------------------------

    @app.get("/pipelines/{name}/versions", response_model=VersionList,
             responses={**ERRORS, **UNKNOWN}, tags=TAGS)
    def versions(name: str) -> dict[str, Any]:
        """The name's versions, oldest first, and which one is current."""
        listed = catalog.versions(name)
        current = catalog.current(name).version
        return {"name": name, "current": current, "versions": [
            {"version": v.version, "structural_hash": v.structural_hash,
             "created_at": v.created_at, "current": v.version == current}
            for v in listed]}

    @app.delete("/pipelines/{name}/versions/{version}", status_code=204,
                responses=MANAGE, tags=TAGS)
    def delete_version(name: str, version: int = VERSION) -> Response:
        """Delete one version (not the current one: 409, roll back first) (admin)."""
        catalog.delete(name, version)
        return Response(status_code=204)

    @app.post("/pipelines/{name}/rollback", response_model=CurrentVersion,
              responses=MANAGE, tags=TAGS)
    def rollback(name: str) -> dict[str, Any]:
        """Make the newest version before the current one current (409 when there is
        none) (admin)."""
        catalog.rollback(name)
        return current_body(name)

    @app.post("/pipelines/{name}/rollback/{version}", response_model=CurrentVersion,
              responses=MANAGE, tags=TAGS)
    def rollback_to(name: str, version: int = VERSION) -> dict[str, Any]:
        """Make ``version`` current (admin)."""
        catalog.rollback(name, version)
        return current_body(name)

    # --- aliases --------------------------------------------------------------------------

    @app.put("/pipelines/{name}/alias", response_model=AliasResponse, responses=MANAGE,
             tags=TAGS)
    def set_alias(name: str, body: AliasRequest) -> dict[str, Any]:
        """Point the alias ``name`` at a stored pipeline (creating or repointing it);
        ``name`` must not be a versioned pipeline (409) (admin)."""
        h = catalog.set_alias(name, body.structural_hash)
        return {"alias": name, "structural_hash": h}

    @app.get("/aliases", response_model=AliasList, responses=ERRORS, tags=TAGS)
    def aliases() -> dict[str, Any]:
        """Every alias and the structural hash it points at."""
        return {"aliases": catalog.aliases()}

    # --- canaries -------------------------------------------------------------------------

    @app.post("/pipelines/{name}/canary", response_model=CanaryBody, responses=MANAGE,
              tags=TAGS)
    async def start_canary(name: str, body: CanaryRequest, request: Request
                           ) -> dict[str, Any]:
        """Send ``weight`` of the name's runs by name (``/execute``) to a candidate: a
        version, a stored ``sha256:`` hash, or source (compiled, saved as a version
        that is not made current). Replaces any canary of the name (admin)."""
        candidate: int | str | Pipeline
        if body.source is not None:
            candidate = await state.compile(body.source, name, request)
        elif body.version is not None:
            candidate = body.version
        else:
            candidate = str(body.structural_hash)

        def start() -> dict[str, Any]:
            catalog.canary(name, candidate, body.weight)
            return _canary_body(catalog.canary_status(name))

        return await run_in_threadpool(start)

    @app.get("/pipelines/{name}/canary", response_model=CanaryBody,
             responses={**ERRORS, **UNKNOWN}, tags=TAGS)
    def canary_status(name: str) -> dict[str, Any]:
        """The canary's weight and, for each side, runs, failures and latency as
        counted by this daemon."""
        return _canary_body(catalog.canary_status(name))

    @app.post("/pipelines/{name}/canary/promote", response_model=CurrentVersion,
              responses=MANAGE, tags=TAGS)
    def promote(name: str) -> dict[str, Any]:
        """Make the candidate the current version and end the canary (admin)."""
        catalog.promote(name)
        return current_body(name)

    @app.post("/pipelines/{name}/canary/rollback", response_model=CanaryBody,
              responses=MANAGE, tags=TAGS)
    def rollback_canary(name: str) -> dict[str, Any]:
        """End the canary: the current version gets every run again; answers its last
        counts (admin)."""
        return _canary_body(catalog.rollback_canary(name))

    @app.delete("/pipelines/{name}/canary", response_model=CanaryBody, responses=MANAGE,
                tags=TAGS)
    def delete_canary(name: str) -> dict[str, Any]:
        """The same as ``POST /pipelines/{name}/canary/rollback`` (admin)."""
        return _canary_body(catalog.rollback_canary(name))

    # --- reloading --pipelines-dir --------------------------------------------------------

    @app.post("/pipelines/{name}/reload", response_model=ReloadResponse,
              responses={**ERRORS, **CONFLICT, 404: {
                  "model": ErrorBody, "description": "no file <name>.cst (E620)"}},
              tags=TAGS)
    def reload(name: str) -> Response | dict[str, Any]:
        """Compile ``<pipelines-dir>/<name>.cst`` again; a changed source adds a version
        and makes it current. A file that does not compile is a 400 (with its line and
        column) and changes nothing (admin)."""
        loader = state.pipelines_dir
        if loader is None:
            return api_error(409, "E621", "this server has no --pipelines-dir to reload "
                                          "from", {"name": name})
        path = loader.path_of(name)
        if path is None:
            return api_error(404, "E620", f"no pipeline file {name}.cst in "
                                          f"{loader.directory}", {"name": name})
        result = loader.load(path)
        if result.error is not None:
            status = 409 if result.error["code"] == "E705" else \
                503 if result.error["code"] in ("E701", "E402") else 400
            return api_error(status, result.error["code"], result.location(),
                             jsonable(result.error["details"]))
        return {"name": result.name, "file": result.file, "version": result.version,
                "structural_hash": result.structural_hash, "changed": result.changed}

    # --- modules and namespaces -----------------------------------------------------------

    invokers: dict[tuple[str, int], Pipeline] = {}

    def invoker(mdef: ModuleDefinition) -> Pipeline:
        key = (mdef.name, id(mdef))
        found = invokers.get(key)
        if found is None:
            from constellation.core.builder import PipelineBuilder

            b = PipelineBuilder(f"module:{mdef.name}")
            refs = {n: b.input(n, t) for n, t in mdef.inputs.items()}
            b.output("output", b.call(mdef.name, refs, node=mdef.name))
            found = invokers[key] = engine.compile(b.build())
            if len(invokers) > 1024:
                invokers.clear()
        return found

    @app.post("/modules/{name}/invoke", response_model=InvokeResponse,
              responses={**ERRORS, 404: {"model": ErrorBody,
                                         "description": "no such module (E623)"}},
              tags=["modules"])
    def invoke(name: str, body: InvokeRequest) -> Response | dict[str, Any]:
        """Call one module with its inputs (a one-node pipeline: inputs checked, call
        options applied, recorded as an execution of ``module:<name>``) (execute)."""
        mdef = engine.modules.get(name)
        if mdef is None:
            return api_error(404, "E623", f"no module {name!r}", {"module": name})
        missing = [n for n in mdef.inputs if n not in body.inputs]
        if missing:
            return api_error(400, "E201", f"module {name} needs input(s) "
                                          f"{', '.join(missing)}",
                             {"module": name, "missing": missing})
        pipeline = invoker(mdef)
        types = pipeline.inputs
        inputs = {n: from_json(types[n], v, f"input '{n}'") if n in types else v
                  for n, v in body.inputs.items()}
        result = engine.submit(pipeline, inputs, timeout=body.timeout,
                               priority=Priority.NORMAL if body.priority is None
                               else body.priority).result()
        done = result.status is ExecutionStatus.COMPLETED and "output" in result.outputs
        return {"module": name, "execution_id": result.execution_id,
                "status": result.status.value, "success": done,
                "output": to_json(mdef.output, result.outputs["output"]) if done else None,
                "errors": [jsonable(e.to_dict()) for e in result.errors],
                "duration_ms": result.duration_ms}

    def namespaces_now() -> dict[str, list[dict[str, Any]]]:
        from constellation.stdlib import HIGHER_ORDER

        found: dict[str, list[dict[str, Any]]] = {}
        for m in engine.modules.values():
            ns, dot, short = m.name.rpartition(".")
            if not dot or not ns:
                continue
            inputs = {n: render(t) for n, t in m.inputs.items()}
            params = ", ".join(f"{n}: {t}" for n, t in inputs.items())
            found.setdefault(ns, []).append({
                "name": short, "qualified": m.name, "inputs": inputs,
                "signature": f"{short}({params}) -> {render(m.output)}",
                "output": render(m.output), "description": m.description or "",
                "inline": False})
        for short, full in HIGHER_ORDER.items():
            params, out, what = _HOF[short]
            found.setdefault(full.rpartition(".")[0], []).append({
                "name": short, "qualified": full,
                "inputs": {"items": "List<T>", "f": params.split("f: ", 1)[1][:-1]},
                "signature": f"{short}{params} -> {out}", "output": out,
                "description": what, "inline": True})
        return {ns: sorted(fs, key=lambda f: f["name"]) for ns, fs in sorted(found.items())}

    @app.get("/namespaces", response_model=NamespaceList, responses=ERRORS,
             tags=["modules"])
    def namespaces() -> dict[str, Any]:
        """Namespaces (``stdlib.math`` ..., and those of dotted module names) and the
        functions in each."""
        return {"namespaces": [{"name": ns, "functions": [f["name"] for f in fs]}
                               for ns, fs in namespaces_now().items()]}

    @app.get("/namespaces/{namespace}", response_model=NamespaceDetail,
             responses={**ERRORS, 404: {"model": ErrorBody,
                                        "description": "no such namespace (E624)"}},
             tags=["modules"])
    def namespace(namespace: str) -> Response | dict[str, Any]:
        """The signatures of a namespace's functions."""
        found = namespaces_now().get(namespace)
        if found is None:
            return api_error(404, "E624", f"no namespace {namespace!r}",
                             {"namespace": namespace})
        return {"name": namespace, "functions": found}
