"""The record writer: execution records reach the storage off the result path.

Every execution is recorded twice: RUNNING when it starts (with its owner, the process
running it, so that a later engine can tell that process died), and with its final
status when it ends. Neither write happens on a pipeline's threads:

- an in-memory storage (one with ``save_deferred``) is written in place: a dict insert,
  the record itself built only when it is read;
- any other storage gets a *writer thread*: records wait in a bounded backlog (a dict by
  execution id, so a RUNNING record not written yet is replaced by the final one), and
  the thread writes what accumulated in one ``save_many`` (one transaction for the
  built-in storages). Until a record is written, ``load`` and ``list`` answer from the
  backlog, so ``engine.execution(id)`` finds an execution as soon as ``run()`` returns.

A save that raises is retried (``retries`` times, backing off), then given up on; every
failure is counted and shown in ``engine.health()["records"]``, and logged. A full
backlog drops new records (counted as ``dropped``): results are never delayed.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from constellation.core.types import to_json
from constellation.spi._owner import owner_state, process_owner
from constellation.spi._storage import RESUMING, ExecutionRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from constellation.actors._handle import Execution
    from constellation.core.results import ExecutionResult
    from constellation.spi._storage import ExecutionStorage

__all__ = ["RecordWriter", "checkpoints", "record_finished", "record_started"]

logger = logging.getLogger("constellation.runtime")

RUNNING = "running"
INTERRUPTED = "interrupted"


def _snapshot(handle: Execution, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"nodes": {name: JSON output}}`` for node outputs given by name."""
    plan = handle.plan
    index = {n.name: n for n in plan.nodes}
    return {"nodes": {
        name: to_json(t, v) if (t := plan.data_types[index[name].output]) is not None
        else v for name, v in outputs.items()}}


def _inputs(handle: Execution) -> dict[str, Any]:
    in_types = handle.plan.input_types
    return {n: to_json(in_types[n], v) if n in in_types else v
            for n, v in handle.inputs.items()}


def build_started(handle: Execution, started_at: float, owner: Mapping[str, Any],
                  progress: list[tuple[str, Any]] | None = None, done: int = 0
                  ) -> ExecutionRecord:
    """The RUNNING record of an execution that started.

    Its snapshot holds the node outputs it started with (those of a resumed execution)
    and, as a checkpoint, the first ``done`` entries of ``progress`` (node name, output)
    -- the calls it has completed so far -- so that, if its process dies, resuming it
    does not run them again.
    """
    plan = handle.plan
    preset = handle.preset
    outputs = {plan.nodes[j].name: v for j, v in (preset or {}).items()}
    if progress is not None:
        outputs.update(progress[:done])  # the list only grows: a prefix is stable
    snapshot = _snapshot(handle, outputs)
    if preset is not None:
        snapshot["resumed"] = True  # a second resume meanwhile is "already_resuming"
    return ExecutionRecord(
        execution_id=handle.execution_id, pipeline=plan.name,
        structural_hash=plan.structural_hash, status=RUNNING, inputs=_inputs(handle),
        started_at=started_at, owner=owner, snapshot=snapshot)


def build_record(handle: Execution, result: ExecutionResult, started_at: float,
                 ended_at: float, owner: Mapping[str, Any] | None = None) -> ExecutionRecord:
    """The JSON-ready record of a finished execution."""
    plan = handle.plan
    out_types = {name: plan.data_types[idx] for name, idx in plan.outputs}
    outputs = {n: v if (t := out_types.get(n)) is None else to_json(t, v)
               for n, v in result.outputs.items()}
    nodes = {name: {"module": r.module, "status": r.status.value, "attempts": r.attempts,
                    "duration_ms": r.duration_ms}
             for name, r in result.modules.items()}
    snapshot = None if handle._snapshot is None else _snapshot(handle, handle._snapshot)
    return ExecutionRecord(
        execution_id=result.execution_id, pipeline=result.pipeline,
        structural_hash=result.structural_hash, status=result.status.value,
        inputs=_inputs(handle), outputs=outputs,
        errors=tuple(e.to_dict() for e in result.errors), nodes=nodes,
        started_at=started_at, ended_at=ended_at, snapshot=snapshot, owner=owner)


def interrupted(record: ExecutionRecord, now: float) -> ExecutionRecord:
    """``record`` (RUNNING or RESUMING, its process gone) marked INTERRUPTED."""
    owner = dict(record.owner or {})
    error = {"code": "E503",
             "message": f"execution {record.execution_id} was interrupted: the process "
                        f"running it (pid {owner.get('pid')} on {owner.get('host')}) is "
                        "gone",
             "details": {"execution_id": record.execution_id, "owner": owner,
                         "was": record.status}}
    return replace(record, status=INTERRUPTED, ended_at=now,
                   errors=(*record.errors, error))


class _Entry:
    """A record waiting to be written: what lists filter on, and how to build it."""

    __slots__ = ("attempts", "build", "pipeline", "record", "started_at", "status")

    def __init__(self, pipeline: str, status: str, started_at: float,
                 build: Callable[[], ExecutionRecord] | None,
                 record: ExecutionRecord | None = None) -> None:
        self.pipeline = pipeline
        self.status = status
        self.started_at = started_at
        self.build = build
        self.record = record
        self.attempts = 0

    def get(self) -> ExecutionRecord:
        """The record, built on first use (by the writer, or by a reader first)."""
        record = self.record
        if record is None:
            build = self.build
            if build is None:  # another thread built it meanwhile (record set first)
                record = self.record
                assert record is not None
                return record
            record = self.record = build()
            self.build = None
        return record


class RecordWriter:
    """Writes a storage's execution records off the result path (see the module
    docstring); is itself an ExecutionStorage that reads through the backlog.

    Args:
        storage: where records go. It is not closed by :meth:`close`.
        max_pending: records waiting past this are dropped (counted).
        batch: the most records written in one ``save_many``.
        retries: times a failed save is tried again before it is given up on.
        retry_delay: seconds before the first retry (doubling, at most 5 s).
    """

    def __init__(self, storage: ExecutionStorage, *, max_pending: int = 10_000,
                 batch: int = 500, retries: int = 3, retry_delay: float = 0.25) -> None:
        self.storage = storage
        self.max_pending = max_pending
        self.batch = batch
        self.retries = retries
        self.retry_delay = retry_delay
        self.owner = process_owner()
        self._inline: Callable[..., None] | None = getattr(storage, "save_deferred", None)
        self._cond = threading.Condition(threading.Lock())
        self._pending: dict[str, _Entry] = {}
        self._inflight: dict[str, _Entry] = {}
        self._started_at: dict[str, float] = {}
        self._claim_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sleeping = False
        self._stopping = False
        self._closed = False
        self._retry_wait = threading.Event()
        self.written = 0
        self.failed = 0  # records given up on
        self.dropped = 0  # records refused by a full backlog
        self.errors = 0  # save calls that raised
        self.last_error: str | None = None
        self.interrupted = 0  # records this writer marked INTERRUPTED
        self._errors_logged = itertools.count()

    @property
    def threaded(self) -> bool:
        """Whether records are written by a writer thread (not in place, in memory)."""
        return self._inline is None

    # --- the runtime's calls (cheap: on the threads that start and end executions) -----

    def started(self, handle: Execution) -> None:
        """An execution started: record it RUNNING."""
        started_at = time.time()
        eid = handle.execution_id
        self._started_at[eid] = started_at
        owner = self.owner
        self._put(eid, handle.plan.name, RUNNING, started_at,
                  lambda: build_started(handle, started_at, owner))

    def progress(self, handle: Execution, completed: list[tuple[str, Any]]) -> None:
        """A checkpoint: ``completed`` (node name, output; appended to by the execution
        actor, never changed otherwise) holds every call the execution has completed.
        Replaces the execution's RUNNING record if it is still waiting to be written."""
        eid = handle.execution_id
        started_at = self._started_at.get(eid)
        if started_at is None:
            return
        owner = self.owner
        done = len(completed)
        self._put(eid, handle.plan.name, RUNNING, started_at,
                  lambda: build_started(handle, started_at, owner, completed, done))

    def finished(self, handle: Execution, result: ExecutionResult) -> None:
        """An execution ended (or was cancelled before starting): record its outcome."""
        ended_at = time.time()
        eid = handle.execution_id
        started_at = self._started_at.pop(eid, None)
        if started_at is None:
            started_at = ended_at - result.duration_ms / 1000.0
        owner = self.owner
        self._put(eid, result.pipeline, result.status.value, started_at,
                  lambda: build_record(handle, result, started_at, ended_at, owner))

    def _put(self, eid: str, pipeline: str, status: str, started_at: float,
             build: Callable[[], ExecutionRecord] | None,
             record: ExecutionRecord | None = None) -> None:
        inline = self._inline
        if inline is not None:
            try:
                if record is not None:
                    self.storage.save(record)
                else:
                    inline(eid, pipeline, status, started_at, build)
            except BaseException as exc:  # a storage never fails the execution
                self._failed_save(exc, 1, given_up=1)
            return
        entry = _Entry(pipeline, status, started_at, build, record)
        with self._cond:
            pending = self._pending
            if eid not in pending and (self._closed or len(pending) + len(self._inflight)
                                       >= self.max_pending):
                self.dropped += 1
                dropped = self.dropped
            else:
                dropped = 0
                pending[eid] = entry
                if self._thread is None:
                    self._start()
                elif self._sleeping:
                    self._cond.notify()
        if dropped and (dropped == 1 or dropped % 1000 == 0):
            logger.warning("record backlog full (%d) or closed: %d record(s) of %s not "
                           "saved so far", self.max_pending, dropped,
                           type(self.storage).__name__)

    # --- the writer thread -------------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="constellation-records",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._sleeping = True
                    self._cond.wait()
                    self._sleeping = False
                if not self._pending:
                    return
                take = []
                for eid in list(itertools.islice(self._pending, self.batch)):
                    entry = self._pending.pop(eid)
                    self._inflight[eid] = entry
                    take.append((eid, entry))
            if not self._write(take):
                delay = min(self.retry_delay * 2 ** max(e.attempts - 1 for _, e in take), 5.0)
                self._retry_wait.wait(delay)

    def _write(self, take: list[tuple[str, _Entry]]) -> bool:
        records: list[ExecutionRecord] = []
        built: list[tuple[str, _Entry]] = []
        for eid, entry in take:
            try:
                records.append(entry.get())
                built.append((eid, entry))
            except Exception as exc:  # a value that does not convert: this one only
                self._failed_save(exc, 0, given_up=1)
        error: BaseException | None = None
        try:
            if records:
                save_many(self.storage, records)
        except BaseException as exc:  # the writer outlives any storage failure
            error = exc
        given_up = 0
        with self._cond:
            for eid, entry in take:
                if self._inflight.get(eid) is entry:
                    del self._inflight[eid]
            if error is None:
                self.written += len(records)
            else:
                for eid, entry in built:
                    entry.attempts += 1
                    if entry.attempts > self.retries or self._closed:
                        given_up += 1
                    elif eid not in self._pending:  # else a newer record replaces it
                        self._pending[eid] = entry
            self._cond.notify_all()
        if error is not None:
            self._failed_save(error, len(records), given_up)
        return error is None

    def _failed_save(self, exc: BaseException, records: int, given_up: int) -> None:
        with self._cond:
            self.errors += 1
            self.failed += given_up
            self.last_error = f"{type(exc).__name__}: {exc}"
        n = next(self._errors_logged)
        if n == 0 or n % 100 == 0 or given_up:
            logger.error("saving %d execution record(s) in %s failed (%s); %s",
                         records, type(self.storage).__name__, self.last_error,
                         f"{given_up} given up on" if given_up else "retrying",
                         exc_info=n == 0)

    # --- waiting ---------------------------------------------------------------------------

    def settle(self, execution_id: str, timeout: float) -> bool:
        """Wait until no record of ``execution_id`` waits to be written (within
        ``timeout``); whether that is so."""
        with self._cond:
            return self._cond.wait_for(lambda: execution_id not in self._pending
                                       and execution_id not in self._inflight, timeout)

    def flush(self, timeout: float) -> bool:
        """Wait until every record waiting has been written or given up on (within
        ``timeout``); whether that is so."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._inflight,
                                       timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        """Write what is waiting (within ``timeout``), then stop the writer thread; later
        records are dropped. The storage itself stays open (its owner closes it).

        Returns:
            Whether every record was written (or given up on after its retries).
        """
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
            left = len(self._pending) + len(self._inflight)
        self._retry_wait.set()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not flushed:
            logger.error("shutdown: %d execution record(s) not written to %s in %.1f s",
                         left, type(self.storage).__name__, timeout)
        return flushed

    # --- health and recovery ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for ``engine.health()``."""
        with self._cond:
            return {"backend": type(self.storage).__name__,
                    "writer": "thread" if self.threaded else "inline",
                    "pending": len(self._pending) + len(self._inflight),
                    "written": self.written, "failed": self.failed,
                    "dropped": self.dropped, "errors": self.errors,
                    "last_error": self.last_error, "interrupted": self.interrupted}

    def mark_interrupted(self) -> list[str]:
        """Mark INTERRUPTED the RUNNING and RESUMING records whose process is gone.

        Records of processes on other hosts cannot be judged and are left as they are.
        A storage that fails here is counted (``errors``) and logged, never raised: the
        engine must start even if its storage is unreachable.

        Returns:
            The ids marked.
        """
        marked: list[str] = []
        try:
            self._mark(marked)
        except Exception as exc:
            with self._cond:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            logger.exception("could not look for interrupted executions in %s",
                             type(self.storage).__name__)
        if marked:
            with self._cond:
                self.interrupted += len(marked)
            logger.warning("marked %d execution(s) INTERRUPTED: their process is gone "
                           "(%s%s)", len(marked), ", ".join(marked[:5]),
                           " ..." if len(marked) > 5 else "")
        return marked

    def _mark(self, marked: list[str]) -> None:
        now = time.time()
        for status in (RUNNING, RESUMING):
            skipped = 0
            for _ in range(10_000):  # bounded: each pass marks or skips records
                found = self.storage.list(status=status, limit=500, offset=skipped)
                if not found:
                    break
                for record in found:
                    if owner_state(record.owner) == "gone" \
                            and self.claim(interrupted(record, now), status):
                        marked.append(record.execution_id)
                    else:
                        skipped += 1

    # --- ExecutionStorage, reading through the backlog ------------------------------------

    def _waiting(self, execution_id: str) -> _Entry | None:
        with self._cond:
            return self._pending.get(execution_id) or self._inflight.get(execution_id)

    def save(self, record: ExecutionRecord) -> None:
        """Queue ``record`` for writing."""
        self._put(record.execution_id, record.pipeline, record.status, record.started_at,
                  None, record)

    def save_many(self, records: Iterable[ExecutionRecord]) -> None:
        """Queue several records for writing."""
        for record in records:
            self.save(record)

    def load(self, execution_id: str) -> ExecutionRecord | None:
        """The newest record: waiting to be written, else the stored one."""
        entry = self._waiting(execution_id)
        return entry.get() if entry is not None else self.storage.load(execution_id)

    def list(self, *, pipeline: str | None = None, status: str | None = None,
             limit: int = 100, offset: int = 0) -> list[ExecutionRecord]:
        """Records, newest first, filtered and paged, those waiting included."""
        with self._cond:
            waiting = {**self._inflight, **self._pending}  # pending ones are newer
        if not waiting:
            return self.storage.list(pipeline=pipeline, status=status, limit=limit,
                                     offset=offset)
        stored = self.storage.list(pipeline=pipeline, status=status,
                                   limit=offset + limit + len(waiting), offset=0)
        merged = [r for r in stored if r.execution_id not in waiting]
        merged += [e.get() for e in waiting.values()
                   if (pipeline is None or e.pipeline == pipeline)
                   and (status is None or e.status == status)]
        merged.sort(key=lambda r: r.started_at, reverse=True)
        return merged[offset:offset + limit]

    def close(self) -> None:
        """Stop, as :meth:`stop` with its default timeout."""
        self.stop()

    def delete(self, execution_id: str) -> bool:
        """Remove the record (once what waits for it is written)."""
        self.settle(execution_id, 5.0)
        return self.storage.delete(execution_id)

    def claim(self, record: ExecutionRecord, expected_status: str) -> bool:
        """Compare-and-set in the storage (see ``ClaimingStorage.claim``), once this
        writer's own records of the execution are written (waiting up to 10 s). A
        storage without ``claim`` gets load-compare-save under a lock: atomic within
        this engine only."""
        self.settle(record.execution_id, 10.0)
        claim = getattr(self.storage, "claim", None)
        if claim is not None:
            return bool(claim(record, expected_status))
        with self._claim_lock:
            current = self.storage.load(record.execution_id)
            if current is None or current.status != expected_status:
                return False
            self.storage.save(record)
            return True


def record_started(storage: ExecutionStorage, handle: Execution) -> None:
    """Record that an execution started (RUNNING); never raises."""
    if isinstance(storage, RecordWriter):
        storage.started(handle)
    else:
        try:
            storage.save(build_started(handle, time.time(), process_owner()))
        except BaseException:  # never raises, whatever the storage does
            logger.exception("could not record execution %s", handle.execution_id)


def checkpoints(storage: ExecutionStorage | None) -> RecordWriter | None:
    """The writer to send progress checkpoints to: only one writing to a durable storage
    on its own thread (an in-memory storage does not outlive the process anyway)."""
    if isinstance(storage, RecordWriter) and storage.threaded:
        return storage
    return None


def record_finished(storage: ExecutionStorage, handle: Execution, result: ExecutionResult
                    ) -> None:
    """Record a finished execution; never raises, never waits for the storage."""
    if isinstance(storage, RecordWriter):
        storage.finished(handle, result)
    else:
        now = time.time()
        try:
            storage.save(build_record(handle, result, now - result.duration_ms / 1000.0,
                                      now))
        except BaseException:  # never raises, whatever the storage does
            logger.exception("could not record execution %s", result.execution_id)


def save_many(storage: ExecutionStorage, records: Iterable[ExecutionRecord]) -> None:
    """``storage.save_many`` if it has one, else one ``save`` per record."""
    many = getattr(storage, "save_many", None)
    if many is not None:
        many(records)
    else:
        for record in records:
            storage.save(record)
