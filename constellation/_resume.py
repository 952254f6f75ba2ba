"""Resuming suspended and interrupted executions (``Constellation.resume``).

A resume is checked first (record, pipeline, inputs, snapshot), then *claimed*: the
stored record goes from SUSPENDED (or INTERRUPTED) to RESUMING in one compare-and-set
(``ClaimingStorage.claim``), so of two resumes racing -- threads or processes sharing
the storage -- exactly one runs; the other gets ``ResumeError`` with reason
``already_resuming``. The claimed record names this process as its owner, so a claimer
that dies before its execution starts leaves a RESUMING record that the next engine
marks INTERRUPTED (and which can be resumed again).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from constellation.core.errors import InputTypeError, ResumeError
from constellation.core.types import from_json
from constellation.spi._storage import RESUMING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from constellation.actors._plan import ExecutionPlan
    from constellation.engine import Constellation, Pipeline
    from constellation.spi._storage import ExecutionRecord

__all__ = ["claim_resume", "prepare_resume", "release_resume"]

RESUMABLE = ("suspended", "interrupted")

# How long a resume waits for the engine's own record of the execution (a SUSPENDED
# record still in the writer's backlog) to reach the storage before claiming it there.
SETTLE_TIMEOUT = 10.0


def prepare_resume(engine: Constellation, execution_id: str, inputs: Mapping[str, Any],
                   pipeline: Any
                   ) -> tuple[ExecutionRecord, ExecutionPlan, dict[str, Any], dict[int, Any]]:
    """Check a resume request; return the record, the plan, every input, and the preset
    node outputs.

    Raises:
        ResumeError: see ``Constellation.resume``.
    """
    record = engine._records.load(execution_id)
    if record is None:
        raise ResumeError(f"no recorded execution {execution_id!r}",
                          details={"execution_id": execution_id, "reason": "not_found"})
    if record.status == RESUMING or (record.status == "running" and record.snapshot
                                     and record.snapshot.get("resumed")):
        raise _already(execution_id)
    if record.status not in RESUMABLE or record.snapshot is None:
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
    return record, plan, checked, preset


def _already(execution_id: str) -> ResumeError:
    return ResumeError(f"execution {execution_id} is already being resumed",
                       details={"execution_id": execution_id, "reason": "already_resuming"})


def claim_resume(engine: Constellation, record: ExecutionRecord) -> ExecutionRecord:
    """Claim ``record`` (as loaded: SUSPENDED or INTERRUPTED) for this resume; return the
    claimed record.

    Raises:
        ResumeError: another resume claimed it first (``already_resuming``), or this
            engine's own record of it could not be written (``storage_unavailable``).
    """
    records = engine._records
    eid = record.execution_id
    if not records.settle(eid, SETTLE_TIMEOUT):
        raise ResumeError(f"the record of execution {eid} could not be written to the "
                          f"storage in {SETTLE_TIMEOUT:.0f} s; try again",
                          details={"execution_id": eid, "reason": "storage_unavailable"})
    claimed = replace(record, status=RESUMING, owner=records.owner)
    if not records.claim(claimed, record.status):
        raise _already(eid)
    return claimed


def release_resume(engine: Constellation, record: ExecutionRecord,
                   claimed: ExecutionRecord) -> None:
    """Undo a claim whose execution could not be submitted (the engine is shutting
    down, its queue is full ...): the record gets its status back."""
    try:
        engine._records.claim(record, claimed.status)
    except Exception:  # the submit's own error is the one the caller needs
        import logging

        logging.getLogger("constellation.engine").exception(
            "could not release the resume claim of execution %s", record.execution_id)


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
        # Not compiled by this engine (a restart, another process): the pipeline store
        # may have it.
        target = engine.pipelines.find(structural_hash, name)
    if target is None:
        raise ResumeError(
            f"this engine has not compiled pipeline '{name}' (hash {structural_hash[:12]}); "
            "pass pipeline=... to resume", details={"execution_id": execution_id,
                                                    "reason": "unknown_pipeline"})
    return target
