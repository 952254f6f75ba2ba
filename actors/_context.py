"""CallContext: what a module that declares a ``ctx`` parameter receives."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors._handle import Execution

__all__ = ["CallContext"]


class CallContext:
    """The context of one module call.

    Attributes:
        execution_id: the execution the call belongs to.
        node: the node's name.
        attempt: 1 for the first call, 2 for the first retry, ...
    """

    __slots__ = ("_handle", "attempt", "execution_id", "node")

    def __init__(self, handle: Execution, node: str, attempt: int) -> None:
        self._handle = handle
        self.execution_id = handle.execution_id
        self.node = node
        self.attempt = attempt

    @property
    def cancelled(self) -> bool:
        """Whether the execution has ended (cancelled, timed out, failed elsewhere): a
        long-running module should stop and return."""
        return self._handle.done()

    @property
    def deadline(self) -> float | None:
        """The execution's deadline on ``time.monotonic()``'s clock, if it has one."""
        return self._handle.deadline

    def __repr__(self) -> str:
        return f"<CallContext {self.execution_id} {self.node} attempt {self.attempt}>"
