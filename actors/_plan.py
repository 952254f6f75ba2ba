"""ExecutionPlan: a resolved DagSpec turned into index-based tables for the runtime.

Built once per compiled pipeline and shared by all its executions, so the per-node
work at run time is list indexing, never dict lookups by id or type inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from constellation.core.errors import CompilationError, Diagnostic
from constellation.core.transforms import (
    SELECTIVE_OPS,
    compile_transform,
    first_selector,
    select_step,
)
from constellation.core.types import EXACT_PY_TYPES

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from constellation.actors._resilience import CallPolicy
    from constellation.core.dag import DagSpec
    from constellation.core.modules import ModuleDefinition
    from constellation.core.options import CallOptions
    from constellation.core.types import CType

__all__ = ["FAST_CALL_SECONDS", "ExecutionPlan", "ModuleTiming", "NodePlan", "TransformPlan"]

_NAME = attrgetter("name")
_CTYPE = attrgetter("ctype")

# Consumer kinds in ExecutionPlan.consumers.
MODULE = 0
TRANSFORM = 1


FAST_CALL_SECONDS = 100e-6
"""Calls of a module whose average time is below this stay on the thread that made
them ready; slower (or not yet measured) modules are spread over the worker pool."""


class ModuleTiming:
    """Running average of one module's call time, shared by an engine's executions.

    Updated without a lock from whichever worker finishes a call: a lost update only
    delays the average by one sample.
    """

    __slots__ = ("average",)

    def __init__(self) -> None:
        self.average = 1.0  # unknown: treat as slow until measured

    def record(self, seconds: float) -> None:
        """Fold one call's duration into the average (exponential, weight 1/4)."""
        if self.average == 1.0:
            self.average = seconds
        else:
            self.average += (seconds - self.average) * 0.25

    @property
    def fast(self) -> bool:
        """Whether calls are short enough to run where they become ready."""
        return self.average < FAST_CALL_SECONDS


class NodePlan(NamedTuple):
    """One module node, ready to run (a NamedTuple like the runtime's messages: as
    immutable as a frozen dataclass and quicker to build; a plan has one per call).

    Attributes:
        index: position in ``ExecutionPlan.nodes``.
        name: node name.
        module: the module definition.
        args: ``(parameter, data index)`` pairs.
        output: data index the result goes to.
        options: the module's defaults overlaid with the call's own options.
        deps: distinct data indexes the node waits for.
        exact_output: when the output type is a scalar, its Python type: a value of
            exactly that type (an Int also within 64 bits) needs no further check (the
            common case, kept off the generic checker).
        plain_args: arguments go to the function as they are (no dataclass
            parameters, no ``ctx``).
        timing: the engine's running average of this module's call time.
        policy: how the call's options are applied; None when there is nothing to
            apply (the fast path).
    """

    index: int  # type: ignore[assignment]  # (a field, where tuple has a method)
    name: str
    module: ModuleDefinition
    args: tuple[tuple[str, int], ...]
    output: int
    options: CallOptions
    deps: int
    exact_output: type | None
    plain_args: bool
    timing: ModuleTiming
    policy: CallPolicy | None = None


class TransformPlan(NamedTuple):
    """One inline transform: computes data node ``output`` from ``inputs``."""

    output: int
    inputs: tuple[int, ...]
    deps: int
    compute: Callable[[Sequence[Any]], Any]


@dataclass(frozen=True)
class ExecutionPlan:
    """Index tables for one resolved pipeline (see the module docstring)."""

    name: str
    structural_hash: str
    timeout: float | None
    data_names: tuple[str, ...]
    data_types: tuple[CType | None, ...]
    inputs: Mapping[str, int]
    input_types: Mapping[str, CType]
    outputs: tuple[tuple[str, int], ...]
    nodes: tuple[NodePlan, ...]
    transforms: tuple[TransformPlan, ...]
    consumers: tuple[tuple[tuple[int, int], ...], ...]
    sources: tuple[int, ...]  # transforms with no inputs (literals), computed at start
    root_nodes: tuple[int, ...] = ()  # module nodes without arguments, started at start
    # Lazy calls (`with lazy`) whose value only selective operations (when/??/branch)
    # may need: started only when one picks them. And those operations, evaluated step
    # by step: transform index -> stepper (see transforms.select_step).
    deferred: frozenset[int] = frozenset()
    lazy_transforms: Mapping[int, Any] = field(default_factory=dict)
    producers: tuple[tuple[int, int] | None, ...] = ()

    @staticmethod
    def build(spec: DagSpec, modules: Mapping[str, ModuleDefinition],
              timings: dict[str, ModuleTiming] | None = None,
              policy_for: Callable[[ModuleDefinition, CallOptions], CallPolicy | None]
              | None = None) -> ExecutionPlan:
        """Make the plan for a resolved spec.

        Args:
            spec: a resolved DagSpec.
            modules: the registered modules.
            timings: the engine's per-module call timings (shared by its plans).
            policy_for: builds a node's call policy from its merged options.

        Raises:
            CompilationError: the graph has a cycle or reads an undefined data node.
        """
        index = spec.data_positions  # data node id -> position (cached on the spec)
        consumers: list[list[tuple[int, int]]] = [[] for _ in spec.data]
        producers: list[tuple[int, int] | None] = [None] * len(spec.data)
        problems: list[Diagnostic] = []
        # Whether every node reads only values before its own (data is in dependency
        # order, as compiled sources and builders make it): then there is no cycle.
        ordered = True

        def idx(did: str, who: str) -> int:
            if did not in index:
                problems.append(Diagnostic("E129", f"{who} reads undefined value '{did}'"))
                return -1
            return index[did]

        timings = {} if timings is None else timings
        nodes = []
        # What every call of a module with the same options object shares (a compiled
        # program's plain calls all have one) is worked out once: a 250,000-call program
        # has one module and one options object. Options are keyed by id(), stable
        # while the spec holding them lives; consecutive calls alike skip the lookup.
        shared: dict[tuple[str, int], _Shared] = {}
        last_module: str | None = None
        last_options: CallOptions | None = None
        known: _Shared | None = None
        for n, m in enumerate(spec.modules):
            fresh = False
            if m.module is not last_module or m.options is not last_options:
                last_module, last_options = m.module, m.options
                known = shared.get((m.module, id(m.options)))
                if known is None:
                    known = shared[(m.module, id(m.options))] = _shared(
                        m.module, modules[m.module], m.options, timings, policy_for)
                    fresh = True
            assert known is not None
            mdef, exact, plain, timing, options, first_policy = known
            try:
                args, distinct = _arg_indexes(m.args, index)
            except KeyError:  # report each undefined one (in order)
                args = tuple([(p, idx(did, f"node '{m.name}'")) for p, did in m.args])
                distinct = tuple({i for _, i in args})
            consumer = (MODULE, n)
            for i in distinct:
                if i >= 0:
                    consumers[i].append(consumer)
            # A policy is made per node (it may hold per-call state); a module and
            # options that need none need none on any node.
            if fresh or first_policy is None:
                policy = first_policy
            else:
                assert policy_for is not None
                policy = policy_for(mdef, options)
            output = index.get(m.output)
            if output is None:
                output = idx(m.output, m.name)
            else:
                producers[output] = consumer
                if ordered and distinct and max(distinct) >= output:
                    ordered = False
            nodes.append(NodePlan(n, m.name, mdef, args, output, options, len(distinct), exact,
                                  plain, timing, policy))
        transforms: list[TransformPlan] = []
        sources: list[int] = []
        selective: dict[int, Any] = {}  # transform index -> its Transform
        for d in spec.data:
            if d.transform is None:
                continue
            t = len(transforms)
            try:
                ins = tuple([index[i] for i in d.inputs])
            except KeyError:  # report each undefined one (in order)
                ins = tuple([idx(i, f"value '{d.name}'") for i in d.inputs])
            distinct_t = set(ins)
            consumer = (TRANSFORM, t)
            for i in distinct_t:
                if i >= 0:
                    consumers[i].append(consumer)
            output = index[d.id]
            producers[output] = consumer
            if ordered and ins and max(ins) >= output:
                ordered = False
            if d.transform.op in SELECTIVE_OPS:
                selective[t] = d.transform
            transforms.append(TransformPlan(output, ins, len(distinct_t),
                                            compile_transform(d.transform, modules)))
            if not ins:
                sources.append(t)
        if problems:
            raise CompilationError(problems)
        deferred, lazy_transforms = _lazy_analysis(
            nodes, transforms, selective, producers,
            [index[did] for _, did in spec.outputs],
            any(options.lazy for _, _, _, _, options, _ in shared.values()))
        plan = ExecutionPlan(
            name=spec.name,
            structural_hash=spec.structural_hash,
            timeout=spec.timeout,
            data_names=tuple(map(_NAME, spec.data)),
            data_types=tuple(map(_CTYPE, spec.data)),
            inputs={name: index[did] for name, did in spec.inputs},
            input_types={name: t for name, t in spec.input_types.items() if t is not None},
            outputs=tuple((name, index[did]) for name, did in spec.outputs),
            nodes=tuple(nodes),
            transforms=tuple(transforms),
            consumers=tuple(map(tuple, consumers)),
            sources=tuple(sources),
            root_nodes=tuple([n.index for n in nodes if n.deps == 0]),
            deferred=deferred,
            lazy_transforms=lazy_transforms,
            producers=tuple(producers),
        )
        if not ordered:
            plan._check_acyclic()
        return plan

    def _check_acyclic(self) -> None:
        # Kahn's algorithm over the same counters the runtime uses.
        pending_n = [n.deps for n in self.nodes]
        pending_t = [t.deps for t in self.transforms]
        ready = [i for i, p in enumerate(self.producers) if p is None]
        ready += [self.transforms[t].output for t in self.sources]
        ready += [self.nodes[j].output for j in self.root_nodes]
        seen = 0
        while ready:
            d = ready.pop()
            seen += 1
            for kind, j in self.consumers[d]:
                pending = pending_n if kind == MODULE else pending_t
                pending[j] -= 1
                if pending[j] == 0:
                    ready.append(self.nodes[j].output if kind == MODULE
                                 else self.transforms[j].output)
        if seen < len(self.data_names):
            raise CompilationError([Diagnostic("E125", f"pipeline '{self.name}' has a cycle")])




# What a plan's nodes of one module with one options object share: the module, its exact
# output type, whether arguments go as they are, its timing, the merged options, and the
# first such node's call policy (None: no node of them needs one).
_Shared = tuple[Any, "type | None", bool, ModuleTiming, Any, Any]


def _shared(name: str, mdef: ModuleDefinition, call_options: CallOptions,
            timings: dict[str, ModuleTiming],
            policy_for: Callable[[ModuleDefinition, CallOptions], CallPolicy | None] | None
            ) -> _Shared:
    options = mdef.options.merged(call_options)
    return (mdef, EXACT_PY_TYPES.get(type(mdef.output)),
            not mdef.takes_ctx and not mdef._dataclass_params,
            timings.setdefault(name, ModuleTiming()), options,
            policy_for(mdef, options) if policy_for else None)


def _arg_indexes(args: tuple[tuple[str, str], ...], index: Mapping[str, int]
                 ) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
    """A call's ``(parameter, data index)`` pairs and its distinct data indexes (one and
    two arguments, the usual counts, without a comprehension).

    Raises:
        KeyError: an argument names no data node.
    """
    if len(args) == 2:
        (p0, d0), (p1, d1) = args
        i0, i1 = index[d0], index[d1]
        return ((p0, i0), (p1, i1)), ((i0,) if i0 == i1 else (i0, i1))
    if len(args) == 1:
        ((p0, d0),) = args
        i0 = index[d0]
        return ((p0, i0),), (i0,)
    pairs = tuple([(p, index[did]) for p, did in args])
    return pairs, tuple({i for _, i in pairs})


def _lazy_analysis(nodes: Sequence[NodePlan], transforms: Sequence[TransformPlan],
                   selective: Mapping[int, Any], producers: Sequence[tuple[int, int] | None],
                   outputs: Sequence[int], any_lazy: bool
                   ) -> tuple[frozenset[int], dict[int, Any]]:
    """Which lazy calls may never be needed, and which selective operations must then be
    evaluated step by step.

    A value is needed for sure when an output, an eager call, or a non-selective
    operation that is itself needed reads it, or when a selective operation that is
    needed reads it as its first selector. A lazy call whose output is not needed for
    sure is deferred: the runtime starts it only when a selective operation picks it.
    """
    if not any_lazy:  # no node is lazy
        return frozenset(), {}
    needed: set[int] = set()
    stack = list(outputs)
    stack.extend(n.output for n in nodes if not n.options.lazy)
    while stack:
        d = stack.pop()
        if d in needed or d < 0:
            continue
        needed.add(d)
        p = producers[d]
        if p is None:
            continue
        kind, j = p
        if kind == MODULE:
            stack.extend(i for _, i in nodes[j].args)
        elif j in selective:
            stack.append(transforms[j].inputs[first_selector(selective[j])])
        else:
            stack.extend(transforms[j].inputs)
    deferred = frozenset(n.index for n in nodes if n.options.lazy and n.output not in needed)
    lazy_transforms = {t: select_step(tr) for t, tr in selective.items()
                       if any(i not in needed for i in transforms[t].inputs)}
    return deferred, lazy_transforms
