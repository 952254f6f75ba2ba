"""`constellation serve` as a real process: SIGTERM drain, records surviving a restart,
the install hint without the extra, and the committed OpenAPI spec."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.http.daemon import ROOT, Daemon, free_port

if TYPE_CHECKING:
    from pathlib import Path


def test_sigterm_drains_running_executions_and_exits_0(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, drain=10.0)
    try:
        src = "in t: String\ny = SlowEcho(t, 1.5)\nout y"
        ids = [httpx.post(f"{daemon.url}/run?async=true", json={
            "source": src, "inputs": {"t": f"job{i}"}}).json()["execution_id"]
            for i in range(3)]
        time.sleep(0.3)
        t0 = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert httpx.get(f"{daemon.url}/health/ready").status_code == 503
        late = httpx.post(f"{daemon.url}/run", json={"source": src, "inputs": {"t": "x"}})
        assert late.status_code == 503
        assert late.json()["error"]["code"] == "E402"
        daemon.proc.wait(timeout=10 + 5)
        assert daemon.proc.returncode == 0
        assert time.monotonic() - t0 < 10 + 5
    finally:
        daemon.stop()
    # Every running execution finished and was stored.
    again = Daemon(tmp_path)
    try:
        for eid in ids:
            record = httpx.get(f"{again.url}/executions/{eid}").json()
            assert record["status"] == "completed", record
            assert record["outputs"]["y"].startswith("job")
    finally:
        again.stop()


def test_executions_are_listed_after_a_restart(tmp_path: Path) -> None:
    first = Daemon(tmp_path)
    try:
        ran = httpx.post(f"{first.url}/run", json={
            "source": "in t: String\ny = SlowEcho(t, 0.0)\nout y", "inputs": {"t": "kept"}})
        eid = ran.json()["execution_id"]
    finally:
        first.stop()
    second = Daemon(tmp_path)
    try:
        listed = httpx.get(f"{second.url}/executions").json()["executions"]
        assert [e["execution_id"] for e in listed] == [eid]
        assert listed[0]["outputs"] == {"y": "kept"}
    finally:
        second.stop()


def test_bad_pipeline_file_stops_the_daemon_with_its_location(tmp_path: Path) -> None:
    pipes = tmp_path / "pipes"
    pipes.mkdir()
    (pipes / "broken.cst").write_text("in x: Int\nout nope\n")
    proc = subprocess.run([sys.executable, "-m", "constellation.cli", "serve",
                           "--pipelines-dir", str(pipes), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert proc.returncode == 2
    assert "broken.cst:2:" in proc.stderr


def test_without_the_extra_serve_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "from constellation.cli import main\nsys.exit(main(['serve']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          check=False)
    assert proc.returncode == 2
    assert "pip install 'constellation-engine[http]'" in proc.stderr


def test_the_committed_openapi_spec_is_the_served_one(server: Any) -> None:
    served = server.client.get("/openapi.json").json()
    committed = json.loads((ROOT / "docs" / "api" / "openapi.json").read_text())
    if served != committed:
        pytest.fail("docs/api/openapi.json is out of date: regenerate it with "
                    "`python -m constellation.http.openapi > docs/api/openapi.json`")
