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


def stored(n: int, *, source: str | None = "in x: Int\nout x", name: str = "p",
           at: float | None = None) -> Any:
    from constellation.spi import StoredPipeline

    spec = None if source is not None else {"format": 1, "nodes": [n, "x"]}
    return StoredPipeline(f"{n:064x}", name, source, spec,
                          1000.0 + n if at is None else at)


class PipelineStoreContract:
    """Every PipelineStore that keeps what it is given (all but the no-op)."""

    def make(self) -> Any:
        raise NotImplementedError

    def test_implements_the_protocol_and_is_a_context_manager(self) -> None:
        from constellation.spi import PipelineStore

        store = self.make()
        assert isinstance(store, PipelineStore)
        with store as same:
            assert same is store

    def test_save_then_load_gives_the_same_entry_and_a_second_save_keeps_the_first(
            self) -> None:
        store = self.make()
        store.save(stored(1))
        store.save(stored(2, source=None))
        assert store.load(f"{1:064x}") == stored(1)
        assert store.load(f"{2:064x}") == stored(2, source=None)
        assert store.load("f" * 64) is None
        store.save(stored(1, source="in y: Int\nout y", name="other"))
        assert store.load(f"{1:064x}") == stored(1)

    def test_list_is_oldest_first_and_paged_and_delete_removes(self) -> None:
        store = self.make()
        for n in (3, 1, 2):
            store.save(stored(n))
        assert [e.structural_hash[-1] for e in store.list()] == ["1", "2", "3"]
        assert [e.structural_hash[-1] for e in store.list(limit=1, offset=1)] == ["2"]
        assert store.delete(f"{2:064x}") is True
        assert store.delete(f"{2:064x}") is False
        assert [e.structural_hash[-1] for e in store.list()] == ["1", "3"]

    def test_versions_count_from_one_and_a_known_hash_adds_none(self) -> None:
        store = self.make()
        assert store.add_version("p", "a" * 64, make_current=True, created_at=1.0) == (1, True)
        assert store.add_version("p", "b" * 64, make_current=True, created_at=2.0) == (2, True)
        assert store.add_version("p", "a" * 64, make_current=True, created_at=3.0) == (
            1, False)
        assert store.add_version("q", "a" * 64, make_current=True, created_at=4.0) == (
            1, True)
        assert [(v.version, v.structural_hash[0], v.created_at) for v in store.versions("p")
                ] == [(1, "a", 1.0), (2, "b", 2.0)]
        assert store.current("p").version == 2  # the known hash did not make v1 current
        assert store.versions("nope") == []
        assert store.current("nope") is None
        assert store.names() == ["p", "q"]

    def test_the_first_version_is_current_and_make_current_false_keeps_the_current(
            self) -> None:
        store = self.make()
        store.add_version("p", "a" * 64, make_current=False, created_at=1.0)
        assert store.current("p").version == 1
        store.add_version("p", "b" * 64, make_current=False, created_at=2.0)
        assert store.current("p").version == 1
        assert store.set_current("p", 2) is True
        assert store.current("p").structural_hash == "b" * 64
        assert store.set_current("p", 7) is False
        assert store.set_current("nope", 1) is False
        assert store.current("p").version == 2

    def test_the_current_version_is_not_deleted_and_numbers_are_never_reused(self) -> None:
        store = self.make()
        for n, h in enumerate("abc", 1):
            store.add_version("p", h * 64, make_current=n < 3, created_at=float(n))
        assert store.current("p").version == 2
        assert store.delete_version("p", 2) is False
        assert store.delete_version("p", 3) is True
        assert store.delete_version("p", 3) is False
        assert store.delete_version("nope", 1) is False
        assert [v.version for v in store.versions("p")] == [1, 2]
        assert store.add_version("p", "d" * 64, make_current=False, created_at=4.0) == (
            4, True)
        assert store.add_version("p", "c" * 64, make_current=False, created_at=5.0) == (
            5, True)

    def test_delete_name_removes_versions_and_canary_and_numbering_starts_again(
            self) -> None:
        from constellation.spi import CanarySetting

        store = self.make()
        store.add_version("p", "a" * 64, make_current=True, created_at=1.0)
        store.add_version("p", "b" * 64, make_current=True, created_at=2.0)
        store.set_canary(CanarySetting("p", "c" * 64, 0.25, 3.0))
        assert store.delete_name("p") is True
        assert store.delete_name("p") is False
        assert store.versions("p") == []
        assert store.current("p") is None
        assert store.canary("p") is None
        assert store.names() == []
        assert store.add_version("p", "b" * 64, make_current=True, created_at=4.0) == (
            1, True)

    def test_aliases(self) -> None:
        store = self.make()
        assert store.alias("stable") is None
        store.set_alias("stable", "a" * 64)
        store.set_alias("beta", "b" * 64)
        store.set_alias("stable", "c" * 64)
        assert store.alias("stable") == "c" * 64
        assert store.aliases() == {"beta": "b" * 64, "stable": "c" * 64}
        assert store.delete_alias("beta") is True
        assert store.delete_alias("beta") is False
        assert store.aliases() == {"stable": "c" * 64}

    def test_canaries(self) -> None:
        from constellation.spi import CanarySetting

        store = self.make()
        assert store.canary("p") is None
        store.set_canary(CanarySetting("p", "a" * 64, 0.1, 1.0))
        store.set_canary(CanarySetting("p", "b" * 64, 0.5, 2.0))
        assert store.canary("p") == CanarySetting("p", "b" * 64, 0.5, 2.0)
        assert store.delete_canary("p") is True
        assert store.delete_canary("p") is False
        assert store.canary("p") is None

    def test_concurrent_adds_of_one_name_get_unique_gapless_versions(self) -> None:
        store = self.make()
        barrier = threading.Barrier(8)
        got: list[tuple[int, bool]] = []
        errors: list[BaseException] = []

        def add(n: int) -> None:
            try:
                barrier.wait(10)
                for j in range(5):
                    got.append(store.add_version("p", f"{n}-{j}".ljust(64, "0"),
                                                 make_current=True, created_at=float(n)))
                    # every thread also adds one hash that all of them add
                    got.append(store.add_version("p", "s" * 64, make_current=True,
                                                 created_at=float(n)))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        added = sorted(v for v, was_added in got if was_added)
        assert added == list(range(1, 42))  # 40 distinct hashes + the shared one, once
        assert [v.version for v in store.versions("p")] == list(range(1, 42))
        shared = {v for v, was_added in got if not was_added}
        assert len(shared) == 1
        assert len({v.structural_hash for v in store.versions("p")}) == 41
