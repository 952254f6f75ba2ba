"""A quicker ``__init__`` for frozen, slotted dataclasses built by the hundred thousand.

A frozen dataclass's generated ``__init__`` sets each field with
``object.__setattr__(self, name, value)`` (its own ``__setattr__`` refuses): a global
lookup, an attribute lookup and a call with the name per field. The graph's nodes are
built once per call and value of a program (a 1 MB ``+`` chain makes 250,000 of each),
so :func:`quick_init` replaces that ``__init__`` by one with the same signature,
defaults and default factories that stores each field through its slot descriptor
directly. Instances are the same: still frozen, same ``__eq__``, ``__hash__``, ``__repr__``
and ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["quick_init"]

_T = TypeVar("_T")


class _Factory:
    """The default of a field with a default factory (shown as the dataclass shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def quick_init(cls: type[_T]) -> type[_T]:
    """Give the frozen, slotted dataclass ``cls`` a quicker ``__init__`` (see above).

    Raises:
        TypeError: ``cls`` is not a frozen dataclass with slots, or has a field that is
            keyword-only or not in ``__init__`` (not handled here), or a ``__post_init__``.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if (params is None or not params.frozen or "__slots__" not in cls.__dict__
            or hasattr(cls, "__post_init__")):
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass without "
                        "__post_init__")
    namespace: dict[str, Any] = {"FACTORY": _FACTORY}
    signature: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: only positional init fields")
        name = f.name
        namespace[f"set_{name}"] = cls.__dict__[name].__set__
        if f.default is not dataclasses.MISSING:
            namespace[f"default_{name}"] = f.default
            signature.append(f"{name}=default_{name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"factory_{name}"] = f.default_factory
            signature.append(f"{name}=FACTORY")
            body.append(f"    if {name} is FACTORY:\n        {name} = factory_{name}()")
        else:
            signature.append(name)
        body.append(f"    set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # built from the dataclass's own field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    generated = cls.__dict__["__init__"]
    init.__doc__ = generated.__doc__
    init.__annotations__ = dict(generated.__annotations__)
    setattr(cls, "__init__", init)  # noqa: B010 -- mypy refuses assigning to a method
    return cls
