"""The engine's value types: SchedulerConfig, LifecycleState and Pipeline (re-exported
by ``constellation.engine`` and the ``constellation`` package)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from constellation.actors._plan import ExecutionPlan
    from constellation.core.dag import DagSpec
    from constellation.core.errors import Diagnostic
    from constellation.core.results import ExecutionResult
    from constellation.core.types import CType
    from constellation.engine import Constellation

__all__ = ["LifecycleState", "Pipeline", "SchedulerConfig"]


def _positive_int(value: Any, field: str) -> None:
    if type(value) is not int or value < 1:
        raise ConfigurationError(f"{field} must be an integer >= 1, got {value!r}",
                                 details={"field": field, "value": repr(value)})


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How many executions run at once and how many may wait.

    Attributes:
        max_concurrency: executions running at the same time.
        max_queue_size: executions waiting to start; past it ``submit`` raises
            ``QueueFullError`` at once. ``None`` means unbounded.
        starvation_timeout: seconds after which a waiting BACKGROUND execution ranks with
            a newly arrived CRITICAL one (linear aging in between).
        worker_threads: most threads of the default worker pool running module code
            (started on demand). Size it for blocking modules: 64 modules sleeping at
            once need 64 threads.
        dispatcher_threads: threads running actor turns; ``None`` picks 2 per core
            (2 to 8).
        caller_helps: a thread waiting in ``engine.run()`` runs its own execution's
            turns and quick module calls itself instead of handing them to the pools
            (no thread handoff for a sequential run of quick modules). Off by default:
            a module measured quick that then blocks would hold its caller past the
            execution's deadline (a thread cannot be interrupted), and the engine's
            first promise is that no public wait outlives the deadline. The helping
            caller also computes its execution's inline transforms (a ``map`` over a
            large input, a module called inside a lambda) and runs the supervisor's
            turn; an exception injected into its thread from outside (a thread-killing
            timeout library) can land there and fail the engine. Turn it on for
            pipelines of pure, quick functions. Only with the engine's own worker pool
            (with ``executor=`` the caller parks).

    Raises:
        ConfigurationError: a value is out of range; ``details["field"]`` names it.
    """

    max_concurrency: int = 16
    max_queue_size: int | None = 1000
    starvation_timeout: float = 30.0
    worker_threads: int = 32
    dispatcher_threads: int | None = None
    caller_helps: bool = False

    def __post_init__(self) -> None:
        _positive_int(self.max_concurrency, "max_concurrency")
        if self.max_queue_size is not None:
            _positive_int(self.max_queue_size, "max_queue_size")
        st = self.starvation_timeout
        if isinstance(st, bool) or not isinstance(st, int | float) or not st > 0:
            raise ConfigurationError(f"starvation_timeout must be a positive number of "
                                     f"seconds, got {st!r}",
                                     details={"field": "starvation_timeout"})
        _positive_int(self.worker_threads, "worker_threads")
        if self.dispatcher_threads is not None:
            _positive_int(self.dispatcher_threads, "dispatcher_threads")
        if type(self.caller_helps) is not bool:
            raise ConfigurationError(f"caller_helps must be True or False, got "
                                     f"{self.caller_helps!r}",
                                     details={"field": "caller_helps"})


class LifecycleState(enum.Enum):
    """An engine's lifecycle: RUNNING → DRAINING (shutdown called) → STOPPED.

    FAILED: the engine's supervisor failed (an internal error). Every execution it held
    ended FAILED with ``EngineFailedError``; submissions raise it. ``shutdown()`` still
    releases the threads (and the state then stays FAILED).
    """

    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class Pipeline:
    """A compiled pipeline, bound to the engine that compiled it; run it many times.

    Attributes:
        name: the pipeline's name.
        spec: the resolved DagSpec.
        structural_hash: SHA-256 of the structure.
        syntactic_hash: SHA-256 of the source text ("" when not compiled from source).
        source: the source text it was compiled from (None for DagSpecs and builders).
        warnings: the compiler's warnings (for compiled sources).
    """

    __slots__ = ("_engine", "name", "plan", "source", "spec", "structural_hash",
                 "syntactic_hash", "warnings")

    def __init__(self, spec: DagSpec, plan: ExecutionPlan, engine: Constellation) -> None:
        self.spec = spec
        self.plan = plan
        self.name = spec.name
        self.structural_hash = plan.structural_hash
        self.syntactic_hash = ""  # SHA-256 of the source text, for compiled sources
        self.source: str | None = None
        self.warnings: tuple[Diagnostic, ...] = ()
        self._engine = engine

    def __repr__(self) -> str:
        return f"<Pipeline {self.name} sha256:{self.structural_hash[:12]}>"

    @property
    def inputs(self) -> dict[str, CType]:
        """Declared inputs and their types."""
        return dict(self.plan.input_types)

    @property
    def outputs(self) -> dict[str, CType | None]:
        """Declared outputs and their types."""
        return self.spec.output_types

    def to_mermaid(self, result: ExecutionResult | None = None, *,
                   transforms: bool = False) -> str:
        """A Mermaid flowchart of the pipeline: inputs, module calls (with their module,
        output type and call options), outputs. Inline transforms are collapsed into
        the edges unless ``transforms`` is true; ``result`` colours each call by its
        status in that execution. See :mod:`constellation.core.graph`."""
        from constellation.core.graph import graph_of, to_mermaid

        return to_mermaid(graph_of(self.spec, result, transforms=transforms))

    def to_dot(self, result: ExecutionResult | None = None, *,
               transforms: bool = False) -> str:
        """The same picture as :meth:`to_mermaid`, as Graphviz DOT text (``dot -Tsvg``
        draws it; ``constellation graph FILE.cst --format svg`` does that for you)."""
        from constellation.core.graph import graph_of, to_dot

        return to_dot(graph_of(self.spec, result, transforms=transforms))
