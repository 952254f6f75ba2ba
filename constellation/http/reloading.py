"""The daemon's ``--pipelines-dir``: every ``*.cst`` compiled and saved as a version of
its file stem (``engine.pipelines.save``), at start, on ``POST /pipelines/{name}/reload``,
and -- with ``--watch`` -- whenever a file's modification time or size changes (polled
every ``--watch-interval`` seconds by one daemon thread; no extra dependency).

A file whose source the name has a version of adds no version (its structural hash is
known). At start that version does not become current either, so a restart never undoes
a rollback; a reload (or the watcher seeing the file change) makes the file's version
current, since someone changed the file. A file that does not compile (or cannot be
read, or is not UTF-8) is reported -- an error for the reload request, a warning in the
log for the watcher -- and the stored versions stay as they were: the daemon keeps
serving the last good version. A deleted file deletes nothing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from constellation.core.errors import (
    CompilationError,
    ConstellationError,
    UnknownPipelineError,
)

if TYPE_CHECKING:
    from pathlib import Path

    from constellation.http.app import ServerState

__all__ = ["FileResult", "PipelineDir"]

logger = logging.getLogger("constellation.http")


@dataclass(frozen=True)
class FileResult:
    """What loading one pipeline file did.

    Attributes:
        name: the pipeline's name (the file stem).
        file: the file's path.
        version: the version the file's source is (None: it failed).
        structural_hash: its structural hash (None: it failed).
        changed: whether this load changed the current version (added one, or made
            the file's older version current again).
        error: ``{"code", "message", "details"}`` when it failed.
    """

    name: str
    file: str
    version: int | None = None
    structural_hash: str | None = None
    changed: bool = False
    error: dict[str, Any] | None = field(default=None)

    def location(self) -> str:
        """``file:line:col: code message`` of the error (or the file)."""
        if self.error is None:
            return self.file
        first = (self.error["details"].get("errors") or [{}])[0]
        where = f":{first['line']}:{first['column']}" if "line" in first else ""
        return f"{self.file}{where}: {self.error['code']} {self.error['message']}"


class PipelineDir:
    """The pipelines directory of one server (see the module docstring).

    Args:
        state: the server's state (its engine's ``engine.pipelines`` stores versions).
        directory: the directory of ``*.cst`` files.
        interval: seconds between two polls of the watcher.
    """

    def __init__(self, state: ServerState, directory: Path, interval: float) -> None:
        self.state = state
        self.directory = directory
        self.interval = interval
        self._lock = threading.Lock()  # one load at a time: reload and the watcher
        self._seen: dict[str, tuple[int, int]] = {}  # file -> (mtime_ns, size) loaded
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0

    def path_of(self, name: str) -> Path | None:
        """``<dir>/<name>.cst`` when that file exists (names never contain ``/``)."""
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            return None
        path = self.directory / f"{name}.cst"
        return path if path.is_file() else None

    def load_all(self) -> list[FileResult]:
        """Load every ``*.cst`` (sorted by name), at start: a source the name has a
        version of does not become current (a restart does not undo a rollback)."""
        if not self.directory.is_dir():
            return []
        return [self.load(path, make_current=False)
                for path in sorted(self.directory.glob("*.cst"))]

    def load(self, path: Path, *, make_current: bool = True) -> FileResult:
        """Compile ``path`` and save it as a version of its stem, and (``make_current``)
        make that version current -- also when it is an older version, the file having
        been changed back. Never raises for the file's own problems: they are in the
        result."""
        from constellation.lang.parser import decode_source

        name = path.stem
        with self._lock:
            try:
                stat = path.stat()
                raw = path.read_bytes()
            except OSError as exc:
                return FileResult(name, str(path), error={
                    "code": "E622", "message": f"cannot read {path}: {exc.strerror or exc}",
                    "details": {"file": str(path)}})
            catalog = self.state.engine.pipelines
            try:
                source = decode_source(raw)
                try:
                    before: int | None = catalog.current(name).version
                except UnknownPipelineError:
                    before = None
                version = catalog.save(name, source)
                if make_current and version != catalog.current(name).version:
                    catalog.rollback(name, version)  # the file's source is served again
                h = _hash_of_version(catalog, name, version)
            except CompilationError as exc:
                self._seen[str(path)] = (stat.st_mtime_ns, stat.st_size)
                return FileResult(name, str(path), error={
                    "code": exc.code, "message": exc.message, "details": {
                        "file": str(path),
                        "errors": [{"code": d.code, "message": d.message, "line": d.line,
                                    "column": d.column, "severity": d.severity}
                                   for d in exc.errors]}})
            except ConstellationError as exc:  # a bad name, an alias, the store failed
                return FileResult(name, str(path), error={
                    "code": exc.code, "message": exc.message,
                    "details": {"file": str(path), **_plain(exc.details)}})
            self._seen[str(path)] = (stat.st_mtime_ns, stat.st_size)
            return FileResult(name, str(path), version, h,
                              before != catalog.current(name).version)

    # --- watching -------------------------------------------------------------------

    def start(self) -> None:
        """Start the watcher thread (files loaded so far are not loaded again unless
        they change)."""
        if self._thread is not None:
            return
        for path in self.directory.glob("*.cst"):
            try:
                stat = path.stat()
            except OSError:
                continue
            self._seen.setdefault(str(path), (stat.st_mtime_ns, stat.st_size))
        self._thread = threading.Thread(target=self._watch, name="constellation-watch",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher (waits for a load in progress, at most a few seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # the watcher never dies of one bad poll
                logger.exception("watching %s failed", self.directory)

    def poll(self) -> list[FileResult]:
        """Load the files that changed since they were last loaded (or are new)."""
        self.polls += 1
        results = []
        try:
            paths = sorted(self.directory.glob("*.cst"))
        except OSError as exc:
            logger.warning("cannot list %s: %s", self.directory, exc)
            return []
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue  # deleted meanwhile
            if self._seen.get(str(path)) == (stat.st_mtime_ns, stat.st_size):
                continue
            result = self.load(path)
            results.append(result)
            if result.error is not None:
                logger.warning("pipeline file not loaded, the stored versions stay: %s",
                               result.location())
            elif result.changed:
                logger.info("pipeline %s: version %s from %s", result.name, result.version,
                            path)
        return results


def _hash_of_version(catalog: Any, name: str, version: int) -> str:
    for v in catalog.versions(name):
        if v.version == version:
            return str(v.structural_hash)
    return ""


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    import json

    return dict(json.loads(json.dumps(details, default=str)))
