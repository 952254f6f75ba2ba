"""Auth matrix: every endpoint x {no key, bad key, readonly, execute, admin}."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from constellation.http.auth import EnvKeys, FileKeys, Role, StaticKeys, digest

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.http.conftest import Server

KEYS = {"ro-key": "readonly", "ex-key": "execute", "ad-key": "admin"}
SRC = "in x: Int\ny = Double(x)\nout y"

# (method, path, json body, least role or None for exempt)
ENDPOINTS: list[tuple[str, str, Any, Role | None]] = [
    ("POST", "/compile", {"source": SRC, "name": "p"}, Role.EXECUTE),
    ("POST", "/run", {"source": SRC, "inputs": {"x": 1}}, Role.EXECUTE),
    ("POST", "/execute", {"ref": "p", "inputs": {"x": 1}}, Role.EXECUTE),
    ("GET", "/pipelines", None, Role.READONLY),
    ("GET", "/pipelines/p", None, Role.READONLY),
    ("DELETE", "/pipelines/other", None, Role.ADMIN),
    ("GET", "/executions", None, Role.READONLY),
    ("GET", "/executions/none", None, Role.READONLY),
    ("POST", "/executions/none/cancel", None, Role.EXECUTE),
    ("POST", "/executions/none/resume", {"inputs": {}}, Role.EXECUTE),
    ("GET", "/modules", None, Role.READONLY),
    ("GET", "/health", None, None),
    ("GET", "/health/live", None, None),
    ("GET", "/health/ready", None, None),
    ("GET", "/health/detail", None, None),
    ("GET", "/metrics", None, None),
]


@pytest.fixture
def secured(make_server: Callable[..., Server]) -> Server:
    server = make_server(auth=StaticKeys(KEYS))
    server.client.post("/compile", json={"source": SRC, "name": "p"},
                       headers={"X-API-Key": "ad-key"})
    return server


@pytest.mark.parametrize(("method", "path", "body", "least"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_auth_matrix(secured: Server, method: str, path: str, body: Any,
                     least: Role | None) -> None:
    def call(headers: dict[str, str]) -> int:
        return secured.client.request(method, path, json=body, headers=headers).status_code

    no_key = call({})
    bad_key = call({"Authorization": "Bearer wrong"})
    by_role = {role: call({"Authorization": f"Bearer {key}"}) for key, role in
               (("ro-key", Role.READONLY), ("ex-key", Role.EXECUTE), ("ad-key", Role.ADMIN))}
    if least is None:
        assert no_key not in (401, 403)
        assert bad_key not in (401, 403)
        return
    assert no_key == 401
    assert bad_key == 401
    for role, status in by_role.items():
        if role < least:
            assert status == 403, (role, status)
        else:
            assert status not in (401, 403), (role, status)


def test_x_api_key_header_and_error_bodies(secured: Server) -> None:
    r = secured.client.get("/modules", headers={"X-API-Key": "ro-key"})
    assert r.status_code == 200
    denied = secured.client.post("/run", json={"source": SRC, "inputs": {"x": 1}},
                                 headers={"X-API-Key": "ro-key"})
    assert denied.json()["error"]["code"] == "E604"
    missing = secured.client.get("/modules")
    assert missing.json()["error"]["code"] == "E603"
    assert missing.headers["WWW-Authenticate"] == "Bearer"


def test_key_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSTELLATION_API_KEYS", f"k1:admin, sha256:{digest('k2')}:readonly")
    env = EnvKeys()
    assert env.authenticate("k1") is Role.ADMIN
    assert env.authenticate("k2") is Role.READONLY
    assert env.authenticate("k3") is None
    lines = tmp_path / "keys.txt"
    lines.write_text("# ops\nabc:execute\n")
    assert FileKeys(lines).authenticate("abc") is Role.EXECUTE
    js = tmp_path / "keys.json"
    js.write_text('{"xyz": "admin"}')
    assert FileKeys(js).authenticate("xyz") is Role.ADMIN
    assert "xyz" not in repr(vars(FileKeys(js)))  # only digests are kept
    from constellation import ConfigurationError

    with pytest.raises(ConfigurationError):
        StaticKeys({"k": "superuser"})
    with pytest.raises(ConfigurationError):
        FileKeys(tmp_path / "missing")
