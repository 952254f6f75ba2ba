"""``ShipModules``: a dask ``WorkerPlugin`` that installs module files on every worker
(imported through ``constellation.executors``, only when used)."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ShipModules"]

_PluginBase: Any
try:
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # pragma: no cover - without dask the plugin is never registered
    _PluginBase = object


class ShipModules(_PluginBase):  # type: ignore[misc]
    """A dask ``WorkerPlugin`` that installs Python files on every worker.

    ``client.register_plugin(ShipModules([...]))`` copies the files (read here, when
    the plugin is built) into a folder of each worker, puts that folder first on the
    worker's ``sys.path`` and reloads modules of those names that the worker had
    already imported. Workers that join later get them too.

    Args:
        sources: ``.py`` files (top-level modules), package folders, or imported
            top-level modules or packages.

    Raises:
        ConfigurationError: a source that is not a file, folder or top-level module.
    """

    def __init__(self, sources: Iterable[str | os.PathLike[str] | types.ModuleType]) -> None:
        files: dict[str, bytes] = {}
        tops: set[str] = set()
        for source in sources:
            path = self._path_of(source)
            if path.is_file() and path.suffix == ".py":
                files[path.name] = path.read_bytes()
                tops.add(path.stem)
            elif path.is_dir() and (path / "__init__.py").is_file():
                for f in sorted(path.rglob("*.py")):
                    if "__pycache__" not in f.parts:
                        files[str(f.relative_to(path.parent))] = f.read_bytes()
                tops.add(path.name)
            else:
                raise ConfigurationError(f"ShipModules: {source!r} is not a .py file or a "
                                         "package folder", details={"field": "sources"})
        self.files = files
        self.modules = sorted(tops)
        digest = hashlib.sha256()
        for rel in sorted(files):
            digest.update(rel.encode() + b"\0" + files[rel])
        self.name = f"constellation-ship-{digest.hexdigest()[:16]}"

    @staticmethod
    def _path_of(source: str | os.PathLike[str] | types.ModuleType) -> Path:
        if isinstance(source, types.ModuleType):
            if "." in source.__name__:
                raise ConfigurationError(
                    f"ShipModules: {source.__name__} is a submodule; ship its top-level "
                    "package", details={"field": "sources"})
            file = getattr(source, "__file__", None)
            if file is None:
                raise ConfigurationError(f"ShipModules: {source.__name__} has no file",
                                         details={"field": "sources"})
            path = Path(file)
            return path.parent if path.name == "__init__.py" else path
        return Path(source)

    def setup(self, worker: Any = None) -> None:
        """On the worker: write the files, put their folder first on ``sys.path``."""
        base = Path(getattr(worker, "local_directory", None) or os.getcwd())
        folder = base / "constellation-modules"
        for rel, data in self.files.items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
        importlib.invalidate_caches()
        for name in self.modules:
            if name in sys.modules:
                importlib.reload(sys.modules[name])
