"""What an execution reports: status, outputs, errors and a record per module node."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConstellationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ExecutionResult", "ExecutionStatus", "NodeRecord", "NodeStatus"]


class ExecutionStatus(enum.Enum):
    """Where an execution is. All but QUEUED and RUNNING are final.

    INTERRUPTED is never the status of a result: it is what an execution *record* says
    when the process that ran it died (killed, crashed, machine lost) before it ended.
    An engine opening the storage marks such RUNNING records INTERRUPTED; those with a
    snapshot can be continued with ``engine.resume(execution_id)``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SUSPENDED = "suspended"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        """Whether the execution has ended (the result is available)."""
        return self not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)


class NodeStatus(enum.Enum):
    """Where one module node of an execution is."""

    PENDING = "pending"  # waiting for inputs (never ran)
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # was running or ready when the execution ended early
    SKIPPED = "skipped"  # a lazy call no selective operation picked


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One module node's outcome in an execution.

    Attributes:
        node: the node's name.
        module: the module it called.
        status: how it ended.
        attempts: calls made (more than one with retries).
        duration_ms: wall time from the first call to the outcome.
        error: the error when it failed.
    """

    node: str
    module: str
    status: NodeStatus
    attempts: int = 0
    duration_ms: float = 0.0
    error: ConstellationError | None = None


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one execution.

    Attributes:
        execution_id: unique id of the execution.
        pipeline: the pipeline's name.
        structural_hash: the pipeline's structural hash.
        status: the final status.
        outputs: output name → value, for every output computed (partial unless COMPLETED).
        errors: what went wrong, with stable codes.
        modules: node name → :class:`NodeRecord`, for every module node.
        duration_ms: from start of execution (leaving the queue) to the end.
        missing_inputs: declared inputs not given → their type (SUSPENDED runs).
        queued_ms: time spent in the scheduler queue.
    """

    execution_id: str
    pipeline: str
    structural_hash: str
    status: ExecutionStatus
    outputs: Mapping[str, Any]
    errors: tuple[ConstellationError, ...] = ()
    modules: Mapping[str, NodeRecord] = field(default_factory=dict)
    duration_ms: float = 0.0
    missing_inputs: Mapping[str, str] = field(default_factory=dict)
    queued_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the execution COMPLETED."""
        return self.status is ExecutionStatus.COMPLETED

    def raise_for_status(self) -> ExecutionResult:
        """Return ``self`` if COMPLETED, else raise the first error.

        Raises:
            ConstellationError: the execution did not complete.
        """
        if self.ok:
            return self
        if self.errors:
            raise self.errors[0]
        raise ConstellationError(f"execution {self.execution_id} ended {self.status.value}")
