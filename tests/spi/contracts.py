"""Contract test mixins: every implementation of an SPI runs the same tests.

A test class for an implementation inherits the mixin and provides ``make`` (and, for
caches, ``advance(seconds)`` to move its clock). Redis, PostgreSQL and SQLite backends
reuse these classes.
"""

from __future__ import annotations

import threading
from typing import Any

from constellation.spi import MISSING, ExecutionRecord


class CacheContract:
    def make(self) -> Any:
        raise NotImplementedError

    def advance(self, seconds: float) -> None:
        raise NotImplementedError

    def test_get_of_an_unknown_key_is_missing_and_counts_a_miss(self) -> None:
        cache = self.make()
        assert cache.get("nope") is MISSING
        assert cache.stats().misses == 1

    def test_set_then_get_returns_the_value_and_counts_a_hit(self) -> None:
        cache = self.make()
        cache.set("k", {"a": [1, 2]}, ttl=60)
        assert cache.get("k") == {"a": [1, 2]}
        assert cache.stats().hits == 1

    def test_none_is_a_value_not_a_miss(self) -> None:
        cache = self.make()
        cache.set("k", None, ttl=60)
        assert cache.get("k") is None

    def test_values_expire_after_their_ttl(self) -> None:
        cache = self.make()
        cache.set("short", 1, ttl=1)
        cache.set("long", 2, ttl=100)
        self.advance(2)
        assert cache.get("short") is MISSING
        assert cache.get("long") == 2

    def test_delete_and_clear(self) -> None:
        cache = self.make()
        cache.set("a", 1, ttl=60)
        cache.set("b", 2, ttl=60)
        assert cache.delete("a") is True
        assert cache.delete("a") is False
        assert cache.get("a") is MISSING
        cache.clear()
        assert cache.get("b") is MISSING
        assert cache.stats().entries == 0

    def test_concurrent_use_is_safe(self) -> None:
        cache = self.make()

        def work(i: int) -> None:
            for j in range(100):
                cache.set(f"{i}-{j}", j, ttl=60)
                assert cache.get(f"{i}-{j}") == j

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert cache.stats().hits == 400


def record(n: int, *, pipeline: str = "p", status: str = "completed") -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=f"id-{n}", pipeline=pipeline, structural_hash="ab" * 32, status=status,
        inputs={"text": f"in {n}", "xs": [1, 2]}, outputs={"out": {"n": n}},
        errors=({"code": "E300", "message": "boom", "details": {"node": "A"}},) if
        status == "failed" else (),
        nodes={"A": {"module": "Mod", "status": "completed", "attempts": 1,
                     "duration_ms": 1.5}},
        started_at=1000.0 + n, ended_at=1000.5 + n)


class StorageContract:
    def make(self) -> Any:
        raise NotImplementedError

    def test_save_then_load_gives_the_same_record(self) -> None:
        storage = self.make()
        storage.save(record(1))
        assert storage.load("id-1") == record(1)
        assert storage.load("nope") is None

    def test_save_replaces_a_record_with_the_same_id(self) -> None:
        storage = self.make()
        storage.save(record(1))
        storage.save(record(1).with_status("failed"))
        assert storage.load("id-1").status == "failed"
        assert len(storage.list()) == 1

    def test_list_is_newest_first_filtered_and_paged(self) -> None:
        storage = self.make()
        for n in range(10):
            storage.save(record(n, pipeline="a" if n % 2 else "b",
                                status="failed" if n % 3 == 0 else "completed"))
        ids = [r.execution_id for r in storage.list()]
        assert ids == [f"id-{n}" for n in range(9, -1, -1)]
        assert [r.execution_id for r in storage.list(pipeline="a")] == [
            "id-9", "id-7", "id-5", "id-3", "id-1"]
        assert [r.execution_id for r in storage.list(status="failed")] == [
            "id-9", "id-6", "id-3", "id-0"]
        assert [r.execution_id for r in storage.list(limit=3, offset=2)] == [
            "id-7", "id-6", "id-5"]

    def test_delete(self) -> None:
        storage = self.make()
        storage.save(record(1))
        assert storage.delete("id-1") is True
        assert storage.delete("id-1") is False
        assert storage.load("id-1") is None

    def test_suspended_snapshots_are_kept(self) -> None:
        storage = self.make()
        snap = {"values": {"in:a": 1}, "missing": ["b"]}
        storage.save(ExecutionRecord("s-1", "p", "h", "suspended", snapshot=snap))
        loaded = storage.load("s-1")
        assert loaded.snapshot == snap

    def test_the_owner_of_a_running_record_is_kept(self) -> None:
        storage = self.make()
        owner = {"host": "h1", "boot": None, "pid": 42, "start": 7, "token": "ab"}
        storage.save(ExecutionRecord("r-1", "p", "h", "running", owner=owner))
        assert storage.load("r-1").owner == owner
        assert [r.execution_id for r in storage.list(status="running")] == ["r-1"]

    def test_save_many_saves_and_replaces_every_record(self) -> None:
        storage = self.make()
        storage.save(record(1))
        storage.save_many([record(1, status="failed"), record(2), record(3)])
        assert storage.load("id-1").status == "failed"
        assert [r.execution_id for r in storage.list()] == ["id-3", "id-2", "id-1"]

    def test_claim_replaces_the_record_only_from_the_expected_status(self) -> None:
        from constellation.spi import ClaimingStorage

        storage = self.make()
        assert isinstance(storage, ClaimingStorage)
        storage.save(record(1, status="suspended"))
        claimed = record(1, status="resuming")
        assert storage.claim(claimed, "completed") is False
        assert storage.load("id-1").status == "suspended"
        assert storage.claim(claimed, "suspended") is True
        assert storage.load("id-1") == claimed
        assert storage.claim(record(1, status="resuming"), "suspended") is False
        assert storage.claim(record(9, status="resuming"), "suspended") is False
        assert storage.load("id-9") is None

    def test_of_concurrent_claims_exactly_one_wins(self) -> None:
        storage = self.make()
        storage.save(record(1, status="suspended"))
        barrier = threading.Barrier(6)
        wins: list[int] = []
        errors: list[BaseException] = []

        def claim(n: int) -> None:
            try:
                barrier.wait(10)
                if storage.claim(record(1, status="resuming", pipeline=f"by-{n}"),
                                 "suspended"):
                    wins.append(n)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(wins) == 1
        assert storage.load("id-1").pipeline == f"by-{wins[0]}"


def _events() -> list[tuple[str, Any]]:
    from constellation.spi import ExecutionEvent, ModuleEvent

    ex = ExecutionEvent("e-1", "p", "h" * 64, "running", timestamp=1.0)
    mod = ModuleEvent("e-1", "Trim", "text.Trim", 1, 2.5, None, 2.0)
    failed = ModuleEvent("e-1", "Trim", "text.Trim", 2, 1.0, "boom", 3.0)
    done = ExecutionEvent("e-1", "p", "h" * 64, "completed", 9.0, None, 4.0)
    return [("on_execution_start", ex), ("on_module_start", mod),
            ("on_module_complete", mod), ("on_module_failed", failed),
            ("on_execution_complete", done)]


class ListenerContract:
    """Every ExecutionListener: implements the protocol and takes every event, from any
    thread, without raising. ``delivered()`` returns what reached the final listener
    (for wrappers), or None when the implementation has no observable output."""

    def make(self) -> Any:
        raise NotImplementedError

    def delivered(self) -> list[tuple[str, Any]] | None:
        return None

    def test_implements_the_protocol(self) -> None:
        from constellation.spi import ExecutionListener

        assert isinstance(self.make(), ExecutionListener)

    def test_takes_every_event(self) -> None:
        listener = self.make()
        for kind, event in _events():
            getattr(listener, kind)(event)
        seen = self.delivered()
        if seen is not None:
            assert seen == _events()

    def test_events_from_several_threads(self) -> None:
        listener = self.make()
        errors: list[BaseException] = []

        def tell() -> None:
            try:
                for kind, event in _events() * 20:
                    getattr(listener, kind)(event)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=tell) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        seen = self.delivered()
        if seen is not None:
            assert len(seen) == 4 * 20 * 5


class MetricsContract:
    """Every MetricsProvider: the three instruments with and without tags."""

    def make(self) -> Any:
        raise NotImplementedError

    def read(self, provider: Any, name: str, tags: dict[str, str] | None) -> float | None:
        """The value the provider reports for a counter/gauge, or None if not readable."""
        return None

    def test_implements_the_protocol(self) -> None:
        from constellation.spi import MetricsProvider

        assert isinstance(self.make(), MetricsProvider)

    def test_counter_histogram_gauge(self) -> None:
        m = self.make()
        m.counter("constellation.test.count", 1.0, {"module_name": "A"})
        m.counter("constellation.test.count", 2.0, {"module_name": "A"})
        m.counter("constellation.test.untagged")
        m.histogram("constellation.test.duration_ms", 12.5, {"module_name": "A"})
        m.gauge("constellation.test.level", 3.0, None)
        m.gauge("constellation.test.level", 5.0, None)
        count = self.read(m, "constellation.test.count", {"module_name": "A"})
        if count is not None:
            assert count == 3.0
        level = self.read(m, "constellation.test.level", None)
        if level is not None:
            assert level == 5.0


class TracerContract:
    """Every TracerProvider: spans start, nest, take attributes and errors, and end."""

    def make(self) -> Any:
        raise NotImplementedError

    def finished(self) -> list[Any] | None:
        """Finished spans as ``(name, parent name or None, error?)``, or None."""
        return None

    def test_implements_the_protocol(self) -> None:
        from constellation.spi import TracerProvider

        assert isinstance(self.make(), TracerProvider)

    def test_spans_nest_and_end(self) -> None:
        tracer = self.make()
        outer = tracer.start_span("execute(p)", {"pipeline": "p"}, None, 1_000)
        inner = tracer.start_span("module(A)", {"attempt": 1}, outer, 2_000)
        inner.set_attribute("module_name", "A")
        inner.record_error("boom")
        inner.end(3_000)
        outer.end(4_000)
        spans = self.finished()
        if spans is not None:
            assert sorted(spans) == [("execute(p)", None, False), ("module(A)", "execute(p)",
                                                                    True)]


class RetryContract:
    """Every RetryPolicy: a delay >= 0 or None, never more than the cap, and a stop."""

    def make(self, max_retries: int) -> Any:
        raise NotImplementedError

    def test_implements_the_protocol(self) -> None:
        from constellation.spi import RetryPolicy

        assert isinstance(self.make(3), RetryPolicy)

    def test_stops_after_max_retries_with_bounded_delays(self) -> None:
        policy = self.make(3)
        delays = [policy.should_retry(RuntimeError("x"), n) for n in range(1, 6)]
        allowed = [d for d in delays if d is not None]
        assert all(0 <= d <= 30.0 for d in allowed)
        assert delays[3:] == [None, None]
        assert len(allowed) in (0, 3)
