"""`constellation serve` as a real process, under load and at its edges (issue 14):
health answered on the event loop under load, NaN outputs, errors that keep the
connection, proxy headers, Retry-After / Allow / HEAD / CORS on refusals / UTF-8 keys,
two SIGTERMs, and ``/run``/``/execute`` awaiting executions without a thread each."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.daemon import ROOT, free_port, wait_live

# Block(x) waits (a threading.Event) until the test creates the file "release" in the
# daemon's directory (or 60 s pass): a module that holds its execution, released from
# outside without needing an execution slot.
PLUGIN = '''
import math, os, threading, time
from constellation import module
import constellation.http.routes as routes

GATE = threading.Event()

def _watch():
    while not os.path.exists("release"):
        time.sleep(0.02)
    GATE.set()

threading.Thread(target=_watch, daemon=True).start()

@module
def Block(x: int) -> int:
    GATE.wait(60)
    return x

@module
def Odd(x: float) -> float:
    return {0.0: math.nan, 1.0: math.inf, -1.0: -math.inf}.get(x, x)

@module
def Say(text: str) -> str:
    return text

# A real bug inside the daemon (not in a module): answering a result raises.
_real = routes._result_body

def _result_body(pipeline, result):
    if result.outputs.get("y") == "BUG":
        raise KeyError("an internal table")
    return _real(pipeline, result)

routes._result_body = _result_body
'''

BLOCK = "in x: Int\ny = Block(x)\nout y"
SAY = "in t: String\ny = Say(t)\nout y"
ODD = "in x: Float\ny = Odd(x)\nout y"


class Serve:
    """A ``constellation serve`` process with the plugin above, on a free port."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None,
                 drain: float = 10.0) -> None:
        self.dir = tmp
        (tmp / "robust_plugin.py").write_text(PLUGIN)
        (tmp / "release").unlink(missing_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / f"serve-{self.port}.log", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "constellation.cli", "serve", "--port", str(self.port),
             "--plugin", "robust_plugin", "--storage", str(tmp / "runs.sqlite"),
             "--drain-timeout", str(drain), *args], cwd=tmp,
            env={**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}", **(env or {})},
            stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_live(self.url, self.proc, 30):
            self.kill()
            raise AssertionError(f"daemon did not start:\n{self.output()}")

    def compile(self, name: str, source: str, **headers: str) -> None:
        r = httpx.post(f"{self.url}/compile", json={"name": name, "source": source},
                       headers=headers, timeout=30)
        assert r.status_code == 200, r.text

    def release(self) -> None:
        (self.dir / "release").write_text("")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.log.close()

    def threads(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(ln.split()[1] for ln in status.splitlines()
                        if ln.startswith("Threads:")))

    def inflight(self) -> int:
        detail = httpx.get(f"{self.url}/health/detail", timeout=10).json()
        return int(detail["scheduler"]["inflight"])


def _wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _post_all(url: str, path: str, bodies: list[dict[str, Any]], timeout: float = 60
              ) -> tuple[list[httpx.Response | BaseException], threading.Thread]:
    """POST every body at once (one connection each), in the background."""
    results: list[httpx.Response | BaseException] = []

    async def go() -> None:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as c:
            got = await asyncio.gather(*(c.post(path, json=b) for b in bodies),
                                       return_exceptions=True)
        results.extend(got)

    thread = threading.Thread(target=lambda: asyncio.run(go()), daemon=True)
    thread.start()
    return results, thread


proc_only = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                               reason="counts threads through /proc")


# --- 1. health on the event loop --------------------------------------------------------

def test_health_and_metrics_answer_within_100ms_under_64_blocked_executes(
        tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--max-concurrency", "64", "--worker-threads", "70")
    try:
        serve.compile("block", BLOCK)
        results, sender = _post_all(serve.url, "/execute",
                                    [{"ref": "block", "inputs": {"x": i}} for i in range(64)])
        time.sleep(2.0)  # every request sent, and waiting
        with httpx.Client(base_url=serve.url, timeout=10) as probe:
            for _ in range(3):
                for path in ("/health", "/health/live", "/health/ready", "/metrics"):
                    t0 = time.perf_counter()
                    r = probe.get(path)
                    took = time.perf_counter() - t0
                    assert r.status_code == 200, (path, r.text)
                    assert took < 0.1, f"{path} took {took * 1000:.0f} ms under load"
        assert serve.inflight() == 64  # all 64 really were waiting in the engine
        serve.release()
        sender.join(30)
        assert not sender.is_alive()
        assert [r.status_code for r in results] == [200] * 64  # type: ignore[union-attr]
        assert sorted(r.json()["outputs"]["y"] for r in results) == list(range(64))  # type: ignore[union-attr]
    finally:
        serve.kill()


# --- 2. NaN and Infinity ----------------------------------------------------------------

def test_nan_and_infinite_outputs_are_200_with_null_as_in_the_record(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        serve.compile("odd", ODD)
        for x in (0.0, 1.0, -1.0):
            for path, body in (("/run", {"source": ODD, "inputs": {"x": x}}),
                               ("/execute", {"ref": "odd", "inputs": {"x": x}})):
                r = httpx.post(f"{serve.url}{path}", json=body, timeout=30)
                assert r.status_code == 200, (path, x, r.text)
                got = r.json()
                assert got["status"] == "completed"
                assert got["outputs"] == {"y": None}
                record = httpx.get(f"{serve.url}/executions/{got['execution_id']}",
                                   timeout=10).json()
                assert record["outputs"] == {"y": None}  # the same answer as the record
        r = httpx.post(f"{serve.url}/run", json={"source": ODD, "inputs": {"x": 2.5}})
        assert r.json()["outputs"] == {"y": 2.5}
    finally:
        serve.kill()


# --- 3. errors keep the connection ------------------------------------------------------

def test_errors_keep_the_keep_alive_connection_and_a_bug_is_a_json_500(tmp_path: Path
                                                                        ) -> None:
    serve = Serve(tmp_path)
    try:
        serve.compile("say", SAY)
        conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=10)
        conn.connect()
        sock = conn.sock
        for body, status, code in (({"ref": "say", "inputs": {"t": "BUG"}}, 500, "E500"),
                                   ({"ref": "nope"}, 404, "E601"),
                                   ({"ref": "say", "inputs": {"t": 1}}, 400, "E202")):
            conn.request("POST", "/execute", json.dumps(body),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            payload = json.loads(r.read())
            assert r.status == status, payload
            assert payload["error"]["code"] == code
            assert r.getheader("connection", "").lower() != "close"
            conn.request("POST", "/execute", json.dumps({"ref": "say", "inputs": {"t": "ok"}}),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200
            assert json.loads(r.read())["outputs"] == {"y": "ok"}
            assert conn.sock is sock  # the same socket: not reconnected
        assert "an internal table" in serve.output()  # the bug was logged
        conn.close()
    finally:
        serve.kill()


# --- 4. proxy headers -------------------------------------------------------------------

def _statuses(url: str, forwarded: list[str]) -> list[int]:
    return [httpx.get(f"{url}/modules", headers={"X-Forwarded-For": ip}, timeout=10
                      ).status_code for ip in forwarded]


def test_x_forwarded_for_does_not_evade_the_rate_limit_by_default(tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--rate-limit-per-minute", "1", "--rate-limit-burst", "2")
    try:
        assert _statuses(serve.url, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [200, 200, 429]
    finally:
        serve.kill()


def test_x_forwarded_for_is_the_client_when_its_proxy_is_allowed(tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--rate-limit-per-minute", "1", "--rate-limit-burst", "2",
                  "--forwarded-allow-ips", "127.0.0.1")
    try:
        assert _statuses(serve.url, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [200] * 3
        assert _statuses(serve.url, ["10.0.0.9"] * 3) == [200, 200, 429]
    finally:
        serve.kill()


# --- 5. headers, HEAD, keys, second SIGTERM ---------------------------------------------

def test_retry_after_on_a_full_queue_allow_on_405_and_head_wherever_get(tmp_path: Path
                                                                         ) -> None:
    serve = Serve(tmp_path, "--max-concurrency", "1", "--max-queue-size", "1")
    try:
        serve.compile("block", BLOCK)
        for i in range(2):  # one running, one queued
            r = httpx.post(f"{serve.url}/execute?async=true",
                           json={"ref": "block", "inputs": {"x": i}})
            assert r.status_code == 202
        full = httpx.post(f"{serve.url}/execute", json={"ref": "block", "inputs": {"x": 9}})
        assert full.status_code == 429
        assert full.json()["error"]["code"] == "E401"
        assert int(full.headers["retry-after"]) >= 1
        serve.release()

        r = httpx.put(f"{serve.url}/health")
        assert r.status_code == 405
        assert r.json()["error"]["code"] == "E608"
        assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
        r = httpx.post(f"{serve.url}/pipelines/block")
        assert r.status_code == 405
        assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}

        for path in ("/health", "/health/live", "/health/ready", "/health/detail",
                     "/metrics", "/modules", "/pipelines", "/pipelines/block",
                     "/executions", "/openapi.json"):
            got = httpx.get(f"{serve.url}{path}")
            head = httpx.head(f"{serve.url}{path}")
            assert head.status_code == got.status_code == 200, path
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
        assert httpx.head(f"{serve.url}/pipelines/nope").status_code == 404
        assert httpx.head(f"{serve.url}/compile").status_code == 405
    finally:
        serve.kill()


def _get(port: int, path: str, headers: dict[str, bytes], method: str = "GET"
         ) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    r = conn.getresponse()
    r.read()
    conn.close()
    return r


def test_utf8_api_keys_and_cors_headers_on_refusals(tmp_path: Path) -> None:
    origin = "https://app.example"
    keys = "clé-ünï-🔑:admin,plain-reader:readonly"
    serve = Serve(tmp_path, "--cors-origin", origin, "--rate-limit-per-minute", "1",
                  "--rate-limit-burst", "4", env={"CONSTELLATION_API_KEYS": keys})
    try:
        utf8 = "clé-ünï-🔑".encode()
        o = origin.encode()
        assert _get(serve.port, "/modules", {"Authorization": b"Bearer " + utf8,
                                             "Origin": o}).status == 200
        assert _get(serve.port, "/modules", {"X-API-Key": utf8, "Origin": o}).status == 200
        refused = _get(serve.port, "/modules", {"Origin": o})  # no key
        assert refused.status == 401
        assert refused.getheader("access-control-allow-origin") == origin
        refused = _get(serve.port, "/pipelines/x", {"X-API-Key": b"plain-reader",
                                                   "Origin": o}, method="DELETE")
        assert refused.status == 403
        assert refused.getheader("access-control-allow-origin") == origin
        statuses = []
        for _ in range(4):  # the bucket of the admin key is empty by now
            last = _get(serve.port, "/modules", {"X-API-Key": utf8, "Origin": o})
            statuses.append(last.status)
        assert statuses[-1] == 429
        assert last.getheader("access-control-allow-origin") == origin
        assert "retry-after" in last.getheader("access-control-expose-headers", "").lower()
        assert int(last.getheader("retry-after")) >= 1
    finally:
        serve.kill()


def test_a_second_sigterm_during_a_drain_exits_0_and_answers_waiting_requests(
        tmp_path: Path) -> None:
    serve = Serve(tmp_path, drain=30.0)
    try:
        serve.compile("block", BLOCK)
        results, sender = _post_all(serve.url, "/execute",
                                    [{"ref": "block", "inputs": {"x": i}} for i in range(4)])
        _wait_for(lambda: serve.inflight() == 4, 10, "4 executions")
        t0 = time.monotonic()
        serve.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        serve.proc.send_signal(signal.SIGTERM)  # do not wait 30 s
        serve.proc.wait(15)
        assert serve.proc.returncode == 0, serve.output()
        assert time.monotonic() - t0 < 15
        sender.join(10)
        assert [r.status_code for r in results] == [503] * 4  # type: ignore[union-attr]
        assert {r.json()["error"]["code"] for r in results} == {"E402"}  # type: ignore[union-attr]
    finally:
        serve.kill()


def test_a_second_sigterm_after_a_clean_drain_exits_0(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        serve.compile("say", SAY)
        r = httpx.post(f"{serve.url}/execute", json={"ref": "say", "inputs": {"t": "x"}})
        assert r.status_code == 200
        # A request still arriving (half its body sent) keeps the server in its graceful
        # shutdown (up to 5 s) after the drain, which has nothing to wait for.
        slow = socket.create_connection(("127.0.0.1", serve.port), timeout=10)
        slow.sendall(b"POST /compile HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 1000\r\n\r\n{\"source\": ")
        time.sleep(0.3)
        serve.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # drained (nothing ran), the server waiting for that request
        assert serve.proc.poll() is None
        serve.proc.send_signal(signal.SIGTERM)
        serve.proc.wait(15)
        assert serve.proc.returncode == 0, serve.output()
        slow.close()
    finally:
        serve.kill()


# --- 6. the async request path ----------------------------------------------------------

@proc_only
def test_200_waiting_executes_hold_no_thread_each_and_all_complete(tmp_path: Path) -> None:
    # Four run at a time; the rest wait in the engine's queue, and their requests wait on
    # the event loop: neither holds a thread.
    serve = Serve(tmp_path, "--max-concurrency", "4", "--worker-threads", "8")
    try:
        serve.compile("block", BLOCK)
        before = serve.threads()
        results, sender = _post_all(serve.url, "/execute",
                                    [{"ref": "block", "inputs": {"x": i}} for i in range(200)])
        _wait_for(lambda: serve.inflight() == 200, 20, "200 executions in the engine")
        assert serve.threads() <= before + 12  # workers started, not a thread per request
        serve.release()
        sender.join(60)
        assert not sender.is_alive()
        assert [getattr(r, "status_code", r) for r in results] == [200] * 200
        assert sorted(r.json()["outputs"]["y"] for r in results) == list(range(200))  # type: ignore[union-attr]
    finally:
        serve.kill()


def test_waiting_resumes_hold_no_thread_each(tmp_path: Path) -> None:
    # POST /executions/{id}/resume awaits its execution on the loop too (it used to hold
    # a thread of the server's pool for the whole run: 40 at most, then every sync
    # route waited).
    serve = Serve(tmp_path, "--max-concurrency", "4", "--worker-threads", "8")
    try:
        serve.compile("later", "in x: Int\nin go: Int\ny = Block(x + go)\nout y")
        with httpx.Client(base_url=serve.url, timeout=30) as c:
            ids = []
            for i in range(60):
                first = c.post("/execute", json={"ref": "later", "inputs": {"x": i}}).json()
                assert first["status"] == "suspended", first
                ids.append(first["execution_id"])
        before = serve.threads()
        results: list[Any] = []

        async def go() -> None:
            limits = httpx.Limits(max_connections=60)
            async with httpx.AsyncClient(base_url=serve.url, timeout=60, limits=limits) as c:
                results.extend(await asyncio.gather(
                    *(c.post(f"/executions/{e}/resume", json={"inputs": {"go": 0}})
                      for e in ids),
                    return_exceptions=True))

        sender = threading.Thread(target=lambda: asyncio.run(go()), daemon=True)
        sender.start()
        _wait_for(lambda: serve.inflight() == 60, 20, "60 resumed executions in the engine")
        assert serve.threads() <= before + 12  # workers started, not a thread per request
        with httpx.Client(base_url=serve.url, timeout=10) as c:
            assert c.get("/modules").status_code == 200  # a sync route still answers
        serve.release()
        sender.join(60)
        assert not sender.is_alive()
        assert [getattr(r, "status_code", r) for r in results] == [200] * 60
        assert sorted(r.json()["outputs"]["y"] for r in results) == list(range(60))
    finally:
        serve.kill()


def test_clients_that_disconnect_leave_nothing_behind(tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--max-concurrency", "8")
    try:
        serve.compile("block", BLOCK)
        socks = []
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", serve.port), timeout=10)
            body = json.dumps({"ref": "block", "inputs": {"x": i}}).encode()
            s.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            socks.append(s)
        _wait_for(lambda: serve.inflight() == 50, 20, "50 executions")
        for s in socks:
            s.close()  # gone while their executions wait
        time.sleep(0.5)
        serve.release()
        _wait_for(lambda: serve.inflight() == 0, 20, "the executions to end")
        # They ran on and were recorded; the server is fine and logged no error.
        listed = httpx.get(f"{serve.url}/executions?limit=100").json()["executions"]
        assert len(listed) == 50
        assert {e["status"] for e in listed} == {"completed"}
        r = httpx.post(f"{serve.url}/execute", json={"ref": "block", "inputs": {"x": 7}})
        assert r.json()["outputs"] == {"y": 7}
        serve.proc.send_signal(signal.SIGTERM)
        serve.proc.wait(15)
        assert serve.proc.returncode == 0
        out = serve.output()
        assert "Traceback" not in out, out
        assert "ERROR" not in out, out
    finally:
        serve.kill()


def test_requests_waiting_when_the_engine_stops_are_answered_503(tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--max-concurrency", "2", drain=1.0)
    try:
        serve.compile("block", BLOCK)
        bodies = [{"ref": "block", "inputs": {"x": i}} for i in range(10)]  # 2 run, 8 wait
        results, sender = _post_all(serve.url, "/execute", bodies)
        _wait_for(lambda: serve.inflight() == 10, 10, "10 executions")
        t0 = time.monotonic()
        serve.proc.send_signal(signal.SIGTERM)
        sender.join(15)
        assert not sender.is_alive()
        assert time.monotonic() - t0 < 10
        assert [getattr(r, "status_code", r) for r in results] == [503] * 10
        for r in results:
            error = r.json()["error"]  # type: ignore[union-attr]
            assert error["code"] == "E402"
            assert error["details"]["status"] == "cancelled"
        serve.proc.wait(15)
        assert serve.proc.returncode == 0
    finally:
        serve.kill()


def test_head_of_an_endless_stream_ends_the_stream() -> None:
    # The other GET endpoints may stream (server-sent events): HEAD answers with the
    # headers and stops the stream, instead of running it for nobody.
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from constellation.http.middleware import ResponseMiddleware

    stopped = threading.Event()

    async def events(_request: Any) -> StreamingResponse:
        async def forever() -> Any:
            try:
                while True:
                    yield b"data: tick\n\n"
                    await asyncio.sleep(0.01)
            finally:
                stopped.set()

        return StreamingResponse(forever(), media_type="text/event-stream")

    app = ResponseMiddleware(Starlette(routes=[Route("/events", events)]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_for(lambda: server.started, 10, "the server")
        r = httpx.head(f"http://127.0.0.1:{port}/events", timeout=5)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.content == b""
        assert stopped.wait(5), "the stream ran on after the HEAD was answered"
    finally:
        server.should_exit = True
        thread.join(10)
