"""pykka's actor contract, run against pykka's ThreadingActor and our PooledActor alike."""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka
import pytest

from constellation.actors import PooledActor, ThreadPool

WAIT = 5.0


@pytest.fixture(params=["threading", "pooled"])
def actor_base(request: pytest.FixtureRequest) -> type[pykka.Actor]:
    if request.param == "threading":
        return pykka.ThreadingActor
    return PooledActor


def make_recorder(base: type[pykka.Actor]) -> type[pykka.Actor]:
    class Recorder(base):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            super().__init__()
            self.received: list[Any] = []
            self.started_first = False
            self.stopped = threading.Event()

        def on_start(self) -> None:
            self.started_first = not self.received

        def on_stop(self) -> None:
            self.stopped.set()

        def on_receive(self, message: Any) -> Any:
            if message == "boom":
                raise ValueError("boom")
            if message == "slow":
                time.sleep(0.05)
            self.received.append(message)
            return ("echo", message)

        def add(self, a: int, b: int) -> int:
            return a + b

        def get_received(self) -> list[Any]:
            return list(self.received)

        value = 42

    return Recorder


def test_ask_returns_the_reply(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    assert ref.ask("hi", timeout=WAIT) == ("echo", "hi")


def test_tell_delivers_in_order_from_one_sender(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    for i in range(200):
        ref.tell(i)
    assert ref.proxy().get_received().get(timeout=WAIT) == list(range(200))


def test_ask_raises_the_actors_exception(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom", timeout=WAIT)
    assert ref.is_alive()  # an exception returned to the asker does not stop the actor


def test_proxy_calls_methods_and_reads_attributes(actor_base: type[pykka.Actor]) -> None:
    proxy = make_recorder(actor_base).start().proxy()
    assert proxy.add(2, 3).get(timeout=WAIT) == 5
    assert proxy.value.get(timeout=WAIT) == 42
    proxy.value = 7
    assert proxy.value.get(timeout=WAIT) == 7


def test_on_start_runs_before_any_message(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    ref.tell("a")
    assert ref.proxy().started_first.get(timeout=WAIT) is True


def test_actor_is_registered_when_started_and_unregistered_when_stopped(
        actor_base: type[pykka.Actor]) -> None:
    cls = make_recorder(actor_base)
    ref = cls.start()
    assert ref in pykka.ActorRegistry.get_by_class(cls)
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is ref
    assert ref.stop(timeout=WAIT) is True
    assert ref not in pykka.ActorRegistry.get_all()
    assert not ref.is_alive()


def test_messages_sent_before_stop_are_processed(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    proxy = ref.proxy()
    for i in range(50):
        ref.tell(i)
    actor_received = proxy.received.get(timeout=WAIT)  # the live list object
    ref.stop(timeout=WAIT)
    assert actor_received == list(range(50))


def test_tell_after_stop_raises_actor_dead_error(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    ref.stop(timeout=WAIT)
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("late")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("late", timeout=WAIT)


def test_stop_of_a_stopped_actor_returns_false(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    assert ref.stop(timeout=WAIT) is True
    assert ref.stop(timeout=WAIT) is False


def test_on_stop_runs_when_stopped(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    stopped = ref.proxy().stopped.get(timeout=WAIT)
    ref.stop(timeout=WAIT)
    assert stopped.wait(WAIT)


def test_unhandled_exception_in_tell_stops_the_actor(actor_base: type[pykka.Actor]) -> None:
    ref = make_recorder(actor_base).start()
    ref.tell("boom")
    deadline = time.monotonic() + WAIT
    while ref.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not ref.is_alive()


def make_overlap_probe(base: type[pykka.Actor]) -> type[pykka.Actor]:
    """An actor that counts messages and notices if two turns ever overlap."""

    class Probe(base):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            super().__init__()
            self.inside = 0
            self.overlaps = 0
            self.count = 0

        def on_receive(self, message: Any) -> Any:
            self.inside += 1
            if self.inside > 1:
                self.overlaps += 1
            time.sleep(0)  # invite a thread switch mid-turn
            self.count += 1
            self.inside -= 1
            return None

    return Probe


def test_actor_never_runs_two_turns_at_once(actor_base: type[pykka.Actor]) -> None:
    ref = make_overlap_probe(actor_base).start()

    def sender() -> None:
        for _ in range(300):
            ref.tell("x")

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    proxy = ref.proxy()
    assert proxy.count.get(timeout=WAIT) == 2400
    assert proxy.overlaps.get(timeout=WAIT) == 0


def test_stop_all_stops_every_actor(actor_base: type[pykka.Actor]) -> None:
    cls = make_recorder(actor_base)
    refs = [cls.start() for _ in range(5)]
    pykka.ActorRegistry.stop_all(timeout=WAIT)
    assert not any(r.is_alive() for r in refs)


# --- pooled-only properties -------------------------------------------------------------

def test_ten_thousand_pooled_actors_share_a_few_threads() -> None:
    pool = ThreadPool(4, "contract-pool")
    cls = make_recorder(PooledActor)
    before = threading.active_count()
    refs = [cls.start(_dispatcher=pool) for _ in range(10_000)]
    futures = [r.ask(i, block=False) for i, r in enumerate(refs)]
    assert [f.get(timeout=30) for f in futures] == [("echo", i) for i in range(10_000)]
    assert threading.active_count() - before <= 4
    pykka.ActorRegistry.stop_all(timeout=30)
    pool.shutdown()


def test_a_turn_handles_a_bounded_batch_so_others_get_the_thread() -> None:
    pool = ThreadPool(1, "fairness-pool")
    order: list[str] = []
    gate = threading.Event()

    class Busy(PooledActor):
        def on_receive(self, message: Any) -> Any:
            gate.wait(WAIT)
            order.append(message)
            return None

    busy = Busy.start(_dispatcher=pool)
    other = Busy.start(_dispatcher=pool)
    for i in range(200):
        busy.tell(f"busy{i}")
    other.tell("other")
    gate.set()
    last = busy.ask("last", block=False)
    last.get(timeout=WAIT)
    assert order.index("other") < order.index("busy199")
    assert order.index("other") <= PooledActor.turn_batch + 1
    pykka.ActorRegistry.stop_all(timeout=WAIT)
    pool.shutdown()


def test_ask_while_stopping_gets_actor_dead_error_not_a_hang() -> None:
    gate = threading.Event()

    class Slow(PooledActor):
        def on_receive(self, message: Any) -> Any:
            gate.wait(WAIT)
            return message

    ref = Slow.start()
    ref.tell("first")
    stop_future = ref.stop(block=False)
    # Sent after the stop message: must fail, not wait forever.
    late = ref.ask("late", block=False)
    gate.set()
    assert stop_future.get(timeout=WAIT) is True
    with pytest.raises(pykka.ActorDeadError):
        late.get(timeout=WAIT)


def test_stop_flag_can_be_waited_on() -> None:
    ref = make_recorder(PooledActor).start()
    waiter_done = threading.Event()

    def waiter() -> None:
        ref.actor_stopped.wait(WAIT)
        waiter_done.set()

    t = threading.Thread(target=waiter)
    t.start()
    ref.stop(timeout=WAIT)
    assert waiter_done.wait(WAIT)
    t.join(WAIT)


def test_racing_post_and_run_from_pool_threads_keeps_one_turn_at_a_time() -> None:
    pool = ThreadPool(8, "race-pool")

    ref = make_overlap_probe(PooledActor).start(_dispatcher=pool)
    actor = ref._actor_weakref()  # the runtime posts to actor objects, not refs
    assert actor is not None
    done = threading.Barrier(9, timeout=WAIT)

    def hammer(use_run: bool) -> None:
        for _ in range(500):
            if use_run:
                actor.post_and_run("x")
            else:
                actor.post("x")
        done.wait()

    for i in range(8):
        pool.schedule_queued(lambda i=i: hammer(i % 2 == 0))
    done.wait()
    proxy = ref.proxy()
    deadline = time.monotonic() + WAIT
    while proxy.count.get(timeout=WAIT) < 4000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.count.get(timeout=WAIT) == 4000
    assert proxy.overlaps.get(timeout=WAIT) == 0
    ref.stop(timeout=WAIT)
    pool.shutdown()
