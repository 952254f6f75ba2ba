"""Which process owns a running execution record, and whether that process is gone.

A RUNNING record carries its owner: ``{"host", "boot", "pid", "start", "token"}`` --
the host name, the kernel's boot id (Linux), the process id, the process's start time
(clock ticks since boot, Linux) and a random token drawn once per process. An engine
opening a storage judges each RUNNING record of another process:

- same host and boot, and no process with that pid, or one with another start time (the
  pid was reused), or our own pid with another token (a restarted container's pid 1):
  **gone**;
- same host, another boot id: **gone** (the machine restarted);
- another host: **unknown** -- a process elsewhere cannot be checked from here, so its
  records are left RUNNING (see docs/lifecycle.md).
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["OwnerState", "owner_state", "process_owner"]

OwnerState = Literal["alive", "gone", "unknown"]

# pid -> this process's owner record: a fork gets a new pid, so a new token. Process
# identity is process-wide by nature (every engine of the process shares it), so this
# one cache is module state.
_owners: dict[int, dict[str, Any]] = {}


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _boot_id() -> str | None:
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def _stat(pid: int) -> list[str] | None:
    """Fields 3... of /proc/<pid>/stat (Linux), or None."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return text[text.rfind(")") + 2:].split()


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    fields = _stat(pid)
    try:
        return int(fields[19]) if fields else None  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def process_owner() -> Mapping[str, Any]:
    """This process's owner record (the same dict for every call in one process)."""
    pid = os.getpid()
    owner = _owners.get(pid)
    if owner is None:
        owner = {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid,
                 "start": _start_time(pid), "token": secrets.token_hex(8)}
        owner = _owners.setdefault(pid, owner)
    return owner


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return False
    return True


def owner_state(owner: Mapping[str, Any] | None) -> OwnerState:
    """Whether the process that wrote a running record is alive, gone or cannot be judged.

    Args:
        owner: ``ExecutionRecord.owner``.
    """
    if not owner:
        return "unknown"  # written by a version that recorded no owner
    me = process_owner()
    if owner.get("host") != me["host"]:
        return "unknown"
    if owner.get("boot") and me["boot"] and owner.get("boot") != me["boot"]:
        return "gone"
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return "unknown"
    if pid == me["pid"]:
        return "alive" if owner.get("token") == me["token"] else "gone"
    if not _pid_exists(pid):
        return "gone"
    fields = _stat(pid)
    if fields:
        if fields[0] in ("Z", "X"):
            return "gone"  # killed, not reaped yet by its parent
        started = owner.get("start")
        if started is not None and fields[19:20] != [str(started)]:
            return "gone"  # the pid belongs to a newer process
    return "alive"
