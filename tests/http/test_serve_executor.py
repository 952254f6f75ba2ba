"""`constellation serve --executor`: module code on a process pool the daemon owns."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.http.daemon import ROOT, free_port, wait_live

if TYPE_CHECKING:
    from pathlib import Path

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the HTTP tests need the 'http' extra")

PLUGIN = '''
import os
from constellation import module

@module("exe.Pid")
def pid(x: int) -> int:
    return os.getpid() + 0 * x
'''


def test_serve_runs_module_code_on_a_process_pool(tmp_path: Path) -> None:
    (tmp_path / "exe_plugin.py").write_text(PLUGIN)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "constellation", "serve", "--plugin", "exe_plugin",
         "--storage", "memory", "--port", str(port), "--executor", "process:2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_live(url, proc, 30):
            pytest.fail(f"daemon did not start: {proc.communicate(timeout=5)[0]}")
        r = httpx.post(f"{url}/run", json={"source": "in x: Int\np = exe.Pid(x)\nout p\n",
                                           "inputs": {"x": 1}}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "completed", body
        assert body["outputs"]["p"] != proc.pid  # ran in a worker process
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out


def test_a_bad_executor_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "constellation", "serve", "--storage",
                           "memory", "--port", str(free_port()), "--executor", "gpu:9"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 2
    assert "executor" in done.stderr
