"""A real ``constellation serve`` for the HTTP tests: a subprocess on a free port.

``Daemon`` serves a plugin with ``SlowEcho`` (tests/http/test_daemon.py,
test_pipeline_daemon.py, test_compile_budget.py); ``WatchDaemon`` serves the
``watch.*`` modules with two pipelines preloaded (test_watch.py,
test_dashboard_browser.py). ``wait_live`` is the start-up wait of every test that starts
the daemon itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
import time
from constellation import module

@module
def SlowEcho(text: str, seconds: float) -> str:
    time.sleep(seconds)
    return text
'''

WATCH_PLUGIN = '''
import time
from constellation import module

@module("watch.Slow")
def slow(text: str, seconds: float) -> str:
    time.sleep(seconds)
    return text.upper()

@module("watch.Boom")
def boom(text: str) -> str:
    raise ValueError("boom: " + text)
'''

WATCH_PIPELINE = """in text: String
in seconds: Float
a = watch.Slow(text, seconds)
b = watch.Slow(a, seconds)
out b
"""

WATCH_FAILING = "in text: String\nx = watch.Boom(text)\nout x\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_live(url: str, proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Whether ``url``/health/live answered 200 before ``proc`` exited and within
    ``timeout`` seconds (polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class Daemon:
    """``constellation serve`` in a subprocess with the module file ``plugin`` (imported
    as ``plugin_name``) and the execution records in ``tmp``/runs.sqlite: the records
    outlive a restart on the same ``tmp``. ``args`` are more options of ``serve``;
    ``keys`` (key: role) its API keys. It must answer /health/live within
    ``start_timeout`` seconds, and exit within 30 s of the SIGTERM of ``stop()``."""

    def __init__(self, tmp: Path, *args: str, drain: float = 10.0,
                 keys: dict[str, str] | None = None, plugin: str = PLUGIN,
                 plugin_name: str = "daemon_plugin", start_timeout: float = 20.0) -> None:
        (tmp / f"{plugin_name}.py").write_text(plugin)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}",
               "CONSTELLATION_PORT": str(self.port)}
        if keys:
            env["CONSTELLATION_API_KEYS"] = ",".join(f"{k}:{r}" for k, r in keys.items())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "constellation.cli", "serve", "--plugin", plugin_name,
             "--storage", str(tmp / "runs.sqlite"), "--drain-timeout", str(drain), *args],
            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not wait_live(self.url, self.proc, start_timeout):
            self.proc.kill()
            out = self.proc.communicate(timeout=5)[0]
            raise AssertionError(f"daemon did not start:\n{out}")

    def stop(self) -> str:
        """SIGTERM (unless it has exited), then its output. A daemon still running 30 s
        later is killed, and the test fails."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out = self.proc.communicate(timeout=5)[0]
            raise AssertionError(f"daemon did not stop within 30 s of SIGTERM:\n{out}"
                                 ) from None


class WatchDaemon(Daemon):
    """A ``Daemon`` with the ``watch.*`` modules and the pipelines ``slow-upper`` and
    ``failing`` in ``tmp``/pipelines, draining for 5 s."""

    def __init__(self, tmp: Path, *args: str, keys: dict[str, str] | None = None) -> None:
        pipes = tmp / "pipelines"
        pipes.mkdir(exist_ok=True)
        (pipes / "slow-upper.cst").write_text(WATCH_PIPELINE)
        (pipes / "failing.cst").write_text(WATCH_FAILING)
        super().__init__(tmp, "--pipelines-dir", str(pipes), *args, drain=5.0, keys=keys,
                         plugin=WATCH_PLUGIN, plugin_name="watch_plugin",
                         start_timeout=30.0)
