"""SecretsBackend: credentials for modules, kept out of everything the engine writes.

A module that declares a ``ctx`` parameter asks for a secret by name,
``ctx.secret("payments_api_key")``; the engine asks its secrets backend. A module whose
calls run in other processes (process pools, dask) declares the names,
``@module(secrets=("payments_api_key",))``: the engine looks them up in its own process
before it ships each call, and the values travel with that call. The value goes
to the module and nowhere else: every value handed out is *redacted* (replaced by
``***``) from the error messages and details the engine builds for that execution --
and so from its records, log records, listener events, spans and HTTP responses,
which are all made from those.

Built-ins:

- :class:`EnvSecrets` (the default): the environment variable ``<prefix><NAME>``
  (prefix ``CONSTELLATION_SECRET_``, the name upper-cased): ``payments_api_key`` is
  ``CONSTELLATION_SECRET_PAYMENTS_API_KEY``;
- :class:`FileSecrets`: a directory of files, one per secret (the layout of Docker and
  Kubernetes secrets: ``/run/secrets/payments_api_key``), or one JSON object file;
- :class:`StaticSecrets`: a mapping (tests, embedders that already hold the values);
- your own: anything with ``get(name) -> str | None`` and ``close()``, registered as kind
  ``secrets`` (or through the entry-point group ``constellation.backends.secrets``).

Redaction is by value, for values of at least :data:`MIN_REDACTED` characters (a one-
or two-letter "secret" would erase those letters from every message; the engine logs a
warning when it hands one out). It covers what the engine writes; a module that prints
or logs a secret itself, or returns it as an output, is beyond it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from constellation.core.errors import ConfigurationError, SecretNotFoundError
from constellation.core.secret_names import check_name

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["MIN_REDACTED", "REDACTED", "EnvSecrets", "FileSecrets", "SecretNotFoundError",
           "SecretsBackend", "StaticSecrets", "check_name", "redact"]

REDACTED = "***"
MIN_REDACTED = 4


@runtime_checkable
class SecretsBackend(Protocol):
    """Where ``ctx.secret(name)`` looks secrets up."""

    def get(self, name: str) -> str | None:
        """The secret's value, or None when there is none by that name."""

    def close(self) -> None:
        """Release what the backend holds."""


class _Closable:
    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EnvSecrets(_Closable):
    """Secrets from environment variables ``<prefix><NAME>`` (the default backend).

    Args:
        prefix: prepended to the upper-cased name (``.`` and ``-`` become ``_``).
        environ: the mapping to read (default ``os.environ``, read at each call).
    """

    def __init__(self, prefix: str = "CONSTELLATION_SECRET_",
                 environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self._environ = environ

    def variable(self, name: str) -> str:
        """The environment variable that holds secret ``name``."""
        return self.prefix + re.sub(r"[.\-]", "_", check_name(name)).upper()

    def get(self, name: str) -> str | None:
        """The variable's value, or None."""
        environ = os.environ if self._environ is None else self._environ
        return environ.get(self.variable(name))


class FileSecrets(_Closable):
    """Secrets from files: a directory with one file per secret (its content, without
    a trailing newline, is the value), or a JSON file holding ``{"name": "value"}``.

    Args:
        path: the directory or the JSON file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigurationError(f"secrets path {self.path} does not exist",
                                     details={"field": "secrets"})
        self._json: dict[str, str] | None = None
        self._lock = threading.Lock()

    def _load_json(self) -> dict[str, str]:
        with self._lock:
            if self._json is None:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise ConfigurationError(f"secrets file {self.path} is not readable "
                                             f"JSON: {type(exc).__name__}",
                                             details={"field": "secrets"}) from None
                if not isinstance(data, dict) or not all(
                        isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
                    raise ConfigurationError(f"secrets file {self.path} must hold a JSON "
                                             "object of strings", details={"field": "secrets"})
                self._json = data
            return self._json

    def get(self, name: str) -> str | None:
        """The secret's value, or None."""
        check_name(name)
        if self.path.is_dir():
            file = self.path / name
            try:
                return file.read_text(encoding="utf-8").rstrip("\r\n")
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise ConfigurationError(f"cannot read secret {name!r} from {file}: "
                                         f"{type(exc).__name__}",
                                         details={"field": "secrets"}) from None
        return self._load_json().get(name)


class StaticSecrets(_Closable):
    """Secrets from a mapping given in code (tests; embedders holding the values)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = {check_name(k): str(v) for k, v in values.items()}

    def get(self, name: str) -> str | None:
        """The secret's value, or None."""
        return self._values.get(name)


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every secret (of at least MIN_REDACTED characters) replaced by
    ``***``: in a string, and in the strings of lists, tuples and dicts, iteratively."""
    found = sorted({s for s in secrets if len(s) >= MIN_REDACTED}, key=len, reverse=True)
    if not found:
        return value
    pattern = re.compile("|".join(re.escape(s) for s in found))

    def one(v: Any) -> Any:
        return pattern.sub(REDACTED, v) if isinstance(v, str) else v

    if isinstance(value, str):
        return one(value)
    if not isinstance(value, list | tuple | dict):
        return value
    # Rebuild containers without recursion: a stack of (source, target) pairs.
    def empty(v: Any) -> Any:
        return {} if isinstance(v, dict) else []

    root = empty(value)
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        src, dst = stack.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for k, v in items:
            if isinstance(v, list | tuple | dict):
                child = empty(v)
                stack.append((v, child))
            else:
                child = one(v)
            if isinstance(dst, dict):
                dst[one(k) if isinstance(k, str) else k] = child
            else:
                dst.append(child)
    return _retuple(value, root)


def _retuple(original: Any, rebuilt: Any) -> Any:
    # Tuples were rebuilt as lists; give the top level its type back (nested tuples stay
    # lists: error details are JSON anyway).
    return tuple(rebuilt) if isinstance(original, tuple) else rebuilt
