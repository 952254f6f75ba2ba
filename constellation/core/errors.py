"""The exception tree. Every error the engine raises or records is one of these.

```
ConstellationError                      E000  root; .code, .message, .details
├── ConfigurationError                  E001  a bad engine/scheduler setting
├── CompilationError                    E100  .errors: list[Diagnostic]
│   └── UnknownModuleError              E110  a pipeline calls a module nobody registered
├── InputError                          E200  bad inputs given to run/submit
│   ├── MissingInputError               E201  (recorded on SUSPENDED results)
│   ├── InputTypeError                  E202  a value does not fit the declared type
│   ├── UnknownInputError               E203  a name the pipeline does not declare
│   └── ResumeError                     E204  an execution cannot be resumed so
├── ModuleExecutionError                E300  a module raised
│   ├── ModuleOutputTypeError           E302  a module returned a value of the wrong type
│   ├── ModuleTimeoutError              E303  a module call passed its per-attempt timeout
│   └── ExecutorError                   E312  the executor refused or lost the call
├── InternalError                       E311  a runtime actor's turn raised (a bug)
├── SchedulingError                     E400
│   ├── QueueFullError                  E401  the scheduler queue is full; submit again later
│   ├── ShuttingDownError               E402  the engine is draining or stopped
│   ├── CircuitOpenError                E403  a module's circuit breaker is open
│   └── EngineFailedError               E404  the engine's supervisor failed; nothing runs
├── ExecutionCancelledError             E501  recorded on CANCELLED results
├── ExecutionTimeoutError               E502  recorded on TIMED_OUT results
└── PipelineError                       E700  stored pipelines (``engine.pipelines``)
    ├── PipelineStoreError              E701  the pipeline store failed, or holds a bad entry
    ├── UnknownPipelineError            E702  no stored pipeline (or alias) by that name
    ├── UnknownVersionError             E703  the name has no such version (or none before)
    ├── UnknownHashError                E704  no stored pipeline with that structural hash
    ├── PipelineConflictError           E705  refused: it would break what the store holds
    └── NoCanaryError                   E706  the name has no canary
```

Codes are stable: tests, logs and the HTTP API match on them, never on message text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CircuitOpenError",
    "CompilationError",
    "ConfigurationError",
    "ConstellationError",
    "Diagnostic",
    "EngineFailedError",
    "ExecutionCancelledError",
    "ExecutionTimeoutError",
    "ExecutorError",
    "InputError",
    "InputTypeError",
    "InternalError",
    "MissingInputError",
    "ModuleExecutionError",
    "ModuleOutputTypeError",
    "ModuleTimeoutError",
    "NoCanaryError",
    "PipelineConflictError",
    "PipelineError",
    "PipelineStoreError",
    "QueueFullError",
    "ResumeError",
    "SchedulingError",
    "SecretNotFoundError",
    "ShuttingDownError",
    "UnknownHashError",
    "UnknownInputError",
    "UnknownModuleError",
    "UnknownPipelineError",
    "UnknownVersionError",
]


class ConstellationError(Exception):
    """Root of every error raised or recorded by Constellation.

    Args:
        message: what went wrong, in the user's terms.
        code: the stable error code; defaults to the class's code.
        details: machine-readable context (names of the input, node, module ...).
    """

    code: str = "E000"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form ``{"code", "message", "details"}``."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigurationError(ConstellationError):
    """A configuration value is invalid; ``details["field"]`` names it."""

    code = "E001"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One compile-time problem, located in the source when there is one.

    Attributes:
        code: stable error code, e.g. ``E110``.
        message: what is wrong.
        line: 1-based line, or 0 when the problem has no location.
        column: 1-based column, or 0.
        snippet: the source line with a caret under the column, or "".
        severity: ``"error"`` or ``"warning"``.
    """

    code: str
    message: str
    line: int = 0
    column: int = 0
    snippet: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.line}:{self.column}: " if self.line else ""
        text = f"{where}{self.code} {self.message}"
        return f"{text}\n{self.snippet}" if self.snippet else text


class CompilationError(ConstellationError):
    """A pipeline failed to compile; ``errors`` lists every problem found.

    Args:
        errors: the diagnostics, at least one.
    """

    code = "E100"

    def __init__(self, errors: list[Diagnostic], *, code: str | None = None) -> None:
        if not errors:
            raise ValueError("CompilationError needs at least one diagnostic")
        summary = errors[0].message if len(errors) == 1 else f"{len(errors)} errors"
        super().__init__(
            f"pipeline does not compile: {summary}",
            code=code or errors[0].code,
            details={"errors": [_diag_dict(d) for d in errors]},
        )
        self.errors = list(errors)


def _diag_dict(d: Diagnostic) -> dict[str, Any]:
    return {"code": d.code, "message": d.message, "line": d.line, "column": d.column}


class UnknownModuleError(CompilationError):
    """A pipeline refers to a module name that is not registered."""

    code = "E110"


class InputError(ConstellationError):
    """The inputs given to ``run``/``submit`` do not fit the pipeline."""

    code = "E200"


class MissingInputError(InputError):
    """A declared input was not given (recorded on SUSPENDED results)."""

    code = "E201"


class InputTypeError(InputError):
    """An input value does not match its declared type."""

    code = "E202"


class UnknownInputError(InputError):
    """An input name that the pipeline does not declare."""

    code = "E203"


class ResumeError(InputError):
    """``engine.resume`` refused: no such suspended execution, an input it already has,
    or a pipeline that changed since it was suspended (``details["reason"]`` says which).
    """

    code = "E204"


class ModuleExecutionError(ConstellationError):
    """A module raised while running; ``__cause__`` is the original exception."""

    code = "E300"


class ModuleOutputTypeError(ModuleExecutionError):
    """A module returned a value that does not match its declared return type."""

    code = "E302"


class ModuleTimeoutError(ModuleExecutionError):
    """One attempt of a module call ran longer than its ``timeout`` option."""

    code = "E303"


class ExecutorError(ModuleExecutionError):
    """The worker executor refused the call (``submit`` raised: shut down, a broken
    process pool, an argument it cannot serialize) or lost it (a dead worker)."""

    code = "E312"


class SecretNotFoundError(ModuleExecutionError):
    """``ctx.secret(name)`` found no such secret in the engine's secrets backend (or
    the backend raised, or returned a non-string); for a call on a process pool or
    dask, also a declared secret that is missing (found before the call is shipped) or
    a name its module does not declare. The call fails with this error (call options
    apply)."""

    code = "E320"


class InternalError(ConstellationError):
    """A turn of one of the runtime's actors raised: a bug in Constellation (or in a
    backend called from that turn). The execution it belonged to ended FAILED;
    ``details["traceback"]`` holds the traceback. The engine goes on."""

    code = "E311"


class SchedulingError(ConstellationError):
    """The scheduler could not accept or run the execution."""

    code = "E400"


class QueueFullError(SchedulingError):
    """The scheduler queue is at ``max_queue_size``; nothing was queued."""

    code = "E401"


class ShuttingDownError(SchedulingError):
    """The engine is draining or stopped and accepts no new executions."""

    code = "E402"


class CircuitOpenError(SchedulingError):
    """The module's circuit breaker is open; the module was not called."""

    code = "E403"


class EngineFailedError(SchedulingError):
    """The engine's supervisor failed (an internal error): every waiting execution
    ended FAILED with this error and the engine accepts no more work. Shut it down and
    build a new one."""

    code = "E404"


class ExecutionCancelledError(ConstellationError):
    """The execution was cancelled before it finished."""

    code = "E501"


class ExecutionTimeoutError(ConstellationError):
    """The execution passed its deadline before it finished."""

    code = "E502"


class PipelineError(ConstellationError):
    """Root of the errors of stored pipelines (``engine.pipelines``, runs by name)."""

    code = "E700"


class PipelineStoreError(PipelineError):
    """The pipeline store failed: its backend raised or timed out
    (``details["reason"] == "backend"``, ``__cause__`` is the backend's exception), an
    entry could not be decoded (``"corrupt"``), a stored pipeline rebuilds with another
    structural hash than it was saved with (``"hash_mismatch"``: the modules it calls
    changed), or a pipeline cannot be stored (``"unstorable"``).
    ``details["operation"]`` names the store call."""

    code = "E701"


class UnknownPipelineError(PipelineError):
    """No stored pipeline has this name, and no alias either (``details["name"]``)."""

    code = "E702"


class UnknownVersionError(PipelineError):
    """The name has no such version (``details["name"]``, ``["version"]``), or, for a
    rollback without a version, no version before the current one
    (``details["reason"] == "no_previous_version"``)."""

    code = "E703"


class UnknownHashError(PipelineError):
    """No stored pipeline has this structural hash (``details["structural_hash"]``)."""

    code = "E704"


class PipelineConflictError(PipelineError):
    """A change refused because of what the store holds; ``details["reason"]``:
    ``current_version`` (deleting the version that is current: roll back first),
    ``referenced`` (deleting a stored pipeline that a version, alias or canary still
    names), ``name_is_alias`` / ``alias_is_name`` (a name is either a versioned
    pipeline or an alias, not both)."""

    code = "E705"


class NoCanaryError(PipelineError):
    """The name has no canary to report, promote or roll back (``details["name"]``)."""

    code = "E706"
