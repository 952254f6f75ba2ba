"""PooledActor: pykka actors that share a few dispatcher threads.

pykka's ``ThreadingActor`` gives every actor its own thread; an engine with one actor
per DAG node and execution would hold thousands. ``PooledActor`` plugs into pykka's
runtime hooks instead: its inbox schedules a *turn* on a :class:`ThreadPool` when the
first message arrives, and a turn handles at most ``turn_batch`` messages before the
actor goes back to the end of the queue. pykka's guarantees hold: ``tell``/``ask``/
proxies/``ActorRegistry`` work unchanged, an actor never runs two turns at once,
messages sent before ``stop`` are handled, and later ones fail with ``ActorDeadError``.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar, Self

import pykka
from pykka import ActorDeadError, ActorRef, ActorRegistry, messages
from pykka._envelope import Envelope
from pykka._threading import ThreadingFuture

from constellation.actors._interrupts import enter_critical, exit_critical
from constellation.actors._pool import Droppable, ThreadPool
from constellation.actors._pool import _local as _pool_local

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PooledActor", "default_dispatcher"]

logger = logging.getLogger("constellation.actors")

_urns = itertools.count(1)
_default_lock = threading.Lock()
_default: list[ThreadPool] = []


def default_dispatcher() -> ThreadPool:
    """The process-wide dispatcher for actors started without one (created on first use)."""
    with _default_lock:
        if not _default:
            import os

            _default.append(ThreadPool(min(4, os.cpu_count() or 2),
                                       "constellation-dispatcher", eager=False))
        return _default[0]


class _StopFlag(threading.Event):
    """``actor_stopped``: a ``threading.Event`` that builds its lock only if waited on.

    ``threading.Event()`` costs about 6 µs here, more than the rest of a node actor's
    creation; most actors are never waited on.
    """

    _shared = threading.Lock()

    def __init__(self) -> None:  # deliberately skips Event.__init__
        self._flag = False
        self._real: threading.Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        # No lock: wait() re-checks the flag after publishing its Event, so either it
        # sees the flag or this sees the Event.
        self._flag = True
        real = self._real
        if real is not None:
            real.set()

    def clear(self) -> None:
        with self._shared:
            self._flag = False
            if self._real is not None:
                self._real.clear()

    def wait(self, timeout: float | None = None) -> bool:
        with self._shared:
            if self._flag:
                return True
            if self._real is None:
                self._real = threading.Event()
            real = self._real
        if self.is_set():  # set() may have run before _real was published
            return True
        return real.wait(timeout)


class _Inbox:
    """The actor's mailbox; the message that finds the actor idle schedules its turn.

    Lock-free: who runs the actor's next turn is decided by a *turn token*, a list that
    holds one item while the actor is idle. Taking the turn is ``list.pop()`` and giving
    it back is ``list.append()``; both, like ``deque.append``/``popleft``, are atomic in
    CPython. After giving the token back, the owner looks at the messages again and
    takes the turn once more if one slipped in, so no message is ever stranded. (With a
    lock, a thread preempted inside the critical section made every sender wait for it
    to get the GIL back: measured as the main cost of submitting under load. A list
    rather than a bytearray, which the cyclic GC would not track: CPython 3.11
    specializes ``list.append``, and a turn costs 1.4 % more instructions without it.)
    """

    __slots__ = ("_actor", "_closed", "_messages", "_pool", "_token")

    def __init__(self, actor: PooledActor | None = None, pool: ThreadPool | None = None
                 ) -> None:
        # pykka Envelopes, and bare messages posted by the runtime itself (see post()).
        self._messages: deque[Any] = deque()
        # Empty: a turn owns the actor. It starts owned: until bound and started,
        # messages only accumulate, and an actor created running is owned by its
        # creator's first step (see PooledActor.spawn_running).
        self._token: list[bool] = []
        self._closed = False
        self._actor = actor
        self._pool = pool

    def closed(self) -> bool:
        """Whether the actor has stopped taking messages (read afresh on every call)."""
        return self._closed

    def take_turn(self) -> bool:
        """Try to take the actor's turn; True if this caller now owns it."""
        try:
            self._token.pop()
        except IndexError:
            return False
        return True

    def bind(self, actor: PooledActor, pool: ThreadPool) -> None:
        self._actor = actor
        self._pool = pool
        pool.schedule(actor._turn)  # the first turn runs on_start, then any messages

    def post(self, message: Any, free: ThreadPool | None = None) -> bool:
        """Queue a runtime-internal message (no Envelope, no reply); False if closed.

        A message to a closed inbox is a dead letter: dropped and counted on the pool
        (``ThreadPool.dead_letters``), never an exception in the sender. ``free``: a
        turn this makes due runs on a free thread of that pool if it has one (see
        ``_schedule``)."""
        if self._closed:
            _dead_letter(self._pool)
            return False
        self._messages.append(message)
        if self.closed():  # closed while we appended: the closer may have missed it
            self.drain_rejected()
            return False
        if self.take_turn():
            return _schedule(self._pool, self._actor, queued=False,  # type: ignore[arg-type]
                             free=free)
        return True

    def put(self, envelope: Envelope[Any], /) -> None:
        if self._closed:
            _dead_letter(self._pool)
            _reject(envelope, self._actor)
            return
        self._messages.append(envelope)
        if self.closed():  # see post()
            self.drain_rejected()
            return
        if self.take_turn():
            assert self._pool is not None
            assert self._actor is not None
            _schedule(self._pool, self._actor, queued=False)

    def drain_rejected(self) -> None:
        """Answer every waiting message as undeliverable (the actor has stopped): a
        dead letter each, and ``ask`` callers get ``ActorDeadError``."""
        messages = self._messages
        while True:
            try:
                envelope = messages.popleft()
            except IndexError:
                return
            _dead_letter(self._pool)
            _reject(envelope, self._actor)

    def get(self) -> Envelope[Any]:
        return self._messages.popleft()  # type: ignore[no-any-return]

    def empty(self) -> bool:
        return not self._messages


def _schedule(pool: ThreadPool, actor: PooledActor, *, queued: bool,
              free: ThreadPool | None = None) -> bool:
    # A pool that is shut down runs nothing more: the message is a dead letter (the
    # engine is stopping), never an exception in the sender. ``free``: run the turn on
    # a free thread of that pool if it has one; a turn it drops unrun (shut down with
    # cancel_futures) is scheduled on the actor's own pool: the token is never lost.
    if free is not None and free is not pool and free.schedule_if_free(
            Droppable(actor._turn, lambda: _schedule(pool, actor, queued=True))):
        return True
    try:
        if queued:
            pool.schedule_queued(actor._turn)
        else:
            pool.schedule(actor._turn)
    except RuntimeError:
        pool.dead_letter()
        return False
    return True


def _dead_letter(pool: ThreadPool | None) -> None:
    if pool is not None:
        pool.dead_letter()


def _reject(envelope: Any, actor: PooledActor | None) -> None:
    if type(envelope) is not Envelope or envelope.reply_to is None:
        return
    if isinstance(envelope.message, messages._ActorStop):
        envelope.reply_to.set(None)
    else:
        envelope.reply_to.set_exception(
            exc_info=(ActorDeadError, ActorDeadError(f"{actor} stopped before handling the "
                                                     "message"), None))


class PooledActor(pykka.Actor):
    """A pykka actor whose turns run on a shared :class:`ThreadPool`.

    Subclass it exactly like ``pykka.ThreadingActor``. Set the class attribute
    ``dispatcher`` (or pass ``_dispatcher=`` to :meth:`start`) to choose the pool;
    otherwise :func:`default_dispatcher` is used.
    """

    dispatcher: ClassVar[ThreadPool | None] = None
    turn_batch: ClassVar[int] = 32
    """Messages handled in one turn before other actors get the thread (fairness)."""

    actor_stopped: _StopFlag
    _actor_pool: ThreadPool
    _actor_started: bool
    _actor_registered: bool = False

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        # pykka.Actor.__init__ spends ~14 µs on uuid4() and threading.Event(). Here the
        # URN is a process-unique counter and the stop flag is lazy; the URN and the
        # ActorRef are made on first use (most node actors are never referenced).
        # Same fields, same meaning.
        self.actor_inbox = _Inbox()
        self.actor_stopped = _StopFlag()
        self._actor_started = False

    @property
    def actor_urn(self) -> str:  # type: ignore[override]
        urn: str | None = self.__dict__.get("_urn")
        if urn is None:
            urn = self.__dict__["_urn"] = f"urn:constellation:actor:{next(_urns)}"
        return urn

    @property
    def _actor_ref(self) -> ActorRef[Any]:  # type: ignore[override]
        ref: ActorRef[Any] | None = self.__dict__.get("_ref")
        if ref is None:
            ref = self.__dict__["_ref"] = ActorRef(self)
        return ref

    @classmethod
    def start(cls, *args: Any, _dispatcher: ThreadPool | None = None, **kwargs: Any
              ) -> ActorRef[Self]:
        """Create the actor, register it in ``ActorRegistry`` and schedule its first turn."""
        obj = cls(*args, **kwargs)
        ActorRegistry.register(obj.actor_ref)
        obj._actor_registered = True
        obj._attach(_dispatcher)
        return obj.actor_ref

    @classmethod
    def spawn(cls, *args: Any, _dispatcher: ThreadPool | None = None, **kwargs: Any
              ) -> ActorRef[Self]:
        """Like :meth:`start` but without registering in ``ActorRegistry``.

        For short-lived actors owned by another actor (the engine's node actors): the
        global registry is a locked list, and thousands of ephemeral entries would make
        every registration and removal slower for everyone.
        """
        obj = cls(*args, **kwargs)
        obj._attach(_dispatcher)
        return obj.actor_ref

    @classmethod
    def spawn_running(cls, *args: Any, _dispatcher: ThreadPool | None = None, **kwargs: Any
                      ) -> Self:
        """Create an unregistered actor whose first turn the caller holds; return the actor.

        No turn is scheduled and ``on_start`` is not called: the creator does the actor's
        first step itself, as that turn, then must call :meth:`end_turn`. Messages that
        arrive meanwhile (say, a reply to a call the first step made) wait in the inbox,
        exactly as during any turn. Used for execution and node actors, whose first step
        is to start work; it saves one scheduled turn per actor.
        """
        obj = cls(*args, **kwargs)
        obj._become_running(_dispatcher or cls.dispatcher or default_dispatcher())
        return obj

    def _become_running(self, pool: ThreadPool) -> None:
        self._actor_started = True
        self._actor_pool = pool
        self.actor_inbox = _Inbox(self, pool)

    def end_turn(self) -> None:
        """End the turn the caller holds (see :meth:`spawn_running`): close the inbox if
        the actor stopped, else give the turn back and take it again for any message
        that arrived meanwhile (scheduled at the back of the queue, for fairness)."""
        inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        if self.actor_stopped._flag:
            self._close_inbox(inbox)
            return
        inbox._token.append(True)
        if inbox._messages and inbox.take_turn():
            _schedule(self._actor_pool, self, queued=True)

    def post(self, message: Any) -> bool:
        """Send a runtime-internal message: no Envelope, no reply, no liveness check.

        Returns:
            ``False`` if the actor has stopped (the message is dropped).
        """
        return self.actor_inbox.post(message)  # type: ignore[attr-defined, no-any-return]

    def post_and_run(self, message: Any, handler: Callable[[Any], Any] | None = None
                     ) -> bool:
        """Post ``message``; if the actor was idle and this is one of the pool's threads,
        handle it right here, as this actor's turn, instead of scheduling a turn.

        This is how the thread that finishes a module call runs the next ready turns
        itself: no queue, no slot, no handoff. It is still one turn at a time: the turn
        runs only if this call is the one that took the actor's turn token.

        ``handler``: the actor's method that ``on_receive`` would hand this message to,
        called directly when the turn runs here (the hottest messages skip the
        dispatch); a queued message goes through ``on_receive`` as always.

        Returns:
            ``False`` if the actor has stopped (the message is dropped).
        """
        inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        if inbox._closed or self.actor_stopped._flag:
            _dead_letter(inbox._pool)
            return False
        if getattr(_pool_local, "pool", None) not in self._actor_pool._runs_on:
            # Not an engine thread (a user's submit or cancel): queue it. On the main
            # thread a Ctrl-C between taking the turn token and scheduling the turn
            # would lose the token: the handoff is a critical section there.
            critical = enter_critical()
            try:
                return inbox.post(message)
            finally:
                if critical:
                    exit_critical()
        if inbox._messages or not inbox.take_turn():
            return inbox.post(message)  # busy, or others are waiting first: queue it
        if handler is None:
            self._receive_posted(message)
        else:
            try:
                handler(message)
            except BaseException as exc:  # as _receive_posted: this actor's failure
                self._turn_failed_safely(exc)
        self.end_turn()
        return True

    def post_turn_on(self, message: Any, pool: ThreadPool) -> bool:
        """Post ``message`` from a thread outside the engine's pools; a turn this makes
        due runs on a free thread of ``pool`` if it has one (see
        ``ThreadPool.schedule_if_free``), else on the actor's own pool as always.

        For the hand-over of an execution whose caller waits for it: the supervisor's
        turn, and then the execution's first step in that thread's slot, run on the
        worker that goes on to run the execution's calls -- one handoff there and one
        back, without a dispatcher thread in between. The message is queued in the
        inbox first, exactly as :meth:`post` does, so messages keep their order (a
        cancel that follows it is handled after it). A turn dropped unrun (``pool``
        shut down with ``cancel_futures``) is scheduled on the actor's pool instead:
        the turn token is never lost.

        Returns:
            ``False`` if the actor has stopped (the message is dropped).
        """
        inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        if self.actor_stopped._flag:
            _dead_letter(inbox._pool)
            return False
        # On the main thread a Ctrl-C between taking the token and scheduling the turn
        # would lose the token: as in post_and_run, the handoff is a critical section.
        critical = enter_critical()
        try:
            return inbox.post(message, free=pool)
        finally:
            if critical:
                exit_critical()

    def take_turn_here(self) -> bool:
        """Take this actor's turn on this thread where :meth:`post_and_run` would run a
        message here: an engine thread, the actor alive and idle, nothing queued before.
        True: the caller owns the turn, does its work as this actor (catching what it
        raises, see post_and_run) and then calls :meth:`end_turn`. False: nothing was
        taken; post a message instead (it is queued, or a dead letter)."""
        inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        return not (inbox._closed or self.actor_stopped._flag or inbox._messages) \
            and getattr(_pool_local, "pool", None) in self._actor_pool._runs_on \
            and inbox.take_turn()

    def _receive_posted(self, message: Any) -> None:
        # A runtime-internal message: straight to on_receive; anything escaping it is
        # this actor's failure, reported through turn_failed (supervision).
        try:
            self.on_receive(message)
        except BaseException as exc:
            self._turn_failed_safely(exc)

    def turn_failed(self, exc: BaseException) -> None:
        """An exception escaped one of this actor's turns (a message nobody waits for).

        The default is pykka's: log it, call ``on_failure`` and stop this actor. Unlike
        pykka's threading actors, a ``BaseException`` (``SystemExit``,
        ``KeyboardInterrupt`` raised by code in a turn ...) is treated the same way: it
        stops this actor only, never every actor in the process. The runtime's actors
        override this to report the failure to their parent (supervision).
        """
        self._handle_failure(type(exc), exc, exc.__traceback__)
        try:
            self.on_failure(type(exc), exc, exc.__traceback__)
        except Exception:
            self._handle_failure(*sys.exc_info())
        self._stop()

    def _turn_failed_safely(self, exc: BaseException) -> None:
        try:
            self.turn_failed(exc)
        except BaseException:
            logger.exception("handling a failure of %s failed; stopping it", self)
            try:
                self._stop()
            except BaseException:
                self.actor_stopped.set()

    def _attach(self, pool: ThreadPool | None) -> None:
        self._actor_pool = pool or self.dispatcher or default_dispatcher()
        self._start_actor_loop()

    @staticmethod
    def _create_actor_inbox() -> _Inbox:
        return _Inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return ThreadingFuture()

    def _start_actor_loop(self) -> None:
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        inbox.bind(self, self._actor_pool)

    def _stop(self) -> None:
        """Stop now, without handling the rest of the inbox (pykka's semantics)."""
        if self._actor_registered:
            super()._stop()
            return
        # Never registered: skip the registry's locked scan and its debug line.
        self.actor_stopped.set()
        try:
            self.on_stop()
        except Exception:
            self._handle_failure(*sys.exc_info())

    # --- the turn ---------------------------------------------------------------------

    def _turn(self) -> None:
        inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        try:
            if not self._actor_started:
                self._actor_started = True
                self._actor_loop_setup()
            msgs = inbox._messages
            stopped = self.actor_stopped
            for _ in range(self.turn_batch):
                if stopped._flag or not msgs:
                    break
                item = msgs.popleft()
                if type(item) is Envelope:
                    self._handle_envelope(item)
                else:
                    self._receive_posted(item)
        except BaseException as exc:
            self._turn_failed_safely(exc)
        # Stopped: close. More waiting: back of the queue, so other actors get a turn.
        self.end_turn()

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        # Mirrors pykka.Actor._actor_loop_running's body for one message.
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except BaseException as exc:
            if envelope.reply_to is not None:
                logger.info(f"Exception returned from {self} to caller:",
                            exc_info=sys.exc_info())
                envelope.reply_to.set_exception()
            else:
                self._turn_failed_safely(exc)

    def _close_inbox(self, inbox: _Inbox) -> None:
        # Senders re-check _closed after appending, so between them and this drain
        # every message is answered exactly once (popleft is atomic).
        inbox._closed = True
        if inbox._messages:
            inbox.drain_rejected()
        # Break the actor <-> inbox reference cycle: a stopped actor is then freed by
        # reference counting at once instead of waiting for the cyclic collector, which
        # (measured) cost a third of the time of short executions.
        inbox._actor = None
