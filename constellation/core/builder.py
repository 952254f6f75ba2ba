"""PipelineBuilder: the Python way to a DagSpec.

Example:
    >>> b = PipelineBuilder("shout")
    >>> text = b.input("text", str)
    >>> loud = b.call("Uppercase", text=text)
    >>> b.output("loud", loud)
    >>> spec = b.build()
    >>> [m.module for m in spec.modules]
    ['Uppercase']
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from constellation.core.dag import DagSpec, DataNode, ModuleNode, Transform
from constellation.core.errors import ConfigurationError, InputTypeError
from constellation.core.hints import from_annotation
from constellation.core.modules import ModuleDefinition
from constellation.core.options import CallOptions, call_options
from constellation.core.type_syntax import TypeSyntaxError, parse_type
from constellation.core.types import (
    BOOLEAN,
    FLOAT,
    INT,
    STRING,
    CList,
    CType,
    Tagged,
    coerce,
)
from constellation.lang.limits import MAX_NESTING  # the language's limit, one value

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["PipelineBuilder", "Ref"]


@dataclass(frozen=True, slots=True)
class Ref:
    """A value in a pipeline under construction (an input, a call's result, a literal).

    Attributes:
        data_id: the data node it names.
        name: a readable name, used in messages.
    """

    data_id: str
    name: str
    _builder: int


class PipelineBuilder:
    """Builds a pipeline from Python: inputs, module calls, literals and outputs.

    Module names are resolved when the engine compiles or runs the spec, so a builder
    needs no engine. Passing a module definition (a ``@module`` function) instead of a
    name works too.

    Args:
        name: the pipeline's name.
        description: free text.
        timeout: the pipeline's own execution timeout, in seconds.
    """

    def __init__(self, name: str, *, description: str = "", timeout: float | None = None
                 ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("a pipeline needs a non-empty name",
                                     details={"field": "name"})
        self._name = name
        self._description = description
        self._timeout = timeout
        self._inputs: dict[str, str] = {}
        self._data: list[DataNode] = []
        self._modules: list[ModuleNode] = []
        self._outputs: dict[str, str] = {}
        self._node_names: dict[str, int] = {}
        self._used_names: set[str] = set()  # every call's node name (a scan was quadratic)
        self._literal_count = 0
        self._transform_count = 0
        # The last build() and the state it was built from: a builder only ever grows
        # (every declaration appends a data node or an output), so the two lengths
        # tell whether anything changed since.
        self._built: tuple[tuple[int, int], DagSpec] | None = None

    # --- declarations --------------------------------------------------------------

    def input(self, name: str, ctype: Any) -> Ref:
        """Declare an input.

        Args:
            name: the input's name.
            ctype: a CType, a Python type hint (``str``, ``list[int]`` ...) or a type string
                (``"List<Int>"``).

        Raises:
            ConfigurationError: a duplicate name or an unusable type.
        """
        if name in self._inputs:
            raise ConfigurationError(f"input '{name}' is declared twice",
                                     details={"field": "input", "name": name})
        did = f"in:{name}"
        self._data.append(DataNode(did, name, _as_ctype(ctype, f"input '{name}'")))
        self._inputs[name] = did
        return Ref(did, name, id(self))

    def literal(self, value: Any, ctype: Any = None) -> Ref:
        """A constant value; its type is inferred for scalars and lists of one scalar type.

        Raises:
            ConfigurationError: the type cannot be inferred and none was given, the
                value does not fit the type, or it nests deeper than MAX_NESTING.
        """
        if _nests_deeper(value, MAX_NESTING):
            raise ConfigurationError(
                f"literal {_short(value)} nests more than {MAX_NESTING} levels deep (the "
                "language's limit: values are walked recursively when they are hashed, "
                "checked and encoded)", details={"field": "literal"})
        t = _as_ctype(ctype, "literal") if ctype is not None else _infer(value)
        try:
            # Checked here, as an input is at run time, in canonical form (an Int widened
            # for Float, a record as a dict): a literal that does not fit its type would
            # reach modules unchecked. A copy: the caller's list changing later must not
            # change the pipeline (nor one cached under the spec's key).
            value = _copied(coerce(t, value, "literal"))
        except InputTypeError as exc:
            raise ConfigurationError(exc.message, details={"field": "literal"}) from None
        except RecursionError:
            raise ConfigurationError(
                f"the type of literal {_short(value)} nests too deep to check",
                details={"field": "literal"}) from None
        except Exception as exc:  # the value's own __repr__, __eq__ ... raised
            raise ConfigurationError(
                f"literal {_short(value)} cannot be checked: "
                f"{type(exc).__name__}: {exc}", details={"field": "literal"}) from exc
        self._literal_count += 1
        did = f"lit:{self._literal_count}"
        name = f"literal {_short(value)}"
        self._data.append(DataNode(did, name[:60], t,
                                   Transform("literal", (("type", t), ("value", value)))))
        return Ref(did, name, id(self))

    def call(
        self,
        module: str | ModuleDefinition,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        options: CallOptions | Mapping[str, Any] | None = None,
        node: str | None = None,
        **kwargs: Any,
    ) -> Ref:
        """Call a module; arguments are Refs or literal values.

        Args:
            module: the registered module's name or its definition.
            args: arguments as a mapping (for parameters named ``options`` or ``node``).
            options: the call's options (``{"retry": 2, "timeout": 1.0}`` or CallOptions).
            node: the node's name in results; defaults to the module name, numbered
                from the second call on (``Uppercase#2``).
            **kwargs: arguments by parameter name.

        Returns:
            A Ref to the call's result.
        """
        mod_name = module.name if isinstance(module, ModuleDefinition) else module
        if not isinstance(mod_name, str) or not mod_name:
            raise ConfigurationError(f"call: module must be a name or a @module function, "
                                     f"got {module!r}", details={"field": "module"})
        node_name = node or self._next_node_name(mod_name)
        if node_name in self._used_names:
            raise ConfigurationError(f"node name '{node_name}' is used twice",
                                     details={"field": "node", "name": node_name})
        bound: dict[str, str] = {}
        for pname, value in {**(args or {}), **kwargs}.items():
            bound[pname] = self._as_ref(value).data_id
        options = call_options(options, f"node '{node_name}'")
        mid = f"mod:{node_name}"
        out_id = f"{node_name}.out"
        out_type = module.output if isinstance(module, ModuleDefinition) else None
        self._data.append(DataNode(out_id, out_id, out_type))
        self._used_names.add(node_name)
        self._modules.append(ModuleNode(mid, node_name, mod_name, tuple(sorted(bound.items())),
                                        out_id, options))
        return Ref(out_id, node_name, id(self))

    def field(self, ref: Ref, name: str) -> Ref:
        """Access a record field (element-wise on a list of records)."""
        src = self._as_ref(ref)
        self._transform_count += 1
        did = f"t:{self._transform_count}"
        self._data.append(DataNode(did, f"{src.name}.{name}", None,
                                   Transform("field", (("name", name),)), (src.data_id,)))
        return Ref(did, f"{src.name}.{name}", id(self))

    def record(self, **fields: Any) -> Ref:
        """Build a record from Refs or literal values."""
        refs = {n: self._as_ref(v) for n, v in sorted(fields.items())}
        self._transform_count += 1
        did = f"t:{self._transform_count}"
        self._data.append(DataNode(did, "record", None,
                                   Transform("record", (("names", tuple(refs)),)),
                                   tuple(r.data_id for r in refs.values())))
        return Ref(did, "record", id(self))

    def list(self, items: Iterable[Any]) -> Ref:
        """Build a list from Refs or literal values (e.g. to fan many results into one call)."""
        refs = [self._as_ref(v) for v in items]
        self._transform_count += 1
        did = f"t:{self._transform_count}"
        self._data.append(DataNode(did, "list", None, Transform("list"),
                                   tuple(r.data_id for r in refs)))
        return Ref(did, "list", id(self))

    def output(self, name: str, ref: Ref) -> None:
        """Declare an output.

        Raises:
            ConfigurationError: a duplicate output name, or a Ref from another builder.
        """
        if name in self._outputs:
            raise ConfigurationError(f"output '{name}' is declared twice",
                                     details={"field": "output", "name": name})
        self._outputs[name] = self._as_ref(ref).data_id

    def build(self) -> DagSpec:
        """Return the DagSpec.

        Building an unchanged builder again returns the same (immutable) DagSpec, so its
        structural hash is computed once and an engine finds it compiled.

        Raises:
            ConfigurationError: the pipeline declares no output.
        """
        if not self._outputs:
            raise ConfigurationError(f"pipeline '{self._name}' declares no output",
                                     details={"field": "output"})
        state = (len(self._data), len(self._outputs))
        if self._built is not None and self._built[0] == state:
            return self._built[1]
        spec = DagSpec(
            name=self._name,
            inputs=tuple(self._inputs.items()),
            data=tuple(self._data),
            modules=tuple(self._modules),
            outputs=tuple(self._outputs.items()),
            timeout=self._timeout,
            description=self._description,
        )
        self._built = (state, spec)
        return spec

    # --- helpers ------------------------------------------------------------------

    def _next_node_name(self, mod_name: str) -> str:
        n = self._node_names.get(mod_name, 0) + 1
        self._node_names[mod_name] = n
        return mod_name if n == 1 else f"{mod_name}#{n}"

    def _as_ref(self, value: Any) -> Ref:
        if isinstance(value, Ref):
            if value._builder != id(self):
                raise ConfigurationError(f"{value.name!r} belongs to another PipelineBuilder",
                                         details={"field": "ref"})
            return value
        return self.literal(value)


def _as_ctype(ctype: Any, where: str) -> CType:
    if isinstance(ctype, str):
        try:
            return parse_type(ctype)
        except TypeSyntaxError as exc:
            raise ConfigurationError(f"{where}: {exc}", details={"field": "type"}) from None
    try:
        return from_annotation(ctype, where)
    except TypeError as exc:
        raise ConfigurationError(str(exc), details={"field": "type"}) from None


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether containers in ``value`` (lists, tuples, sets, dicts' keys and values, a
    union's Tagged values) nest more than ``limit`` levels (iterative)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, list | tuple | set | frozenset | dict | Tagged):
            if depth >= limit:
                return True
            items: Iterable[Any] = (
                (*v.keys(), *v.values()) if isinstance(v, dict) else
                (v.value,) if isinstance(v, Tagged) else v)
            stack.extend((item, depth + 1) for item in items)
    return False


def _copied(value: Any) -> Any:
    """``value`` with its lists, dicts and sets (and the tuples and Tagged values holding
    them) copied; other objects shared (a handled type's values are the handler's)."""
    kind = type(value)  # exact: a subclass is shared, not turned into its base
    if kind is list:
        return [_copied(v) for v in value]
    if kind is dict:
        return {k: _copied(v) for k, v in value.items()}
    if kind is set:
        return {_copied(v) for v in value}
    if kind is tuple:
        return tuple(_copied(v) for v in value)
    if kind is Tagged:
        return Tagged(value.tag, _copied(value.value))
    return value


def _short(value: Any) -> str:
    """A short repr of ``value`` for names and messages: a large or deeply nested
    literal is not rendered whole (reprlib: a few items per level, a few levels)."""
    return reprlib.repr(value)


def _infer(value: Any) -> CType:
    scalar = {bool: BOOLEAN, int: INT, float: FLOAT, str: STRING}
    if type(value) in scalar:
        return scalar[type(value)]
    if isinstance(value, list) and value and len({type(v) for v in value}) == 1 \
            and type(value[0]) in scalar:
        return CList(scalar[type(value[0])])
    raise ConfigurationError(f"cannot infer the type of literal {_short(value)}; use "
                             "builder.literal(value, type)", details={"field": "literal"})
