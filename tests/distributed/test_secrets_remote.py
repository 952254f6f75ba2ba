"""Declared secrets on a real dask cluster: looked up by the engine, shipped with the
call to a ``dask worker`` process, redacted from everything the engine writes. (The
process-pool cases, and the hostile backends, are in
tests/constellation/test_secrets_in_ctx.py; one test here keeps the cluster's share of
CI time small.)"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from constellation import Backends, Constellation, ExecutionStatus, PipelineBuilder
from constellation.spi import SqliteExecutionStorage
from constellation.spi._secrets import StaticSecrets
from tests.constellation import process_modules as pm
from tests.constellation.test_secrets_in_ctx import SECRET, Events, sqlite_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from tests.distributed.conftest import Cluster


def one(mdef: Any, **args: Any) -> PipelineBuilder:
    b = PipelineBuilder("dask-secrets")
    b.output("o", b.call(mdef, **args))
    return b


def test_declared_secrets_reach_a_dask_worker_and_no_sink(
        dask_cluster: Cluster, dask_client: Any, tmp_path: Path) -> None:
    events = Events()
    db = tmp_path / "runs.db"
    ran = tmp_path / "ran"
    with Constellation([pm.remote_charge, pm.remote_undeclared, pm.remote_absent],
                       executor=dask_client.get_executor(),
                       backends=Backends(secrets=StaticSecrets({"payments_key": SECRET}),
                                         storage=SqliteExecutionStorage(str(db)),
                                         listener=events)) as engine:
        ok = engine.run(one(pm.remote_charge, amount=5, ran=str(ran)), {}, timeout=60)
        assert ok.ok, ok.errors
        assert f"a key of {len(SECRET)} characters" in ok.outputs["o"]
        worker_pid = int(ran.read_text().split()[0])
        assert worker_pid in set(dask_client.run(os.getpid).values())  # on a dask worker
        bad = [engine.run(one(pm.remote_charge, amount=amount, ran=""), {}, timeout=60)
               for amount in (-1, -2)]
        undeclared = engine.run(one(pm.remote_undeclared, x=1), {}, timeout=60)
        ran.unlink()
        missing = engine.run(one(pm.remote_absent, x=1, ran=str(ran)), {}, timeout=60)
        records = [engine.execution(r.execution_id) for r in bad]
        engine.shutdown()
    for result in bad:
        assert result.status is ExecutionStatus.FAILED
        assert "refused with key ***" in result.errors[0].message
    assert undeclared.errors[0].code == "E320"
    assert "dask worker" in undeclared.errors[0].message
    assert "@module(secrets=('other_key',))" in undeclared.errors[0].message
    assert missing.errors[0].code == "E320"
    assert not ran.exists(), "the module ran although its secret was missing"
    sinks = {"errors": json.dumps([e.to_dict() for r in bad for e in r.errors]),
             "record": repr(records), "sqlite": sqlite_bytes(db),
             "events": "\n".join(events.seen),
             # The workers log each failed task ("Compute Failed"): redacted there too.
             "worker logs": "".join(f.read_text(errors="replace") for f in
                                    sorted((dask_cluster.logs or tmp_path).glob("*.log")))}
    for name, text in sinks.items():
        assert SECRET not in text, f"the secret leaked into the {name}"
    assert "refused with key ***" in sinks["sqlite"]
    assert "refused with key ***" in sinks["events"]
    assert "refused with key ***" in sinks["worker logs"]  # the worker did log them
