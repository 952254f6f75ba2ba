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
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from constellation.core._frozen import quick_init
from constellation.core.errors import CompilationError, Diagnostic, UnknownModuleError
from constellation.core.options import CallOptions, call_output_type
from constellation.core.transforms import infer_transform_type
from constellation.core.types import CType, Tagged, is_subtype, render

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from constellation.core.modules import ModuleDefinition

__all__ = ["DagSpec", "DataNode", "ModuleNode", "Transform", "resolve"]


@quick_init
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


@quick_init
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


@quick_init
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
        return dict(zip(map(_ID, self.data), self.data, strict=True))

    @cached_property
    def data_positions(self) -> dict[str, int]:
        """Data node id → its position in :attr:`data` (resolution and the execution plan
        share it)."""
        return dict(zip(map(_ID, self.data), range(len(self.data)), strict=True))

    @property
    def input_types(self) -> dict[str, CType | None]:
        """Declared input name → type."""
        return {name: self.data[self.data_positions[did]].ctype for name, did in self.inputs}

    @property
    def output_types(self) -> dict[str, CType | None]:
        """Declared output name → type."""
        return {name: self.data[self.data_positions[did]].ctype
                for name, did in self.outputs}

    @property
    def is_resolved(self) -> bool:
        """Whether every data node has a type (see :func:`resolve`)."""
        return all(d.ctype is not None for d in self.data)

    def canonical(self) -> dict[str, Any]:
        """The structure as JSON-ready data: nodes, edges, types and options, not the name."""
        return self._canonical(list)

    def _canonical(self, inputs_as: Callable[[tuple[str, ...]], Any]) -> dict[str, Any]:
        # inputs_as: list for canonical(); the hash keeps the tuples (same JSON).
        # Column by column with map() and zip(), whose loops run in C: a generator of one
        # tuple per node spent most of a 250,000-call program's hash building them. A
        # type or an option set is rendered once however many nodes share it (every
        # call of such a program has the same ones); keyed by id(), stable while the
        # nodes holding them live.
        data, modules = self.data, self.modules
        ctypes = list(map(_CTYPE, data))
        rendered = {i: render(t) if t else None
                    for i, t in {id(t): t for t in ctypes}.items()}
        transforms = list(map(_TRANSFORM, data))
        options = list(map(_OPTIONS, modules))
        options_data = {i: _jsonable(sorted(o.as_dict().items()))
                        for i, o in {id(o): o for o in options}.items()}
        return {
            "inputs": sorted(self.inputs),
            "outputs": sorted(self.outputs),
            "timeout": self.timeout,
            "data": sorted(zip(
                map(_ID, data), map(rendered.__getitem__, map(id, ctypes)),
                [_jsonable(t.op) if t else None for t in transforms],
                [_jsonable(t.params) if t else None for t in transforms],
                map(inputs_as, map(_INPUTS, data)), strict=True)),
            "modules": sorted(zip(
                map(_ID, modules), map(_MODULE, modules), map(sorted, map(_ARGS, modules)),
                map(_OUTPUT, modules), map(options_data.__getitem__, map(id, options)),
                strict=True)),
        }

    @cached_property
    def structural_hash(self) -> str:
        """SHA-256 of the canonical structure (hex): equal for structurally equal graphs."""
        # Nothing in the canonical form refers back to itself (_jsonable would not have
        # returned): the encoder need not track every list it enters for cycles.
        text = json.dumps(self._canonical(tuple), sort_keys=True, separators=(",", ":"),
                          default=_repr, check_circular=False)
        return hashlib.sha256(text.encode()).hexdigest()

    @cached_property
    def _compile_key(self) -> CompileKey | None:
        """A key equal for two DagSpecs that compile alike: what an engine's compile
        cache looks a DagSpec up by; ``None`` when the spec cannot be keyed (it is then
        compiled each time, never mistaken for another).

        Every field of the spec and of its nodes is in it (read from the dataclasses'
        fields, so a field added later is too): the names (pipeline, description,
        nodes, ids), which messages and results quote, as they are, compared as the
        engine uses them (as dict keys); types as themselves (``CHandled("Int")`` is not
        ``Int``, though both render ``Int``); literals, options and the timeout exactly
        (:func:`_frozen`: ``True`` is not ``1``, a tuple not a list, ``-0.0`` not
        ``0.0``, an object JSON has no form for by its type, repr and ``==``). Unlike
        the structural hash it is neither sorted nor serialised: for a new DagSpec
        equal to one compiled before (a pipeline built afresh per request) the lookup
        costs well under half the hash. Specs that differ only in their nodes' order
        get different keys: each is compiled once. ``None`` for a spec holding an
        unhashable object, an object whose repr or ``==`` raises, or a value nested
        too deep to walk."""
        key: list[Any] = []
        try:
            for f in fields(self):
                value = getattr(self, f.name)
                if f.name == "data" or f.name == "modules":
                    # Its length, then column by column (tuples of one field of every
                    # node, built in C where the field needs no freezing).
                    key.append(len(value))
                    key.extend(_key_column(column, value)
                               for column in _node_fields(type(value[0]) if value else None))
                else:
                    key.append(_frozen(value))
            return CompileKey(tuple(key))
        except Exception:  # a user object's hash, repr or == raised; RecursionError
            return None


class CompileKey:
    """A tuple whose hash is computed once (an engine looks the same spec up on every
    run; a 1,000-node key's hash would be recomputed each time)."""

    __slots__ = ("_hash", "items")

    def __init__(self, items: tuple[Any, ...]) -> None:
        self.items = items
        self._hash = hash(items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, CompileKey) and self._hash == other._hash
                                 and self.items == other.items)


_ID = attrgetter("id")
_CTYPE = attrgetter("ctype")
_TRANSFORM = attrgetter("transform")
_INPUTS = attrgetter("inputs")
_MODULE = attrgetter("module")
_ARGS = attrgetter("args")
_OUTPUT = attrgetter("output")
_OPTIONS = attrgetter("options")


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


def _repr(value: Any) -> str:
    """How the structural hash writes an object JSON has no form for: its repr, or (a
    repr that raises) its type and identity, unique while the spec holding it lives."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__qualname__} object at {id(value):#x}>"


def _node_fields(cls: type | None) -> tuple[str, ...]:
    return () if cls is None else tuple(f.name for f in fields(cls))


# The fields compared as they are: names and ids (strings the engine uses as dict keys),
# a data node's inputs and a call's arguments (tuples of them), its module and output.
_PLAIN_FIELDS = frozenset({"id", "name", "inputs", "module", "args", "output"})


def _key_column(name: str, nodes: tuple[Any, ...]) -> tuple[Any, ...]:
    """One field of every node, as DagSpec._compile_key holds it."""
    values = tuple(map(attrgetter(name), nodes))
    if name in _PLAIN_FIELDS or name == "ctype":
        return values  # types compare exactly and are hashed once, by CompileKey
    # Transforms and options: frozen once per distinct object (most calls share "no
    # options"), a literal's value exactly.
    frozen = {i: _frozen(v) for i, v in {id(v): v for v in values}.items()}
    return tuple(map(frozen.__getitem__, map(id, values)))


# Markers of the kinds _frozen tells apart (compared by identity).
(_IS_BOOL, _IS_FLOAT, _IS_LIST, _IS_TUPLE, _IS_DICT, _IS_TAGGED, _IS_OPTIONS, _IS_TRANSFORM,
 _IS_OPAQUE) = (object() for _ in range(9))
_ATOMS = (str, int, type(None))


def _frozen(value: Any) -> Any:
    """``value`` as a hashable form equal only for values no module could tell apart:
    each container and scalar kind tagged (``True`` is not ``1``, ``1.0`` is not ``1``,
    a tuple is not a list, a dict keeps its keys' types and order), a float by its hex
    form (``-0.0`` is not ``0.0``, NaN equals NaN); a type as itself; an object of any
    other class by its type, its repr and itself (a repr alone can be equal for unequal
    objects, ``==`` alone for objects that print apart: ``Decimal("1.0")`` and
    ``Decimal("1.00")``); one that is not equal to itself (a NaN Decimal) by type and
    repr. Raises what a user object's hash, repr or ``==`` raises, RecursionError for a
    value nested too deep."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is bool:
        return (_IS_BOOL, value)
    if kind is float:
        return (_IS_FLOAT, value.hex())
    if kind is list:
        return (_IS_LIST, *map(_frozen, value))
    if kind is tuple:
        return (_IS_TUPLE, *map(_frozen, value))
    if kind is dict:
        return (_IS_DICT, *[(_frozen(k), _frozen(v)) for k, v in value.items()])
    if isinstance(value, CType):
        return value
    if kind is Tagged:
        return (_IS_TAGGED, value.tag, _frozen(value.value))
    if kind is CallOptions:
        return (_IS_OPTIONS, *[(n, _frozen(v)) for n, v in value.as_dict().items()])
    if kind is Transform:
        return (_IS_TRANSFORM, value.op, _frozen(value.params))
    if value == value:
        return (_IS_OPAQUE, kind, repr(value), value)
    return (_IS_OPAQUE, kind, repr(value))


def _fits(args: tuple[tuple[str, str], ...], params: Mapping[str, CType],
          data: tuple[DataNode, ...], positions: Mapping[str, int]) -> bool:
    """Whether a call's arguments are exactly the parameters, each a typed node of a
    fitting type (then :func:`resolve` has nothing to report about the call)."""
    if len(args) != len(params) or (len(args) > 1 and (
            args[0][0] == args[1][0] if len(args) == 2 else
            len({pname for pname, _ in args}) < len(args))):
        return False  # a parameter missing, or one given twice
    for pname, did in args:
        ptype = params.get(pname)
        position = positions.get(did)
        if ptype is None or position is None:
            return False
        atype = data[position].ctype
        if atype is None or (atype is not ptype and not is_subtype(atype, ptype)):
            return False
    return True


def resolve(spec: DagSpec, modules: Mapping[str, ModuleDefinition]) -> DagSpec:
    """Type every data node of ``spec`` against the registered modules and check calls.

    Reports every problem at once: unknown modules (with "did you mean"), missing or
    unknown arguments, and arguments whose type does not fit the parameter.

    Raises:
        CompilationError: the graph does not type-check (``UnknownModuleError`` when the
            only problems are unknown modules).
    """
    problems: list[Diagnostic] = []
    data, positions = spec.data, spec.data_positions  # cached: the plan reads it too
    producers: dict[str, ModuleNode] | None = None  # built when a module output is untyped
    types: dict[str, CType | None] = {}
    typed: dict[str, DataNode] = {}  # the nodes that got a type here

    def type_of(did: str) -> CType | None:
        nonlocal producers
        if did in types:
            return types[did]
        node = data[positions[did]]
        ctype = node.ctype
        if ctype is None:
            if node.transform is not None:
                arg_types = [type_of(i) for i in node.inputs]
                if all(t is not None for t in arg_types):
                    try:
                        ctype = infer_transform_type(node.transform, arg_types)  # type: ignore[arg-type]
                    except TypeError as exc:
                        problems.append(Diagnostic("E120", f"{node.name}: {exc}"))
            else:
                if producers is None:
                    producers = {m.output: m for m in spec.modules}
                producer = producers.get(did)
                mdef = modules.get(producer.module) if producer is not None else None
                if producer is not None and mdef is not None:
                    ctype = call_output_type(mdef.output, mdef.options.merged(producer.options))
            if ctype is not None:
                typed[did] = replace(node, ctype=ctype)
        types[did] = ctype
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
        if _fits(m.args, mdef.inputs, data, positions):
            continue  # the usual case, without the checks below that find no problem
        given = dict(m.args)
        found = 0
        for pname, ptype in mdef.inputs.items():
            if pname not in given:
                unknown_only = False
                problems.append(Diagnostic("E121", f"node '{m.name}': module {m.module} needs "
                                                   f"argument '{pname}' ({render(ptype)})"))
                continue
            found += 1
            did = given[pname]
            atype = data[positions[did]].ctype  # a typed node's type (the usual case)
            if atype is None:
                atype = type_of(did)
            if atype is not None and atype is not ptype and not is_subtype(atype, ptype):
                unknown_only = False
                problems.append(Diagnostic(
                    "E122", f"node '{m.name}': argument '{pname}' of {m.module} expects "
                            f"{render(ptype)}, got {render(atype)}"))
        if found == len(given):
            continue  # every argument is a parameter
        for extra in sorted(set(given) - set(mdef.inputs)):
            unknown_only = False
            hint = difflib.get_close_matches(extra, list(mdef.inputs), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            problems.append(Diagnostic("E123", f"node '{m.name}': module {m.module} has no "
                                               f"parameter '{extra}'{suggestion}"))
    for d in spec.data:
        if d.ctype is None:  # a typed node needs nothing (and reports nothing)
            type_of(d.id)
    if problems:
        if unknown_only and all(p.code == "E110" for p in problems):
            raise UnknownModuleError(problems)
        raise CompilationError(problems)
    if not typed:
        return spec  # already typed (compiled source): the same spec, hashed once
    return replace(spec, data=tuple(typed.get(d.id, d) for d in spec.data))
