"""engine.pipelines: versions, the current version, aliases, canaries, runs by name,
and all of it found again by a new engine on the same SQLite file or PostgreSQL db."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from constellation import Backends, Constellation, PipelineBuilder, module
from constellation.core.errors import (
    ConfigurationError,
    NoCanaryError,
    PipelineConflictError,
    PipelineStoreError,
    UnknownHashError,
    UnknownPipelineError,
    UnknownVersionError,
)
from constellation.core.results import ExecutionStatus
from constellation.spi import (
    InMemoryPipelineStore,
    PostgresPipelineStore,
    SqliteExecutionStorage,
    SqlitePipelineStore,
)
from tests.spi.services import postgres_dsn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

UPPER = "in t: String\nu = Uppercase(t)\nout u\n"
LOWER = "in t: String\nu = Lowercase(t)\nout u\n"
TRIM = "in t: String\nu = Trim(t)\nout u\n"


@module("Boom")
def boom(t: str) -> str:
    raise RuntimeError("boom")


def trimmer() -> PipelineBuilder:
    b = PipelineBuilder("trimmer")
    b.output("o", b.call("Trim", text=b.input("text", str)))
    return b


class CountingStore(InMemoryPipelineStore):
    """Counts calls; raises from every call while ``failing``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.failing = False

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if callable(attr) and not name.startswith("_") and name not in ("close",):
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                if self.failing:
                    raise OSError("disk on fire")
                return attr(*args, **kwargs)
            return counted
        return attr


@pytest.fixture
def engine() -> Iterator[Constellation]:
    with Constellation([boom], backends=Backends(pipelines=InMemoryPipelineStore())) as e:
        yield e


# --- versions -------------------------------------------------------------------------

def test_a_changed_pipeline_adds_a_version_and_the_same_hash_adds_none(
        engine: Constellation) -> None:
    p = engine.pipelines
    assert p.save("shout", UPPER) == 1
    assert p.save("shout", LOWER) == 2
    assert p.save("shout", UPPER) == 1  # known hash: no version, current unchanged
    assert p.save("shout", "# same structure\n" + LOWER) == 2
    assert [v.version for v in p.versions("shout")] == [1, 2]
    assert p.current("shout").version == 2
    assert p.save("shout", TRIM, current=False) == 3
    assert p.current("shout").version == 2
    assert p.get("shout").structural_hash == engine.compile(LOWER).structural_hash
    assert p.get("shout", version=3).structural_hash == engine.compile(TRIM).structural_hash
    assert p.names() == ["shout"]


def test_compile_with_a_name_records_a_version_only_when_a_store_is_configured() -> None:
    with Constellation() as plain:
        plain.compile(UPPER, name="shout")
        assert plain.pipelines.names() == []
        assert plain.pipelines.records is False
    with Constellation(backends=Backends(pipelines=InMemoryPipelineStore())) as engine:
        engine.compile(UPPER)  # no name: nothing recorded
        assert engine.pipelines.names() == []
        engine.compile(UPPER, name="shout")
        engine.compile(LOWER, name="shout")
        engine.compile(trimmer().build(), name="trim")
        assert [v.version for v in engine.pipelines.versions("shout")] == [1, 2]
        assert engine.pipelines.current("shout").version == 2
        assert engine.run("trim", {"text": " x "}).outputs == {"o": "x"}


def test_a_compile_cache_hit_makes_no_store_call() -> None:
    store = CountingStore()
    with Constellation(backends=Backends(pipelines=store)) as engine:
        engine.compile(UPPER, name="shout")
        calls = store.calls
        assert calls > 0
        for _ in range(100):
            engine.compile(UPPER, name="shout")
        assert store.calls == calls


def test_concurrent_saves_of_one_name_get_unique_gapless_versions(
        engine: Constellation) -> None:
    sources = [f"in t: String\nu = Uppercase(t)\nv = concat(u, \"{n}\")\nout v\n"
               for n in range(8)]
    barrier = threading.Barrier(8)
    got: list[int] = []
    errors: list[BaseException] = []

    def save(n: int) -> None:
        try:
            barrier.wait(10)
            got.append(engine.pipelines.save("p", sources[n]))
            got.append(engine.pipelines.save("p", UPPER))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert [v.version for v in engine.pipelines.versions("p")] == list(range(1, 10))
    assert len(set(got)) == 9


# --- running and rolling back ----------------------------------------------------------

def test_run_by_name_runs_the_current_version_and_rollback_changes_it(
        engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    p.save("shout", LOWER)
    assert engine.run("shout", {"t": "Hi"}).outputs == {"u": "hi"}
    assert p.rollback("shout") == 1
    assert engine.run("shout", {"t": "Hi"}).outputs == {"u": "HI"}
    assert engine.submit("shout", {"t": "Hi"}).result(10).outputs == {"u": "HI"}
    assert p.rollback("shout", 2) == 2
    assert engine.run("shout", {"t": "Hi"}).outputs == {"u": "hi"}
    h = p.current("shout").structural_hash
    assert engine.run(f"sha256:{h}", {"t": "Hi"}).outputs == {"u": "hi"}
    assert engine.run(UPPER, {"t": "x"}).outputs == {"u": "X"}  # source still runs


def test_rollback_with_one_version_or_to_a_missing_one_is_refused(
        engine: Constellation) -> None:
    engine.pipelines.save("shout", UPPER)
    with pytest.raises(UnknownVersionError) as info:
        engine.pipelines.rollback("shout")
    assert info.value.code == "E703"
    assert info.value.details["reason"] == "no_previous_version"
    with pytest.raises(UnknownVersionError, match="no version 5"):
        engine.pipelines.rollback("shout", 5)
    with pytest.raises(UnknownPipelineError):
        engine.pipelines.rollback("nope")
    assert engine.pipelines.current("shout").version == 1


def test_unknown_names_versions_and_hashes_have_their_own_codes(
        engine: Constellation) -> None:
    engine.pipelines.save("shout", UPPER)
    with pytest.raises(UnknownPipelineError) as name:
        engine.run("no-such-pipeline", {})
    assert (name.value.code, name.value.details) == ("E702", {"name": "no-such-pipeline"})
    with pytest.raises(UnknownVersionError) as version:
        engine.pipelines.get("shout", version=9)
    assert version.value.code == "E703"
    with pytest.raises(UnknownHashError) as hash_:
        engine.run("sha256:" + "0" * 64, {})
    assert hash_.value.code == "E704"
    with pytest.raises(ConfigurationError):
        engine.pipelines.save("has space", UPPER)
    with pytest.raises(ConfigurationError):
        engine.pipelines.get("shout", version="1")  # type: ignore[arg-type]


def test_the_current_version_cannot_be_deleted(engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    p.save("shout", LOWER)
    with pytest.raises(PipelineConflictError) as info:
        p.delete("shout", version=2)
    assert info.value.code == "E705"
    assert info.value.details["reason"] == "current_version"
    p.delete("shout", version=1)
    assert [v.version for v in p.versions("shout")] == [2]
    with pytest.raises(UnknownVersionError):
        p.delete("shout", version=1)
    with pytest.raises(UnknownVersionError):
        p.rollback("shout")  # nothing before 2 any more
    assert p.save("shout", UPPER) == 3  # numbers are not reused
    p.delete("shout")
    with pytest.raises(UnknownPipelineError):
        p.versions("shout")
    with pytest.raises(UnknownPipelineError):
        p.delete("shout")


def test_a_stored_pipeline_is_deleted_only_once_nothing_uses_it(
        engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    h = p.current("shout").structural_hash
    p.set_alias("stable", f"sha256:{h}")
    with pytest.raises(PipelineConflictError) as info:
        p.delete(f"sha256:{h}")
    assert info.value.details["reason"] == "referenced"
    assert len(info.value.details["used_by"]) == 2
    p.delete("stable")
    p.delete("shout")
    p.delete(f"sha256:{h}")
    with pytest.raises(UnknownHashError):
        p.get(f"sha256:{h}")


def test_aliases_run_their_pipeline_and_never_share_a_name_with_versions(
        engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    p.save("shout", LOWER)
    h1 = p.versions("shout")[0].structural_hash
    assert p.set_alias("stable", h1) == h1
    assert p.aliases() == {"stable": h1}
    assert engine.run("stable", {"t": "Hi"}).outputs == {"u": "HI"}
    assert p.set_alias("latest", "shout") == p.current("shout").structural_hash
    assert engine.run("latest", {"t": "Hi"}).outputs == {"u": "hi"}
    with pytest.raises(PipelineConflictError, match="versioned"):
        p.set_alias("shout", h1)
    with pytest.raises(PipelineConflictError, match="alias"):
        p.save("stable", TRIM)
    with pytest.raises(UnknownHashError):
        p.set_alias("x", "sha256:" + "1" * 64)
    assert p.set_alias("trim", engine.compile(TRIM)) == engine.compile(TRIM).structural_hash
    assert engine.run("trim", {"t": " a "}).outputs == {"u": "a"}


# --- canaries ----------------------------------------------------------------------------

def test_a_canary_gets_exactly_its_share_with_counts_per_side(engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    setting = p.canary("shout", LOWER, 0.25)  # saved as version 2, not made current
    assert p.current("shout").version == 1
    assert setting.candidate == p.versions("shout")[1].structural_hash
    outputs = [engine.run("shout", {"t": "Hi"}).outputs["u"] for _ in range(100)]
    assert outputs.count("hi") == 25
    assert outputs[:4] == ["HI", "HI", "HI", "hi"]
    status = p.canary_status("shout")
    assert (status.current.runs, status.candidate.runs) == (75, 25)
    assert (status.current.version, status.candidate.version) == (1, 2)
    assert status.current.failures == status.candidate.failures == 0
    assert status.candidate.mean_ms > 0
    assert status.as_dict()["candidate"]["runs"] == 25


def test_the_canary_share_is_exact_under_concurrent_runs(engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    p.canary("shout", LOWER, 0.25)
    outputs: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            outputs.extend(engine.run("shout", {"t": "Hi"}).outputs["u"] for _ in range(25))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert outputs.count("hi") == 50
    status = p.canary_status("shout")
    assert (status.current.runs, status.candidate.runs) == (150, 50)


def test_route_picks_the_side_first_and_counts_the_run_where_it_went(
        engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    p.canary("shout", LOWER, 0.5)
    first, second = p.route("shout"), p.route("shout")
    assert (first.candidate, second.candidate) == (False, True)
    assert second.pipeline.structural_hash == p.versions("shout")[1].structural_hash
    assert second.pipeline.inputs == first.pipeline.inputs  # look before running
    assert second.submit({"t": "Hi"}).result(10).outputs == {"u": "hi"}
    assert first.submit({"t": "Hi"}).result(10).outputs == {"u": "HI"}
    status = p.canary_status("shout")
    assert (status.current.runs, status.candidate.runs) == (1, 1)
    plain = p.route(f"sha256:{p.current('shout').structural_hash}")
    assert (plain.candidate, plain.stats) == (False, None)
    assert plain.submit({"t": "x"}).result(10).outputs == {"u": "X"}
    assert p.canary_status("shout").current.runs == 1  # by hash: not the canary's
    with pytest.raises(UnknownPipelineError):
        p.route("nope")


def test_a_failing_candidate_is_counted_and_rolled_back(engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    p.canary("shout", "in t: String\nu = Boom(t)\nout u\n", 0.5)
    results = [engine.run("shout", {"t": "Hi"}) for _ in range(10)]
    assert [r.status for r in results].count(ExecutionStatus.FAILED) == 5
    executions = [engine.submit("shout", {"t": "Hi"}) for _ in range(4)]
    for e in executions:
        e.result(10)
    status = p.rollback_canary("shout")
    assert (status.candidate.runs, status.candidate.failures) == (7, 7)
    assert (status.current.runs, status.current.failures) == (7, 0)
    with pytest.raises(NoCanaryError) as info:
        p.canary_status("shout")
    assert info.value.code == "E706"
    assert all(engine.run("shout", {"t": "a"}).outputs == {"u": "A"} for _ in range(4))


def test_a_candidate_the_inputs_do_not_fit_counts_its_refusals_as_failures(
        engine: Constellation) -> None:
    from constellation.core.errors import UnknownInputError

    p = engine.pipelines
    p.save("shout", UPPER)
    p.canary("shout", "in n: Int\nout n\n", 0.5)
    assert engine.run("shout", {"t": "a"}).outputs == {"u": "A"}
    with pytest.raises(UnknownInputError):
        engine.run("shout", {"t": "a"})
    assert engine.submit("shout", {"t": "b"}).result(10).outputs == {"u": "B"}
    with pytest.raises(UnknownInputError):
        engine.submit("shout", {"t": "a"}, priority="high")
    status = p.canary_status("shout")
    assert (status.current.runs, status.current.failures) == (2, 0)
    assert (status.candidate.runs, status.candidate.failures) == (2, 2)


def test_promote_makes_the_candidate_current(engine: Constellation) -> None:
    p = engine.pipelines
    p.save("shout", UPPER)
    p.save("shout", LOWER, current=False)
    p.canary("shout", 2, 1.0)
    assert engine.run("shout", {"t": "Hi"}).outputs == {"u": "hi"}
    assert p.promote("shout") == 2
    assert p.current("shout").version == 2
    with pytest.raises(NoCanaryError):
        p.promote("shout")
    with pytest.raises(NoCanaryError):
        p.rollback_canary("shout")
    other = engine.compile(TRIM)
    p.save("trims", TRIM)
    p.canary("shout", f"sha256:{other.structural_hash}", 0.0)  # another name's pipeline
    assert engine.run("shout", {"t": " Hi "}).outputs == {"u": " hi "}
    assert p.promote("shout") == 3  # it became a version of shout
    assert engine.run("shout", {"t": " Hi "}).outputs == {"u": "Hi"}


def test_canary_weights_and_targets_are_checked(engine: Constellation) -> None:
    p = engine.pipelines
    with pytest.raises(UnknownPipelineError):
        p.canary("shout", UPPER, 0.5)
    p.save("shout", UPPER)
    for weight in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ConfigurationError):
            p.canary("shout", LOWER, weight)  # type: ignore[arg-type]
    with pytest.raises(UnknownVersionError):
        p.canary("shout", 7, 0.5)
    with pytest.raises(UnknownHashError):
        p.canary("shout", "sha256:" + "2" * 64, 0.5)


# --- failures ---------------------------------------------------------------------------

def test_a_store_that_raises_gives_a_store_error_not_a_traceback() -> None:
    store = CountingStore()
    with Constellation(backends=Backends(pipelines=store)) as engine:
        engine.pipelines.save("shout", UPPER)
        store.failing = True
        for call in (lambda: engine.pipelines.save("shout", LOWER),
                     lambda: engine.pipelines.versions("shout"),
                     lambda: engine.compile(LOWER, name="shout"),
                     lambda: engine.pipelines.rollback("shout"),
                     lambda: engine.pipelines.canary("shout", LOWER, 0.5)):
            with pytest.raises(PipelineStoreError) as info:
                call()
            assert info.value.code == "E701"
            assert info.value.details["reason"] == "backend"
            assert isinstance(info.value.__cause__, OSError)
            assert "disk on fire" in info.value.message
        engine.pipelines.refresh_interval = 0.0
        with pytest.raises(PipelineStoreError):
            engine.run("shout", {"t": "x"})
        store.failing = False
        assert engine.run("shout", {"t": "x"}).outputs == {"u": "X"}


def test_a_pipeline_that_rebuilds_differently_is_refused(tmp_path: Path) -> None:
    @module("Measure")
    def measure(t: str) -> int:
        return len(t)

    @module("Measure")
    def measure_as_text(t: str) -> str:
        return str(len(t))

    b = PipelineBuilder("m")
    b.output("n", b.call("Measure", t=b.input("t", str)))
    path = tmp_path / "p.sqlite"
    with SqlitePipelineStore(path) as store, \
            Constellation([measure], backends=Backends(pipelines=store)) as engine:
        engine.pipelines.save("m", b)
        engine.pipelines.save("m2", "in t: String\nn = Measure(t)\nout n\n")
    with SqlitePipelineStore(path) as store, \
            Constellation([measure_as_text], backends=Backends(pipelines=store)) as engine:
        for name in ("m", "m2"):
            with pytest.raises(PipelineStoreError) as info:
                engine.run(name, {"t": "abc"})
            assert info.value.details["reason"] == "hash_mismatch"


def test_a_corrupt_stored_spec_is_reported(tmp_path: Path) -> None:
    import sqlite3

    import msgpack

    path = tmp_path / "p.sqlite"
    with SqlitePipelineStore(path) as store, \
            Constellation(backends=Backends(pipelines=store)) as engine:
        engine.pipelines.save("trim", trimmer())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE constellation_pipelines SET body = ?",
                     (msgpack.packb({"source": None, "spec": {"format": 1, "name": 3}}),))
    with SqlitePipelineStore(path) as store, \
            Constellation(backends=Backends(pipelines=store)) as engine:
        with pytest.raises(PipelineStoreError) as info:
            engine.run("trim", {"text": "x"})
        assert info.value.details["reason"] == "corrupt"


def test_a_backend_that_is_no_pipeline_store_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"backends\.pipelines"):
        Constellation(backends=Backends(pipelines=object()))


# --- restarts ---------------------------------------------------------------------------

def _fill(engine: Constellation) -> dict[str, Any]:
    p = engine.pipelines
    engine.compile(UPPER, name="shout")
    engine.compile(LOWER, name="shout")
    p.rollback("shout")
    p.save("trim", trimmer())
    p.set_alias("stable", "shout")
    p.canary("shout", 2, 0.5)
    return {"versions": p.versions("shout"), "current": p.current("shout"),
            "aliases": p.aliases(), "canary": p.store.canary("shout"),
            "names": p.names()}


def _check_restarted(engine: Constellation, before: dict[str, Any]) -> None:
    p = engine.pipelines
    assert p.versions("shout") == before["versions"]
    assert p.current("shout") == before["current"]
    assert p.aliases() == before["aliases"]
    assert p.store.canary("shout") == before["canary"]
    assert p.names() == before["names"] == ["shout", "trim"]
    outputs = [engine.run("shout", {"t": "Hi"}).outputs["u"] for _ in range(4)]
    assert outputs == ["HI", "hi", "HI", "hi"]
    assert p.canary_status("shout").candidate.runs == 2
    assert engine.run("stable", {"t": "Hi"}).outputs == {"u": "HI"}
    assert engine.run("trim", {"text": " x "}).outputs == {"o": "x"}
    assert engine.pipelines.get("shout").source == UPPER
    engine.compile(UPPER, name="shout")  # the daemon compiling its files again at start
    assert p.current("shout") == before["current"]


def test_a_new_engine_on_the_same_sqlite_file_finds_everything(tmp_path: Path) -> None:
    path = tmp_path / "daemon.sqlite"
    with SqlitePipelineStore(path) as store, \
            Constellation(backends=Backends(pipelines=store)) as engine:
        before = _fill(engine)
    with SqlitePipelineStore(path) as store, \
            Constellation(backends=Backends(pipelines=store)) as engine:
        _check_restarted(engine, before)


@pytest.fixture
def postgres_store() -> Iterator[Callable[[], PostgresPipelineStore]]:
    dsn = postgres_dsn()
    prefix = f"t_{uuid.uuid4().hex[:12]}_"
    opened: list[PostgresPipelineStore] = []

    def make() -> PostgresPipelineStore:
        store = PostgresPipelineStore(dsn, prefix=prefix)
        opened.append(store)
        return store

    yield make
    if opened:
        opened[0].drop()
    for s in opened:
        s.close()


def test_a_new_engine_on_the_same_postgres_db_finds_everything(
        postgres_store: Callable[[], PostgresPipelineStore]) -> None:
    with Constellation(backends=Backends(pipelines=postgres_store())) as engine:
        before = _fill(engine)
    with Constellation(backends=Backends(pipelines=postgres_store())) as engine:
        _check_restarted(engine, before)


def test_a_suspended_execution_resumes_after_a_restart_without_compiling_again(
        tmp_path: Path) -> None:
    src = "in a: String\nin b: String\nj = concat(a, b)\nout j"
    storage = SqliteExecutionStorage(tmp_path / "runs.sqlite")
    with SqlitePipelineStore(tmp_path / "runs.sqlite") as store, \
            Constellation(backends=Backends(storage=storage, pipelines=store)) as engine:
        engine.compile(src, name="join")
        suspended = engine.run("join", {"a": "left-"})
        assert suspended.status is ExecutionStatus.SUSPENDED
    storage.close()
    storage = SqliteExecutionStorage(tmp_path / "runs.sqlite")
    with SqlitePipelineStore(tmp_path / "runs.sqlite") as store, \
            Constellation(backends=Backends(storage=storage, pipelines=store)) as engine:
        resumed = engine.resume(suspended.execution_id, {"b": "right"}).result(10)
        assert resumed.outputs == {"j": "left-right"}
    storage.close()


# --- answers from memory (the daemon's event loop asks these first) ---------------------

def test_route_cached_answers_from_memory_only_and_counts_canary_runs_once() -> None:
    store = CountingStore()
    with Constellation(backends=Backends(pipelines=store)) as engine:
        p = engine.pipelines
        p.save("shout", UPPER)
        assert p.route_cached("shout") is None  # never resolved: nothing in memory
        assert p.route_cached("nothing") is None
        p.canary("shout", LOWER, 0.5)
        first = p.route("shout")  # resolves and builds the first side
        first.submit({"t": "a"}).result(10)
        while p.route_cached("shout") is None:  # until both sides are built
            p.route("shout").submit({"t": "a"}).result(10)
        start = p.canary_status("shout")
        before = store.calls
        picked = [p.route_cached("shout") for _ in range(10)]
        assert store.calls == before  # not one store call
        for routed in picked:
            assert routed is not None
            routed.submit({"t": "Hi"}).result(10)
        status = p.canary_status("shout")
        # Each pick is one run, counted once, on the side it was routed to.
        assert status.current.runs - start.current.runs == \
            sum(1 for r in picked if r is not None and not r.candidate)
        assert status.candidate.runs - start.candidate.runs == \
            sum(1 for r in picked if r is not None and r.candidate)
        assert sum(1 for r in picked if r is not None and r.candidate) == 5  # its share
        p.refresh_interval = 0.0  # stale at once: memory no longer answers
        assert p.route_cached("shout") is None


def test_route_cached_for_a_name_without_canary() -> None:
    with Constellation(backends=Backends(pipelines=InMemoryPipelineStore())) as engine:
        p = engine.pipelines
        p.save("shout", UPPER)
        assert engine.run("shout", {"t": "hi"}).outputs == {"u": "HI"}
        routed = p.route_cached("shout")
        assert routed is not None
        assert routed.stats is None
        assert not routed.candidate
        assert routed.pipeline.structural_hash == p.get("shout").structural_hash
        p.save("shout", LOWER)  # a new current version: the name's route is forgotten
        assert p.route_cached("shout") is None


class PausingStore(InMemoryPipelineStore):
    """``current`` answers, then, while armed, waits until told to return that answer:
    a lookup that read the store just before another thread changed it."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.read = threading.Event()
        self.go_on = threading.Event()

    def current(self, name: str) -> Any:
        answer = super().current(name)
        if self.armed:
            self.armed = False
            self.read.set()
            assert self.go_on.wait(10)
        return answer


def test_a_lookup_that_raced_a_rollback_does_not_cache_the_old_version() -> None:
    # A lookup read the current version, a rollback on this engine then changed it and
    # forgot the name's route, and only then did the lookup store what it had read: the
    # name ran the rolled-back version (from memory, route_cached included) until the
    # route went stale -- wrong after a change made on this very engine.
    store = PausingStore()
    with Constellation(backends=Backends(pipelines=store)) as engine:
        p = engine.pipelines
        p.refresh_interval = 3600.0  # no refresh could hide it
        p.save("shout", UPPER)
        p.save("shout", LOWER)  # version 2, current
        store.armed = True
        lookup = threading.Thread(target=p.route, args=("shout",))
        lookup.start()
        assert store.read.wait(10)
        assert p.rollback("shout", 1) == 1
        store.go_on.set()
        lookup.join(10)
        assert not lookup.is_alive()
        assert p.route("shout").pipeline.structural_hash == \
            p.get("shout", version=1).structural_hash
        cached = p.route_cached("shout")
        assert cached is None or cached.pipeline.structural_hash == \
            p.get("shout", version=1).structural_hash
        assert engine.run("shout", {"t": "Hi"}).outputs == {"u": "HI"}
