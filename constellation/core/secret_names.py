"""What a secret's name may look like: checked where modules declare the secrets they
need (``@module(secrets=(...))``) and where a secret is asked for (``ctx.secret``).

In the core, so that declarations are checked when a module is defined; the secrets
backends (``constellation.spi._secrets``) re-export :func:`check_name`.
"""

from __future__ import annotations

import re
from typing import Any

from constellation.core.errors import ConfigurationError

__all__ = ["check_name", "check_names"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")


def check_name(name: Any) -> str:
    """``name`` if it is a valid secret name, else a ConfigurationError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(f"a secret name is 1-128 letters, digits, '_', '.' or '-' "
                                 f"starting with a letter or '_', got {name!r}",
                                 details={"field": "secret"})
    return name


def check_names(names: Any, where: str) -> tuple[str, ...]:
    """``names`` (a tuple, list or set of secret names) as a tuple, in order.

    Args:
        names: what was declared.
        where: what declared them, for messages (``module Charge``).

    Raises:
        ConfigurationError: not a collection of names (a bare string included: it would
            read as one secret per character), an invalid name, or a name twice.
    """
    if isinstance(names, str | bytes) or not isinstance(names, tuple | list | set
                                                        | frozenset):
        raise ConfigurationError(
            f"{where}: secrets must be a tuple of secret names, e.g. "
            f"secrets=('payments_key',), got {type(names).__name__} {names!r}"[:300],
            details={"field": "secrets"})
    out: list[str] = []
    for name in names:
        try:
            check_name(name)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc.message}",
                                     details={"field": "secrets"}) from None
        if name in out:
            raise ConfigurationError(f"{where}: secret {name!r} is declared twice",
                                     details={"field": "secrets", "secret": name})
        out.append(name)
    return tuple(sorted(out)) if isinstance(names, set | frozenset) else tuple(out)
