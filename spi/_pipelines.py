"""PipelineStore: compiled pipelines by structural hash, versions per name, aliases and
canary settings -- what a daemon needs to find its pipelines again after a restart.

What is stored (:class:`StoredPipeline`) is enough to rebuild a pipeline: its source
text when it was compiled from constellation-lang (recompiled on load), otherwise its
DagSpec as plain data (``constellation.core.spec_data``). Rebuilding is the engine's
job (``engine.pipelines``), which also checks that the structural hash still matches.

The model, which every implementation keeps:

- **pipelines**: structural hash → entry. Saving a hash that is stored keeps the entry
  first stored (two sources may differ only in comments and share a hash).
- **versions**: per name, numbered 1, 2, 3 ... in the order saved, never reused (a
  deleted version's number stays taken). A name has at most one version per hash:
  :meth:`PipelineStore.add_version` of a hash the name already has returns that
  version and changes nothing. Adding is atomic (concurrent adds of one name, from
  threads or processes, get distinct, consecutive numbers).
- **current version** per name: the first version, then whatever ``add_version(...,
  make_current=True)`` or ``set_current`` made current. The current version cannot be
  deleted (``delete_version`` refuses it atomically).
- **aliases**: a name → a structural hash, set explicitly.
- **canaries**: a name → a candidate structural hash and the share of runs it gets.
"""

from __future__ import annotations

import builtins
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

__all__ = ["CanarySetting", "InMemoryPipelineStore", "NoOpPipelineStore", "PipelineStore",
           "PipelineVersion", "StoredPipeline"]


@dataclass(frozen=True, slots=True)
class StoredPipeline:
    """One stored pipeline, by structural hash.

    Attributes:
        structural_hash: the pipeline's structural hash (64 hex digits).
        name: the name it was first saved under.
        source: its constellation-lang source, when compiled from source.
        spec: otherwise its DagSpec as plain data (``spec_to_data``).
        created_at: seconds since the epoch.
    """

    structural_hash: str
    name: str
    source: str | None = None
    spec: Mapping[str, Any] | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class PipelineVersion:
    """One version of a named pipeline.

    Attributes:
        name: the pipeline's name.
        version: 1, 2, 3 ... in the order saved.
        structural_hash: the pipeline this version is.
        created_at: seconds since the epoch.
    """

    name: str
    version: int
    structural_hash: str
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class CanarySetting:
    """A canary: a share of a name's runs goes to a candidate pipeline.

    Attributes:
        name: the pipeline's name.
        candidate: the candidate's structural hash.
        weight: the share of runs it gets, from 0.0 to 1.0.
        created_at: seconds since the epoch.
    """

    name: str
    candidate: str
    weight: float
    created_at: float = 0.0


@runtime_checkable
class PipelineStore(Protocol):
    """Stores pipelines, versions, aliases and canaries. Implementations must be
    thread-safe, and bound every call (a lock wait, a busy database) by a timeout."""

    def save(self, entry: StoredPipeline) -> None:
        """Store the entry under its structural hash, unless that hash is stored."""

    def load(self, structural_hash: str) -> StoredPipeline | None:
        """The entry, or None."""

    def list(self, *, limit: int = 100, offset: int = 0) -> list[StoredPipeline]:
        """Stored entries, oldest first, paged."""

    def delete(self, structural_hash: str) -> bool:
        """Remove the entry (only; versions, aliases and canaries naming it stay);
        whether it existed."""

    def add_version(self, name: str, structural_hash: str, *, make_current: bool,
                    created_at: float) -> tuple[int, bool]:
        """Give ``name`` a version for ``structural_hash``, atomically.

        Returns:
            ``(version, added)``: the new version and True; or, when the name already
            has a version of this hash, that version and False (nothing changed).
        """

    def versions(self, name: str) -> builtins.list[PipelineVersion]:
        """The name's versions, oldest first (empty for an unknown name)."""

    def current(self, name: str) -> PipelineVersion | None:
        """The name's current version, or None for an unknown name."""

    def set_current(self, name: str, version: int) -> bool:
        """Make ``version`` current; False if the name has no such version."""

    def delete_version(self, name: str, version: int) -> bool:
        """Remove one version, unless it is the current one -- atomically; whether it
        was removed."""

    def delete_name(self, name: str) -> bool:
        """Remove the name: its versions, current version and canary; whether it had
        versions."""

    def names(self) -> builtins.list[str]:
        """Every name with versions, sorted."""

    def set_alias(self, alias: str, structural_hash: str) -> None:
        """Point ``alias`` at ``structural_hash`` (replacing what it pointed at)."""

    def alias(self, alias: str) -> str | None:
        """The hash ``alias`` points at, or None."""

    def aliases(self) -> dict[str, str]:
        """Every alias and its hash."""

    def delete_alias(self, alias: str) -> bool:
        """Remove the alias; whether it existed."""

    def set_canary(self, setting: CanarySetting) -> None:
        """Store the name's canary (replacing any)."""

    def canary(self, name: str) -> CanarySetting | None:
        """The name's canary, or None."""

    def delete_canary(self, name: str) -> bool:
        """Remove the name's canary; whether it had one."""

    def close(self) -> None:
        """Release connections and files."""


class _ContextManager:
    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class NoOpPipelineStore(_ContextManager):
    """Keeps nothing: every lookup finds nothing. Pass it to keep ``engine.compile``
    from recording versions and ``engine.pipelines`` from keeping anything."""

    def save(self, entry: StoredPipeline) -> None:
        """Do nothing."""

    def load(self, structural_hash: str) -> StoredPipeline | None:
        """Nothing is kept."""
        return None

    def list(self, *, limit: int = 100, offset: int = 0) -> list[StoredPipeline]:
        """Nothing is kept."""
        return []

    def delete(self, structural_hash: str) -> bool:
        """Nothing is kept."""
        return False

    def add_version(self, name: str, structural_hash: str, *, make_current: bool,
                    created_at: float) -> tuple[int, bool]:
        """Nothing is kept: always version 1, never added."""
        return 1, False

    def versions(self, name: str) -> builtins.list[PipelineVersion]:
        """Nothing is kept."""
        return []

    def current(self, name: str) -> PipelineVersion | None:
        """Nothing is kept."""
        return None

    def set_current(self, name: str, version: int) -> bool:
        """Nothing is kept."""
        return False

    def delete_version(self, name: str, version: int) -> bool:
        """Nothing is kept."""
        return False

    def delete_name(self, name: str) -> bool:
        """Nothing is kept."""
        return False

    def names(self) -> builtins.list[str]:
        """Nothing is kept."""
        return []

    def set_alias(self, alias: str, structural_hash: str) -> None:
        """Do nothing."""

    def alias(self, alias: str) -> str | None:
        """Nothing is kept."""
        return None

    def aliases(self) -> dict[str, str]:
        """Nothing is kept."""
        return {}

    def delete_alias(self, alias: str) -> bool:
        """Nothing is kept."""
        return False

    def set_canary(self, setting: CanarySetting) -> None:
        """Do nothing."""

    def canary(self, name: str) -> CanarySetting | None:
        """Nothing is kept."""
        return None

    def delete_canary(self, name: str) -> bool:
        """Nothing is kept."""
        return False


class _Name:
    __slots__ = ("current", "last", "versions")

    def __init__(self) -> None:
        self.versions: dict[int, PipelineVersion] = {}
        self.last = 0
        self.current = 0


class InMemoryPipelineStore(_ContextManager):
    """Keeps everything in dicts under one lock: the engine's default, and a public
    test double. Nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, StoredPipeline] = {}
        self._names: dict[str, _Name] = {}
        self._aliases: dict[str, str] = {}
        self._canaries: dict[str, CanarySetting] = {}

    def save(self, entry: StoredPipeline) -> None:
        """Store it unless the hash is stored."""
        with self._lock:
            self._entries.setdefault(entry.structural_hash, entry)

    def load(self, structural_hash: str) -> StoredPipeline | None:
        """The entry, or None."""
        with self._lock:
            return self._entries.get(structural_hash)

    def list(self, *, limit: int = 100, offset: int = 0) -> builtins.list[StoredPipeline]:
        """Entries, oldest first, paged."""
        with self._lock:
            entries = builtins.list(self._entries.values())
        entries.sort(key=lambda e: e.created_at)
        return entries[offset:offset + limit]

    def delete(self, structural_hash: str) -> bool:
        """Remove the entry."""
        with self._lock:
            return self._entries.pop(structural_hash, None) is not None

    def add_version(self, name: str, structural_hash: str, *, make_current: bool,
                    created_at: float) -> tuple[int, bool]:
        """Add a version under the lock."""
        with self._lock:
            entry = self._names.get(name)
            if entry is None:
                entry = self._names[name] = _Name()
            for v in entry.versions.values():
                if v.structural_hash == structural_hash:
                    return v.version, False
            entry.last += 1
            entry.versions[entry.last] = PipelineVersion(name, entry.last, structural_hash,
                                                         created_at)
            if make_current or not entry.current:
                entry.current = entry.last
            return entry.last, True

    def versions(self, name: str) -> builtins.list[PipelineVersion]:
        """Oldest first."""
        with self._lock:
            entry = self._names.get(name)
            return [] if entry is None else sorted(entry.versions.values(),
                                                   key=lambda v: v.version)

    def current(self, name: str) -> PipelineVersion | None:
        """The current version."""
        with self._lock:
            entry = self._names.get(name)
            return None if entry is None else entry.versions.get(entry.current)

    def set_current(self, name: str, version: int) -> bool:
        """Make it current if it exists."""
        with self._lock:
            entry = self._names.get(name)
            if entry is None or version not in entry.versions:
                return False
            entry.current = version
            return True

    def delete_version(self, name: str, version: int) -> bool:
        """Remove it unless current."""
        with self._lock:
            entry = self._names.get(name)
            if entry is None or version == entry.current:
                return False
            return entry.versions.pop(version, None) is not None

    def delete_name(self, name: str) -> bool:
        """Remove the name, its versions and canary."""
        with self._lock:
            self._canaries.pop(name, None)
            return self._names.pop(name, None) is not None

    def names(self) -> builtins.list[str]:
        """Sorted."""
        with self._lock:
            return sorted(self._names)

    def set_alias(self, alias: str, structural_hash: str) -> None:
        """Point it."""
        with self._lock:
            self._aliases[alias] = structural_hash

    def alias(self, alias: str) -> str | None:
        """Its hash."""
        with self._lock:
            return self._aliases.get(alias)

    def aliases(self) -> dict[str, str]:
        """Every alias."""
        with self._lock:
            return dict(self._aliases)

    def delete_alias(self, alias: str) -> bool:
        """Remove it."""
        with self._lock:
            return self._aliases.pop(alias, None) is not None

    def set_canary(self, setting: CanarySetting) -> None:
        """Store it."""
        with self._lock:
            self._canaries[setting.name] = setting

    def canary(self, name: str) -> CanarySetting | None:
        """The name's canary."""
        with self._lock:
            return self._canaries.get(name)

    def delete_canary(self, name: str) -> bool:
        """Remove it."""
        with self._lock:
            return self._canaries.pop(name, None) is not None
