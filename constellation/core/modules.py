"""Modules: plain Python functions registered with the engine.

A module's signature comes from its type hints::

    @module("Uppercase", description="Upper-cases text")
    def uppercase(text: str) -> str:
        return text.upper()

Parameters are the module's inputs; the return annotation is its output type. A
parameter named ``ctx`` is not an input: the runtime passes the call's context there
(cancellation, deadline, attempt number, ``ctx.secret(name)``). A module that runs on a
process pool or a dask cluster declares the secrets it asks for,
``@module(secrets=("payments_key",))``: they are looked up in the engine's process and
shipped with the call.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints, overload

from constellation.core.errors import ConfigurationError
from constellation.core.hints import from_annotation
from constellation.core.options import CallOptions, call_options
from constellation.core.secret_names import check_names
from constellation.core.types import CType, coerce, render

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["ModuleDefinition", "module"]

_CTX_PARAM = "ctx"
_ISOLATIONS = ("thread", "process")


@dataclass(frozen=True, eq=False)
class ModuleDefinition:
    """A registered module: a function with a typed signature and default call options.

    Calling the definition calls the function, so decorated functions stay usable as
    ordinary Python functions.

    Attributes:
        name: the name pipelines call it by (``Uppercase``, ``stdlib.math.add``).
        func: the function.
        inputs: parameter name → input type, in parameter order.
        output: the type of the returned value.
        version: ``"major.minor"``.
        description: one line for listings.
        options: default call options; a call's own options override them.
        takes_ctx: whether the function declares a ``ctx`` parameter.
        isolation: ``"thread"`` (default) or ``"process"``.
        is_async: the function is ``async def``: its calls are awaited on the engine's
            event loop (see ``constellation.actors._async``).
        secrets: the names of the secrets it asks ``ctx.secret`` for; required for
            calls in other processes (process pools, dask), which receive exactly these.
    """

    name: str
    func: Callable[..., Any]
    inputs: Mapping[str, CType]
    output: CType
    version: str = "1.0"
    description: str = ""
    options: CallOptions = field(default_factory=CallOptions)
    takes_ctx: bool = False
    isolation: str = "thread"
    is_async: bool = False
    secrets: tuple[str, ...] = ()
    # Parameters annotated with a dataclass: their dicts are turned back into instances.
    _dataclass_params: Mapping[str, type] = field(default_factory=dict, repr=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by reference to where it is defined, so that module calls can go to a
        # process pool or a dask cluster: the function itself cannot be pickled by
        # name once ``@module`` has bound that name to this definition.
        return (_find_module, (self.func.__module__, self.func.__qualname__, self.name))

    @property
    def signature(self) -> str:
        """The signature as constellation-lang writes it: ``Uppercase(text: String) -> String``."""
        params = ", ".join(f"{n}: {render(t)}" for n, t in self.inputs.items())
        return f"{self.name}({params}) -> {render(self.output)}"

    def prepare_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Turn canonical values into what the function expects (dataclass instances)."""
        if not self._dataclass_params:
            return args
        out = dict(args)
        for name, cls in self._dataclass_params.items():
            if name in out and isinstance(out[name], dict):
                out[name] = _build_dataclass(cls, out[name])
        return out

    def check_output(self, value: Any) -> Any:
        """Check a returned value against the output type and return its canonical form.

        Raises:
            InputTypeError: the value does not fit (the runtime reports it as E302).
        """
        return coerce(self.output, value, f"return value of {self.name}")


def _find_module(module_name: str, qualname: str, name: str) -> Any:
    """Unpickle a ModuleDefinition: import its module and look the definition up (see
    ``constellation._child_module.find_definition``: a rebound name is not followed to
    another module's function)."""
    from constellation._child_module import find_definition

    try:
        obj = find_definition(module_name, qualname, name)
    except LookupError as exc:
        raise ImportError(f"{exc}; cannot unpickle it") from None
    if isinstance(obj, ModuleDefinition) or callable(obj):
        return obj
    raise ImportError(f"module {name}: {module_name}.{qualname} is not a module definition "
                      "or a function; cannot unpickle it")


def _build_dataclass(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@overload
def module(name: Callable[..., Any], /) -> ModuleDefinition: ...


@overload
def module(
    name: str | None = None,
    /,
    *,
    version: str = "1.0",
    description: str | None = None,
    isolation: str = "thread",
    secrets: Iterable[str] = (),
    **options: Any,
) -> Callable[[Callable[..., Any]], ModuleDefinition]: ...


def module(
    name: str | Callable[..., Any] | None = None,
    /,
    *,
    version: str = "1.0",
    description: str | None = None,
    isolation: str = "thread",
    secrets: Iterable[str] = (),
    **options: Any,
) -> ModuleDefinition | Callable[[Callable[..., Any]], ModuleDefinition]:
    """Turn a function into a module.

    Usable bare (``@module``, named after the function) or with arguments.

    Args:
        name: the name pipelines use; defaults to the function's name.
        version: ``"major.minor"``.
        description: one line; defaults to the first line of the docstring.
        isolation: ``"thread"`` or ``"process"`` (run in a separate process that can
            be killed on cancellation).
        secrets: names of the secrets the module asks ``ctx.secret`` for (a tuple). A
            call on a process pool or a dask cluster gets these, and only these: the
            engine looks them up before it ships the call. Optional for calls in the
            engine's process.
        **options: default call options (``retry=2``, ``timeout=1.5``, ...), see
            :class:`~constellation.core.options.CallOptions`.

    Returns:
        A :class:`ModuleDefinition` (or a decorator producing one).

    Raises:
        ConfigurationError: a parameter or the return value lacks a usable type hint, a
            bad option, a bad version or isolation, or bad secrets (not a tuple of
            valid names, a name twice, or secrets without a ``ctx`` parameter).
    """
    # The caller's locals, so hints naming classes defined in a function body resolve
    # (under ``from __future__ import annotations`` every hint is a string).
    caller_locals = dict(sys._getframe(1).f_locals)
    if callable(name):
        return _define(name, None, version, description, isolation, options, caller_locals,
                       secrets)

    def decorate(func: Callable[..., Any]) -> ModuleDefinition:
        return _define(func, name, version, description, isolation, options, caller_locals,
                       secrets)

    return decorate


def _define(
    func: Callable[..., Any],
    name: str | None,
    version: str,
    description: str | None,
    isolation: str,
    options: dict[str, Any],
    localns: dict[str, Any] | None = None,
    secrets: Iterable[str] = (),
) -> ModuleDefinition:
    mod_name = name or getattr(func, "__name__", None)
    if not mod_name or not isinstance(mod_name, str):
        raise ConfigurationError("a module needs a name", details={"field": "name"})
    if not _valid_version(version):
        raise ConfigurationError(f"module {mod_name}: version must look like '1.0', got "
                                 f"{version!r}", details={"field": "version"})
    if isolation not in _ISOLATIONS:
        raise ConfigurationError(f"module {mod_name}: isolation must be 'thread' or "
                                 f"'process', got {isolation!r}", details={"field": "isolation"})
    defaults = call_options(options, f"module {mod_name}")
    declared = check_names(secrets, f"module {mod_name}")
    try:
        hints = get_type_hints(func, localns=localns)
    except Exception as exc:
        raise ConfigurationError(f"module {mod_name}: cannot read its type hints: {exc}",
                                 details={"module": mod_name}) from exc
    is_async = inspect.iscoroutinefunction(func)
    if is_async and isolation == "process":
        raise ConfigurationError(
            f"module {mod_name}: an async def module cannot be process-isolated (its "
            "coroutine runs on the engine's event loop)", details={"field": "isolation"})
    sig = inspect.signature(func)
    inputs: dict[str, CType] = {}
    dataclass_params: dict[str, type] = {}
    takes_ctx = False
    for pname, param in sig.parameters.items():
        if pname == _CTX_PARAM:
            if isolation == "process":
                raise ConfigurationError(
                    f"module {mod_name}: a process-isolated module cannot take ctx (it is "
                    "killed when cancelled or timed out, rather than asked to stop)",
                    details={"field": "isolation"})
            takes_ctx = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ConfigurationError(
                f"module {mod_name}: parameter {pname!r} must be a plain named parameter",
                details={"module": mod_name, "parameter": pname})
        if pname not in hints:
            raise ConfigurationError(
                f"module {mod_name}: parameter {pname!r} needs a type hint",
                details={"module": mod_name, "parameter": pname})
        try:
            inputs[pname] = from_annotation(hints[pname], f"module {mod_name} parameter {pname}")
        except TypeError as exc:
            raise ConfigurationError(str(exc), details={"module": mod_name,
                                                        "parameter": pname}) from None
        if isinstance(hints[pname], type) and dataclasses.is_dataclass(hints[pname]):
            dataclass_params[pname] = hints[pname]
    if declared and not takes_ctx:
        raise ConfigurationError(
            f"module {mod_name}: declares secrets {list(declared)} but has no ctx "
            "parameter to ask for them (def f(..., ctx): ctx.secret(name))",
            details={"field": "secrets", "module": mod_name})
    if "return" not in hints or hints["return"] is type(None):
        raise ConfigurationError(
            f"module {mod_name}: needs a return type hint (its output type)",
            details={"module": mod_name})
    try:
        output = from_annotation(hints["return"], f"module {mod_name} return value")
    except TypeError as exc:
        raise ConfigurationError(str(exc), details={"module": mod_name}) from None
    if description is None:
        doc = inspect.getdoc(func) or ""
        description = doc.strip().splitlines()[0] if doc.strip() else ""
    return ModuleDefinition(
        name=mod_name,
        func=func,
        inputs=inputs,
        output=output,
        version=version,
        description=description,
        options=defaults,
        takes_ctx=takes_ctx,
        isolation=isolation,
        is_async=is_async,
        secrets=declared,
        _dataclass_params=dataclass_params,
    )


def _valid_version(version: str) -> bool:
    parts = version.split(".") if isinstance(version, str) else []
    return len(parts) == 2 and all(p.isdigit() for p in parts)
