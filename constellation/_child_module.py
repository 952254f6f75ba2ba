"""``@module`` inside the child process of an ``isolation="process"`` call.

The child (``constellation.actors._isolated_child``) imports the module that defines
the function it must call. That module says ``from constellation import module`` and
decorates its functions; building full :class:`~constellation.core.modules.ModuleDefinition`
objects there would import the type system, the options table and the handlers -- most of
an isolated call's start-up time -- only to call one function. While the child looks its
function up, ``constellation.module`` is this cheap decorator instead: it records the
function and its arguments and builds the real definition only if something asks for
more than ``func``/``name`` or a call (see :class:`ChildModule`). The parent process has
already validated the definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ChildModule", "find_definition", "module"]


class ChildModule:
    """A decorated function, as the isolated child sees it: callable, with ``func`` and
    ``name``; any other attribute builds the real ModuleDefinition and reads it there."""

    __slots__ = ("_decorator", "_real", "func", "name")

    def __init__(self, func: Callable[..., Any], name: str | None,
                 decorator: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        self.func = func
        self.name = name or getattr(func, "__name__", "?")
        self._decorator = decorator
        self._real: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def _definition(self) -> Any:
        """The real ModuleDefinition, built on first use."""
        real = self._real
        if real is None:
            from constellation.core.modules import module as real_module

            args, kwargs = self._decorator
            real = self._real = real_module(*args, **kwargs)(self.func)
        return real

    def __getattr__(self, attr: str) -> Any:
        # Only for names that are not slots: the real definition, built once.
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._definition(), attr)

    # ``isinstance(x, ModuleDefinition)`` -- in the module's own import-time code, or in an
    # engine the isolated function runs -- asks for ``__class__`` once ``type(x)`` does
    # not match: answer as the real definition, so the stand-in is accepted where a
    # definition is (``Constellation([...])``, ``register``, ``PipelineBuilder.call``).
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._definition())

    def __reduce__(self) -> tuple[Any, ...]:
        # As a ModuleDefinition: by reference to where it is defined.
        from constellation.core.modules import _find_module

        return (_find_module, (self.func.__module__, self.func.__qualname__, self.name))

    def __repr__(self) -> str:
        return f"<module {self.name} (isolated child)>"


def find_definition(module_name: str, qualname: str, name: str) -> Any:
    """What a definition sent to another process by reference is there: the object at
    ``module_name.qualname`` -- unless that is the definition of another module (the
    function's name was rebound, as by a second ``def f`` under another ``@module``
    name), then the module-level definition called ``name`` whose function has that
    qualified name.

    Raises:
        ImportError: the module does not import.
        LookupError: nothing there, or only another module's definition.
    """
    import importlib

    where: Any = importlib.import_module(module_name)
    obj: Any = where
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if obj is not None and getattr(obj, "name", name) == name:
        return obj  # the definition, or a plain function (module() called, not applied)
    for value in list(vars(where).values()):
        if getattr(value, "name", None) == name and \
                getattr(getattr(value, "func", None), "__qualname__", None) == qualname:
            return value
    if obj is None:
        raise LookupError(f"module {name}: cannot find {module_name}.{qualname} (modules "
                          "sent to other processes must be defined at module level)")
    raise LookupError(f"module {name}: {module_name}.{qualname} is now the definition of "
                      f"module {getattr(obj, 'name', '?')!r} (its name was rebound) and no "
                      f"module-level definition of {name!r} was found")


def module(name: Any = None, /, **kwargs: Any) -> Any:
    """The child's ``@module``: the same call forms as the real one."""
    if callable(name):
        return ChildModule(name, None, ((), kwargs))

    def decorate(func: Callable[..., Any]) -> ChildModule:
        return ChildModule(func, name, ((name,) if name is not None else (), kwargs))

    return decorate
