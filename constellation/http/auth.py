"""API keys and roles for the HTTP daemon.

Roles, from most to least powerful: ``admin`` (everything), ``execute`` (compile, run,
execute, cancel, resume, and read), ``readonly`` (read only). Keys come from an
:class:`AuthProvider`; the built-ins keep only SHA-256 digests of the keys and compare
digests in constant time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["AuthProvider", "EnvKeys", "FileKeys", "Role", "StaticKeys", "digest"]


class Role(enum.IntEnum):
    """What a key may do; a higher role may do everything a lower one may."""

    READONLY = 1
    EXECUTE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        """``"admin"``, ``"execute"`` or ``"readonly"`` (any case).

        Raises:
            ConfigurationError: another name.
        """
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ConfigurationError(f"unknown role {name!r}; roles are admin, execute, "
                                     "readonly", details={"field": "role"}) from None


@runtime_checkable
class AuthProvider(Protocol):
    """Maps an API key to its role."""

    def authenticate(self, key: str) -> Role | None:
        """The key's role, or None for an unknown key. Must take the same time for any
        unknown key (compare digests with ``hmac.compare_digest``)."""


def digest(key: str) -> str:
    """The SHA-256 hex digest under which a key is kept."""
    return hashlib.sha256(key.encode()).hexdigest()


class StaticKeys:
    """Keys given in code: ``StaticKeys({"s3cret": "admin"})``; or already hashed, as
    ``{"sha256:<hex>": "readonly"}``. Only digests are kept.

    Raises:
        ConfigurationError: an empty key or an unknown role.
    """

    def __init__(self, keys: Mapping[str, str | Role]) -> None:
        self._digests: list[tuple[bytes, Role]] = []
        for key, role in keys.items():
            if not key:
                raise ConfigurationError("an API key cannot be empty",
                                         details={"field": "api_keys"})
            hexed = key[len("sha256:"):] if key.startswith("sha256:") else digest(key)
            self._digests.append((hexed.encode(),
                                  role if isinstance(role, Role) else Role.parse(role)))

    def authenticate(self, key: str) -> Role | None:
        """Compare against every digest (constant time per comparison, all compared)."""
        wanted = digest(key).encode()
        found: Role | None = None
        for d, role in self._digests:
            if hmac.compare_digest(d, wanted):
                found = role
        return found

    def add(self, other: StaticKeys) -> None:
        """Also accept ``other``'s keys (say, file keys on top of environment keys)."""
        self._digests.extend(other._digests)

    def __len__(self) -> int:
        return len(self._digests)


class EnvKeys(StaticKeys):
    """Keys from an environment variable: ``CONSTELLATION_API_KEYS="key1:admin,
    key2:readonly"`` (a key may be given as ``sha256:<hex>``)."""

    def __init__(self, variable: str = "CONSTELLATION_API_KEYS") -> None:
        super().__init__(_parse_pairs(os.environ.get(variable, ""), variable))


class FileKeys(StaticKeys):
    """Keys from a file: a JSON object ``{"<key or sha256:hex>": "<role>"}``, or lines
    ``<key or sha256:hex>:<role>`` (``#`` starts a comment).

    Raises:
        ConfigurationError: the file is missing or malformed.
    """

    def __init__(self, path: str | Path) -> None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read the API keys file {path}: {exc}",
                                     details={"field": "api_keys_file"}) from exc
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"API keys file {path} is not valid JSON: {exc}",
                                         details={"field": "api_keys_file"}) from exc
            super().__init__(data)
        else:
            lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
            super().__init__(_parse_pairs(",".join(ln for ln in lines if ln), str(path)))


def _parse_pairs(text: str, source: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, role = item.rpartition(":")
        if not sep or not key:
            raise ConfigurationError(f"{source}: expected <key>:<role>, got {item[:4]}…",
                                     details={"field": "api_keys"})
        pairs[key] = role
    return pairs
