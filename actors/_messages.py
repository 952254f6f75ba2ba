"""Messages between the runtime's actors. All immutable and without a ``__dict__``.

Most are frozen, slotted dataclasses. The two sent once per module call
(``CallFinished``, ``NodeFinished``) are NamedTuples instead: equally immutable, but
built in 0.44 µs against 1.07 µs for a frozen dataclass of five fields on these
machines, and a node sends two of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from constellation.actors._handle import Execution
    from constellation.core.errors import ConstellationError

__all__ = [
    "CallFinished",
    "CancelExecution",
    "DeadlineReached",
    "ExecutionFinished",
    "NodeFinished",
    "RunNode",
    "StartExecution",
    "SubmitExecution",
]


@dataclass(frozen=True, slots=True)
class SubmitExecution:
    """Engine → supervisor: queue this admitted execution."""

    handle: Execution


@dataclass(frozen=True, slots=True)
class ExecutionFinished:
    """Execution actor → supervisor: release the slot of this execution."""

    handle: Execution


@dataclass(frozen=True, slots=True)
class CancelExecution:
    """Anyone → supervisor or execution actor: stop this execution as CANCELLED."""

    execution_id: str


@dataclass(frozen=True, slots=True)
class DeadlineReached:
    """Timer → execution actor: the execution's deadline has passed."""

    execution_id: str


@dataclass(frozen=True, slots=True)
class StartExecution:
    """Supervisor → execution actor: leave the queue and start."""


@dataclass(frozen=True, slots=True)
class RunNode:
    """Execution actor → node actor: every input is here; call the module."""

    args: dict[str, Any]


class CallFinished(NamedTuple):
    """Worker → node actor: the module call returned (``error`` is None) or failed."""

    value: Any
    error: ConstellationError | None
    duration_ms: float


class NodeFinished(NamedTuple):
    """Node actor → execution actor: the node's outcome."""

    node_index: int
    value: Any
    error: ConstellationError | None
    attempts: int
    duration_ms: float
