"""ctx.secret(): a module gets its credential; no sink the engine writes holds it."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from constellation import Backends, Constellation, ExecutionStatus, PipelineBuilder, module
from constellation.spi import SqliteExecutionStorage
from constellation.spi._secrets import StaticSecrets

if TYPE_CHECKING:
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


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def _keep(self, event: Any) -> None:
        self.seen.append(repr(event))

    on_execution_start = on_module_start = on_module_complete = _keep
    on_module_failed = on_execution_complete = _keep


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
    sinks = {
        "errors": json.dumps([e.to_dict() for e in bad.errors]),
        "record": repr(record),
        "sqlite": db.read_bytes().decode("latin-1"),
        "logs": "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records),
        "events": "\n".join(events.seen),
    }
    for name, text in sinks.items():
        assert SECRET not in text, f"the secret leaked into the {name}"
    assert "refused with key ***" in sinks["logs"]


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
