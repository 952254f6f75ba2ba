"""Loading the user's modules by name: ``--modules`` on the command line, plugins.

A *module source* is one of:

- a path to a ``.py`` file (``examples/custom_modules.py``): imported under a name of
  its own (``constellation_user.custom_modules``), registered in ``sys.modules`` so
  that process pools can find its functions again;
- a dotted name of an importable Python module (``mypackage.modules``);
- ``ep:NAME``: the entry point ``NAME`` of the group ``constellation.modules`` (a
  Python module, a ``@module`` definition or a list of them).

Every ``@module`` definition at the top level of the Python module is taken.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError
from constellation.core.modules import ModuleDefinition

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ENTRY_POINT_GROUP", "load_modules"]

ENTRY_POINT_GROUP = "constellation.modules"


def _definitions(obj: Any) -> list[ModuleDefinition]:
    if isinstance(obj, ModuleDefinition):
        return [obj]
    if isinstance(obj, list | tuple):
        return [d for d in obj if isinstance(d, ModuleDefinition)]
    return [v for v in vars(obj).values() if isinstance(v, ModuleDefinition)]


def _from_file(path: Path, source: str) -> Any:
    if not path.is_file():
        raise ConfigurationError(f"--modules {source}: no such file",
                                 details={"field": "modules", "source": source})
    stem = re.sub(r"\W", "_", path.stem) or "modules"
    name = f"constellation_user.{stem}"
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "")).resolve() == \
            path.resolve():
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"--modules {source}: cannot be imported as Python",
                                 details={"field": "modules", "source": source})
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("constellation_user", _namespace())
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ConfigurationError(f"--modules {source}: importing it raised "
                                 f"{type(exc).__name__}: {exc}",
                                 details={"field": "modules", "source": source}) from exc
    return mod


def _namespace() -> Any:
    import types

    ns = types.ModuleType("constellation_user")
    ns.__path__ = []  # a package, so that constellation_user.<stem> can be imported
    return ns


def _from_entry_point(name: str, source: str) -> Any:
    found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
             if ep.name == name]
    if not found:
        raise ConfigurationError(f"--modules {source}: no entry point {name!r} in the group "
                                 f"{ENTRY_POINT_GROUP}",
                                 details={"field": "modules", "source": source})
    try:
        return found[0].load()
    except Exception as exc:
        raise ConfigurationError(f"--modules {source}: loading the entry point raised "
                                 f"{type(exc).__name__}: {exc}",
                                 details={"field": "modules", "source": source}) from exc


def load_modules(sources: Iterable[str]) -> list[ModuleDefinition]:
    """The ``@module`` definitions of each source (see the module docstring), in order.

    Raises:
        ConfigurationError: a source that cannot be found or imported, or that defines
            no module.
    """
    found: list[ModuleDefinition] = []
    for source in sources:
        if source.startswith("ep:"):
            obj = _from_entry_point(source[3:], source)
        elif source.endswith(".py") or "/" in source or "\\" in source:
            obj = _from_file(Path(source), source)
        else:
            try:
                obj = importlib.import_module(source)
            except Exception as exc:
                raise ConfigurationError(
                    f"--modules {source}: cannot import it ({type(exc).__name__}: {exc}); "
                    "give a dotted module name on sys.path or a path to a .py file",
                    details={"field": "modules", "source": source}) from exc
        defs = _definitions(obj)
        if not defs:
            raise ConfigurationError(f"--modules {source}: defines no @module",
                                     details={"field": "modules", "source": source})
        found.extend(d for d in defs if d not in found)
    return found
