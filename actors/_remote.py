"""Module calls in other processes and on other machines (process pools, dask).

The engine submits ONE argument, a :class:`Call`, to :func:`run_call`: the module by
reference (or its code by value for modules that cannot be imported by name), the
arguments already pickled, the attempt's deadline on the wall clock, its context fields,
a cancel token and the values of the secrets its module declares (looked up by the
engine just before it ships the call; see :class:`Call`). Module arguments therefore
never become keywords of ``executor.submit`` (where dask would read ``key``,
``priority``, ``workers``, ``retries``, ``pure`` ... as its own options).

On the worker, :func:`run_call`:

- does not start a call whose token is already set or whose deadline has passed (a
  call that waited in a queue past its execution's end never runs);
- loads the module and the arguments, turning any failure into :class:`ShipError`
  (naming the module and how to get its code onto the workers);
- runs the module on a helper thread and watches it: once the deadline passes or the
  token is set, it gives the call up (:class:`CallAbandoned`), runs the context's
  cleanups and frees the executor's slot; the module's thread runs on, detached (a
  thread cannot be killed), and its result is dropped. A process-isolated module runs
  in a child process of the worker, whose whole process group is killed instead;
- once the call is over, drops its secrets, and redacts their values from the
  exception it raised (its message, arguments, attributes, notes and chained
  exceptions), so that neither the traceback a process pool sends back nor the
  "Compute Failed" line a dask worker logs holds one (the engine redacts again).

Tokens: :class:`FlagToken` -- a slot in a small memory-mapped file that every process
on the machine can read (process pools: setting it is a memory write, reading it is a
memory read); :class:`DaskToken` -- a ``distributed.Event`` per execution (set by the
engine when the execution ends early; read by the worker at a backing-off interval of
at most one second); :class:`NoToken` -- deadlines only (other executors).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import pickle
import struct
import sys
import tempfile
import threading
import time
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Call", "CallAbandoned", "DaskToken", "FlagToken", "Flags", "NoToken",
           "NotStarted", "RemoteContext", "ShipError", "run_call", "scrub"]

logger = logging.getLogger("constellation.runtime")

GRACE = 0.25
"""Seconds past its deadline before a worker gives a call up: the engine's own timer
ends the attempt first, so a timeout is reported as a timeout."""


class ShipError(Exception):
    """The module's code or arguments could not be loaded where the call runs."""


class CallAbandoned(Exception):  # noqa: N818 - not an error of the module's
    """The worker gave the call up (its deadline passed or it was cancelled)."""


class NotStarted:
    """Returned for a call that was cancelled (or past its deadline) before it started."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (NotStarted, (self.reason,))


# --- tokens ------------------------------------------------------------------------


class NoToken:
    """No cancel signal (the deadline still applies)."""

    __slots__ = ()

    def is_set(self) -> bool:
        return False

    def __reduce__(self) -> tuple[Any, ...]:
        return (NoToken, ())


_maps: dict[str, mmap.mmap | None] = {}
_maps_lock = threading.Lock()
_SLOT = struct.Struct("<I")


def _attach(path: str) -> mmap.mmap | None:
    mm = _maps.get(path, False)
    if mm is not False:
        return mm  # type: ignore[return-value]
    with _maps_lock:
        if path in _maps:
            return _maps[path]
        try:
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            mm = None  # gone: the engine that made it has shut down
        _maps[path] = mm
        return mm


class FlagToken:
    """A slot of a :class:`Flags` file: set once the slot's value moved on from ``gen``."""

    __slots__ = ("gen", "path", "slot")

    def __init__(self, path: str, slot: int, gen: int) -> None:
        self.path = path
        self.slot = slot
        self.gen = gen

    def is_set(self) -> bool:
        mm = _attach(self.path)
        if mm is None:
            return True  # the engine is gone: nobody waits for this call
        return bool(_SLOT.unpack_from(mm, self.slot * 4)[0] != self.gen)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FlagToken, (self.path, self.slot, self.gen))


class Flags:
    """Cancel flags for calls in other processes of this machine: a memory-mapped file
    of ``size`` 32-bit slots. An attempt takes a slot and remembers its value; retiring
    the slot (cancel, or the call ended) increments it, which every holder of the old
    value reads as "cancelled", and frees it for the next attempt."""

    def __init__(self, size: int = 1 << 16) -> None:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.path = tempfile.mkstemp(prefix="constellation-cancel-", dir=folder)
        try:
            os.ftruncate(fd, size * 4)
            self._map = mmap.mmap(fd, size * 4)
        finally:
            os.close(fd)
        self._free = list(range(size - 1, -1, -1))
        self._lock = threading.Lock()
        self.closed = False

    def issue(self) -> FlagToken | NoToken:
        """A fresh token (NoToken when every slot is taken: deadlines still apply)."""
        with self._lock:
            if not self._free or self.closed:
                return NoToken()
            slot = self._free.pop()
            gen = _SLOT.unpack_from(self._map, slot * 4)[0]
        return FlagToken(self.path, slot, gen)

    def retire(self, token: FlagToken | NoToken) -> None:
        """Set ``token`` (the call is cancelled or over) and free its slot. Call once."""
        if not isinstance(token, FlagToken):
            return
        with self._lock:
            if self.closed:
                return
            slot = token.slot
            value = _SLOT.unpack_from(self._map, slot * 4)[0]
            if value != token.gen:
                return  # retired already
            _SLOT.pack_into(self._map, slot * 4, (value + 1) & 0xFFFFFFFF)
            self._free.append(slot)

    def close(self) -> None:
        """Remove the file; calls still running read their tokens as set."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._map.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class DaskToken:
    """Set when the engine sets the ``distributed.Event`` named ``name`` (one per
    execution). Read on the worker at most every ``interval`` seconds, backing off from
    50 ms to 1 s: each read is a round trip to the scheduler."""

    __slots__ = ("_event", "_next", "_set", "_wait", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._set = False
        self._event: Any = None
        self._next = 0.0
        self._wait = 0.05

    def is_set(self) -> bool:
        if self._set:
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._wait
        self._wait = min(self._wait * 2, 1.0)
        try:
            if self._event is None:
                import distributed

                event: Any = distributed.Event
                self._event = event(self.name)
            self._set = bool(self._event.is_set())
        except Exception:  # the scheduler is unreachable: the deadline still applies
            logger.debug("reading cancel event %s failed", self.name, exc_info=True)
        return self._set

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskToken, (self.name,))


# --- the call ----------------------------------------------------------------------


class Call:
    """One attempt of one module call, as it travels to a worker.

    Attributes:
        name: the module's name (for errors).
        ref: ``(python module, qualified name)`` of the definition, or None.
        code: the function pickled by value (cloudpickle), when ``ref`` is None.
        args: the keyword arguments, pickled.
        ctx: ``(execution id, node, attempt number)`` if the module takes ``ctx``.
        deadline: wall-clock time (``time.time()``) after which the call is given up.
        token: the cancel token.
        isolated: run in a child process (``isolation="process"``).
        secrets: name -> value of the secrets the module declares, for this attempt
            only (None without any); dropped on the worker once the call is over.
    """

    __slots__ = ("args", "code", "ctx", "deadline", "isolated", "name", "ref", "secrets",
                 "token")

    def __init__(self, name: str, ref: tuple[str, str] | None, code: bytes | None,
                 args: bytes, ctx: tuple[str, str, int] | None, deadline: float | None,
                 token: Any, isolated: bool, secrets: dict[str, str] | None = None) -> None:
        self.name = name
        self.ref = ref
        self.code = code
        self.args = args
        self.ctx = ctx
        self.deadline = deadline
        self.token = token
        self.isolated = isolated
        self.secrets = secrets

    def __reduce__(self) -> tuple[Any, ...]:
        return (Call, (self.name, self.ref, self.code, self.args, self.ctx, self.deadline,
                       self.token, self.isolated, self.secrets))

    def __repr__(self) -> str:
        # Executors log it (a dask worker's "Compute Failed"): the name only, never the
        # arguments or the secrets.
        return f"<Call {self.name}>"


_resolved: dict[Any, Any] = {}


def _load(call: Call) -> Any:
    """The module definition (by reference) or function (by value) of ``call``."""
    if call.ref is not None:
        key: Any = call.ref
        found = _resolved.get(key)
        if found is None:
            from constellation.core.modules import _find_module

            found = _find_module(call.ref[0], call.ref[1], call.name)
            _resolved[key] = found
        return found
    assert call.code is not None
    key = hashlib.sha1(call.code).digest()
    found = _resolved.get(key)
    if found is None:
        found = pickle.loads(call.code)
        if len(_resolved) > 4096:
            _resolved.clear()
        _resolved[key] = found
    return found


def _where() -> str:
    try:
        from distributed import get_worker

        return f"dask worker {get_worker().address}"
    except Exception:
        return f"process {os.getpid()} on {os.uname().nodename}"


def _here() -> str:
    """:func:`_where`, cheaply: dask is asked only where it is already imported (a
    process pool's worker never imports it for this), and only on the worker's own
    thread (a module's thread is not one dask knows)."""
    if "distributed" in sys.modules:
        return _where()
    return f"process {os.getpid()} on {os.uname().nodename}"


def ship_advice(name: str) -> str:
    return (f"make the code of module {name} importable where it runs: install its "
            "package on every worker, or (dask) client.upload_file('module.py'), or "
            "client.register_plugin(constellation.executors.ShipModules([...])); "
            "see docs/distributed.md, 'Getting module code onto the workers'")


class RemoteContext:
    """What a module that declares ``ctx`` receives when it runs in another process.

    The same interface as :class:`~constellation.actors._context.CallContext`:
    ``execution_id``, ``node``, ``attempt``, ``deadline`` (on this process's
    ``time.monotonic()``), ``cancelled``, ``cancel_event``, ``on_cleanup`` and
    ``secret`` (the secrets the module declares, shipped with the call). Cleanups run
    here, on the worker, when the call returns or is given up.
    """

    __slots__ = ("_cleanups", "_deadline", "_lock", "_module", "_secrets", "_stop",
                 "_token", "_where", "attempt", "cancel_event", "execution_id", "node")

    def __init__(self, fields: tuple[str, str, int], deadline: float | None,
                 token: Any, secrets: dict[str, str] | None = None,
                 module: str = "", where: str = "") -> None:
        self.execution_id, self.node, self.attempt = fields
        self._deadline = deadline  # wall clock
        self._token = token
        self._secrets = secrets
        self._module = module
        self._where = where  # for messages: the dask worker or process running it
        self._stop = False
        self._cleanups: list[Callable[[], None]] | None = []
        self._lock = threading.Lock()
        self.cancel_event = _CancelEvent(self)

    @property
    def deadline(self) -> float | None:
        """When the call should be over, on this process's ``time.monotonic()``."""
        if self._deadline is None:
            return None
        return time.monotonic() + (self._deadline - time.time())

    @property
    def cancelled(self) -> bool:
        """The execution was cancelled or ended, or this attempt passed its deadline."""
        if self._stop:
            return True
        if (self._deadline is not None and time.time() >= self._deadline) \
                or self._token.is_set():
            self._stop = True
        return self._stop

    def secret(self, name: str) -> str:
        """The value of secret ``name``, which the engine looked up in its secrets
        backend and shipped with this call: only secrets the module declares
        (``@module(secrets=("name",))``) travel, and only while the call runs.

        Raises:
            SecretNotFoundError: ``name`` is not declared by the module (E320; the call
                fails), or the call is over.
            ConfigurationError: ``name`` is not a valid secret name.
        """
        from constellation.core.errors import SecretNotFoundError
        from constellation.core.secret_names import check_name

        secrets = self._secrets
        value = None if secrets is None else secrets.get(name)
        if value is not None:
            return value
        check_name(name)
        module = self._module or "this module"
        details = {"secret": name, "node": self.node, "module": self._module}
        if self._cleanups is None:
            raise SecretNotFoundError(
                f"secret {name!r} asked for by module {module} after its call was over "
                "(its secrets are dropped then)", details=details)
        raise SecretNotFoundError(
            f"secret {name!r} is not declared by module {module} (node '{self.node}'): "
            f"a call on {self._where or _here()} gets only the secrets its module "
            f"declares; declare it with @module(secrets=({name!r},))", details=details)

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once when this call ends (here, on the worker); at once if the
        call is already over. Exceptions are logged."""
        with self._lock:
            if self._cleanups is not None:
                self._cleanups.append(fn)
                return
        _cleanup(fn)

    def _end(self) -> None:
        self._secrets = None
        with self._lock:
            cleanups, self._cleanups = self._cleanups, None
        for fn in cleanups or ():
            _cleanup(fn)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a module's ctx cannot leave the process it was given in")

    def __repr__(self) -> str:
        return f"<RemoteContext {self.execution_id} {self.node} attempt {self.attempt}>"


class _CancelEvent:
    """``ctx.cancel_event`` on a worker: ``is_set()`` and an interruptible ``wait``."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: RemoteContext) -> None:
        self._ctx = ctx

    def is_set(self) -> bool:
        return self._ctx.cancelled

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self._ctx.cancelled:
            left = 0.02 if end is None else min(0.02, end - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


def _cleanup(fn: Callable[[], None]) -> None:
    try:
        fn()
    except BaseException:
        logger.exception("cleanup callback %r failed", fn)


class _Threads:
    """Daemon threads for module calls on a worker, reused; one more whenever none is
    idle (a detached call keeps its thread)."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[Callable[[], None]] = SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self.detached = 0  # calls given up on whose threads still run

    def run(self, fn: Callable[[], None]) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._queue.put(fn)
        if spawn:
            threading.Thread(target=self._loop, name="constellation-call",
                             daemon=True).start()

    def _loop(self) -> None:
        while True:
            fn = self._queue.get()
            fn()
            with self._lock:
                self._idle += 1


_threads = _Threads()


def detached_calls() -> int:
    """Calls given up on in this process whose threads still run."""
    return _threads.detached


def run_call(call: Call) -> Any:
    """Run ``call`` here (on the worker); see the module docstring."""
    token = call.token
    deadline = call.deadline
    secrets, call.secrets = call.secrets, None  # held by the context only
    if token.is_set():
        return NotStarted("cancelled before it started")
    if deadline is not None and time.time() >= deadline:
        return NotStarted("its deadline passed before it started")
    try:
        target = _load(call)
        kwargs = pickle.loads(call.args)
    except BaseException as exc:
        raise ShipError(f"module {call.name}: its code or arguments could not be loaded "
                        f"on {_where()} ({type(exc).__name__}: {exc}); "
                        f"{ship_advice(call.name)}") from None
    ctx = None
    if call.ctx is not None:
        ctx = RemoteContext(call.ctx, deadline, token, secrets, call.name, _here())
        kwargs["ctx"] = ctx
    child = _Child()
    if call.isolated:
        from constellation.actors._isolation import run_isolated

        def body() -> Any:
            return run_isolated(target, kwargs, child)
    else:
        func = getattr(target, "func", target)

        def body() -> Any:
            return func(**kwargs)
    try:
        return _supervised(body, deadline, token, child)
    except BaseException as exc:
        if secrets:
            scrub(exc, secrets.values())
        raise
    finally:
        if ctx is not None:
            ctx._end()
        if secrets:
            secrets.clear()  # the values live for the call only
        secrets = None


_SCRUBBED_ATTRIBUTES = ("strerror", "filename", "filename2")  # OSError's, not in __dict__


def scrub(exc: BaseException, values: Any) -> None:
    """Redact ``values`` in place from ``exc`` and the exceptions chained to it: their
    arguments, string attributes and notes (what ``str``, ``repr`` and a formatted
    traceback show of the common exceptions). Best effort, never raises: an exception
    whose ``__str__`` builds its text some other way is still redacted by the engine."""
    from constellation.spi._secrets import MIN_REDACTED, redact

    values = [v for v in values if isinstance(v, str) and len(v) >= MIN_REDACTED]
    if not values:
        return

    def clean(v: Any) -> Any:
        # Containers are rebuilt (tuples inside become lists) only if they hold one.
        if isinstance(v, str):
            return redact(v, values)
        if isinstance(v, list | tuple | dict):
            text = repr(v)
            if any(s in text for s in values):
                return redact(v, values)
        return v

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 64:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        todo += (e.__cause__, e.__context__)
        with contextlib.suppress(Exception):
            e.args = tuple(clean(a) for a in e.args)
        with contextlib.suppress(Exception):
            state = vars(e)
            for k, v in list(state.items()):
                state[k] = clean(v)  # __notes__ included
        for attr in _SCRUBBED_ATTRIBUTES:
            with contextlib.suppress(Exception):
                v = getattr(e, attr, None)
                if isinstance(v, str):
                    setattr(e, attr, redact(v, values))


class _Child:
    """Stands for the Attempt of an isolated call on a worker (see ``run_isolated``)."""

    __slots__ = ("abandoned", "process")

    def __init__(self) -> None:
        self.abandoned = False
        self.process: Any = None


def _supervised(body: Callable[[], Any], deadline: float | None, token: Any,
                child: _Child) -> Any:
    done = threading.Event()
    box: list[Any] = []

    def run() -> None:
        try:
            box.append((True, body()))
        except BaseException as exc:
            box.append((False, exc))
        done.set()

    _threads.run(run)
    give_up = None if deadline is None else deadline + GRACE
    wait = 0.01
    while True:
        left = wait if give_up is None else min(wait, give_up - time.time())
        if left > 0 and done.wait(left):
            break
        if done.is_set():
            break
        if (give_up is not None and time.time() >= give_up) or token.is_set():
            child.abandoned = True  # an isolated call's process group is killed
            if child.process is not None:
                from constellation.actors._context import kill_process

                kill_process(child.process)
            if done.wait(0.05):  # ended as it was given up
                break
            with _threads._lock:
                _threads.detached += 1
            raise CallAbandoned("given up on the worker: " + (
                "its deadline passed" if give_up is not None and time.time() >= give_up
                else "cancelled"))
        wait = min(wait * 2, 0.05)
    ok, value = box[0]
    if ok:
        return value
    raise value


def can_ship_by_value() -> bool:
    """Whether cloudpickle is here (module code defined in ``__main__`` or a function
    can then travel by value)."""
    try:
        import cloudpickle  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def dumps_by_value(func: Any) -> bytes:
    import cloudpickle

    data: bytes = cloudpickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def by_value(func: Any) -> bool:
    """Whether ``func`` cannot be imported by name in another process."""
    return func.__module__ == "__main__" or "<locals>" in func.__qualname__ \
        or func.__module__ not in sys.modules
