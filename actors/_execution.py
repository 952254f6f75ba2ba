"""The actors that run one execution: an ExecutionActor and one NodeActor per module node.

The ExecutionActor owns the execution's values. When every input of a module node is
there it spawns that node's NodeActor, which hands the module call to the worker
executor and reports the outcome back. Inline transforms (literals, field access ...)
are computed by the ExecutionActor itself, never on the worker pool.

Message flow for one node::

    ExecutionActor --spawn(args)--> NodeActor --task--> worker: module(**args)
    ExecutionActor <--NodeFinished-- NodeActor <--AttemptFinished-- worker
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from logging import DEBUG
from typing import TYPE_CHECKING, Any

from constellation.actors._actor import PooledActor
from constellation.actors._handle import bare_result
from constellation.actors._internal import internal_error
from constellation.actors._log import EXECUTION, log
from constellation.actors._messages import (
    Abandon,
    CancelExecution,
    DeadlineReached,
    ExecutionFinished,
    NodeFinished,
)
from constellation.actors._node import NodeActor, PlainNode
from constellation.actors._plan import MODULE
from constellation.actors._records import checkpoints, record_finished, record_started
from constellation.core.errors import (
    ConstellationError,
    ExecutionCancelledError,
    ExecutionTimeoutError,
    MissingInputError,
)
from constellation.core.results import ExecutionResult, ExecutionStatus, NodeRecord, NodeStatus
from constellation.core.types import render

if TYPE_CHECKING:
    from constellation.actors._handle import Execution
    from constellation.actors._plan import NodePlan
    from constellation.actors._records import RecordWriter
    from constellation.actors._runtime import Runtime

__all__ = ["ExecutionActor", "NodeActor"]

logger = logging.getLogger("constellation.runtime")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class ExecutionActor(PooledActor):
    """Runs one execution: owns its values, starts nodes as inputs arrive, builds the result.

    Args:
        handle: the execution being run.
        runtime: the engine's runtime.
    """

    def __init__(self, handle: Execution, runtime: Runtime) -> None:
        super().__init__()
        plan = handle.plan
        self.handle = handle
        self.runtime = runtime
        self.plan = plan
        self.values: list[Any] = [_MISSING] * len(plan.data_names)
        self.node_pending = [n.deps for n in plan.nodes]
        self.transform_pending = [t.deps for t in plan.transforms]
        # node index -> (status, attempts, duration_ms, error) once it has finished
        self.finished_nodes: dict[int, tuple[NodeStatus, int, float,
                                             ConstellationError | None]] = {}
        self.running: dict[int, NodeActor | PlainNode] = {}
        self.errors: list[ConstellationError] = []
        self.done = False
        self.started = 0.0
        # Checkpoints to a durable storage: the calls completed so far (see _records).
        self.checkpoint: RecordWriter | None = None
        self.completed: list[tuple[str, Any]] = []
        # Only for plans with lazy calls (most executions never allocate it).
        self.lazy = _LazyState() if plan.deferred or plan.lazy_transforms else None

    def begin(self) -> None:
        """The first step, done by the creator (see ``PooledActor.spawn_running``)."""
        handle = self.handle
        self.started = time.perf_counter()
        handle._mark_running()
        storage = self.runtime.storage
        if storage is not None:
            record_started(storage, handle)
            writer = checkpoints(storage)
            if writer is not None:
                self.checkpoint = writer
        observer = self.runtime.observer
        if observer is not None:
            observer.execution_started(handle)
        plan = self.plan
        if EXECUTION.isEnabledFor(DEBUG):
            log(EXECUTION, DEBUG, "execution %s of %s started (%d module calls)",
                handle.execution_id, plan.name, len(plan.nodes),
                execution_id=handle.execution_id, pipeline=plan.name)
        ready: list[int] = list(plan.root_nodes)
        try:
            for t in plan.sources:
                self._compute(t, ready)
            for name, idx in plan.inputs.items():
                if name in handle.inputs:
                    self._propagate(idx, handle.inputs[name], ready)
        except _TransformFailedError:
            return
        self._launch(ready)
        self._maybe_finish()

    def on_receive(self, message: Any) -> Any:
        if type(message) is NodeFinished:
            self._node_finished(message)
        elif type(message) is CancelExecution:
            self._finish(ExecutionStatus.CANCELLED, ExecutionCancelledError(
                f"execution {self.handle.execution_id} was cancelled",
                details={"execution_id": self.handle.execution_id}))
        elif type(message) is DeadlineReached:
            self._finish(ExecutionStatus.TIMED_OUT, ExecutionTimeoutError(
                f"execution {self.handle.execution_id} passed its deadline",
                details={"execution_id": self.handle.execution_id}))
        else:
            return super().on_receive(message)
        return None

    def turn_failed(self, exc: BaseException) -> None:
        """Supervision: a turn of this execution raised (a bug, or a backend called in
        it). The execution ends FAILED with an InternalError naming the cause; the
        supervisor is told as for any end, so the engine goes on."""
        handle = self.handle
        self.runtime.count_internal_error("ExecutionActor")
        error = internal_error(f"execution {handle.execution_id} (pipeline "
                               f"{self.plan.name}) failed in the runtime", exc)
        if not self.done:
            try:
                self._finish(ExecutionStatus.FAILED, error)
                return
            except BaseException:
                logger.exception("ending execution %s after an internal error failed",
                                 handle.execution_id)
        self.done = True
        running = self._take_running()
        try:
            handle._complete(bare_result(handle, ExecutionStatus.FAILED, error))
        finally:
            self._abandon_nodes(running)
            self._stop()
            self.runtime.post_to_supervisor(ExecutionFinished(handle))

    def _take_running(self) -> list[Any]:
        running = list(self.running.values())
        self.running.clear()
        return running

    def _abandon_nodes(self, running: list[Any] | None = None) -> None:
        # Their calls may still run; each node abandons its call in its own turn, and
        # what it reports later is a dead letter.
        for actor in self._take_running() if running is None else running:
            actor.post(Abandon())

    # --- dataflow ----------------------------------------------------------------------

    def _propagate(self, idx: int, value: Any, ready: list[int]) -> None:
        # Iterative, so a long chain of transforms cannot overflow the stack.
        values = self.values
        consumers = self.plan.consumers
        node_pending = self.node_pending
        transform_pending = self.transform_pending
        lazy_transforms = self.plan.lazy_transforms
        stack = [(idx, value)]
        while stack:
            i, v = stack.pop()
            values[i] = v
            for kind, j in consumers[i]:
                if kind == MODULE:
                    node_pending[j] -= 1
                    if node_pending[j] == 0:
                        ready.append(j)
                elif lazy_transforms and j in lazy_transforms:
                    self._step(j)
                else:
                    transform_pending[j] -= 1
                    if transform_pending[j] == 0:
                        t = self.plan.transforms[j]
                        stack.append((t.output, self._eval(j)))
            lazy = self.lazy
            if lazy is not None:
                if lazy.values:
                    stack.extend(lazy.values)
                    lazy.values.clear()
                if lazy.ready_nodes:
                    ready.extend(lazy.ready_nodes)
                    lazy.ready_nodes.clear()

    # --- lazy calls ------------------------------------------------------------------------

    def _step(self, t: int) -> None:
        """Advance selective operation ``t``: demand the input it needs next, or queue
        its result (picked up by _propagate)."""
        lazy = self.lazy
        assert lazy is not None
        if t in lazy.stepped:
            return
        tp = self.plan.transforms[t]
        values = self.values

        def get(pos: int) -> tuple[bool, Any]:
            v = values[tp.inputs[pos]]
            return (False, None) if v is _MISSING else (True, v)

        need, result = self.plan.lazy_transforms[t](get)
        if need is None:
            lazy.stepped.add(t)
            lazy.values.append((tp.output, result))
        else:
            self._demand(tp.inputs[need])

    def _demand(self, d: int) -> None:
        """Value ``d`` is needed: start the deferred calls it depends on."""
        plan = self.plan
        values = self.values
        lazy = self.lazy
        assert lazy is not None
        stack = [d]
        while stack:
            d = stack.pop()
            if values[d] is not _MISSING or d in lazy.demanded:
                continue
            lazy.demanded.add(d)
            producer = plan.producers[d]
            if producer is None:
                continue  # an input: it arrives or the execution suspends
            kind, j = producer
            if kind == MODULE:
                if j in lazy.ready:
                    lazy.ready.discard(j)
                    lazy.ready_nodes.append(j)
                stack.extend(i for _, i in plan.nodes[j].args)
            elif j in plan.lazy_transforms:
                self._step(j)
            else:
                stack.extend(plan.transforms[j].inputs)

    def _compute(self, t: int, ready: list[int]) -> None:
        self._propagate(self.plan.transforms[t].output, self._eval(t), ready)

    def _eval(self, t: int) -> Any:
        tp = self.plan.transforms[t]
        values = self.values
        try:
            return tp.compute([values[i] for i in tp.inputs])
        except BaseException as exc:  # a module in a lambda may raise anything
            name = self.plan.data_names[tp.output]
            error = ConstellationError(f"computing '{name}' failed: {exc}", code="E310",
                                       details={"value": name})
            error.__cause__ = exc
            self._finish(ExecutionStatus.FAILED, error)
            raise _TransformFailedError from exc

    def _launch(self, ready: list[int]) -> None:
        if self.done:
            return
        values = self.values
        nodes = self.plan.nodes
        runtime = self.runtime
        handle = self.handle
        running = self.running
        preset = handle.preset
        lazy = self.lazy
        lazy_deferred = self.plan.deferred
        # Many calls launched off the worker pool (the first turn, on the caller or a
        # dispatcher) reach it in a few slices, not one handoff each.
        runner = runtime.runner
        gathered = runner.gather() if len(ready) > 1 else None
        try:
            for j in ready:
                node = nodes[j]
                if lazy is not None and j in lazy_deferred and node.output not in lazy.demanded \
                        and (preset is None or j not in preset):
                    lazy.ready.add(j)  # a lazy call nobody has picked (yet)
                    continue
                if preset is not None and j in preset:
                    # Computed before the execution was suspended: not run again.
                    self.finished_nodes[j] = (NodeStatus.COMPLETED, 0, 0.0, None)
                    more: list[int] = []
                    try:
                        self._propagate(node.output, preset[j], more)
                    except _TransformFailedError:
                        return
                    ready.extend(more)  # iterating ready: these are launched in this loop
                    continue
                args = {p: values[i] for p, i in node.args}
                if PlainNode.applies(node, runtime):
                    plain = PlainNode(self, node, args, handle, runtime)
                    running[j] = plain
                    plain.begin()
                    continue
                actor = NodeActor(self, node, args, handle, runtime)
                running[j] = actor
                actor.begin()
                actor.end_turn()
        finally:
            if gathered is not None:
                runner.spread(gathered)

    def node_completed(self, j: int, value: Any, attempts: int, duration_ms: float) -> None:
        """Node ``j`` completed with ``value``: called by the node in its last turn. The
        execution's turn for it runs right here when it can (see take_turn_here), with
        no message built; else a NodeFinished is posted as usual."""
        if not self.take_turn_here():
            self.post_and_run(NodeFinished(j, value, None, attempts, duration_ms),
                              self._node_finished)
            return
        try:
            self._node_outcome(j, value, None, attempts, duration_ms)
        except BaseException as exc:  # as in post_and_run: this execution's failure
            self._turn_failed_safely(exc)
        self.end_turn()

    def _node_finished(self, msg: NodeFinished) -> None:
        self._node_outcome(*msg)

    def _node_outcome(self, j: int, value: Any, error: ConstellationError | None,
                      attempts: int, duration_ms: float) -> None:
        if self.done:
            return
        self.running.pop(j, None)
        node = self.plan.nodes[j]
        if error is not None:
            self.finished_nodes[j] = (NodeStatus.FAILED, attempts, duration_ms, error)
            self._finish(ExecutionStatus.FAILED, error)
            return
        self.finished_nodes[j] = (NodeStatus.COMPLETED, attempts, duration_ms, None)
        if self.checkpoint is not None:
            self.completed.append((node.name, value))
            self.checkpoint.progress(self.handle, self.completed)
        ready: list[int] = []
        try:
            self._propagate(node.output, value, ready)
        except _TransformFailedError:
            return
        self._launch(ready)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.running or self.done:
            return
        values = self.values
        for _, i in self.plan.outputs:
            if values[i] is _MISSING:
                break
        else:
            self._finish(ExecutionStatus.COMPLETED)
            return
        missing = [n for n in self.plan.inputs if n not in self.handle.inputs]
        if missing:
            types = self.plan.input_types
            for n in missing:
                self.errors.append(MissingInputError(
                    f"input '{n}' ({render(types[n])}) was not given",
                    details={"input": n, "type": render(types[n])}))
            self._finish(ExecutionStatus.SUSPENDED)
        else:  # pragma: no cover - the plan guarantees every output is reachable
            self._finish(ExecutionStatus.FAILED, ConstellationError(
                "execution ended with outputs not computed", code="E399"))

    def _finish(self, status: ExecutionStatus, error: ConstellationError | None = None) -> None:
        if self.done:
            return
        self.done = True
        if error is not None:
            self.errors.append(error)
        plan = self.plan
        handle = self.handle
        for j in self.running:
            self.finished_nodes[j] = (NodeStatus.CANCELLED, 0, 0.0, None)
        lazy = self.lazy
        if lazy is not None:
            for j in plan.deferred:
                if j not in self.finished_nodes and plan.nodes[j].output not in lazy.demanded:
                    self.finished_nodes[j] = (NodeStatus.SKIPPED, 0, 0.0, None)
        records = NodeRecords(plan.nodes, self.finished_nodes)
        running = self._take_running()
        values = self.values
        outputs = {name: values[i] for name, i in plan.outputs if values[i] is not _MISSING}
        now = time.perf_counter()
        missing = {n: render(plan.input_types[n]) for n in plan.inputs if n not in handle.inputs}
        result = ExecutionResult(
            execution_id=handle.execution_id,
            pipeline=plan.name,
            structural_hash=plan.structural_hash,
            status=status,
            outputs=outputs,
            errors=tuple(self.errors),
            modules=records,
            duration_ms=(now - self.started) * 1000.0,
            missing_inputs=missing,
            queued_ms=(self.started - handle.submitted_at) * 1000.0,
        )
        if status is ExecutionStatus.SUSPENDED:
            handle._snapshot = {
                plan.nodes[j].name: values[plan.nodes[j].output]
                for j, outcome in self.finished_nodes.items()
                if outcome[0] is NodeStatus.COMPLETED}
        observer = self.runtime.observer
        if observer is not None:
            observer.execution_finished(handle, result)
        storage = self.runtime.storage
        if storage is not None:  # before the result is visible: a caller can look it up
            record_finished(storage, handle, result)
        # A parked run() is woken at the end of this turn, not here: woken now, it would
        # wake only to wait for the GIL this thread holds for the rest of the turn (one
        # more sleep and wake-up per run, on a thread of another CPU). The result is set
        # now all the same: whatever delays the rest, a waiter whose slice ends has it.
        won = handle._complete(result, wake_parked=False)
        try:
            # Abandoned after the result is set: a worker that starts a queued call sees
            # that its execution is over even before its node has handled its Abandon.
            self._abandon_nodes(running)
            self._stop()
            # The thread that finishes an execution starts the next queued one itself
            # when the supervisor is idle (post_and_run), not a dispatcher: runtime code
            # only (a first step it starts is a turn of its own, scheduled).
            self.runtime.post_to_supervisor(ExecutionFinished(handle))
        finally:
            if won:
                handle._wake_parked()


class NodeRecords(Mapping[str, NodeRecord]):
    """``ExecutionResult.modules``: node name → NodeRecord, each built on first access.

    A 1,000-node execution would otherwise build 1,000 frozen records that most callers
    never look at.
    """

    __slots__ = ("_cache", "_index", "_nodes", "_outcomes")

    def __init__(self, nodes: Sequence[NodePlan],
                 outcomes: dict[int, tuple[NodeStatus, int, float, ConstellationError | None]]
                 ) -> None:
        self._nodes = nodes
        self._outcomes = outcomes
        self._index: dict[str, int] | None = None
        self._cache: dict[str, NodeRecord] = {}

    def __getitem__(self, name: str) -> NodeRecord:
        rec = self._cache.get(name)
        if rec is not None:
            return rec
        if self._index is None:
            self._index = {n.name: n.index for n in self._nodes}
        j = self._index[name]
        node = self._nodes[j]
        outcome = self._outcomes.get(j)
        if outcome is None:
            rec = NodeRecord(node.name, node.module.name, NodeStatus.PENDING)
        else:
            rec = NodeRecord(node.name, node.module.name, *outcome)
        self._cache[name] = rec
        return rec

    def __iter__(self) -> Iterator[str]:
        return (n.name for n in self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return repr(dict(self))


class _LazyState:
    """An execution's lazy calls: ``ready`` -- deferred calls whose inputs are there but
    that nobody picked yet; ``demanded`` -- values a selective operation needs;
    ``stepped`` -- selective operations already computed; ``values`` and
    ``ready_nodes`` -- results and calls to start, picked up by ``_propagate``."""

    __slots__ = ("demanded", "ready", "ready_nodes", "stepped", "values")

    def __init__(self) -> None:
        self.ready: set[int] = set()
        self.demanded: set[int] = set()
        self.stepped: set[int] = set()
        self.values: list[tuple[int, Any]] = []
        self.ready_nodes: list[int] = []


class _TransformFailedError(Exception):
    """Internal: an inline transform raised; the execution has already been finished."""
