"""Compiling request source in a real ``constellation serve``: every compile failure is a
4xx with a code (deep nesting, an exception inside the compiler, a compiler process that
dies), and a compile is stopped — its CPU use ends — at ``--compile-timeout`` and when
its client disconnects."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.daemon import Daemon
from tests.waiting import process_running

N = 10_000
DEEP = {
    "list": "y = " + "[" * N + "1" + "]" * N + "\nout y",
    "record": "y = " + "{f: " * N + "1" + "}" * N + "\nout y",
    "not": "in b: Boolean\ny = " + "not " * N + "b\nout y",
    "if": "in b: Boolean\ny = " + "if (b) " * N + "1" + " else 2" * N + "\nout y",
    "field": "in r: {f: Int}\ny = r" + ".f" * N + "\nout y",
    "paren": "in x: Int\ny = " + "(" * N + "x" + ")" * N + "\nout y",
    "call": "in s: String\ny = " + "trim(" * N + "s" + ")" * N + "\nout y",
    "type": "in x: " + "List<" * N + "Int" + ">" * N + "\nout x",
    "unclosed": "y = " + "[" * N,
    "lambda": "in xs: List<Int>\ny = map(xs, (x) => " + "(" * N + "x" + ")" * N + ")\nout y",
}

# About 20 s of compiling on the benchmark machine, under the default 1 MiB body limit.
SLOW = "in x: Int\ny = x" + " + x" * 200_000 + "\nout y"

# Loaded by every Python process of the daemon (the server, and its compile workers):
# a fault in the compiler, for sources carrying a marker.
FAULTS = '''
import os, signal
import constellation.lang.compiler as compiler

_real = compiler.compile_source

def compile_source(source, modules, name="pipeline"):
    if "FAULT-RECURSION" in source:
        raise RecursionError("maximum recursion depth exceeded")
    if "FAULT-BUG" in source:
        raise KeyError("an internal table")
    if "FAULT-DIE" in source:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(source, modules, name)

compiler.compile_source = compile_source

# In the daemon's own process only (not in a compile worker): typing the compiled graph.
import multiprocessing
import constellation.core.dag as dag
import constellation.engine as engine

_resolve = dag.resolve

def resolve(spec, modules):
    if spec.name == "FAULT-DAEMON" and multiprocessing.parent_process() is None:
        raise AttributeError("a bug after the compile")
    return _resolve(spec, modules)

dag.resolve = engine.resolve = resolve
'''

proc_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                               reason="measures CPU time through /proc")


def _cpu_by_pid(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``root`` and every live process below it."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return {pid: cpu[pid] for pid in tree if pid in cpu}


def _cpu_rate(root: int, window: float) -> float:
    """CPU seconds per second the process tree used over ``window`` seconds (a
    process that ended meanwhile counts with what it used before)."""
    before = _cpu_by_pid(root)
    time.sleep(window)  # the measurement window, not a synchronisation
    after = _cpu_by_pid(root)
    used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
    return used / window


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


def test_deep_nesting_is_a_4xx_with_a_compile_code_or_compiles(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)
    try:
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            for form, source in DEEP.items():
                for path, body in (("/compile", {"source": source}),
                                   ("/run", {"source": source, "inputs": {}})):
                    r = client.post(path, json=body)
                    assert r.status_code in (200, 400), (form, path, r.status_code, r.text)
                    if r.status_code == 400:
                        err = _error(r)
                        assert err["code"][:2] == "E1", (form, err)
                        assert err["details"]["errors"][0]["code"] == err["code"]
                    elif path == "/run":  # compiled; runs with its inputs missing
                        assert r.json()["status"] == "suspended", (form, r.text)
    finally:
        daemon.stop()


def test_an_exception_inside_the_compiler_is_a_400_with_e152(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(FAULTS)
    daemon = Daemon(tmp_path)
    try:
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            for marker in ("FAULT-RECURSION", "FAULT-BUG", "FAULT-DIE"):
                source = f'in x: Int\ny = "{marker}"\nout y'
                for path, body in (("/compile", {"source": source}),
                                   ("/run", {"source": source, "inputs": {"x": 1}})):
                    r = client.post(path, json=body)
                    assert r.status_code == 400, (marker, path, r.status_code, r.text)
                    err = _error(r)
                    assert err["code"] == "E152", err
                    assert err["details"]["errors"][0]["code"] == "E152"
            # A failure in the daemon's own steps after the compile is one too.
            r = client.post("/compile", json={"source": "in x: Int\nout x",
                                              "name": "FAULT-DAEMON"})
            assert r.status_code == 400, r.text
            assert _error(r)["code"] == "E152"
            # The daemon is fine, and so are its compiles.
            ok = client.post("/run", json={"source": "in x: Int\ny = x + 1\nout y",
                                           "inputs": {"x": 1}})
            assert ok.status_code == 200, ok.text
            assert ok.json()["outputs"] == {"y": 2}
    finally:
        daemon.stop()


@proc_only
def test_a_slow_compile_is_stopped_at_the_compile_timeout(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "--compile-timeout", "2")
    try:
        answer: dict[str, Any] = {}

        def post() -> None:
            t0 = time.monotonic()
            try:
                answer["response"] = httpx.post(f"{daemon.url}/compile",
                                                json={"source": SLOW}, timeout=15)
            except httpx.TransportError as exc:  # e.g. no answer in 15 s
                answer["error"] = exc
            answer["seconds"] = time.monotonic() - t0

        poster = threading.Thread(target=post)
        poster.start()
        rates = []  # CPU use while the request is being served
        deadline = time.monotonic() + 20
        while poster.is_alive() and time.monotonic() < deadline:
            rates.append(_cpu_rate(daemon.proc.pid, 0.25))
        poster.join(5)
        assert not poster.is_alive()
        busy = max(rates)
        assert "response" in answer, f"no answer in {answer['seconds']:.1f} s: {answer}"
        r = answer["response"]
        assert r.status_code == 400, r.text
        err = _error(r)
        assert err["code"] == "E609", err
        assert err["details"] == {"compile_timeout": 2.0}
        assert answer["seconds"] < 2 + 3
        assert busy > 0.25, f"the compile did not use the CPU ({busy:.2f} s/s)"
        # Stopped, not abandoned: the daemon's processes are idle at once.
        idle = _cpu_rate(daemon.proc.pid, 1.0)
        assert idle < min(0.15, busy / 3), \
            f"{idle:.2f} CPU s/s after the compile timed out ({busy:.2f} during it)"
        # And compiling still works.
        ok = httpx.post(f"{daemon.url}/compile", json={"source": "in x: Int\nout x"},
                        timeout=30)
        assert ok.status_code == 200, ok.text
    finally:
        daemon.stop()


@proc_only
def test_a_compile_stops_when_its_client_disconnects(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "--compile-timeout", "120")
    try:
        body = json.dumps({"source": SLOW}).encode()
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
            sock.sendall(b"POST /compile HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            deadline = time.monotonic() + 10
            while _cpu_rate(daemon.proc.pid, 0.3) < 0.25:
                assert time.monotonic() < deadline, "the compile did not start"
        closed = time.monotonic()
        # The client is gone: within a few seconds nothing of the daemon uses the CPU.
        while _cpu_rate(daemon.proc.pid, 0.5) > 0.15:
            assert time.monotonic() - closed < 5, "the compile went on without its client"
        ok = httpx.post(f"{daemon.url}/compile", json={"source": "in x: Int\nout x"},
                        timeout=30)
        assert ok.status_code == 200, ok.text
    finally:
        daemon.stop()


def _start_slow_compile(daemon: Daemon, answer: dict[str, Any]) -> threading.Thread:
    def post() -> None:
        try:
            answer["response"] = httpx.post(f"{daemon.url}/compile",
                                            json={"source": SLOW}, timeout=30)
        except httpx.TransportError as exc:
            answer["error"] = exc

    poster = threading.Thread(target=post)
    poster.start()
    deadline = time.monotonic() + 10
    while _cpu_rate(daemon.proc.pid, 0.3) < 0.25:
        assert time.monotonic() < deadline, "the compile did not start"
    return poster


@proc_only
def test_sigterm_stops_running_compiles_with_503_and_exits_0(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "--compile-timeout", "120")
    try:
        answer: dict[str, Any] = {}
        poster = _start_slow_compile(daemon, answer)
        tree = set(_cpu_by_pid(daemon.proc.pid)) - {daemon.proc.pid}
        t0 = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        poster.join(30)
        assert "response" in answer, answer
        r = answer["response"]
        assert r.status_code == 503, r.text
        assert _error(r)["code"] == "E402"
        assert daemon.proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 4
        # The compile worker (and the forkserver it came from) end with the daemon.
        deadline = time.monotonic() + 5
        while [pid for pid in tree if process_running(pid)]:
            assert time.monotonic() < deadline, "a compile process outlived the daemon"
            time.sleep(0.05)
    finally:
        daemon.stop()


@proc_only
def test_a_killed_daemon_leaves_no_compile_running(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "--compile-timeout", "120")
    try:
        poster = _start_slow_compile(daemon, {})
        tree = set(_cpu_by_pid(daemon.proc.pid)) - {daemon.proc.pid}
        assert tree, "no compile worker process"
        daemon.proc.kill()
        poster.join(30)
        deadline = time.monotonic() + 5
        while [pid for pid in tree if process_running(pid)]:
            assert time.monotonic() < deadline, "a compile worker outlived the daemon"
            time.sleep(0.05)
    finally:
        daemon.stop()


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="the daemon tests use POSIX signals")
