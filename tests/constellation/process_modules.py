"""Modules defined at module level, so that other processes can import them."""

from __future__ import annotations

import os
from typing import Any

from constellation import module


@module("Pid")
def pid(x: int) -> int:
    return os.getpid() + 0 * x


@module("Square")
def square(x: int) -> int:
    return x * x


@module("Double")
def double(x: int) -> int:
    return 2 * x


@module("Die")
def die(x: int) -> int:
    """Kills the worker process running it (a broken process pool)."""
    os._exit(13)


# --- secrets (tests/constellation/test_secrets_in_ctx.py, tests/distributed) -----------


class KeyRefused(Exception):  # noqa: N818 - named as the module's users would
    """Its message is built from bytes, which no worker-side scrubbing rewrites: only
    the engine's own redaction can take the key out of it."""

    def __init__(self, key: str = "") -> None:
        super().__init__("refused")
        self.raw = key.encode()

    def __str__(self) -> str:
        return f"refused with key {self.raw.decode()}"


@module("Remote.Charge", secrets=("payments_key",))
def remote_charge(amount: int, ran: str, ctx: Any) -> str:
    """Charges ``amount`` with the key; a negative amount fails with the key in the
    message (a plain PermissionError, or KeyRefused for -2). Marks ``ran`` first."""
    if ran:
        with open(ran, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    key = ctx.secret("payments_key")
    if amount == -2:
        raise KeyRefused(key)
    if amount < 0:
        raise PermissionError(f"refused with key {key}: negative amount")
    return f"charged {amount} with a key of {len(key)} characters in process {os.getpid()}"


@module("Remote.Undeclared", secrets=("payments_key",))
def remote_undeclared(x: int, ctx: Any) -> int:
    """Asks for a secret it does not declare."""
    ctx.secret("other_key")
    return x


@module("Remote.Absent", secrets=("payments_key", "absent_key"))
def remote_absent(x: int, ran: str, ctx: Any) -> int:
    """Declares a secret the backend does not have; marks ``ran`` if it ever runs."""
    with open(ran, "a", encoding="utf-8") as f:
        f.write("ran\n")
    return x


@module("Remote.Slow", secrets=("slow_key",))
def remote_slow(x: int, ran: str, ctx: Any) -> int:
    """Declares a secret that a test's backend hangs on; marks ``ran`` if it runs."""
    with open(ran, "a", encoding="utf-8") as f:
        f.write("ran\n")
    return x
