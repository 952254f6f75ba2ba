"""ctx.secret(): a module gets its credential; no sink the engine writes holds it --
in the engine's process, and on a process pool (declared secrets are shipped with the
call; the dask cluster case is in tests/distributed/test_secrets_remote.py)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from constellation import (
    Backends,
    ConfigurationError,
    Constellation,
    ExecutionStatus,
    PipelineBuilder,
    module,
)
from constellation.actors._remote import Call, NoToken, run_call
from constellation.spi import SqliteExecutionStorage
from constellation.spi._secrets import StaticSecrets
from tests.constellation import process_modules as pm

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = "sk-live-7f3a9c2e51d4"


@module("sec.Charge")
def charge(amount: int, ctx: Any) -> str:
    key = ctx.secret("payments_key")
    if amount < 0:
        raise PermissionError(f"refused with key {key}: negative amount")
    return f"charged {amount} with a key of {len(key)} characters"


@module("sec.Missing")
def missing(x: int, ctx: Any) -> int:
    ctx.secret("nothing_here")
    return x


def sqlite_bytes(db: Path) -> str:
    """The database file and its WAL (where recent records are until a checkpoint)."""
    return "".join(f.read_bytes().decode("latin-1")
                   for f in sorted(db.parent.glob(db.name + "*")))


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def _keep(self, event: Any) -> None:
        self.seen.append(repr(event))

    on_execution_start = on_module_start = on_module_complete = _keep
    on_module_failed = on_execution_complete = _keep



def _no_secret_in_any_sink(errors: Any, record: Any, db: Any, caplog: Any, events: Any
                           ) -> dict[str, str]:
    """Every sink's text (error details, the record, the SQLite file's bytes, the log
    records, the listener's events), checked for the secret; returned for more checks."""
    sinks = {
        "errors": json.dumps([e.to_dict() for e in errors]),
        "record": repr(record),
        "sqlite": sqlite_bytes(db),
        "logs": "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records),
        "events": "\n".join(events.seen),
    }
    for name, text in sinks.items():
        assert SECRET not in text, f"the secret leaked into the {name}"
    return sinks


def test_the_secret_reaches_the_module_and_no_sink(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    db = tmp_path / "runs.db"
    b = PipelineBuilder("pay")
    b.output("o", b.call(charge, amount=b.input("a", int), options={"retry": 1}))
    with caplog.at_level(logging.DEBUG, logger="constellation"), Constellation(
            [charge], backends=Backends(secrets=StaticSecrets({"payments_key": SECRET}),
                                        storage=SqliteExecutionStorage(str(db)),
                                        listener=events)) as engine:
        ok = engine.run(b, {"a": 5})
        assert ok.outputs == {"o": f"charged 5 with a key of {len(SECRET)} characters"}
        bad = engine.run(b, {"a": -1})
        assert bad.status is ExecutionStatus.FAILED
        record = engine.execution(bad.execution_id)
        engine.shutdown()
    # Every sink: the result's errors, the record (and the SQLite file itself), the log
    # records, the listener's events.
    assert "***" in bad.errors[0].message
    sinks = _no_secret_in_any_sink(bad.errors, record, db, caplog, events)
    assert "refused with key ***" in sinks["logs"]
    assert "refused with key ***" in sinks["sqlite"]  # the record is in what was read


def test_a_missing_secret_fails_the_call_with_e320() -> None:
    with Constellation([missing], backends=Backends(secrets=StaticSecrets({}))) as engine:
        result = engine.run("in x: Int\ny = sec.Missing(x)\nout y\n", {"x": 1})
    assert result.status is ExecutionStatus.FAILED
    assert result.errors[0].code == "E320"
    assert "secret 'nothing_here' is not set" in result.errors[0].message


def test_the_default_backend_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSTELLATION_SECRET_PAYMENTS_KEY", SECRET)
    with Constellation([charge]) as engine:
        result = engine.run("in a: Int\no = sec.Charge(a)\nout o\n", {"a": 2})
    assert result.ok, result.errors


def test_a_backend_that_is_not_one_is_refused() -> None:
    from constellation import ConfigurationError

    with pytest.raises(ConfigurationError, match="secrets"):
        Constellation(backends=Backends(secrets=object()))


# --- declaring secrets -------------------------------------------------------------------


@pytest.mark.parametrize(("secrets", "match"), [
    ("payments_key", "must be a tuple of secret names"),
    (b"payments_key", "must be a tuple of secret names"),
    (42, "must be a tuple of secret names"),
    (("ok_name", "bad name"), "a secret name is"),
    (("ok_name", 3), "a secret name is"),
    (("../etc/passwd",), "a secret name is"),
    (("payments_key", "payments_key"), "declared twice"),
])
def test_a_bad_secrets_declaration_fails_when_the_module_is_defined(secrets: Any,
                                                                    match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        @module("sec.Bad", secrets=secrets)
        def bad(x: int, ctx: Any) -> int:
            return x
    assert "module sec.Bad" in info.value.message
    assert info.value.details["field"] == "secrets"


def test_declaring_secrets_needs_a_ctx_parameter() -> None:
    with pytest.raises(ConfigurationError, match="no ctx parameter"):
        @module("sec.NoCtx", secrets=("payments_key",))
        def no_ctx(x: int) -> int:
            return x


def test_declared_secrets_are_kept_in_order_and_sets_sorted() -> None:
    @module("sec.Two", secrets=["b_key", "a_key"])
    def two(x: int, ctx: Any) -> int:
        return x

    @module("sec.Set", secrets=frozenset({"b_key", "a_key"}))
    def from_set(x: int, ctx: Any) -> int:
        return x

    assert two.secrets == ("b_key", "a_key")
    assert from_set.secrets == ("a_key", "b_key")
    assert charge.secrets == ()


@module("sec.DeclaredHere", secrets=("payments_key",))
def declared_here(x: int, ctx: Any) -> str:
    return f"{len(ctx.secret('payments_key'))} {len(ctx.secret('other_key'))}"


def test_in_the_engine_process_declared_and_undeclared_names_both_work() -> None:
    secrets = StaticSecrets({"payments_key": SECRET, "other_key": "other-value"})
    with Constellation([declared_here], backends=Backends(secrets=secrets)) as engine:
        result = engine.run("in x: Int\ny = sec.DeclaredHere(x)\nout y\n", {"x": 1})
    assert result.ok, result.errors
    assert result.outputs["y"] == f"{len(SECRET)} 11"


# --- hostile backends, in the engine's process -------------------------------------------


class Raising:
    """A backend that fails; its message quotes what it read (the engine must not)."""

    def get(self, name: str) -> str | None:
        raise RuntimeError(f"vault said: token {SECRET} expired")

    def close(self) -> None:
        pass


class NotAString:
    def __init__(self, value: Any) -> None:
        self.value = value

    def get(self, name: str) -> Any:
        return self.value

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("backend", "match"), [
    (Raising(), "secrets backend Raising raised RuntimeError"),
    (NotAString(SECRET.encode()), "returned a bytes, not a str"),
    (NotAString(12345678), "returned a int, not a str"),
])
def test_a_backend_that_raises_or_returns_no_string_fails_the_call_with_e320(
        backend: Any, match: str) -> None:
    with Constellation([charge], backends=Backends(secrets=backend)) as engine:
        result = engine.run("in a: Int\no = sec.Charge(a)\nout o\n", {"a": 1})
    assert result.status is ExecutionStatus.FAILED
    error = result.errors[0]
    assert error.code == "E320", error
    assert match in error.message
    assert SECRET not in json.dumps(error.to_dict())


# --- the Call that travels ---------------------------------------------------------------


def test_a_call_carries_its_secrets_to_the_module_and_drops_them_after(
        tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    args = pickle.dumps({"amount": 3, "ran": str(ran)})
    call = Call("Remote.Charge", (pm.__name__, "remote_charge"), None, args,
                ("exec-1", "Remote.Charge", 1), time.time() + 30, NoToken(), False,
                {"payments_key": SECRET})
    assert SECRET not in repr(call)
    assert SECRET not in str(call)
    shipped = pickle.loads(pickle.dumps(call))  # as a worker receives it
    assert f"a key of {len(SECRET)} characters" in run_call(shipped)
    assert shipped.secrets is None  # dropped once the call is over

    failing = pickle.loads(pickle.dumps(Call(
        "Remote.Charge", (pm.__name__, "remote_charge"), None,
        pickle.dumps({"amount": -1, "ran": ""}), ("exec-1", "Remote.Charge", 1), None,
        NoToken(), False, {"payments_key": SECRET})))
    with pytest.raises(PermissionError) as info:
        run_call(failing)
    # Redacted on the worker already: what a pool pickles back, or dask logs, holds none.
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)
    assert SECRET not in repr(info.value.args)


# --- on a process pool -------------------------------------------------------------------


class CountingSecrets(StaticSecrets):
    """StaticSecrets that counts lookups (the driver's; workers never ask)."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: list[str] = []
        self.pid = os.getpid()

    def get(self, name: str) -> str | None:
        assert os.getpid() == self.pid
        self.asked.append(name)
        return super().get(name)


REMOTE = [pm.remote_charge, pm.remote_undeclared, pm.remote_absent, pm.remote_slow, pm.pid]


def remote_call(mdef: Any, options: dict[str, Any] | None = None,
                **args: Any) -> PipelineBuilder:
    b = PipelineBuilder("remote-secrets")
    b.output("o", b.call(mdef, options=options, **args))
    return b


def test_on_a_process_pool_the_declared_secret_reaches_the_module_and_no_sink(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    db = tmp_path / "runs.db"
    secrets = CountingSecrets({"payments_key": SECRET})
    with caplog.at_level(logging.DEBUG, logger="constellation"), Constellation(
            REMOTE, executor="process:2",
            backends=Backends(secrets=secrets, storage=SqliteExecutionStorage(str(db)),
                              listener=events)) as engine:
        ok = engine.run(remote_call(pm.remote_charge, amount=5, ran=""), {}, timeout=60)
        assert ok.ok, ok.errors
        assert f"a key of {len(SECRET)} characters" in ok.outputs["o"]
        assert f"in process {os.getpid()}" not in ok.outputs["o"]  # it ran elsewhere
        # A plain exception (redacted on the worker too) and one whose message only the
        # engine can redact (built from bytes), each retried: looked up again per attempt.
        asked = len(secrets.asked)
        bad = [engine.run(remote_call(pm.remote_charge, {"retry": 1}, amount=amount,
                                      ran=""), {}, timeout=60) for amount in (-1, -2)]
        assert len(secrets.asked) - asked == 4
        records = [engine.execution(r.execution_id) for r in bad]
        engine.shutdown()
    for result, exception in zip(bad, ("PermissionError", "KeyRefused"), strict=True):
        assert result.status is ExecutionStatus.FAILED
        assert result.modules["Remote.Charge"].attempts == 2
        assert result.errors[0].details["exception"] == exception
        assert "refused with key ***" in result.errors[0].message
    sinks = _no_secret_in_any_sink([e for r in bad for e in r.errors], records, db, caplog,
                                   events)
    assert "refused with key ***" in sinks["sqlite"]
    assert "refused with key ***" in sinks["events"]


def test_on_a_process_pool_a_missing_or_undeclared_secret_fails_with_e320(
        tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    secrets = StaticSecrets({"payments_key": SECRET})
    with Constellation(REMOTE, executor="process:2",
                       backends=Backends(secrets=secrets)) as engine:
        missing = engine.run(remote_call(pm.remote_absent, x=1, ran=str(ran)), {},
                             timeout=60)
        undeclared = engine.run(remote_call(pm.remote_undeclared, x=1), {}, timeout=60)
    assert missing.status is ExecutionStatus.FAILED
    assert missing.errors[0].code == "E320"
    assert "secret 'absent_key' is not set (StaticSecrets)" in missing.errors[0].message
    assert not ran.exists(), "the module ran although its secret was missing"
    assert undeclared.status is ExecutionStatus.FAILED
    error = undeclared.errors[0]
    assert error.code == "E320"
    assert "secret 'other_key' is not declared by module Remote.Undeclared" in error.message
    assert "@module(secrets=('other_key',))" in error.message


class Blocking:
    """A backend whose lookups of ``slow_key`` block until released (a hung secrets
    service); other names are answered at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def get(self, name: str) -> str | None:
        if name == "slow_key":
            self.entered.set()
            self.release.wait(30)
        return SECRET

    def close(self) -> None:
        self.release.set()


@pytest.fixture
def blocking() -> Iterator[Blocking]:
    backend = Blocking()
    yield backend
    backend.release.set()


def test_on_a_process_pool_a_blocked_backend_times_out_or_cancels_the_call_only(
        blocking: Blocking, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    with Constellation(REMOTE, executor="process:2",
                       backends=Backends(secrets=blocking)) as engine:
        # More hung lookups than the engine has I/O threads (8), each ended by its
        # attempt's timeout.
        started = time.monotonic()
        slow = remote_call(pm.remote_slow, {"timeout": 0.3}, x=1, ran=str(ran))
        timed_out = [e.result(timeout=30) for e in [engine.submit(slow, {})
                                                   for _ in range(12)]]
        assert time.monotonic() - started < 10
        assert {r.errors[0].code for r in timed_out} == {"E303"}, timed_out[0].errors
        # Cancelled while its secret is being looked up: it ends at once, never runs.
        blocking.entered.clear()
        execution = engine.submit(remote_call(pm.remote_slow, x=1, ran=str(ran)), {})
        assert blocking.entered.wait(10)
        execution.cancel()
        cancelled = execution.result(timeout=10)
        assert cancelled.status is ExecutionStatus.CANCELLED
        # Meanwhile the engine goes on: calls without secrets, and calls whose secrets
        # the backend answers, still run (the stuck lookups' threads were replaced).
        other = engine.run(remote_call(pm.pid, x=0), {}, timeout=30)
        assert other.ok, other.errors
        charged = engine.run(remote_call(pm.remote_charge, amount=1, ran=""), {},
                             timeout=30)
        assert charged.ok, charged.errors
        blocking.release.set()
        time.sleep(0.2)  # the lookups return: nothing is shipped for them
    assert not ran.exists(), "a call whose secret lookup was abandoned was shipped"


def test_on_a_process_pool_a_failing_backend_fails_the_call_before_shipping(
        tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    with Constellation(REMOTE, executor="process:2",
                       backends=Backends(secrets=Raising())) as engine:
        result = engine.run(remote_call(pm.remote_charge, amount=1, ran=str(ran)), {},
                            timeout=30)
    assert result.errors[0].code == "E320"
    assert "secrets backend Raising raised RuntimeError" in result.errors[0].message
    assert SECRET not in result.errors[0].message
    assert not ran.exists()
