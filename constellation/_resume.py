"""Resuming suspended executions (``Constellation.resume``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constellation.core.errors import InputTypeError, ResumeError
from constellation.core.types import from_json

if TYPE_CHECKING:
    from collections.abc import Mapping

    from constellation.actors._plan import ExecutionPlan
    from constellation.engine import Constellation, Pipeline

__all__ = ["prepare_resume"]


def prepare_resume(engine: Constellation, execution_id: str, inputs: Mapping[str, Any],
                   pipeline: Any) -> tuple[ExecutionPlan, dict[str, Any], dict[int, Any]]:
    """Check a resume request; return the plan, every input, and the preset node outputs.

    Raises:
        ResumeError: see ``Constellation.resume``.
    """
    record = engine._storage.load(execution_id)
    if record is None:
        raise ResumeError(f"no recorded execution {execution_id!r}",
                          details={"execution_id": execution_id, "reason": "not_found"})
    if record.status != "suspended" or record.snapshot is None:
        raise ResumeError(f"execution {execution_id} is {record.status}, not suspended",
                          details={"execution_id": execution_id, "reason": "not_suspended",
                                   "status": record.status})
    target = _pipeline(engine, record.pipeline, record.structural_hash, pipeline,
                       execution_id)
    plan = target.plan
    again = sorted(set(inputs) & set(record.inputs))
    if again:
        raise ResumeError(f"execution {execution_id} already has input(s) "
                          f"{', '.join(again)}", details={"execution_id": execution_id,
                                                          "reason": "input_already_given",
                                                          "inputs": again})
    checked = engine._check_inputs(plan, inputs)
    try:
        for name, data in record.inputs.items():
            checked[name] = from_json(plan.input_types[name], data, f"input '{name}'")
        preset: dict[int, Any] = {}
        stored = record.snapshot.get("nodes", {})
        for node in plan.nodes:
            if node.name in stored:
                t = plan.data_types[node.output]
                value = stored[node.name]
                preset[node.index] = value if t is None else from_json(
                    t, value, f"stored output of '{node.name}'")
    except (InputTypeError, KeyError) as exc:
        raise ResumeError(f"the stored state of execution {execution_id} does not fit the "
                          f"pipeline: {exc}", details={"execution_id": execution_id,
                                                       "reason": "corrupt_snapshot"}) from exc
    return plan, checked, preset


def _pipeline(engine: Constellation, name: str, structural_hash: str, given: Any,
              execution_id: str) -> Pipeline:
    def changed(current: str) -> ResumeError:
        return ResumeError(
            f"pipeline '{name}' changed since execution {execution_id} was suspended "
            f"(hash {structural_hash[:12]} then, {current[:12]} now); it cannot be resumed",
            details={"execution_id": execution_id, "reason": "pipeline_changed",
                     "recorded_hash": structural_hash, "current_hash": current})

    if given is not None:
        compiled = engine.compile(given)
        if compiled.structural_hash != structural_hash:
            raise changed(compiled.structural_hash)
        return compiled
    with engine._compile_lock:
        latest = engine._latest.get(name)
        target = engine._by_hash.get(structural_hash)
    if latest is not None and latest != structural_hash:
        raise changed(latest)
    if target is None:
        raise ResumeError(
            f"this engine has not compiled pipeline '{name}' (hash {structural_hash[:12]}); "
            "pass pipeline=... to resume", details={"execution_id": execution_id,
                                                    "reason": "unknown_pipeline"})
    return target
