"""Constellation: the engine facade users embed.

    with Constellation(modules=[...]) as engine:
        pipeline = engine.compile(builder.build())
        result = engine.run(pipeline, {"text": "hi"})
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from logging import WARNING
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from constellation._engine_types import LifecycleState, Pipeline, SchedulerConfig
from constellation._pipelines import PipelineCatalog, is_ref
from constellation.actors._handle import DEADLINE_GRACE, Execution, bare_result
from constellation.actors._help import Helper, helping
from constellation.actors._interrupts import enter_critical, exit_critical
from constellation.actors._log import EXECUTION, log
from constellation.actors._messages import CancelAll, DeadlineReached, SubmitExecution
from constellation.actors._plan import ExecutionPlan, ModuleTiming
from constellation.actors._pool import current_pool
from constellation.actors._records import RecordWriter
from constellation.actors._resilience import CallPolicy, CircuitBreakerConfig
from constellation.actors._runners import is_dask
from constellation.actors._runtime import Runtime
from constellation.actors._supervisor import Supervisor
from constellation.core.builder import PipelineBuilder
from constellation.core.dag import CompileKey, DagSpec, DataNode, ModuleNode, resolve
from constellation.core.errors import (
    CompilationError,
    ConfigurationError,
    Diagnostic,
    EngineFailedError,
    InputError,
    InputTypeError,
    QueueFullError,
    ShuttingDownError,
    UnknownInputError,
)
from constellation.core.modules import ModuleDefinition
from constellation.core.options import CallOptions, Priority, priority_value
from constellation.core.results import ExecutionStatus
from constellation.core.types import coerce, render
from constellation.executors import parse_executor
from constellation.lang.collector import LARGE_GRAPH, collector_paused
from constellation.spi._backends import Backends
from constellation.spi._cache import CacheBackend
from constellation.spi._listener import ExecutionListener, NoOpListener
from constellation.spi._metrics import MetricsProvider, NoOpMetrics
from constellation.spi._pipelines import InMemoryPipelineStore, PipelineStore
from constellation.spi._secrets import SecretsBackend
from constellation.spi._storage import (
    ExecutionRecord,
    ExecutionStorage,
    InMemoryExecutionStorage,
    NoOpExecutionStorage,
)
from constellation.spi._tracing import NoOpTracer, TracerProvider

if TYPE_CHECKING:
    from types import TracebackType

    from constellation.core.results import ExecutionResult

__all__ = ["Constellation", "LifecycleState", "Pipeline", "SchedulerConfig"]

logger = logging.getLogger("constellation.engine")


class Constellation:
    """An embeddable pipeline engine.

    Args:
        modules: modules to register (``@module`` functions).
        backends: metrics, tracing, listener, storage, cache and pipeline-store backends
            (``Backends(pipelines=...)``: see :attr:`pipelines`).
        scheduler: scheduling limits; see :class:`SchedulerConfig`.
        default_timeout: seconds after which any execution ends TIMED_OUT (a run's own
            ``timeout`` or the pipeline's ``@timeout`` may be shorter).
        executor: run module code on this ``concurrent.futures.Executor`` instead of
            the engine's own thread pool (a process pool, a dask ``Client`` or its
            ``get_executor()``). The engine does not shut it down; a call it refuses or
            loses fails with ``ExecutorError`` (E312); a broken process pool is
            replaced by an engine-owned one. Or a string (see
            :mod:`constellation.executors`): ``"process"``/``"process:N"`` (an
            engine-owned process pool, started with ``spawn``), ``"threads:N"``, or a
            dask scheduler's address ``"tcp://host:port"``; the engine owns and shuts
            down what it builds. Every call behaves as on threads -- retries, breakers,
            timeouts, cancellation, ``ctx`` (see docs/distributed.md).
        stdlib: register the built-in modules.
        clock: monotonic clock for deadlines, retries, throttles and breakers (tests
            inject a :class:`constellation.testing.ManualClock`).
        cache_backends: cache backends by name, for ``cache_backend: "<name>"`` (other
            names are looked up in the backend registry and built with defaults).
        circuit_breakers: module name → :class:`CircuitBreakerConfig`; see
            :meth:`set_circuit_breaker`.

    Raises:
        ConfigurationError: an invalid setting, naming the field.
    """

    def __init__(
        self,
        modules: Iterable[ModuleDefinition] = (),
        *,
        backends: Backends | None = None,
        scheduler: SchedulerConfig | None = None,
        default_timeout: float = 300.0,
        executor: Executor | str | Any | None = None,
        stdlib: bool = True,
        clock: Callable[[], float] = time.monotonic,
        cache_backends: Mapping[str, CacheBackend] | None = None,
        circuit_breakers: Mapping[str, CircuitBreakerConfig] | None = None,
    ) -> None:
        if scheduler is None:
            scheduler = SchedulerConfig()
        elif not isinstance(scheduler, SchedulerConfig):
            raise ConfigurationError("scheduler must be a SchedulerConfig",
                                     details={"field": "scheduler"})
        if backends is not None and not isinstance(backends, Backends):
            raise ConfigurationError("backends must be a Backends(...) bundle",
                                     details={"field": "backends"})
        if (isinstance(default_timeout, bool) or not isinstance(default_timeout, int | float)
                or not default_timeout > 0):
            raise ConfigurationError(f"default_timeout must be a positive number of seconds, "
                                     f"got {default_timeout!r}",
                                     details={"field": "default_timeout"})
        if isinstance(executor, str):
            parse_executor(executor)  # a bad string is refused before anything starts
        elif executor is not None and not isinstance(executor, Executor) \
                and not is_dask(executor):
            raise ConfigurationError("executor must be a concurrent.futures.Executor, a "
                                     "dask Client, or a string such as 'process:4' or "
                                     f"'tcp://host:8786', got {executor!r}",
                                     details={"field": "executor"})
        self.scheduler = scheduler
        self.backends = backends or Backends()
        self.default_timeout = float(default_timeout)
        self._modules: dict[str, ModuleDefinition] = {}
        self._timings: dict[str, ModuleTiming] = {}
        self._compiled: LRUCache[tuple[str, str], Pipeline] = LRUCache(maxsize=256)
        # Compiled DagSpecs (and PipelineBuilders) by DagSpec._compile_key.
        self._compiled_specs: LRUCache[CompileKey, Pipeline] = LRUCache(maxsize=256)
        self._compile_lock = threading.Lock()
        # Compiled pipelines by structural hash, and each name's latest hash (resume).
        self._by_hash: LRUCache[str, Pipeline] = LRUCache(maxsize=1024)
        self._latest: LRUCache[str, str] = LRUCache(maxsize=1024)
        self._compile_hits = 0
        self._compile_misses = 0
        if stdlib:
            from constellation.stdlib import default_modules

            self.register(*default_modules())
        self.register(*modules)
        self._runtime = Runtime(
            dispatcher_threads=scheduler.dispatcher_threads
            or Runtime.default_dispatcher_threads(),
            worker_threads=scheduler.worker_threads,
            executor=executor,
            max_queue_size=scheduler.max_queue_size,
            clock=clock,
        )
        b = self.backends
        _check_backend(b.metrics, MetricsProvider, "metrics")
        _check_backend(b.tracer, TracerProvider, "tracer")
        _check_backend(b.listener, ExecutionListener, "listener")
        _check_backend(b.storage, ExecutionStorage, "storage")
        _check_backend(b.cache, CacheBackend, "cache")
        _check_backend(b.pipelines, PipelineStore, "pipelines")
        self.pipelines = PipelineCatalog(
            self, b.pipelines if b.pipelines is not None else InMemoryPipelineStore(),
            records=b.pipelines is not None)
        """Stored pipelines: versions per name, aliases, canaries, runs by name (see
        :class:`constellation._pipelines.PipelineCatalog`); kept in ``backends.pipelines``
        (by default in memory, and ``compile`` records nothing)."""
        self._runtime.cache = b.cache
        if b.secrets is not None:
            _check_backend(b.secrets, SecretsBackend, "secrets")
            self._runtime.secrets = b.secrets
        for cname, cache in (cache_backends or {}).items():
            _check_backend(cache, CacheBackend, f"cache_backends[{cname!r}]")
            self._runtime.named_caches[cname] = cache
        for mname, config in (circuit_breakers or {}).items():
            self.set_circuit_breaker(mname, config)
        # Every execution is recorded when it starts and when it ends, off the result
        # path (see constellation.actors._records); by default in memory (the last
        # 1,000). NoOpExecutionStorage turns recording off entirely.
        self._storage: ExecutionStorage = b.storage if b.storage is not None \
            else InMemoryExecutionStorage(max_records=1000)
        self._records = RecordWriter(self._storage)
        if type(b.storage) is NoOpExecutionStorage:
            self._runtime.storage = None
        else:
            self._runtime.storage = self._records
            if b.storage is not None:
                self._records.mark_interrupted()  # a storage failing here is counted
        # The no-op defaults do nothing: leaving them out keeps the observer (and its
        # per-event cost) away entirely, as if no backends had been given.
        # (Exact types: a subclass of a no-op default may override its methods.)
        metrics = None if type(b.metrics) is NoOpMetrics else b.metrics
        tracer = None if type(b.tracer) is NoOpTracer else b.tracer
        listener = None if type(b.listener) is NoOpListener else b.listener
        if metrics is not None or tracer is not None or listener is not None:
            from constellation.actors._observer import Observer

            rt = self._runtime
            self._runtime.observer = Observer(
                metrics, tracer, listener,
                gauges=lambda: (max(rt.inflight - rt.queued, 0), rt.queued))
        supervisor = Supervisor.spawn_running(
            self._runtime, scheduler.max_concurrency, scheduler.starvation_timeout,
            _dispatcher=self._runtime.dispatcher)
        supervisor.end_turn()  # no first step to do
        self._runtime.supervisor_actor = supervisor
        self._runtime.supervisor = supervisor.actor_ref
        self._state = LifecycleState.RUNNING
        self._state_lock = threading.Lock()
        self._stopped = threading.Event()  # set when shutdown() has finished
        self._stop_by = 0.0  # when the first shutdown() call will have returned at the latest
        self._drained = False  # the first shutdown() call's answer, once it has one
        # Execution ids look like UUIDs: 64 random bits per engine, then a counter.
        self._id_prefix = str(uuid.UUID(int=int.from_bytes(os.urandom(8), "big") << 64))[:19]
        self._ids = itertools.count(1)

    # --- modules -----------------------------------------------------------------------

    def register(self, *modules: ModuleDefinition, replace: bool = False) -> None:
        """Register modules by their names.

        Args:
            modules: ``@module`` functions.
            replace: allow replacing a module registered under the same name.

        Raises:
            ConfigurationError: not a module, or a name already taken by another module.
        """
        for m in modules:
            if not isinstance(m, ModuleDefinition):
                raise ConfigurationError(f"{m!r} is not a module; decorate it with @module",
                                         details={"field": "modules"})
            old = self._modules.get(m.name)
            if old is not None and old is not m and not replace:
                raise ConfigurationError(f"a module named '{m.name}' is already registered",
                                         details={"field": "modules", "module": m.name})
            self._modules[m.name] = m
        if modules and hasattr(self, "_compiled"):
            with self._compile_lock:
                self._compiled.clear()
                self._compiled_specs.clear()
            if hasattr(self, "pipelines"):
                self.pipelines.clear_cache()

    @property
    def modules(self) -> Mapping[str, ModuleDefinition]:
        """Registered modules by name (read-only)."""
        return MappingProxyType(self._modules)

    # --- compile -----------------------------------------------------------------------

    def compile(self, source: Pipeline | DagSpec | PipelineBuilder | str,
                name: str | None = None) -> Pipeline:
        """Compile a pipeline against this engine's modules.

        With a pipeline store configured (``Backends(pipelines=...)``) and a ``name``
        given, the pipeline is also recorded as a version of ``name`` (see
        :meth:`PipelineCatalog.save <constellation._pipelines.PipelineCatalog.save>`):
        a new structural hash adds a version and makes it current, a known one changes
        nothing. A compile-cache hit of a recorded pipeline makes no store call.

        Args:
            source: a DagSpec, a PipelineBuilder, or constellation-lang source text.
            name: the pipeline's name for source text (defaults to ``"pipeline"``); the
                name it is recorded under.

        Raises:
            CompilationError: the pipeline does not type-check; ``.errors`` lists all.
            PipelineStoreError: recording it failed (the store's error).
        """
        pipeline = self._compile_any(source, name)
        if name is not None and self.pipelines.records:
            self.pipelines._record(name, pipeline)
        return pipeline

    def _compile_any(self, source: Pipeline | DagSpec | PipelineBuilder | str,
                     name: str | None) -> Pipeline:
        if isinstance(source, Pipeline):
            if source._engine is not self:
                return self._compile_any(source.spec, None)
            return source
        if isinstance(source, PipelineBuilder):
            source = source.build()
        if isinstance(source, str):
            return self._compile_source(source, name or "pipeline")
        if not isinstance(source, DagSpec):
            raise CompilationError([Diagnostic(
                "E100", f"cannot compile a {type(source).__name__}; give a DagSpec, a "
                        "PipelineBuilder or constellation-lang source")])
        return self._compile_spec(source)

    def _compile_spec(self, source: DagSpec) -> Pipeline:
        # Like source text, a DagSpec compiles once: the finished pipeline is cached by
        # the spec's structure, so passing builder.build() to run() each time costs a
        # lookup. (An unchanged builder returns the same DagSpec, whose structural hash
        # is computed once.) Registering modules clears the cache.
        # A large graph is hashed, resolved and planned with the cyclic collector paused
        # (see constellation.lang.collector).
        with collector_paused(len(source.data) + len(source.modules), LARGE_GRAPH):
            key = source._compile_key  # computed once per spec; None: compiled each time
            cached = None if key is None else self._cached_spec(key)
            if cached is not None:
                return cached
            _check_nodes(source)
            try:
                spec = resolve(source, self._modules)
                pipeline = Pipeline(spec, ExecutionPlan.build(
                    spec, self._modules, self._timings, self._policy_for), self)
            except RecursionError:
                # A hand-built DagSpec: the builder and the language refuse values and
                # types nested deeper than 200 levels before they get here.
                raise CompilationError([Diagnostic(
                    "E150", "a type, literal or option value of this DagSpec nests too "
                            "deep to hash and check (PipelineBuilder and the language "
                            "allow 200 levels)")]) from None
        with self._compile_lock:
            if key is not None:
                with contextlib.suppress(Exception):  # a literal's __eq__ that raises
                    self._compiled_specs[key] = pipeline
            self._by_hash[spec.structural_hash] = pipeline
            self._latest[spec.name] = spec.structural_hash
        return pipeline

    def _cached_spec(self, key: CompileKey) -> Pipeline | None:
        # The key may hold a literal's objects, compared with their own __eq__: one that
        # raises makes the lookup a miss (the spec is compiled), not a failed run.
        with self._compile_lock:
            try:
                return self._compiled_specs.get(key)
            except Exception:
                return None

    def _policy_for(self, mdef: ModuleDefinition, options: CallOptions) -> CallPolicy | None:
        try:
            return self._runtime.make_policy(mdef, options)
        except ConfigurationError as exc:
            raise CompilationError([Diagnostic("E146", f"module {mdef.name}: {exc.message}")]
                                   ) from exc

    # --- circuit breakers ----------------------------------------------------------------

    def set_circuit_breaker(self, module: str, config: CircuitBreakerConfig | None) -> None:
        """Protect every call of ``module`` with a circuit breaker, shared by all executions.

        After ``config.failure_threshold`` consecutive failed calls the breaker opens:
        calls fail at once with ``CircuitOpenError`` without reaching the module. After
        ``config.reset_timeout`` seconds one probe call is let through; its success
        closes the breaker, its failure opens it again. Setting a breaker replaces the
        module's previous one (closed again); ``None`` removes it.

        Raises:
            ConfigurationError: ``config`` is not a CircuitBreakerConfig.
        """
        if config is not None and not isinstance(config, CircuitBreakerConfig):
            raise ConfigurationError("config must be a CircuitBreakerConfig or None",
                                     details={"field": "circuit_breakers"})
        self._runtime.set_breaker(module, config)

    def circuit_breakers(self) -> dict[str, dict[str, Any]]:
        """Each breaker's state: ``{"state": "closed"|"open"|"half_open", ...}``."""
        return {name: b.snapshot() for name, b in self._runtime.breakers.items()}

    def _compile_source(self, source: str, name: str) -> Pipeline:
        from constellation.lang.compiler import compile_source

        # The cache holds finished pipelines (typed spec and execution plan), keyed by
        # the source's hash: a hit costs a hash and a lookup. Registering modules
        # clears it, since names may then resolve differently.
        started = time.perf_counter()
        observer = self._runtime.observer
        key = (hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(), name)
        with self._compile_lock:
            cached = self._compiled.get(key)
            if cached is not None:
                self._compile_hits += 1
        if cached is not None:
            if observer is not None:
                observer.compiled(True, (time.perf_counter() - started) * 1000.0)
            return cached
        with self._compile_lock:
            self._compile_misses += 1
        with collector_paused(len(source)):  # the whole compile, not only the parser's
            compiled = compile_source(source, self._modules, name)
            # A pipeline of its own: the spec cache's may be shared with other sources.
            shared = self._compile_spec(compiled.spec)
        pipeline = Pipeline(shared.spec, shared.plan, self)
        pipeline.syntactic_hash = compiled.syntactic_hash
        pipeline.source = source
        pipeline.warnings = compiled.warnings
        with self._compile_lock:
            self._compiled[key] = pipeline
        if observer is not None:
            observer.compiled(False, (time.perf_counter() - started) * 1000.0)
        return pipeline

    def compile_cache_info(self) -> dict[str, int]:
        """Hits, misses and size of the cache of compiled sources (keyed by source hash)."""
        with self._compile_lock:
            return {"hits": self._compile_hits, "misses": self._compile_misses,
                    "size": len(self._compiled), "maxsize": int(self._compiled.maxsize)}

    # --- run ---------------------------------------------------------------------------

    def submit(
        self,
        pipeline: Pipeline | DagSpec | PipelineBuilder | str,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        priority: Priority | int | str = Priority.NORMAL,
    ) -> Execution:
        """Queue an execution and return its handle at once.

        Inputs are checked before anything is queued. Inputs the pipeline declares but
        that are not given leave the execution SUSPENDED once everything that does not
        need them has run.

        Args:
            pipeline: a compiled pipeline (or anything :meth:`compile` takes), or the
                ref of a stored one: a name (its current version, or its canary's
                candidate for the canary's share of runs), an alias or
                ``sha256:<hex>`` (see :attr:`pipelines`).
            inputs: input name → value.
            timeout: seconds for this execution (the smallest of this, the pipeline's
                ``@timeout`` and ``default_timeout`` applies).
            priority: a :class:`Priority`, its name, or any int.

        Raises:
            ShuttingDownError: the engine is draining or stopped.
            InputTypeError: an input does not fit its type (names the input).
            UnknownInputError: an input name the pipeline does not declare.
            QueueFullError: ``max_queue_size`` executions are already waiting.
            CompilationError: ``pipeline`` was not compiled and does not compile.
            UnknownPipelineError: a ref (a name) of no stored pipeline.
        """
        if type(pipeline) is str and is_ref(pipeline):
            return self.pipelines.submit(pipeline, inputs, timeout=timeout,
                                         priority=priority)
        return self._submit(pipeline, inputs, timeout, priority, None)

    def _submit(self, pipeline: Pipeline | DagSpec | PipelineBuilder | str,
                inputs: Mapping[str, Any] | None, timeout: float | None,
                priority: Priority | int | str, helper: Helper | None, *,
                parked: bool = False) -> Execution:
        self._check_accepting()
        if not isinstance(pipeline, Pipeline) or pipeline._engine is not self:
            pipeline = self.compile(pipeline)
        plan = pipeline.plan
        checked = self._check_inputs(plan, inputs)
        return self._submit_plan(plan, checked, timeout, priority, helper=helper,
                                 parked=parked)

    def _submit_plan(self, plan: ExecutionPlan, checked: dict[str, Any],
                     timeout: float | None, priority: Priority | int | str,
                     execution_id: str | None = None,
                     preset: Mapping[int, Any] | None = None,
                     helper: Helper | None = None, parked: bool = False) -> Execution:
        self._check_accepting()
        prio = priority_value(priority)
        limit = self.default_timeout
        for t in (timeout, plan.timeout):
            if t is not None:
                if isinstance(t, bool) or not isinstance(t, int | float) or not t > 0:
                    raise ConfigurationError(f"timeout must be a positive number of seconds, "
                                             f"got {t!r}", details={"field": "timeout"})
                limit = min(limit, float(t))
        runtime = self._runtime
        if execution_id is None:
            n = next(self._ids)
            eid = f"{self._id_prefix}{n >> 48 & 0xFFFF:04x}-{n & 0xFFFFFFFFFFFF:012x}"
        else:
            eid = execution_id
        deadline = runtime.clock() + limit
        handle = Execution(eid, plan, checked, prio, deadline, runtime, preset)
        if parked:
            handle.park()
        if helper is not None:
            helper.attach(handle)
        # From admission to the supervisor's inbox the execution is counted but not yet
        # anyone's: on the main thread a Ctrl-C in between would leak it, so it waits.
        critical = enter_critical()
        try:
            self._hand_over(handle, eid, deadline, parked)
        finally:
            if critical:
                exit_critical()
        return handle

    def _hand_over(self, handle: Execution, eid: str, deadline: float, parked: bool) -> None:
        runtime = self._runtime
        try:
            runtime.admit()
        except QueueFullError as exc:
            if runtime.observer is not None:
                runtime.observer.rejected()
            log(EXECUTION, WARNING, "submission of %s rejected: %s", handle.plan.name,
                exc.message, execution_id=eid, pipeline=handle.plan.name, code=exc.code)
            raise
        try:
            handle._deadline_timer = runtime.timer.call_at(
                deadline, lambda: runtime.post_to_supervisor(DeadlineReached(eid)))
        except RuntimeError:
            # shutdown() stopped the engine since the check above: nothing was queued.
            runtime.dequeued()
            runtime.execution_done()
            raise ShuttingDownError(f"engine is {self.state.value}; not accepting "
                                    "executions") from None
        if not runtime.hand_over(SubmitExecution(handle), parked=parked):
            # The supervisor stopped between the check above and now: nobody will run it.
            runtime.dequeued()
            error = runtime.failed or ShuttingDownError(
                f"engine is {self.state.value}; the execution was not started")
            handle._complete(bare_result(handle, ExecutionStatus.FAILED, error))

    def _check_accepting(self) -> None:
        failed = self._runtime.failed
        if failed is not None:
            raise EngineFailedError(failed.message, details=failed.details)
        if self._state is not LifecycleState.RUNNING:
            raise ShuttingDownError(f"engine is {self._state.value}; not accepting executions")

    def resume(self, execution_id: str, inputs: Mapping[str, Any] | None = None, *,
               pipeline: Pipeline | DagSpec | PipelineBuilder | str | None = None,
               timeout: float | None = None,
               priority: Priority | int | str = Priority.NORMAL) -> Execution:
        """Continue a SUSPENDED (or INTERRUPTED) execution, with the inputs it was missing.

        The execution keeps its id. Module calls that completed before it was suspended
        are not run again: their stored outputs are used. The result is the same as that
        of one run given every input at once. An INTERRUPTED execution (its process
        died) runs again from its snapshot: the calls it had not finished run again.

        The execution is claimed in the storage first (SUSPENDED → RESUMING, atomically):
        of two resumes of one execution at the same time -- two threads, or two
        processes sharing a SQLite file or a PostgreSQL table -- exactly one runs it.

        Args:
            execution_id: the suspended execution (as recorded in the storage).
            inputs: more inputs (some or all of those missing; none for an interrupted
                execution that had them all).
            pipeline: the pipeline it ran; by default the one this engine compiled with
                the recorded structural hash.
            timeout: as for :meth:`submit`.
            priority: as for :meth:`submit`.

        Raises:
            ResumeError: no such execution, not suspended, already being resumed, an
                input it already has, or a pipeline that changed (``details["reason"]``).
            InputTypeError: a new input does not fit its type.
            UnknownInputError: an input name the pipeline does not declare.
        """
        from constellation._resume import claim_resume, prepare_resume, release_resume

        record, plan, checked, preset = prepare_resume(self, execution_id, inputs or {},
                                                       pipeline)
        claimed = claim_resume(self, record)
        try:
            return self._submit_plan(plan, checked, timeout, priority, execution_id, preset)
        except BaseException:
            release_resume(self, record, claimed)
            raise

    def run(
        self,
        pipeline: Pipeline | DagSpec | PipelineBuilder | str,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        priority: Priority | int | str = Priority.NORMAL,
    ) -> ExecutionResult:
        """Submit an execution and wait for its result (see :meth:`submit`).

        Module failures, timeouts and missing inputs are reported in the result
        (``status``, ``errors``), not raised; ``result.raise_for_status()`` raises them.

        Called from a thread outside the engine's pools, the calling thread waits while
        a free worker of the engine's own pool takes the execution from the start (one
        handoff there, one back). With ``SchedulerConfig(caller_helps=True)`` it helps
        instead: it runs its own execution's turns and quick module calls itself (see
        docs/performance-tuning.md, "Where calls run").
        A ref of a stored pipeline (a name, an alias, ``sha256:<hex>``) runs it, with
        canary routing (see :meth:`submit`).
        """
        if type(pipeline) is str and is_ref(pipeline):
            return self.pipelines.run(pipeline, inputs, timeout=timeout, priority=priority)
        # Only with the engine's own worker pool: a node's turn hands a call to a user's
        # executor with its submit(), which may block (a full or stuck executor), and
        # the caller must not be the thread it blocks.
        if self.scheduler.caller_helps and current_pool() is None and helping() is None \
                and self._runtime.runner.pool is not None:
            return Helper(self._runtime).run(
                lambda helper: self._submit(pipeline, inputs, timeout, priority, helper))
        execution = self._submit(pipeline, inputs, timeout, priority, None, parked=True)
        try:
            return execution.wait_parked()
        except BaseException:
            # Ctrl-C (or an exception injected into this thread) while it waits: the
            # execution is cancelled, not left to run to its deadline, as a helping
            # caller's is.
            execution.cancel()
            raise

    async def run_async(
        self,
        pipeline: Pipeline | DagSpec | PipelineBuilder | str,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        priority: Priority | int | str = Priority.NORMAL,
    ) -> ExecutionResult:
        """:meth:`run` for asyncio code: awaits the result without blocking the loop.

        A compiled :class:`Pipeline` is submitted on the loop (that never blocks); source
        text, a builder or a ref is compiled or looked up on a thread first. Cancelling
        the awaiting task cancels the execution. Module code runs as with :meth:`run`
        (``async def`` modules on the engine's own event loop, not on the caller's).
        """
        import asyncio

        if isinstance(pipeline, Pipeline):
            execution = self.submit(pipeline, inputs, timeout=timeout, priority=priority)
        else:
            execution = await asyncio.to_thread(self.submit, pipeline, inputs,
                                                timeout=timeout, priority=priority)
        return await execution

    def _check_inputs(self, plan: ExecutionPlan, inputs: Mapping[str, Any] | None
                      ) -> dict[str, Any]:
        if inputs is None:
            return {}
        if not isinstance(inputs, Mapping):
            raise InputError(f"inputs must be a mapping of name to value, got "
                             f"{type(inputs).__name__}")
        types = plan.input_types
        unknown = [n for n in inputs if n not in types]
        if unknown:
            parts = []
            for n in unknown:
                hint = difflib.get_close_matches(str(n), list(types), n=1)
                parts.append(f"'{n}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
            declared = ", ".join(f"{k}: {render(t)}" for k, t in types.items()) or "none"
            raise UnknownInputError(
                f"pipeline '{plan.name}' has no input {', '.join(parts)}; it declares "
                f"{declared}", details={"inputs": unknown, "pipeline": plan.name})
        checked = {}
        problems: list[InputTypeError] = []
        for name, value in inputs.items():
            try:
                checked[name] = coerce(types[name], value, f"input '{name}'")
            except InputTypeError as exc:
                problems.append(exc)
        if problems:
            if len(problems) == 1:
                raise problems[0]
            raise InputTypeError("; ".join(p.message for p in problems),
                                 details={"errors": [p.to_dict() for p in problems]})
        return checked

    # --- records -------------------------------------------------------------------------

    def executions(self, *, pipeline: str | None = None, status: ExecutionStatus | str |
                   None = None, limit: int = 100, offset: int = 0) -> list[ExecutionRecord]:
        """Recorded executions, newest first.

        Args:
            pipeline: only this pipeline's.
            status: only those that ended so (``ExecutionStatus`` or its value).
            limit: at most this many.
            offset: skip this many first (paging).
        """
        value = status.value if isinstance(status, ExecutionStatus) else status
        return self._records.list(pipeline=pipeline, status=value, limit=limit,
                                  offset=offset)

    def execution(self, execution_id: str) -> ExecutionRecord | None:
        """The recorded execution (RUNNING while it runs), or None."""
        return self._records.load(execution_id)

    def mark_interrupted(self) -> list[str]:
        """Mark INTERRUPTED the RUNNING records of processes known to be gone (done once
        when the engine is built; call it again, say periodically in a daemon, to catch
        processes sharing the storage that died since). Records of other hosts are left.

        Returns:
            The execution ids marked.
        """
        if self._runtime.storage is None:
            return []
        return self._records.mark_interrupted()

    def health(self) -> dict[str, Any]:
        """What an operator checks: the lifecycle state, the scheduler's counters, the
        execution records (``records``: backlog waiting to be written, ``written``,
        ``failed`` -- given up after retries --, ``dropped`` by a full backlog,
        ``errors`` -- saves that raised --, ``last_error``, and ``interrupted``: records
        of dead processes this engine marked INTERRUPTED) and the event delivery
        (``events``: ``pending``, ``dropped`` at the backlog, ``failures`` of backends,
        ``lost`` -- refused by a durable listener after retries --, ``durable``; None
        without listener, metrics or tracer), and the runtime's faults (``runtime``:
        ``dead_letters`` -- messages to actors that had stopped --, ``abandoned_calls``
        -- module calls given up on while their thread ran on --, ``internal_errors`` --
        actor turns that raised, each ending its execution FAILED with E311 --,
        ``cache_stores_dropped`` -- results not stored because 10,000 stores were
        waiting for a cache that stopped answering --, and
        ``failed``, the EngineFailedError message once the supervisor failed).
        """
        rt = self._runtime
        observer = rt.observer
        events = None if observer is None else {
            "pending": observer.pending, "dropped": observer.dropped,
            "failures": observer.failures, "lost": observer.lost,
            "durable": observer.durable}
        return {"status": self.state.value, "inflight": rt.inflight, "queued": rt.queued,
                "rejected": rt.rejected,
                "records": self._records.stats() if rt.storage is not None else None,
                "events": events,
                "runtime": {"dead_letters": rt.dead_letters, "abandoned_calls": rt.abandoned,
                            "internal_errors": rt.internal_errors,
                            "cache_stores_dropped": rt.stores_dropped,
                            "failed": None if rt.failed is None else rt.failed.message}}

    def wait_for_cache_stores(self, timeout: float = 5.0) -> bool:
        """Wait until the results stored so far are in their caches.

        Results go to a built-in in-memory cache at once; any other cache backend
        (Redis, your own) gets them on the engine's store threads, after ``run()`` has
        returned, so that a slow ``set()`` never delays a result. Call this when the
        next run must find them: a test, a warm-up, a benchmark.

        Args:
            timeout: the most seconds to wait.

        Returns:
            Whether no store was waiting or running when it returned (False after
            ``timeout``: a backend slow or stuck, or stores still coming from running
            executions).
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not timeout >= 0:  # NaN too
            raise ConfigurationError(f"timeout must be a number of seconds >= 0, got "
                                     f"{timeout!r}", details={"field": "timeout"})
        return self._runtime.wait_for_stores(float(timeout))

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def state(self) -> LifecycleState:
        """RUNNING, DRAINING, STOPPED, or FAILED (its supervisor failed)."""
        if self._runtime.failed is not None:
            return LifecycleState.FAILED
        return self._state

    @property
    def inflight_count(self) -> int:
        """Executions submitted and not yet ended (queued or running)."""
        return self._runtime.inflight

    @property
    def queued_count(self) -> int:
        """Executions waiting in the scheduler queue."""
        return self._runtime.queued

    @property
    def rejected_count(self) -> int:
        """Submissions rejected with ``QueueFullError`` so far."""
        return self._runtime.rejected

    @property
    def thread_budget(self) -> int:
        """The most threads this engine holds: dispatcher + workers + the timer (+ the
        listener thread with backends, the record writer with a durable storage, and
        the done-callback thread once a callback was added).

        The one exception: while module code waits for another execution's result
        (a module running a sub-pipeline), the worker pool may add one thread per such
        waiting call, so that waiting calls cannot starve the pool.
        """
        rt = self._runtime
        workers = rt.workers.max_threads if rt.own_workers else 0
        listener = 1 if rt.observer is not None else 0
        listener += 1 if rt._callbacks_pool is not None else 0  # done callbacks' thread
        records = 1 if rt.storage is not None and self._records.threaded else 0
        return rt.dispatcher.max_threads + workers + 1 + listener + records

    def shutdown(self, drain_timeout: float = 30.0) -> bool:
        """Stop accepting work, let in-flight executions finish, then stop.

        Executions still running after ``drain_timeout`` seconds are cancelled (they
        end CANCELLED with their partial outputs). Safe to call from several threads
        and more than once: every call returns once the engine is stopped, with the
        same answer (a later call waits for the first one, bounded by its own
        ``drain_timeout`` plus the stop's few seconds).

        Returns:
            Whether every in-flight execution finished on its own within the timeout.
        """
        with self._state_lock:
            first = self._state is LifecycleState.RUNNING
            if first:
                self._state = LifecycleState.DRAINING
                self._stop_by = time.monotonic() + drain_timeout + _STOP_GRACE
        if not first:
            # Another call is stopping the engine (or did): its answer is ours, once it
            # is there -- bounded by that first call's own drain timeout.
            self._stopped.wait(max(0.0, self._stop_by - time.monotonic()))
            return self._drained
        try:
            self._drained = self._drain_and_stop(drain_timeout)
        finally:
            self._state = LifecycleState.STOPPED
            self._stopped.set()
        return self._drained

    def _drain_and_stop(self, drain_timeout: float) -> bool:
        deadline = time.monotonic() + drain_timeout
        runtime = self._runtime
        drained = runtime.wait_idle(drain_timeout)
        if not drained:
            logger.warning("drain timeout: cancelling %d executions", runtime.inflight)
            if not runtime.post_to_supervisor(CancelAll()):
                logger.warning("the supervisor is gone; %d executions left to their "
                               "waiters' deadlines", runtime.inflight)
            runtime.wait_idle(5.0)
        # Each step is bounded and none may keep the others from running: a runtime
        # whose threads died still gets its timer, pools and backends released.
        supervisor = runtime.supervisor_actor
        if runtime.supervisor is not None and supervisor is not None \
                and not supervisor.actor_stopped.is_set():
            try:
                runtime.supervisor.stop(block=True, timeout=5.0)
            except Exception:  # pykka's Timeout: its dispatcher no longer runs turns
                logger.warning("the supervisor did not stop within 5 s; stopping anyway")
                supervisor.actor_stopped.set()
        interrupted: BaseException | None = None
        for step in ("records", "runtime"):
            try:
                if step == "records":
                    self._flush_records(deadline)
                else:
                    runtime.stop()
            except Exception:
                logger.exception("shutdown: stopping the %s failed", step)
            except BaseException as exc:  # Ctrl-C, SystemExit: after the other steps
                logger.exception("shutdown: stopping the %s was interrupted", step)
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted
        return drained

    def _flush_records(self, deadline: float) -> None:
        # Records and (durable) events are written before the engine says it stopped:
        # within the drain timeout, at least a second after a drain that used it all.
        observer = self._runtime.observer
        if observer is not None:
            observer.stop(max(deadline - time.monotonic(), 1.0))
        self._records.stop(max(deadline - time.monotonic(), 1.0))

    def cancel_all(self) -> None:
        """Cancel every queued and running execution now (they end CANCELLED)."""
        self._runtime.post_to_supervisor(CancelAll())  # a dead letter once stopped

    def __enter__(self) -> Constellation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return (f"<Constellation {self._state.value} modules={len(self._modules)} "
                f"inflight={self.inflight_count}>")


_STOP_GRACE = 5.0 + 5.0 + 2.0 + 5.0 + DEADLINE_GRACE + 2.0
"""What shutdown() takes past its drain timeout at most: cancelling, stopping the
supervisor, flushing events and records (at least a second each), joining the pools
(see _drain_and_stop), and some slack. A later concurrent call waits this long past the
first call's drain timeout for its answer."""


def _check_nodes(spec: DagSpec) -> None:
    """A DagSpec's nodes are DataNodes and ModuleNodes (a hand-built spec may hold
    anything): CompilationError E100 naming the first that is not."""
    for field, kind in (("data", DataNode), ("modules", ModuleNode)):
        nodes = getattr(spec, field)
        if not isinstance(nodes, tuple | list) or not set(map(type, nodes)) <= {kind}:
            bad = nodes if not isinstance(nodes, tuple | list) else next(
                n for n in nodes if type(n) is not kind)
            raise CompilationError([Diagnostic(
                "E100", f"DagSpec.{field} must hold {kind.__name__}s; it holds a "
                        f"{type(bad).__name__}")])


def _check_backend(backend: Any, protocol: type, field: str) -> None:
    if backend is not None and not isinstance(backend, protocol):
        raise ConfigurationError(
            f"backends.{field} must implement {protocol.__name__}; "
            f"{type(backend).__name__} does not", details={"field": f"backends.{field}"})
