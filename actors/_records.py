"""Turning a finished execution into the ExecutionRecord that storage keeps."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from constellation.core.types import to_json
from constellation.spi._storage import ExecutionRecord

if TYPE_CHECKING:
    from constellation.actors._handle import Execution
    from constellation.core.results import ExecutionResult
    from constellation.spi._storage import ExecutionStorage

__all__ = ["save_execution"]

logger = logging.getLogger("constellation.runtime")


def build_record(handle: Execution, result: ExecutionResult, ended_at: float
                 ) -> ExecutionRecord:
    """The JSON-ready record of a finished execution."""
    plan = handle.plan
    in_types = plan.input_types
    out_types = {name: plan.data_types[idx] for name, idx in plan.outputs}
    inputs = {n: to_json(in_types[n], v) if n in in_types else v
              for n, v in handle.inputs.items()}
    outputs = {n: v if (t := out_types.get(n)) is None else to_json(t, v)
               for n, v in result.outputs.items()}
    nodes = {name: {"module": r.module, "status": r.status.value, "attempts": r.attempts,
                    "duration_ms": r.duration_ms}
             for name, r in result.modules.items()}
    snapshot = None
    if handle._snapshot is not None:
        index = {n.name: n for n in plan.nodes}
        snapshot = {"nodes": {
            name: to_json(t, v) if (t := plan.data_types[index[name].output]) is not None
            else v for name, v in handle._snapshot.items()}}
    return ExecutionRecord(
        execution_id=result.execution_id, pipeline=result.pipeline,
        structural_hash=result.structural_hash, status=result.status.value,
        inputs=inputs, outputs=outputs, errors=tuple(e.to_dict() for e in result.errors),
        nodes=nodes, started_at=ended_at - result.duration_ms / 1000.0, ended_at=ended_at,
        snapshot=snapshot)


def save_execution(storage: ExecutionStorage, handle: Execution, result: ExecutionResult
                   ) -> None:
    """Record a finished execution; a storage failure is logged, never raised."""
    ended_at = time.time()
    try:
        deferred = getattr(storage, "save_deferred", None)
        if deferred is not None:
            deferred(result.execution_id, result.pipeline, result.status.value,
                     ended_at - result.duration_ms / 1000.0,
                     lambda: build_record(handle, result, ended_at))
        else:
            storage.save(build_record(handle, result, ended_at))
    except Exception:
        logger.exception("could not record execution %s in %s", result.execution_id,
                         type(storage).__name__)
