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

__all__ = ["ChildModule", "module"]


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


def module(name: Any = None, /, **kwargs: Any) -> Any:
    """The child's ``@module``: the same call forms as the real one."""
    if callable(name):
        return ChildModule(name, None, ((), kwargs))

    def decorate(func: Callable[..., Any]) -> ChildModule:
        return ChildModule(func, name, ((name,) if name is not None else (), kwargs))

    return decorate
