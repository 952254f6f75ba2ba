"""``engine.pipelines``: stored pipelines by name -- versions, the current one, aliases,
canaries -- and runs by name, over the engine's PipelineStore.

Refs: a **name** (its current version, or a share of runs to its canary), an **alias**
(a name set to point at one structural hash), or ``sha256:<hex>`` (that pipeline).
A name is either versioned or an alias, never both. Names are 1-128 letters, digits,
``_``, ``.`` and ``-``, starting with a letter, digit or ``_`` -- never valid source
text, so ``engine.run("name")`` can tell a name from a program.

Rebuilding: a pipeline is stored as its source text (compiled from constellation-lang)
or as its DagSpec's data; after a restart the first use recompiles it against the
engine's modules and checks that the structural hash is the one stored. A name's
current version (and canary) is re-read from the store at most once a second
(``refresh_interval``), so engines sharing a store see each other's rollbacks; changes
made through this object apply here at once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from constellation import _canary
from constellation._canary import CanaryStats, CanaryStatus
from constellation._engine_types import Pipeline
from constellation._rebuild import rebuild, stored_entry
from constellation.core.builder import PipelineBuilder
from constellation.core.dag import DagSpec
from constellation.core.errors import (
    CompilationError,
    ConfigurationError,
    ConstellationError,
    InputError,
    PipelineConflictError,
    PipelineError,
    PipelineStoreError,
    UnknownHashError,
    UnknownPipelineError,
    UnknownVersionError,
)
from constellation.core.options import Priority
from constellation.spi._pipelines import (
    CanarySetting,
    NoOpPipelineStore,
    PipelineStore,
    PipelineVersion,
    StoredPipeline,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from constellation.actors._handle import Execution
    from constellation.core.results import ExecutionResult
    from constellation.engine import Constellation

__all__ = ["PipelineCatalog", "RoutedRun", "hash_of", "is_ref"]

logger = logging.getLogger("constellation.pipelines")

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
_HASH = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-:]{0,199}")


def is_ref(text: str) -> bool:
    """Whether ``text`` has the shape of a pipeline ref (a name or ``sha256:<hex>``),
    which source text never has (cheap: it stops at the first space)."""
    return _REF.fullmatch(text) is not None


def hash_of(ref: str) -> str | None:
    m = _HASH.fullmatch(ref)
    return m.group(1) if m else None


class _Route:
    """What a ref resolved to, when: a hash, its version, the canary."""

    __slots__ = ("at", "canary", "name", "structural_hash", "version")

    def __init__(self, name: str, structural_hash: str, version: int | None,
                 canary: CanarySetting | None) -> None:
        self.at = time.monotonic()
        self.name = name
        self.structural_hash = structural_hash
        self.version = version
        self.canary = canary


class PipelineCatalog:
    """Stored pipelines by name, over a :class:`~constellation.spi.PipelineStore`
    (``engine.pipelines``; built by the engine, not by users).

    Every method is thread-safe. A store that raises gives ``PipelineStoreError``
    (E701, ``details["reason"] == "backend"``, the store's exception as ``__cause__``).

    Attributes:
        store: the PipelineStore.
        records: whether ``engine.compile(source, name=...)`` records versions (a store
            was configured, and it is not the no-op store).
        refresh_interval: seconds a name's current version and canary are trusted
            before being read from the store again.
    """

    def __init__(self, engine: Constellation, store: PipelineStore, *, records: bool
                 ) -> None:
        self._engine = engine
        self.store = store
        self.records = records and type(store) is not NoOpPipelineStore
        self.refresh_interval = 1.0
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        # Counts the forgetting of routes (a change made here): a lookup that read the
        # store before one does not cache what it read (see _resolve).
        self._epoch = 0
        self._built: LRUCache[tuple[str, str], Pipeline] = LRUCache(maxsize=256)
        self._recorded: LRUCache[tuple[str, str], int] = LRUCache(maxsize=4096)
        self._canaries: dict[str, CanaryStats] = {}

    # --- the store, guarded -----------------------------------------------------------

    def _call(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
              ) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConstellationError:
            raise
        except Exception as exc:
            backend = type(self.store).__name__
            logger.warning("pipeline store %s failed in %s: %r", backend, operation, exc)
            raise PipelineStoreError(
                f"the pipeline store ({backend}) failed in {operation}: "
                f"{type(exc).__name__}: {exc}",
                details={"reason": "backend", "operation": operation,
                         "backend": backend}) from exc

    def _forget(self, name: str) -> None:
        with self._lock:
            self._epoch += 1
            self._routes.pop(name, None)
            for key in [k for k in self._recorded if k[0] == name]:
                del self._recorded[key]

    def clear_cache(self) -> None:
        """Forget rebuilt pipelines and resolved names (the engine calls it when modules
        are registered: names may resolve differently)."""
        with self._lock:
            self._epoch += 1
            self._built.clear()
            self._routes.clear()

    # --- saving -------------------------------------------------------------------------

    def _compiled(self, pipeline: Any, name: str) -> Pipeline:
        engine = self._engine
        if isinstance(pipeline, str):
            return engine._compile_source(pipeline, name)
        if isinstance(pipeline, DagSpec | PipelineBuilder | Pipeline):
            return engine.compile(pipeline)
        raise ConfigurationError(f"cannot save a {type(pipeline).__name__}; give a "
                                 "Pipeline, DagSpec, PipelineBuilder or source text",
                                 details={"field": "pipeline"})

    @staticmethod
    def _check_name(name: Any) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or hash_of(name):
            raise ConfigurationError(
                f"invalid pipeline name {name!r}: 1-128 letters, digits, '_', '.' or '-', "
                "not starting with '.' or '-'", details={"field": "name"})
        return name

    def save(self, name: str, pipeline: Pipeline | DagSpec | PipelineBuilder | str, *,
             current: bool = True) -> int:
        """Store ``pipeline`` as a version of ``name``.

        A pipeline whose structural hash the name has a version of adds no version:
        that version's number is returned and nothing changes (not even which version
        is current -- ``rollback(name, version)`` does that). Otherwise the next number
        (1, 2, 3 ...) is added and, with ``current``, made current; a name's first
        version is always current.

        Args:
            name: the pipeline's name.
            pipeline: a compiled Pipeline, a DagSpec, a PipelineBuilder, or source text
                (compiled under ``name``).
            current: make a new version current.

        Returns:
            The version.

        Raises:
            ConfigurationError: an invalid name, or not a pipeline.
            CompilationError: source or a spec that does not compile.
            PipelineConflictError: ``name`` is an alias (``reason: "name_is_alias"``).
            PipelineStoreError: the store failed, or the pipeline cannot be stored.
        """
        self._check_name(name)
        compiled = self._compiled(pipeline, name)
        return self._save(name, compiled, current)

    def _save(self, name: str, pipeline: Pipeline, current: bool) -> int:
        if self._call("alias", self.store.alias, name) is not None:
            raise PipelineConflictError(
                f"'{name}' is an alias; delete it before saving a pipeline under that name",
                details={"reason": "name_is_alias", "name": name})
        h = pipeline.structural_hash
        now = time.time()
        self._call("save", self.store.save, stored_entry(pipeline, name, now))
        version, _ = self._call("add_version", self.store.add_version, name, h,
                                make_current=current, created_at=now)
        self._forget(name)
        with self._lock:
            if pipeline.name == name:
                self._built[(h, name)] = pipeline
            self._recorded[(name, h)] = version
        return int(version)

    def _record(self, name: str, pipeline: Pipeline) -> None:
        # engine.compile(..., name=...): a compile-cache hit of a pipeline recorded
        # already costs one lookup here, no store call.
        if (name, pipeline.structural_hash) in self._recorded:
            return
        self._check_name(name)
        self._save(name, pipeline, True)

    # --- reading ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every name with versions, sorted."""
        return list(self._call("names", self.store.names))

    def versions(self, name: str) -> list[PipelineVersion]:
        """The name's versions, oldest first.

        Raises:
            UnknownPipelineError: the name has no versions.
        """
        versions = self._call("versions", self.store.versions, name)
        if not versions:
            raise self._unknown(name)
        return list(versions)

    def current(self, name: str) -> PipelineVersion:
        """The name's current version.

        Raises:
            UnknownPipelineError: the name has no versions.
        """
        found = self._call("current", self.store.current, name)
        if found is None:
            raise self._unknown(name)
        return found  # type: ignore[no-any-return]

    def _version(self, name: str, version: int) -> PipelineVersion:
        if type(version) is not int:
            raise ConfigurationError(f"version must be an int, got {version!r}",
                                     details={"field": "version"})
        for v in self.versions(name):
            if v.version == version:
                return v
        raise UnknownVersionError(f"pipeline '{name}' has no version {version}",
                                  details={"name": name, "version": version,
                                           "reason": "not_found"})

    @staticmethod
    def _unknown(name: str) -> UnknownPipelineError:
        return UnknownPipelineError(f"no stored pipeline named '{name}'",
                                    details={"name": name})

    def entry(self, ref: str, version: int | None = None) -> StoredPipeline:
        """What is stored for a ref (its source text or spec data).

        Raises:
            UnknownPipelineError, UnknownVersionError, UnknownHashError: see :meth:`get`.
        """
        return self._load(self._target(ref, version)[0])

    def get(self, ref: str, version: int | None = None) -> Pipeline:
        """The compiled pipeline a ref names.

        Args:
            ref: a name (its current version), an alias, or ``sha256:<hex>``.
            version: a version of the name instead of the current one.

        Raises:
            UnknownPipelineError: no such name or alias.
            UnknownVersionError: the name has no such version.
            UnknownHashError: no stored pipeline with that hash.
            CompilationError: the stored pipeline no longer compiles (a module it calls
                is not registered).
            PipelineStoreError: the store failed, the entry is corrupt, or it rebuilds
                with another structural hash (``reason: "hash_mismatch"``).
        """
        h, name = self._target(ref, version)
        return self._pipeline(h, name)

    def _target(self, ref: str, version: int | None) -> tuple[str, str]:
        if not isinstance(ref, str):
            raise ConfigurationError(f"a pipeline ref is a str, got {ref!r}",
                                     details={"field": "ref"})
        h = hash_of(ref)
        if h is not None:
            if version is not None:
                raise ConfigurationError("a version goes with a name, not a hash",
                                         details={"field": "version"})
            return h, self._load(h).name
        if version is not None:
            return self._version(ref, version).structural_hash, ref
        route = self._resolve(ref, fresh=True)
        return route.structural_hash, ref

    def _load(self, structural_hash: str) -> StoredPipeline:
        entry = self._call("load", self.store.load, structural_hash)
        if entry is None:
            raise UnknownHashError(f"no stored pipeline with hash sha256:{structural_hash}",
                                   details={"structural_hash": structural_hash})
        return entry  # type: ignore[no-any-return]

    def _pipeline(self, structural_hash: str, name: str) -> Pipeline:
        with self._lock:
            built = self._built.get((structural_hash, name))
        if built is not None:
            return built
        pipeline = rebuild(self._engine, self._load(structural_hash), name)
        with self._lock:
            self._built[(structural_hash, name)] = pipeline
        return pipeline

    def find(self, structural_hash: str, name: str) -> Pipeline | None:
        """The stored pipeline with this hash, rebuilt under ``name``, or None when the
        store does not have it (``engine.resume`` after a restart uses this)."""
        try:
            return self._pipeline(structural_hash, name)
        except UnknownHashError:
            return None

    def _resolve(self, ref: str, *, fresh: bool = False) -> _Route:
        with self._lock:
            route = self._routes.get(ref)
            epoch = self._epoch
        if route is not None and not fresh and \
                time.monotonic() - route.at < self.refresh_interval:
            return route
        h = hash_of(ref)
        if h is not None:
            route = _Route(self._load(h).name, h, None, None)
        else:
            current = self._call("current", self.store.current, ref)
            if current is not None:
                canary = self._call("canary", self.store.canary, ref)
                route = _Route(ref, current.structural_hash, current.version, canary)
            else:
                target = self._call("alias", self.store.alias, ref)
                if target is None:
                    raise self._unknown(ref)
                route = _Route(ref, target, None, None)
        with self._lock:
            if self._epoch != epoch:
                # Routes were forgotten while the store was read: what was read may be
                # from before that change. This run uses it; memory does not keep it.
                return route
            self._routes[ref] = route
            if route.canary is not None:
                stats = self._canaries.get(ref)
                if stats is None or stats.candidate != route.canary.candidate or \
                        stats.weight != route.canary.weight:
                    self._canaries[ref] = CanaryStats(route.canary.candidate,
                                                      route.canary.weight)
            else:
                self._canaries.pop(ref, None)
        return route

    # --- changing -----------------------------------------------------------------------

    def rollback(self, name: str, version: int | None = None) -> int:
        """Make a version current: ``version``, or the newest one before the current.

        Returns:
            The version now current.

        Raises:
            UnknownPipelineError: no such name.
            UnknownVersionError: no such version, or none before the current one
                (``reason: "no_previous_version"``).
        """
        if version is None:
            current = self.current(name)
            older = [v.version for v in self.versions(name) if v.version < current.version]
            if not older:
                raise UnknownVersionError(
                    f"pipeline '{name}' has no version before its current version "
                    f"{current.version}", details={"name": name, "version": None,
                                                   "reason": "no_previous_version"})
            version = older[-1]
        else:
            self._version(name, version)
        if not self._call("set_current", self.store.set_current, name, version):
            raise UnknownVersionError(f"pipeline '{name}' has no version {version}",
                                      details={"name": name, "version": version,
                                               "reason": "not_found"})
        self._forget(name)
        return version

    def set_alias(self, alias: str, target: str | Pipeline) -> str:
        """Point ``alias`` at a stored pipeline.

        Args:
            alias: the alias (a name no versioned pipeline has).
            target: ``sha256:<hex>`` (or the bare hex) of a stored pipeline, a name (its
                current version's hash), or a compiled Pipeline (stored if needed).

        Returns:
            The structural hash it now points at.

        Raises:
            PipelineConflictError: a versioned pipeline has that name
                (``reason: "alias_is_name"``).
            UnknownHashError, UnknownPipelineError: the target is not stored.
        """
        self._check_name(alias)
        if self._call("current", self.store.current, alias) is not None:
            raise PipelineConflictError(
                f"'{alias}' is a versioned pipeline; an alias needs another name",
                details={"reason": "alias_is_name", "name": alias})
        if isinstance(target, str):
            h = hash_of(target)
            if h is None:
                h = self.current(target).structural_hash
            else:
                self._load(h)
        else:
            h = target.structural_hash
            if self._call("load", self.store.load, h) is None:
                self._call("save", self.store.save,
                           stored_entry(target, alias, time.time()))
        self._call("set_alias", self.store.set_alias, alias, h)
        self._forget(alias)
        return h

    def aliases(self) -> dict[str, str]:
        """Every alias and the hash it points at."""
        return dict(self._call("aliases", self.store.aliases))

    def delete(self, ref: str, version: int | None = None) -> None:
        """Delete a name (all its versions and its canary), one version of it, an
        alias, or (``sha256:<hex>``) a stored pipeline nothing refers to any more.

        Raises:
            PipelineConflictError: the version is current (``reason:
                "current_version"``: roll back first), or the hash is still a version,
                alias or canary of some name (``reason: "referenced"``).
            UnknownPipelineError, UnknownVersionError, UnknownHashError: nothing to
                delete.
        """
        h = hash_of(ref) if isinstance(ref, str) else None
        if h is not None:
            self._delete_hash(h)
        elif version is not None:
            self._version(ref, version)
            if not self._call("delete_version", self.store.delete_version, ref, version):
                if self.current(ref).version == version:
                    raise PipelineConflictError(
                        f"version {version} of '{ref}' is current; roll back to another "
                        "version first (or delete the name)",
                        details={"reason": "current_version", "name": ref,
                                 "version": version})
                raise UnknownVersionError(f"pipeline '{ref}' has no version {version}",
                                          details={"name": ref, "version": version,
                                                   "reason": "not_found"})
        elif not self._call("delete_name", self.store.delete_name, ref) and \
                not self._call("delete_alias", self.store.delete_alias, ref):
            raise self._unknown(ref)
        with self._lock:
            self._epoch += 1
            self._built.clear()
            self._routes.clear()
            self._recorded.clear()
            if h is None and version is None:
                self._canaries.pop(ref, None)

    def _delete_hash(self, h: str) -> None:
        self._load(h)
        users = [f"alias '{a}'" for a, t in self.aliases().items() if t == h]
        for name in self.names():
            users += [f"'{name}' version {v.version}" for v in self.versions(name)
                      if v.structural_hash == h]
            canary = self._call("canary", self.store.canary, name)
            if canary is not None and canary.candidate == h:
                users.append(f"the canary of '{name}'")
        if users:
            raise PipelineConflictError(
                f"sha256:{h[:12]} is still used by {', '.join(users)}",
                details={"reason": "referenced", "structural_hash": h, "used_by": users})
        self._call("delete", self.store.delete, h)

    # --- canaries -----------------------------------------------------------------------

    def canary(self, name: str, candidate: int | str | Pipeline | DagSpec | PipelineBuilder,
               weight: float) -> CanarySetting:
        """Send a share of ``name``'s runs to a candidate (replacing any canary).

        Args:
            name: a versioned pipeline.
            candidate: a version of the name, ``sha256:<hex>`` of a stored pipeline, or a
                pipeline / DagSpec / builder / source text -- saved as a new version
                that is not made current.
            weight: the candidate's share of runs by name, from 0.0 to 1.0.

        Raises:
            ConfigurationError: a weight outside [0, 1].
            UnknownPipelineError, UnknownVersionError, UnknownHashError: see above.
        """
        return _canary.start(self, name, candidate, weight)

    def canary_status(self, name: str) -> CanaryStatus:
        """The canary's setting and what this engine counted on each side.

        Raises:
            NoCanaryError: the name has no canary.
        """
        return _canary.status(self, name)

    def promote(self, name: str) -> int:
        """Make the canary's candidate the current version and end the canary.

        Returns:
            The candidate's version (added if the name had none of its hash).

        Raises:
            NoCanaryError: the name has no canary.
        """
        return _canary.promote(self, name)

    def rollback_canary(self, name: str) -> CanaryStatus:
        """End the canary; the current version keeps every run.

        Returns:
            The canary's last status.

        Raises:
            NoCanaryError: the name has no canary.
        """
        status = _canary.status(self, name)
        _canary.end(self, name)
        return status

    # --- running ------------------------------------------------------------------------

    def _pick(self, ref: str) -> tuple[str, str, CanaryStats | None, bool]:
        route = self._resolve(ref)
        stats = None
        h = route.structural_hash
        candidate = False
        if route.canary is not None:
            with self._lock:
                stats = self._canaries.get(ref)
            if stats is not None and stats.pick():
                h, candidate = route.canary.candidate, True
        return h, route.name, stats, candidate

    def route(self, ref: str) -> RoutedRun:
        """What a run of ``ref`` gets now: the pipeline (for a name with a canary, the
        side this run is routed to -- routing counts it, so call this once per run),
        to look at (its input types, say) before :meth:`RoutedRun.submit` runs it and
        counts its end on that side.

        Raises:
            UnknownPipelineError, UnknownHashError: nothing by that ref; and what
                :meth:`get` raises when the pipeline does not rebuild (counted as a
                failure of that side).
        """
        h, name, stats, candidate = self._pick(ref)
        if stats is None:
            return RoutedRun(self._pipeline(h, name), ref, False, None)
        try:
            pipeline = self._pipeline(h, name)
        except _SIDE_FAILURES:
            stats.ended(candidate, None)
            raise
        return RoutedRun(pipeline, ref, candidate, stats)

    def route_cached(self, ref: str) -> RoutedRun | None:
        """:meth:`route`, if it can be answered from memory alone: the ref was resolved
        less than ``refresh_interval`` ago and its pipelines (both sides of a canary) are
        built. None otherwise -- then nothing was counted, and :meth:`route` (which may
        read the store) gives the answer. For callers that must not block, such as an
        event loop."""
        with self._lock:
            route = self._routes.get(ref)
            if route is None or time.monotonic() - route.at >= self.refresh_interval:
                return None
            current = self._built.get((route.structural_hash, route.name))
            if route.canary is None:
                return None if current is None else RoutedRun(current, ref, False, None)
            candidate = self._built.get((route.canary.candidate, route.name))
            stats = self._canaries.get(ref)
        if current is None or candidate is None:
            return None
        if stats is not None and stats.pick():
            return RoutedRun(candidate, ref, True, stats)
        return RoutedRun(current, ref, False, stats)

    def run(self, ref: str, inputs: Mapping[str, Any] | None = None, *,
            timeout: float | None = None, priority: Priority | int | str = Priority.NORMAL
            ) -> ExecutionResult:
        """Run the pipeline a ref names (as ``engine.run(ref, ...)`` does): a name's
        current version, or its canary's candidate for the canary's share of runs.

        A canary side counts a run that ends FAILED or TIMED_OUT as failed, and one
        that does not start because of that side's pipeline (it does not rebuild, or
        the inputs do not fit it); a full queue or a stopping engine is not a side's
        failure and is not counted.

        Raises:
            UnknownPipelineError, UnknownHashError: nothing by that ref; and what
                ``engine.run`` raises.
        """
        routed = self.route(ref)
        if routed.stats is None:
            return self._engine.run(routed.pipeline, inputs, timeout=timeout,
                                    priority=priority)
        try:
            result = self._engine.run(routed.pipeline, inputs, timeout=timeout,
                                      priority=priority)
        except _SIDE_FAILURES:
            routed.ended(None)
            raise
        routed.ended(result)
        return result

    def submit(self, ref: str, inputs: Mapping[str, Any] | None = None, *,
               timeout: float | None = None, priority: Priority | int | str = Priority.NORMAL
               ) -> Execution:
        """Submit the pipeline a ref names (see :meth:`run`)."""
        return self.route(ref).submit(inputs, timeout=timeout, priority=priority)


class RoutedRun:
    """One run's route (see :meth:`PipelineCatalog.route`).

    Attributes:
        pipeline: the pipeline the run gets.
        ref: the ref it was routed from.
        candidate: whether it is a canary's candidate (False: the current version, or
            a ref without a canary).
        stats: the canary's counts this run ends in (None: no canary).
    """

    __slots__ = ("candidate", "pipeline", "ref", "stats")

    def __init__(self, pipeline: Pipeline, ref: str, candidate: bool,
                 stats: CanaryStats | None) -> None:
        self.pipeline = pipeline
        self.ref = ref
        self.candidate = candidate
        self.stats = stats

    def __repr__(self) -> str:
        side = " (canary candidate)" if self.candidate else ""
        return f"<RoutedRun {self.ref} -> {self.pipeline!r}{side}>"

    def ended(self, result: ExecutionResult | None) -> None:
        """Count a run of this route that ended with ``result`` (None: it failed
        before starting because of its pipeline) -- for runs not started by
        :meth:`submit`."""
        if self.stats is not None:
            self.stats.ended(self.candidate, result)

    def submit(self, inputs: Mapping[str, Any] | None = None, *,
               timeout: float | None = None, priority: Priority | int | str = Priority.NORMAL
               ) -> Execution:
        """Submit the routed pipeline; its end is counted on its canary side.

        Raises:
            What ``engine.submit`` raises (a side's failure to start is counted).
        """
        engine = self.pipeline._engine
        stats = self.stats
        if stats is None:
            return engine.submit(self.pipeline, inputs, timeout=timeout, priority=priority)
        candidate = self.candidate
        try:
            execution = engine.submit(self.pipeline, inputs, timeout=timeout,
                                      priority=priority)
        except _SIDE_FAILURES:
            stats.ended(candidate, None)
            raise
        execution.add_done_callback(lambda result: stats.ended(candidate, result))
        return execution


_SIDE_FAILURES = (InputError, CompilationError, PipelineError)
"""What a run raises before starting that is its side's pipeline's fault."""
