"""The event stream, pipeline graphs and the dashboard page, on a real `constellation serve`."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the HTTP tests need the 'http' extra")

from tests.http.daemon import WatchDaemon  # noqa: E402


@pytest.fixture
def daemon(tmp_path: Path) -> Any:
    d = WatchDaemon(tmp_path)
    yield d
    d.stop()


def read_events(url: str, until: str, *, headers: dict[str, str] | None = None,
                timeout: float = 20.0, out: list[dict[str, Any]] | None = None,
                ready: threading.Event | None = None) -> list[dict[str, Any]]:
    """Read the SSE stream at ``url`` until an event of type ``until``."""
    events = out if out is not None else []
    with httpx.stream("GET", url, headers=headers, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith(": connected") and ready is not None:
                ready.set()
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["type"] == kind
                events.append(event)
                if kind == until:
                    return events
    return events


def start_reading(url: str) -> tuple[threading.Thread, list[dict[str, Any]]]:
    """Read the SSE stream at ``url`` on a thread until ``execution.finished``, into the
    list returned with the thread; return once the stream is connected."""
    got: list[dict[str, Any]] = []
    ready = threading.Event()
    reader = threading.Thread(target=read_events, kwargs={
        "url": url, "until": "execution.finished", "out": got, "ready": ready},
        daemon=True)
    reader.start()
    assert ready.wait(10)
    return reader, got


def test_the_stream_carries_an_executions_events_in_order(daemon: WatchDaemon) -> None:
    reader, got = start_reading(f"{daemon.url}/executions/events?pipeline=slow-upper")
    other = httpx.post(f"{daemon.url}/execute", json={"ref": "failing", "inputs": {
        "text": "x"}}, timeout=30)
    assert other.status_code == 200
    r = httpx.post(f"{daemon.url}/execute", json={"ref": "slow-upper", "inputs": {
        "text": "hi", "seconds": 0.05}}, timeout=30)
    assert r.status_code == 200, r.text
    eid = r.json()["execution_id"]
    reader.join(20)
    assert [e["type"] for e in got] == [
        "execution.started", "module.started", "module.completed", "module.started",
        "module.completed", "execution.finished"]
    assert {e["execution_id"] for e in got} == {eid}  # the failing run was filtered out
    assert got[-1]["status"] == "completed"
    assert got[2]["node"] == "Slow"
    assert got[2]["module"] == "watch.Slow"
    assert got[2]["duration_ms"] > 0


def test_a_failing_module_is_a_failed_event_with_its_error(daemon: WatchDaemon) -> None:
    reader, got = start_reading(f"{daemon.url}/executions/events")
    httpx.post(f"{daemon.url}/execute", json={"ref": "failing", "inputs": {"text": "q"}},
               timeout=30)
    reader.join(20)
    failed = [e for e in got if e["type"] == "module.failed"]
    assert len(failed) == 1
    assert "ValueError: boom: q" in failed[0]["error"]
    assert got[-1]["status"] == "failed"


def test_a_disconnecting_client_is_unsubscribed_and_costs_nothing(daemon: WatchDaemon) -> None:
    # The hub takes at most 100 subscribers: 120 clients that come and go one after the
    # other all get a stream only if each one was unsubscribed when it hung up.
    for _ in range(120):
        with httpx.stream("GET", f"{daemon.url}/executions/events", timeout=10) as r:
            assert r.status_code == 200, r.read()
            next(r.iter_lines())  # ": connected", then hang up
    got = read_events_after_run(daemon)
    assert got[-1]["type"] == "execution.finished"


def read_events_after_run(daemon: WatchDaemon) -> list[dict[str, Any]]:
    reader, got = start_reading(f"{daemon.url}/executions/events")
    r = httpx.post(f"{daemon.url}/execute", json={"ref": "slow-upper", "inputs": {
        "text": "x", "seconds": 0.0}}, timeout=30)
    assert r.json()["status"] == "completed"
    reader.join(20)
    return got


def test_the_graph_route_gives_the_pipelines_dag(daemon: WatchDaemon) -> None:
    r = httpx.get(f"{daemon.url}/pipelines/slow-upper/graph", timeout=10)
    assert r.status_code == 200
    body = r.json()
    kinds = {n["id"]: n["kind"] for n in body["nodes"]}
    assert list(kinds.values()).count("module") == 2
    assert {"in:text", "in:seconds", "out:b"} <= set(kinds)
    assert len(body["edges"]) == 5  # text, seconds -> a; a, seconds -> b; b -> out
    missing = httpx.get(f"{daemon.url}/pipelines/nope/graph", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "E601"


def test_the_dashboard_is_served_unless_turned_off(tmp_path: Path) -> None:
    d = WatchDaemon(tmp_path, keys={"reader-key": "readonly"})
    try:
        page = httpx.get(f"{d.url}/dashboard", timeout=10)  # no key: the page has no data
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>Constellation</title>" in page.text
        assert httpx.get(f"{d.url}/executions/events", timeout=10).status_code == 401
        events = httpx.get(f"{d.url}/pipelines/failing/graph", timeout=10,
                           headers={"Authorization": "Bearer reader-key"})
        assert events.status_code == 200
    finally:
        d.stop()
    off = WatchDaemon(tmp_path, "--no-dashboard")
    try:
        assert httpx.get(f"{off.url}/dashboard", timeout=10).status_code == 404
    finally:
        off.stop()
