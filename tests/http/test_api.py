"""The HTTP API against a real server: compile, execute, run, errors, executions,
health, metrics, limits, CORS."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from constellation import SchedulerConfig
from constellation.http.settings import ServerSettings
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.http.conftest import Server

SOURCE = "in x: Int\ny = Double(x)\nz = y + 1\nout y\nout z"


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]  # type: ignore[no-any-return]


def test_compile_then_execute_by_name_and_by_hash(server: Server) -> None:
    c = server.client.post("/compile", json={"source": SOURCE, "name": "doubler"})
    assert c.status_code == 200, c.text
    compiled = c.json()
    assert compiled["name"] == "doubler"
    assert compiled["inputs"] == {"x": "Int"}
    assert compiled["outputs"] == {"y": "Int", "z": "Int"}
    by_name = server.client.post("/execute", json={"ref": "doubler", "inputs": {"x": 4}})
    assert by_name.status_code == 200
    assert by_name.json()["outputs"] == {"y": 8, "z": 9}
    assert by_name.json()["status"] == "completed"
    by_hash = server.client.post("/execute", json={
        "ref": f"sha256:{compiled['structural_hash']}", "inputs": {"x": 5}})
    assert by_hash.json()["outputs"] == {"y": 10, "z": 11}
    listed = server.client.get("/pipelines").json()["pipelines"]
    assert [p["name"] for p in listed] == ["doubler"]
    detail = server.client.get("/pipelines/doubler").json()
    assert detail["source"] == SOURCE
    assert {c["module"] for c in detail["module_calls"]} == {"Double", "stdlib.math.add"}
    assert server.client.delete("/pipelines/doubler").status_code == 204
    gone = server.client.post("/execute", json={"ref": "doubler", "inputs": {"x": 4}})
    assert gone.status_code == 404


def test_bad_requests_get_the_right_status_and_code(server: Server) -> None:
    bad_json = server.client.post("/run", content=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert error(bad_json)["code"] == "E600"
    unknown = server.client.post("/execute", json={"ref": "nope", "inputs": {}})
    assert unknown.status_code == 404
    assert error(unknown)["code"] == "E601"
    wrong_type = server.client.post("/run", json={"source": SOURCE, "inputs": {"x": "4"}})
    assert wrong_type.status_code == 400
    assert error(wrong_type)["code"] == "E202"
    unknown_input = server.client.post("/run", json={"source": SOURCE, "inputs": {"q": 1}})
    assert error(unknown_input)["code"] == "E203"
    compile_error = server.client.post("/compile", json={"source": "in x: Int\nout y"})
    assert compile_error.status_code == 400
    err = error(compile_error)
    assert err["code"].startswith("E1")
    assert err["details"]["errors"][0]["line"] == 2
    missing_field = server.client.post("/run", json={"inputs": {}})
    assert error(missing_field)["code"] == "E600"
    no_route = server.client.get("/nowhere")
    assert no_route.status_code == 404
    assert error(no_route)["code"] == "E607"


def test_run_failures_are_results_not_http_errors(server: Server) -> None:
    r = server.client.post("/run", json={"source": "in a: Int\nin b: Int\nq = a / b\nout q",
                                         "inputs": {"a": 1, "b": 0}})
    assert r.status_code == 200
    assert r.json()["status"] == "failed"
    assert r.json()["errors"][0]["code"] == "E300"


def test_async_run_cancel_and_execution_records(server: Server) -> None:
    started = server.client.post("/run?async=true", json={
        "source": "in s: Float\nw = Wait(s)\nout w", "inputs": {"s": 5.0}})
    assert started.status_code == 202
    eid = started.json()["execution_id"]
    assert server.client.get(f"/executions/{eid}").json()["status"] in ("queued", "running")
    cancel = server.client.post(f"/executions/{eid}/cancel")
    assert cancel.status_code == 202
    assert cancel.json()["cancelled"] is True
    deadline = time.monotonic() + 5
    while server.client.get(f"/executions/{eid}").json()["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.client.post("/run", json={"source": SOURCE, "inputs": {"x": 1}})
    listed = server.client.get("/executions", params={"status": "completed", "limit": 5})
    assert listed.status_code == 200
    assert [e["status"] for e in listed.json()["executions"]] == ["completed"]
    assert server.client.get("/executions/nope").status_code == 404


def test_suspend_and_resume_over_http(server: Server) -> None:
    src = "in a: Int\nin b: Int\nd = Double(a)\ns = d + b\nout s"
    server.client.post("/compile", json={"source": src, "name": "sum"})
    first = server.client.post("/execute", json={"ref": "sum", "inputs": {"a": 2}}).json()
    assert first["status"] == "suspended"
    assert first["missing_inputs"] == {"b": "Int"}
    assert server.client.get(f"/executions/{first['execution_id']}").json()["resumable"]
    resumed = server.client.post(f"/executions/{first['execution_id']}/resume",
                                 json={"inputs": {"b": 3}})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["outputs"] == {"s": 7}
    again = server.client.post(f"/executions/{first['execution_id']}/resume",
                               json={"inputs": {"b": 3}})
    assert again.status_code == 409
    assert error(again)["details"]["reason"] == "not_suspended"


def test_modules_health_and_metrics(make_server: Callable[..., Server]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from constellation.spi import Backends, PrometheusMetrics

    metrics = PrometheusMetrics()
    server = make_server(metrics=metrics, backends=Backends(metrics=metrics))
    names = {m["name"] for m in server.client.get("/modules").json()["modules"]}
    assert {"Double", "Wait", "Uppercase"} <= names
    server.client.post("/run", json={"source": SOURCE, "inputs": {"x": 1}})
    assert server.client.get("/health").json() == {"status": "ok"}
    assert server.client.get("/health/live").status_code == 200
    assert server.client.get("/health/ready").status_code == 200
    detail = server.client.get("/health/detail").json()
    assert detail["scheduler"]["max_concurrency"] == 16
    assert detail["storage"]["ok"] is True
    server.engine.shutdown(drain_timeout=1)  # as a SIGTERM would
    deadline = time.monotonic() + 5
    text = server.client.get("/metrics").text
    while "constellation_execution_total" not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = server.client.get("/metrics").text
    families = {f.name for f in text_string_to_metric_families(text)}
    assert "constellation_execution" in families
    assert server.client.get("/health/ready").status_code == 503
    assert server.client.get("/health").status_code == 503
    assert server.client.get("/health/live").status_code == 200


def test_queue_full_is_429(make_server: Callable[..., Server]) -> None:
    server = make_server(scheduler=SchedulerConfig(max_concurrency=1, max_queue_size=1))
    src = {"source": "in s: Float\nw = Wait(s)\nout w", "inputs": {"s": 1.0}}
    codes = [server.client.post("/run?async=true", json=src).status_code]
    # The first one runs (it left the queue: the supervisor took it), then one fits in
    # the queue, then the queue is full.
    wait_for(lambda: server.engine.health()["queued"] == 0, timeout=10)
    codes += [server.client.post("/run?async=true", json=src).status_code for _ in range(3)]
    assert codes[:2] == [202, 202]
    assert 429 in codes[2:]


def test_body_limit_and_cors(make_server: Callable[..., Server]) -> None:
    server = make_server(ServerSettings(storage="memory", max_body_bytes=2000,
                                        cors_origins=("https://app.example",)))
    big = server.client.post("/run", json={"source": "x" * 5000, "inputs": {}})
    assert big.status_code == 413
    assert error(big)["code"] == "E606"

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 500

    chunked = server.client.post("/run", content=chunks(),
                                 headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    small = server.client.post("/run", content=iter([b'{"source": "in x: Int\\nout x", ',
                                                     b'"inputs": {"x": 1}}']),
                               headers={"Content-Type": "application/json"})
    assert small.status_code == 200, small.text
    assert small.json()["outputs"] == {"x": 1}
    pre = server.client.options("/run", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    other = server.client.get("/modules", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_rate_limit_then_recovery(make_server: Callable[..., Server]) -> None:
    server = make_server(ServerSettings(storage="memory", rate_limit_per_minute=60,
                                        rate_limit_burst=3))
    codes = [server.client.get("/modules").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = server.client.get("/modules")
    assert limited.status_code == 429
    assert error(limited)["code"] == "E605"
    retry = int(limited.headers["Retry-After"])
    assert 1 <= retry <= 2
    assert server.client.get("/health").status_code == 200  # exempt
    assert server.client.get("/metrics").status_code == 200  # exempt
    time.sleep(retry + 0.05)
    assert server.client.get("/modules").status_code == 200
