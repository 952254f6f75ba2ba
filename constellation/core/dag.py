"""DagSpec: the typed graph the runtime executes, whatever it was written in.

A DagSpec has *data nodes* (pipeline inputs, module outputs, literals and inline
transforms such as field access) and *module nodes* (calls of registered modules).
Edges are implied: a module node reads the data nodes named in its ``args`` and writes
its ``output`` data node; a transform reads its ``inputs``. Node ids are deterministic,
so the same pipeline always has the same canonical form and structural hash.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from constellation.core.errors import CompilationError, Diagnostic, UnknownModuleError
from constellation.core.options import CallOptions, call_output_type
from constellation.core.transforms import infer_transform_type
from constellation.core.types import CType, is_subtype, render

if TYPE_CHECKING:
    from collections.abc import Mapping

    from constellation.core.modules import ModuleDefinition

__all__ = ["DagSpec", "DataNode", "ModuleNode", "Transform", "resolve"]


@dataclass(frozen=True, slots=True)
class Transform:
    """An inline operation evaluated by the runtime without the worker pool.

    Attributes:
        op: the operation (``literal``, ``field``, ``record``, ``list`` ...).
        params: the operation's parameters, as a sorted tuple of pairs (hashable).
    """

    op: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def param_map(self) -> dict[str, Any]:
        """The parameters as a dict."""
        return dict(self.params)


@dataclass(frozen=True, slots=True)
class DataNode:
    """A value in the graph.

    Attributes:
        id: unique, deterministic id.
        name: the user's name for it (input name, variable, ``Node.out``).
        ctype: its type; ``None`` until :func:`resolve` fills it in.
        transform: how it is computed inline, or ``None`` for inputs and module outputs.
        inputs: the data nodes the transform reads, in order.
    """

    id: str
    name: str
    ctype: CType | None
    transform: Transform | None = None
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModuleNode:
    """A call of a registered module.

    Attributes:
        id: unique, deterministic id.
        name: the node's name in results and events (``Uppercase``, ``Uppercase#2``).
        module: the registered module name.
        args: parameter name → data node id.
        output: the data node the result is written to.
        options: the call's own options (module defaults are applied at run time).
    """

    id: str
    name: str
    module: str
    args: tuple[tuple[str, str], ...]
    output: str
    options: CallOptions = field(default_factory=CallOptions)


@dataclass(frozen=True)
class DagSpec:
    """A pipeline's graph. Build one with ``PipelineBuilder`` or by compiling a ``.cst``.

    Attributes:
        name: the pipeline's name.
        inputs: declared input name → data node id.
        data: every data node, in dependency order.
        modules: every module node, in dependency order.
        outputs: declared output name → data node id.
        timeout: the pipeline's own execution timeout in seconds (``@timeout``), if any.
        description: free text.
    """

    name: str
    inputs: tuple[tuple[str, str], ...]
    data: tuple[DataNode, ...]
    modules: tuple[ModuleNode, ...]
    outputs: tuple[tuple[str, str], ...]
    timeout: float | None = None
    description: str = ""

    @cached_property
    def data_by_id(self) -> dict[str, DataNode]:
        """Data nodes by id."""
        return {d.id: d for d in self.data}

    @property
    def input_types(self) -> dict[str, CType | None]:
        """Declared input name → type."""
        return {name: self.data_by_id[did].ctype for name, did in self.inputs}

    @property
    def output_types(self) -> dict[str, CType | None]:
        """Declared output name → type."""
        return {name: self.data_by_id[did].ctype for name, did in self.outputs}

    @property
    def is_resolved(self) -> bool:
        """Whether every data node has a type (see :func:`resolve`)."""
        return all(d.ctype is not None for d in self.data)

    def canonical(self) -> dict[str, Any]:
        """The structure as JSON-ready data: nodes, edges, types and options, not the name."""
        return {
            "inputs": sorted(self.inputs),
            "outputs": sorted(self.outputs),
            "timeout": self.timeout,
            "data": sorted(
                (d.id, render(d.ctype) if d.ctype else None,
                 _jsonable(d.transform.op) if d.transform else None,
                 _jsonable(d.transform.params) if d.transform else None, list(d.inputs))
                for d in self.data),
            "modules": sorted(
                (m.id, m.module, sorted(m.args), m.output,
                 _jsonable(sorted(m.options.as_dict().items())))
                for m in self.modules),
        }

    @cached_property
    def structural_hash(self) -> str:
        """SHA-256 of the canonical structure (hex): equal for structurally equal graphs."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, CType):
        return render(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, CallOptions):
        return value.as_dict()
    return value


def resolve(spec: DagSpec, modules: Mapping[str, ModuleDefinition]) -> DagSpec:
    """Type every data node of ``spec`` against the registered modules and check calls.

    Reports every problem at once: unknown modules (with "did you mean"), missing or
    unknown arguments, and arguments whose type does not fit the parameter.

    Raises:
        CompilationError: the graph does not type-check (``UnknownModuleError`` when the
            only problems are unknown modules).
    """
    problems: list[Diagnostic] = []
    producers = {m.output: m for m in spec.modules}
    pending_data = {d.id: d for d in spec.data}
    resolved_data: dict[str, DataNode] = {}

    def type_of(did: str) -> CType | None:
        if did in resolved_data:
            return resolved_data[did].ctype
        node = pending_data[did]
        ctype = node.ctype
        if node.transform is not None and ctype is None:
            arg_types = [type_of(i) for i in node.inputs]
            if all(t is not None for t in arg_types):
                try:
                    ctype = infer_transform_type(node.transform, arg_types)  # type: ignore[arg-type]
                except TypeError as exc:
                    problems.append(Diagnostic("E120", f"{node.name}: {exc}"))
        elif did in producers and ctype is None:
            producer = producers[did]
            mdef = modules.get(producer.module)
            ctype = (call_output_type(mdef.output, mdef.options.merged(producer.options))
                     if mdef is not None else None)
        resolved_data[did] = replace(node, ctype=ctype)
        return ctype

    unknown_only = True
    for m in spec.modules:
        mdef = modules.get(m.module)
        if mdef is None:
            hint = difflib.get_close_matches(m.module, list(modules), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            problems.append(Diagnostic("E110", f"unknown module '{m.module}' (node "
                                               f"'{m.name}'){suggestion}"))
            continue
        given = dict(m.args)
        for pname, ptype in mdef.inputs.items():
            if pname not in given:
                unknown_only = False
                problems.append(Diagnostic("E121", f"node '{m.name}': module {m.module} needs "
                                                   f"argument '{pname}' ({render(ptype)})"))
                continue
            atype = type_of(given[pname])
            if atype is not None and not is_subtype(atype, ptype):
                unknown_only = False
                problems.append(Diagnostic(
                    "E122", f"node '{m.name}': argument '{pname}' of {m.module} expects "
                            f"{render(ptype)}, got {render(atype)}"))
        for extra in sorted(set(given) - set(mdef.inputs)):
            unknown_only = False
            hint = difflib.get_close_matches(extra, list(mdef.inputs), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            problems.append(Diagnostic("E123", f"node '{m.name}': module {m.module} has no "
                                               f"parameter '{extra}'{suggestion}"))
    for d in spec.data:
        type_of(d.id)
    if problems:
        if unknown_only and all(p.code == "E110" for p in problems):
            raise UnknownModuleError(problems)
        raise CompilationError(problems)
    return replace(spec, data=tuple(resolved_data[d.id] for d in spec.data))
