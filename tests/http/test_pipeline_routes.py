"""Stored-pipeline management over HTTP, against a real server: versions from /compile
(8 clients at once included), rollback, aliases, canaries routing /execute, reloading
--pipelines-dir (while requests run, and with a corrupt file), direct module calls,
namespaces, and which role may call what."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from constellation.http.auth import Role, StaticKeys
from constellation.http.settings import ServerSettings
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.http.conftest import Server

ONE = "in x: Int\ny = Double(x)\nout y"            # y = 2x
TWO = "in x: Int\ny = Double(x)\nz = Double(y)\nout z"  # z = 4x
FAILS = "in x: Int\ny = divide(x, 0)\nout y"


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


def compile_(server: Server, source: str, name: str = "p") -> dict[str, Any]:
    r = server.client.post("/compile", json={"source": source, "name": name})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def execute(server: Server, ref: str, x: int = 1) -> dict[str, Any]:
    r = server.client.post("/execute", json={"ref": ref, "inputs": {"x": x}})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_compile_adds_a_version_only_when_the_source_changes(server: Server) -> None:
    one = compile_(server, ONE)
    assert one["version"] == 1
    assert compile_(server, TWO)["version"] == 2
    assert compile_(server, ONE)["version"] == 1  # a known hash: nothing changes
    assert compile_(server, ONE + "\n# a comment")["version"] == 1  # same structure
    listed = server.client.get("/pipelines/p/versions").json()
    assert listed["current"] == 2
    assert [(v["version"], v["current"]) for v in listed["versions"]] == [
        (1, False), (2, True)]
    assert listed["versions"][0]["structural_hash"] == one["structural_hash"]
    assert execute(server, "p", 3)["outputs"] == {"z": 12}
    summary = server.client.get("/pipelines").json()["pipelines"]
    assert [(s["name"], s["version"]) for s in summary] == [("p", 2)]
    assert server.client.get("/pipelines/p").json()["version"] == 2
    error(server.client.get("/pipelines/nope/versions"), 404)


def test_eight_clients_compiling_one_name_get_gapless_versions(server: Server) -> None:
    sources = [f"in x: Int\ny = x + {i}\nout y" for i in range(8)]
    barrier = threading.Barrier(8, timeout=10)

    def one(source: str) -> int:
        barrier.wait()
        return int(compile_(server, source, "race")["version"])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, sources))
    assert sorted(got) == list(range(1, 9))
    versions = server.client.get("/pipelines/race/versions").json()["versions"]
    assert [v["version"] for v in versions] == list(range(1, 9))
    assert len({v["structural_hash"] for v in versions}) == 8
    # And eight clients compiling the same new source add one version.
    barrier.reset()
    with ThreadPoolExecutor(8) as pool:
        same = list(pool.map(one, ["in x: Int\ny = x * 7\nout y"] * 8))
    assert same == [9] * 8
    assert len(server.client.get("/pipelines/race/versions").json()["versions"]) == 9


def test_rollback(server: Server) -> None:
    compile_(server, ONE)
    e = error(server.client.post("/pipelines/p/rollback"), 409)  # one version only
    assert e["code"] == "E703"
    assert e["details"]["reason"] == "no_previous_version"
    compile_(server, TWO)
    back = server.client.post("/pipelines/p/rollback")
    assert back.status_code == 200, back.text
    assert back.json()["version"] == 1
    assert execute(server, "p", 3)["outputs"] == {"y": 6}
    forward = server.client.post("/pipelines/p/rollback/2").json()
    assert forward["version"] == 2
    assert execute(server, "p", 3)["outputs"] == {"z": 12}
    assert error(server.client.post("/pipelines/p/rollback/9"), 404)["code"] == "E703"
    assert error(server.client.post("/pipelines/p/rollback/0"), 400)["code"] == "E600"
    assert error(server.client.post("/pipelines/p/rollback/two"), 400)["code"] == "E600"
    assert error(server.client.post("/pipelines/nope/rollback"), 404)["code"] == "E702"
    # Compiling a known source again does not undo the rollback.
    server.client.post("/pipelines/p/rollback/1")
    assert compile_(server, TWO)["version"] == 2
    assert server.client.get("/pipelines/p/versions").json()["current"] == 1


def test_deleting_versions(server: Server) -> None:
    compile_(server, ONE)
    compile_(server, TWO)
    e = error(server.client.delete("/pipelines/p/versions/2"), 409)
    assert (e["code"], e["details"]["reason"]) == ("E705", "current_version")
    assert server.client.delete("/pipelines/p/versions/1").status_code == 204
    assert error(server.client.delete("/pipelines/p/versions/1"), 404)["code"] == "E703"
    assert compile_(server, ONE)["version"] == 3  # numbers are never reused
    assert server.client.delete("/pipelines/p").status_code == 204
    assert error(server.client.get("/pipelines/p/versions"), 404)["code"] == "E702"


def test_aliases(server: Server) -> None:
    first = compile_(server, ONE)["structural_hash"]
    compile_(server, TWO)
    r = server.client.put("/pipelines/stable/alias", json={"structural_hash": first})
    assert r.status_code == 200, r.text
    assert r.json() == {"alias": "stable", "structural_hash": first}
    assert execute(server, "stable", 5)["outputs"] == {"y": 10}
    assert server.client.get("/aliases").json() == {"aliases": {"stable": first}}
    detail = server.client.get("/pipelines/stable").json()
    assert (detail["structural_hash"], detail["version"]) == (first, None)
    assert server.client.get("/pipelines/p/versions").json()["current"] == 2
    # "sha256:" prefix accepted; repointing replaces.
    second = server.client.get("/pipelines/p").json()["structural_hash"]
    server.client.put("/pipelines/stable/alias", json={"structural_hash": f"sha256:{second}"})
    assert execute(server, "stable", 5)["outputs"] == {"z": 20}
    e = error(server.client.put("/pipelines/p/alias", json={"structural_hash": first}), 409)
    assert (e["code"], e["details"]["reason"]) == ("E705", "alias_is_name")
    e = error(server.client.post("/compile", json={"source": ONE, "name": "stable"}), 409)
    assert (e["code"], e["details"]["reason"]) == ("E705", "name_is_alias")
    assert error(server.client.put("/pipelines/x/alias",
                                   json={"structural_hash": "0" * 64}), 404)["code"] == "E704"
    assert error(server.client.put("/pipelines/x/alias",
                                   json={"structural_hash": "xyz"}), 400)["code"] == "E600"
    # A hash still used by an alias cannot be deleted; the alias can.
    assert error(server.client.delete(f"/pipelines/sha256:{second}"), 409)["code"] == "E705"
    assert server.client.delete("/pipelines/stable").status_code == 204
    assert server.client.post("/execute", json={"ref": "stable"}).status_code == 404


def test_a_canary_routes_its_share_of_executes(server: Server) -> None:
    compile_(server, ONE)
    compile_(server, TWO)
    server.client.post("/pipelines/p/rollback/1")
    r = server.client.post("/pipelines/p/canary", json={"version": 2, "weight": 0.25})
    assert r.status_code == 200, r.text
    assert (r.json()["weight"], r.json()["candidate"]["version"]) == (0.25, 2)
    outs = [execute(server, "p", 1)["outputs"] for _ in range(8)]
    assert outs.count({"z": 4}) == 2
    assert outs.count({"y": 2}) == 6
    status = server.client.get("/pipelines/p/canary").json()
    assert (status["current"]["runs"], status["candidate"]["runs"]) == (6, 2)
    assert status["candidate"]["max_ms"] > 0
    # By hash, a pipeline is not canary-routed.
    h1 = status["current"]["structural_hash"]
    assert execute(server, f"sha256:{h1}")["outputs"] == {"y": 2}
    assert server.client.get("/pipelines/p/canary").json()["current"]["runs"] == 6
    promoted = server.client.post("/pipelines/p/canary/promote")
    assert promoted.json()["version"] == 2
    assert error(server.client.get("/pipelines/p/canary"), 404)["code"] == "E706"
    assert [execute(server, "p")["outputs"] for _ in range(3)] == [{"z": 4}] * 3


@pytest.mark.parametrize(("weight", "candidate_runs"), [(0, 0), (1, 5), (0.5, 2)])
def test_canary_weights_zero_and_one(server: Server, weight: float,
                                     candidate_runs: int) -> None:
    compile_(server, ONE)
    compile_(server, TWO)
    server.client.post("/pipelines/p/rollback")
    r = server.client.post("/pipelines/p/canary", json={"version": 2, "weight": weight})
    assert r.status_code == 200, r.text
    outs = [execute(server, "p")["outputs"] for _ in range(5)]
    assert outs.count({"z": 4}) == candidate_runs
    status = server.client.get("/pipelines/p/canary").json()
    assert status["candidate"]["runs"] == candidate_runs
    assert status["current"]["runs"] == 5 - candidate_runs


@pytest.mark.parametrize("body", [
    {"version": 2, "weight": 1.5}, {"version": 2, "weight": -0.1},
    {"version": 2, "weight": "half"}, {"version": 2}, {"weight": 0.5},
    {"version": 2, "structural_hash": "0" * 64, "weight": 0.5},
    {"version": 0, "weight": 0.5}, {"version": 2, "weight": True},
    {"version": 2, "weight": 0.5, "extra": 1}])
def test_bad_canary_requests_are_400(server: Server, body: dict[str, Any]) -> None:
    compile_(server, ONE)
    compile_(server, TWO)
    e = error(server.client.post("/pipelines/p/canary", json=body), 400)
    assert e["code"] == "E600"
    assert error(server.client.get("/pipelines/p/canary"), 404)["code"] == "E706"


def test_canary_nan_weight_and_unknown_targets(server: Server) -> None:
    compile_(server, ONE)
    nan = server.client.post("/pipelines/p/canary", content=b'{"version": 1, "weight": NaN}',
                             headers={"Content-Type": "application/json"})
    assert error(nan, 400)["code"] == "E600"
    assert error(server.client.post("/pipelines/p/canary", json={
        "version": 7, "weight": 0.5}), 404)["code"] == "E703"
    assert error(server.client.post("/pipelines/p/canary", json={
        "structural_hash": "a" * 64, "weight": 0.5}), 404)["code"] == "E704"
    assert error(server.client.post("/pipelines/nope/canary", json={
        "version": 1, "weight": 0.5}), 404)["code"] == "E702"
    for path in ("/pipelines/p/canary/promote", "/pipelines/p/canary/rollback"):
        assert error(server.client.post(path), 404)["code"] == "E706"
    assert error(server.client.delete("/pipelines/p/canary"), 404)["code"] == "E706"


def test_a_canary_from_source_counts_failures_and_ends(server: Server) -> None:
    compile_(server, ONE)
    r = server.client.post("/pipelines/p/canary", json={"source": FAILS, "weight": 0.5})
    assert r.status_code == 200, r.text
    assert r.json()["candidate"]["version"] == 2
    versions = server.client.get("/pipelines/p/versions").json()
    assert versions["current"] == 1  # the candidate is a version, not current
    statuses = [execute(server, "p")["status"] for _ in range(4)]
    assert statuses.count("failed") == 2
    ended = server.client.post("/pipelines/p/canary/rollback").json()
    assert (ended["candidate"]["runs"], ended["candidate"]["failures"]) == (2, 2)
    assert (ended["current"]["runs"], ended["current"]["failures"]) == (2, 0)
    assert [execute(server, "p")["status"] for _ in range(3)] == ["completed"] * 3
    # DELETE ends a canary too.
    server.client.post("/pipelines/p/canary", json={"version": 2, "weight": 1})
    assert server.client.delete("/pipelines/p/canary").status_code == 200
    assert execute(server, "p")["status"] == "completed"
    bad = server.client.post("/pipelines/p/canary", json={"source": "in x: Int\nout nope",
                                                          "weight": 0.5})
    assert error(bad, 400)["code"].startswith("E1")


def test_reload_reads_the_pipelines_dir(make_server: Callable[..., Server],
                                        tmp_path: Path) -> None:
    (tmp_path / "p.cst").write_text(ONE)
    server = make_server(ServerSettings(storage="memory", pipelines_dir=str(tmp_path)))
    from constellation.http.server import preload

    preload(server.state, tmp_path)
    assert execute(server, "p", 2)["outputs"] == {"y": 4}
    same = server.client.post("/pipelines/p/reload")
    assert same.status_code == 200, same.text
    assert (same.json()["version"], same.json()["changed"]) == (1, False)
    (tmp_path / "p.cst").write_text(TWO)
    changed = server.client.post("/pipelines/p/reload").json()
    assert (changed["version"], changed["changed"]) == (2, True)
    assert execute(server, "p", 2)["outputs"] == {"z": 8}
    # A corrupt file: a clear error, nothing changes, the server keeps serving.
    (tmp_path / "p.cst").write_text("in x: Int\ny = Double(x\nout y")
    e = error(server.client.post("/pipelines/p/reload"), 400)
    assert e["message"].startswith(f"{tmp_path / 'p.cst'}:")
    assert e["details"]["errors"][0]["line"] >= 2
    (tmp_path / "p.cst").write_bytes(b"in x: Int\ny = \xff\nout y")
    assert error(server.client.post("/pipelines/p/reload"), 400)["code"] == "E109"
    assert execute(server, "p", 2)["outputs"] == {"z": 8}
    assert server.client.get("/pipelines/p/versions").json()["current"] == 2
    assert error(server.client.post("/pipelines/q/reload"), 404)["code"] == "E620"


def test_reload_without_a_pipelines_dir_is_409(server: Server) -> None:
    compile_(server, ONE)
    assert error(server.client.post("/pipelines/p/reload"), 409)["code"] == "E621"


def test_reload_while_requests_run(make_server: Callable[..., Server],
                                   tmp_path: Path) -> None:
    (tmp_path / "p.cst").write_text(ONE)
    server = make_server(ServerSettings(storage="memory", pipelines_dir=str(tmp_path)))
    server.client.post("/pipelines/p/reload")
    stop = threading.Event()
    seen: list[Any] = []

    def hammer() -> None:
        import httpx

        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                r = client.post("/execute", json={"ref": "p", "inputs": {"x": 1}})
                seen.append((r.status_code, r.json().get("outputs")))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            (tmp_path / "p.cst").write_text(TWO if i % 2 == 0 else ONE)
            r = server.client.post("/pipelines/p/reload")
            assert r.status_code == 200, r.text
            assert r.json()["changed"] is True  # back and forth: the file's version
            assert r.json()["version"] == (2 if i % 2 == 0 else 1)
            n = len(seen)
            wait_for(lambda n=n: len(seen) >= n + 4)  # type: ignore[misc]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert seen
    assert {s for s, _ in seen} == {200}
    assert {json.dumps(o) for _, o in seen} == {'{"y": 2}', '{"z": 4}'}
    assert len(server.client.get("/pipelines/p/versions").json()["versions"]) == 2


def test_invoke_calls_one_module(server: Server) -> None:
    r = server.client.post("/modules/Double/invoke", json={"inputs": {"x": 21}})
    assert r.status_code == 200, r.text
    assert (r.json()["output"], r.json()["success"], r.json()["status"]) == (
        42, True, "completed")
    failed = server.client.post("/modules/stdlib.math.divide/invoke",
                                json={"inputs": {"a": 1, "b": 0}}).json()
    assert (failed["success"], failed["status"], failed["output"]) == (False, "failed", None)
    assert failed["errors"][0]["code"] == "E300"
    joined = server.client.post("/modules/stdlib.string.join/invoke", json={
        "inputs": {"list": ["a", "b"], "separator": "-"}}).json()
    assert joined["output"] == "a-b"
    assert error(server.client.post("/modules/Double/invoke", json={"inputs": {}}),
                 400)["code"] == "E201"
    assert error(server.client.post("/modules/Double/invoke",
                                    json={"inputs": {"x": "4"}}), 400)["code"] == "E202"
    assert error(server.client.post("/modules/Double/invoke",
                                    json={"inputs": {"x": 1, "y": 2}}), 400)["code"] == "E203"
    assert error(server.client.post("/modules/Nope/invoke", json={"inputs": {}}),
                 404)["code"] == "E623"
    recorded = server.client.get("/executions", params={"pipeline": "module:Double"})
    assert recorded.json()["executions"][0]["outputs"] == {"output": 42}


def test_namespaces_list_function_signatures(server: Server) -> None:
    listed = {n["name"]: n["functions"] for n in
              server.client.get("/namespaces").json()["namespaces"]}
    assert "add" in listed["stdlib.math"]
    assert set(listed["stdlib.collection"]) == {"filter", "map", "all", "any"}
    assert "Double" not in str(listed)  # modules without a namespace are in /modules
    math = server.client.get("/namespaces/stdlib.math").json()
    add = next(f for f in math["functions"] if f["name"] == "add")
    assert add == {"name": "add", "qualified": "stdlib.math.add",
                   "signature": "add(a: Int, b: Int) -> Int",
                   "inputs": {"a": "Int", "b": "Int"}, "output": "Int",
                   "description": add["description"], "inline": False}
    hof = server.client.get("/namespaces/stdlib.collection").json()["functions"]
    assert {f["name"]: f["inline"] for f in hof}["filter"] is True
    assert error(server.client.get("/namespaces/nope"), 404)["code"] == "E624"


KEYS = {"ro-key": "readonly", "ex-key": "execute", "ad-key": "admin"}
ROUTES: list[tuple[str, str, Any, Role]] = [
    ("GET", "/pipelines/p/versions", None, Role.READONLY),
    ("GET", "/pipelines/p/canary", None, Role.READONLY),
    ("GET", "/aliases", None, Role.READONLY),
    ("GET", "/namespaces", None, Role.READONLY),
    ("GET", "/namespaces/stdlib.math", None, Role.READONLY),
    ("POST", "/modules/Double/invoke", {"inputs": {"x": 1}}, Role.EXECUTE),
    ("POST", "/pipelines/p/rollback", None, Role.ADMIN),
    ("POST", "/pipelines/p/rollback/1", None, Role.ADMIN),
    ("PUT", "/pipelines/a/alias", {"structural_hash": "0" * 64}, Role.ADMIN),
    ("POST", "/pipelines/p/canary", {"version": 1, "weight": 0.1}, Role.ADMIN),
    ("POST", "/pipelines/p/canary/promote", None, Role.ADMIN),
    ("POST", "/pipelines/p/canary/rollback", None, Role.ADMIN),
    ("DELETE", "/pipelines/p/canary", None, Role.ADMIN),
    ("POST", "/pipelines/p/reload", None, Role.ADMIN),
    ("DELETE", "/pipelines/p/versions/1", None, Role.ADMIN),
]


@pytest.mark.parametrize(("method", "path", "body", "least"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_roles(make_server: Callable[..., Server], method: str, path: str, body: Any,
               least: Role) -> None:
    server = make_server(auth=StaticKeys(KEYS))
    server.client.post("/compile", json={"source": ONE, "name": "p"},
                       headers={"X-API-Key": "ad-key"})

    def call(key: str | None) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return server.client.request(method, path, json=body, headers=headers).status_code

    assert call(None) == 401
    assert call("wrong") == 401
    for key, role in (("ro-key", Role.READONLY), ("ex-key", Role.EXECUTE),
                      ("ad-key", Role.ADMIN)):
        status = call(key)
        if role < least:
            assert status == 403, (role, status)
        else:
            assert status not in (401, 403), (role, status)


def test_a_failing_store_is_a_503_with_e701(make_server: Callable[..., Server]) -> None:
    from constellation import Backends
    from constellation.spi import InMemoryPipelineStore

    class Broken(InMemoryPipelineStore):
        def versions(self, name: str) -> Any:
            raise OSError("disk on fire")

    server = make_server(backends=Backends(pipelines=Broken()))
    e = error(server.client.get("/pipelines/p/versions"), 503)
    assert (e["code"], e["details"]["reason"]) == ("E701", "backend")
    assert "disk on fire" in e["message"]
    assert server.client.get("/health/detail").status_code == 200
