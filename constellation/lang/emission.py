"""Emission: the data and module nodes of a DagSpec, built as the compiler checks.

Constant parts are folded as they are emitted (a transform or a standard-library call
whose inputs are all constants becomes a literal), identical transforms and calls are
shared (common subexpressions), and :meth:`Emission.finish` keeps only what an output
needs (dead code). :class:`Emission` is the compiler's base class.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import chain
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from constellation.core.dag import DagSpec, DataNode, ModuleNode, Transform
from constellation.core.options import CallOptions, call_output_type
from constellation.core.transforms import PURE_OPS, evaluate
from constellation.core.types import (
    CList,
    CMap,
    COptional,
    CRecord,
    CSeq,
    CType,
    CUnion,
    Tagged,
    render,
)
from constellation.lang.call_options import NO_OPTIONS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from constellation.core.modules import ModuleDefinition

__all__ = ["FOLDABLE_PREFIXES", "Emission", "Value", "type_depth"]

_REF = itemgetter(1)  # (parameter, data node id) -> the id
_INPUTS = attrgetter("inputs")
_ARGS = attrgetter("args")

# Standard-library modules whose calls may be evaluated while compiling.
FOLDABLE_PREFIXES = ("stdlib.math.", "stdlib.string.", "stdlib.list.", "stdlib.bool.",
                     "stdlib.compare.", "stdlib.convert.")


@dataclass(slots=True)  # one per expression: slots make them smaller and faster to build
class Value:
    """A compiled expression: the data node holding it, its type, its constant value
    (when ``is_const``) and how deeply its type nests (an upper bound)."""

    ref: str
    type: CType
    const: Any = field(default=None)
    is_const: bool = False
    depth: int = 0  # how deeply the type nests (an upper bound), see MAX_NESTING


def type_depth(t: CType) -> int:
    """How deeply ``t`` nests (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[CType, int]] = [(t, 0)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        match item:
            case CList(e) | CSeq(e):
                stack.append((e, d + 1))
            case COptional(i):
                stack.append((i, d + 1))
            case CMap(k, v):
                stack += [(k, d + 1), (v, d + 1)]
            case CRecord(fields):
                stack += [(ft, d + 1) for _, ft in fields]
            case CUnion(members):
                stack += [(m, d + 1) for m in members]
    return deepest


class Emission:
    """The nodes emitted so far, and how to add more.

    Args:
        modules: the registered modules.
        name: the pipeline's name.
    """

    def __init__(self, modules: Mapping[str, ModuleDefinition], name: str) -> None:
        self.modules = modules
        self.name = name
        self.data: dict[str, DataNode] = {}
        self.calls: list[ModuleNode] = []
        self.cse: dict[Any, Value] = {}
        self.counter = 0
        self.call_counts: dict[str, int] = {}
        # module name -> (sorted parameter slots, plain output type, its depth, label)
        self.call_shapes: dict[str, tuple[list[tuple[str, int]], CType, int, str]] = {}
        self.lazy_calls = 0  # > 0 while compiling a fallback: its calls run only if needed

    def transform(self, op: str, params: tuple[tuple[str, Any], ...],
                  args: list[Value], ctype: CType, label: str, depth: int = 0) -> Value:
        """An inline transform of ``args`` (folded into a literal when every argument is
        a constant and the operation is pure; shared when it was emitted before)."""
        if op in PURE_OPS and all(a.is_const for a in args):
            try:
                value = evaluate(Transform(op, params), [a.const for a in args])
            except Exception:  # leave it to run time, where the failure is reported
                pass
            else:
                return self.literal(value, ctype, depth)
        key = ("t", op, params, tuple(a.ref for a in args))
        if key in self.cse:
            return self.cse[key]
        self.counter += 1
        did = f"t:{self.counter}"
        self.data[did] = DataNode(did, label, ctype, Transform(op, params),
                                  tuple([a.ref for a in args]))
        value = Value(did, ctype, depth=depth)
        self.cse[key] = value
        return value

    def literal(self, value: Any, ctype: CType, depth: int = 0) -> Value:
        """A constant (one node per distinct value and type)."""
        key = ("lit", render(ctype), freeze(value))
        if key in self.cse:
            return self.cse[key]
        self.counter += 1
        did = f"lit:{self.counter}"
        self.data[did] = DataNode(did, f"literal {short(value)}", ctype,
                                  Transform("literal", (("type", ctype), ("value", value))))
        result = Value(did, ctype, value, True, depth)
        self.cse[key] = result
        return result

    def call(self, mdef: ModuleDefinition, args: list[Value], options: CallOptions,
             label: str | None) -> Value:
        """A module call (evaluated now when it is a foldable standard-library call of
        constants; shared with an identical call emitted before)."""
        plain = options is NO_OPTIONS
        constant = True
        for a in args:
            if not a.is_const:
                constant = False
                break
        if constant and plain and mdef.name.startswith(FOLDABLE_PREFIXES):  # fold
            try:
                value = mdef.func(*(a.const for a in args))
                value = mdef.check_output(value)
            except Exception:
                pass
            else:
                return self.literal(value, mdef.output)
        if self.lazy_calls and options.lazy is None:
            options = replace(options, lazy=True)
            plain = False
        shape = self.call_shapes.get(mdef.name)
        if shape is None:  # what every call of this module shares, computed once
            params = list(mdef.inputs)
            order = sorted(range(len(params)), key=params.__getitem__)
            out_type = call_output_type(mdef.output, mdef.options)
            shape = self.call_shapes[mdef.name] = (
                [(params[i], i) for i in order], out_type, type_depth(out_type),
                mdef.name.rsplit(".", 1)[-1])
        slots, out_type, depth, base = shape
        if len(slots) == 2:  # the operators' and most modules' count: no comprehension
            (p0, i0), (p1, i1) = slots
            bound: tuple[tuple[str, str], ...] = ((p0, args[i0].ref), (p1, args[i1].ref))
        else:
            bound = tuple([(p, args[i].ref) for p, i in slots])
        key = ("call", mdef.name, bound, "" if plain else repr(sorted(
            options.as_dict().items(), key=lambda kv: kv[0])))
        found = self.cse.get(key)
        if found is not None:
            return found
        if not plain:
            out_type = call_output_type(mdef.output, mdef.options.merged(options))
            depth = type_depth(out_type)
        base = label or base
        n = self.call_counts[base] = self.call_counts.get(base, 0) + 1
        node_name = base if n == 1 else f"{base}#{n}"
        out = f"{node_name}.out"
        self.data[out] = DataNode(out, out, out_type)
        self.calls.append(ModuleNode(f"mod:{node_name}", node_name, mdef.name, bound, out,
                                     options))
        value = self.cse[key] = Value(out, out_type, None, False, depth)
        return value

    def finish(self, inputs: dict[str, str], outputs: dict[str, str],
                timeout: float | None) -> DagSpec:
        """The DagSpec of what the outputs need (and every declared input)."""
        # Dead code: keep what an output needs (and every declared input).
        data = self.data
        # Nothing is dead when every node is read by another one, or is an output or an
        # input (the usual case, found with set operations): following readers from any
        # node then ends at an output (nodes only read earlier ones).
        read = set(chain.from_iterable(map(_INPUTS, data.values())))
        read.update(map(_REF, chain.from_iterable(map(_ARGS, self.calls))))
        if not data.keys() - read - set(outputs.values()) - set(inputs.values()):
            return DagSpec(self.name, tuple(inputs.items()), tuple(data.values()),
                           tuple(self.calls), tuple(outputs.items()), timeout)
        producers = {m.output: m.args for m in self.calls}
        needed: set[str] = set(inputs.values())
        stack = list(outputs.values())
        while stack:
            did = stack.pop()
            if did in needed:
                continue
            needed.add(did)
            stack.extend(data[did].inputs)
            args = producers.get(did)
            if args is not None:
                stack.extend(map(_REF, args))
        if needed.issuperset(data):  # every node is needed (the usual case)
            kept, calls = tuple(data.values()), tuple(self.calls)
        else:
            kept = tuple([d for d in data.values() if d.id in needed])
            calls = tuple([m for m in self.calls if m.output in needed])
        return DagSpec(self.name, tuple(inputs.items()), kept, calls, tuple(outputs.items()),
                       timeout)

    def tagged(self, v: Value, union: CType) -> Value:
        """``v`` as a value of ``union``: tagged with its variant unless already one."""
        if not isinstance(union, CUnion) or isinstance(v.type, CUnion):
            return v
        return self.transform("tag", (("tag", render(v.type)),), [v], union, "tag", v.depth)


def short(value: Any) -> str:
    text = repr(value) if not isinstance(value, list | dict) or len(value) < 8 else \
        f"<{type(value).__name__} of {len(value)}>"
    return text[:50]


def freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(freeze(v) for v in value))
    if isinstance(value, Tagged):
        return ("tagged", value.tag, freeze(value.value))
    return (type(value).__name__, value)
