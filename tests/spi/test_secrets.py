"""The secrets backends and redaction (the engine's use of them: tests/constellation)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from constellation.core.errors import ConfigurationError
from constellation.spi._secrets import (
    REDACTED,
    EnvSecrets,
    FileSecrets,
    SecretsBackend,
    redact,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_env_secrets_read_prefixed_upper_cased_variables() -> None:
    env = {"CONSTELLATION_SECRET_PAYMENTS_API_KEY": "sk-123456", "OTHER": "x"}
    secrets = EnvSecrets(environ=env)
    assert isinstance(secrets, SecretsBackend)
    assert secrets.get("payments_api_key") == "sk-123456"
    assert secrets.get("payments-api.key") == "sk-123456"
    assert secrets.get("missing") is None
    assert EnvSecrets(prefix="APP_", environ={"APP_TOKEN": "t0ken"}).get("token") == "t0ken"


def test_file_secrets_from_a_directory_and_from_json(tmp_path: Path) -> None:
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "db_password").write_text("hunter22\n")
    secrets = FileSecrets(d)
    assert secrets.get("db_password") == "hunter22"
    assert secrets.get("absent") is None
    f = tmp_path / "secrets.json"
    f.write_text(json.dumps({"token": "abcdef"}))
    assert FileSecrets(f).get("token") == "abcdef"
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="JSON object of strings"):
        FileSecrets(bad).get("token")
    with pytest.raises(ConfigurationError, match="does not exist"):
        FileSecrets(tmp_path / "nope")


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", "x" * 200, 3, None, "sp ace"])
def test_bad_secret_names_are_refused(name: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="a secret name is"):
        FileSecrets(tmp_path).get(name)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        EnvSecrets(environ={}).get(name)  # type: ignore[arg-type]


def test_redact_replaces_every_secret_in_strings_and_containers() -> None:
    secrets = ["sk-123456", "hunter22", "ab"]  # "ab": too short to redact
    assert redact("token sk-123456 and hunter22 in ab", secrets) == \
        f"token {REDACTED} and {REDACTED} in ab"
    nested = {"a": ["x sk-123456", {"hunter22": ("hunter22", 3)}], "n": 4}
    assert redact(nested, secrets) == {"a": [f"x {REDACTED}", {REDACTED: [REDACTED, 3]}],
                                       "n": 4}
    assert redact("nothing", []) == "nothing"
    # Overlapping secrets: the longer one first, nothing of it left.
    assert redact("sk-1234567", ["sk-1234", "sk-1234567"]) == REDACTED
    deep: list[object] = []
    cur = deep
    for _ in range(10_000):
        nxt: list[object] = ["sk-123456"]
        cur.append(nxt)
        cur = nxt
    out = redact(deep, secrets)
    for _ in range(10_000):
        out = out[-1]
    assert out == [REDACTED]


class VaultLike:
    """A custom secrets backend, as a plugin package would ship it."""

    def __init__(self, token: str = "vault-token") -> None:
        self.values = {"payments_key": f"from-plugin-{token}"}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def close(self) -> None:
        pass


def test_the_builtin_secrets_backends_are_registered_by_name(tmp_path: Path) -> None:
    from constellation.spi import create_backend, list_backends

    assert {b.name for b in list_backends("secrets")} >= {"env", "file", "static"}
    assert isinstance(create_backend("secrets", "env"), EnvSecrets)
    assert isinstance(create_backend("secrets", "file", path=tmp_path), FileSecrets)
    static = create_backend("secrets", "static", values={"k_name": "v-value"})
    assert static.get("k_name") == "v-value"


def test_a_custom_secrets_backend_is_found_through_its_entry_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from constellation import Backends, Constellation, module
    from constellation.spi import _registry, create_backend, list_backends, unregister_backend

    group = "constellation.backends.secrets"
    plugin = importlib.metadata.EntryPoint(name="vault-like",
                                           value=f"{__name__}:VaultLike", group=group)

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [plugin] if group == "constellation.backends.secrets" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(_registry, "_discovered", set())

    @module("plugin.UsesKey")
    def uses_key(x: int, ctx: Any) -> str:
        return ctx.secret("payments_key")[:12]

    try:
        info = next(b for b in list_backends("secrets") if b.name == "vault-like")
        assert info.source == f"entry point {group}"
        backend = create_backend("secrets", "vault-like", token="t-123")
        assert isinstance(backend, SecretsBackend)
        with Constellation([uses_key], backends=Backends(secrets=backend)) as engine:
            result = engine.run("in x: Int\ny = plugin.UsesKey(x)\nout y\n", {"x": 1})
        assert result.ok, result.errors
        assert result.outputs["y"] == "from-plugin-"
    finally:
        unregister_backend("secrets", "vault-like")
