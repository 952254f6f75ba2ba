"""Process isolation: ``@module(..., isolation="process")`` calls run in a child process
of their own, which is killed (SIGKILL) when the call is cancelled or times out.

The child is a fresh interpreter (``python -m constellation.actors._isolated_child``),
never a fork of the engine's multi-threaded process, and it does not re-run the embedding program's
``__main__``. The module definition and arguments travel pickled on the child's stdin,
the definition by reference (module and qualified name): an isolated module must be
importable, i.e. defined at the top level of a module other than ``__main__``. Its
result comes back pickled on stdout; whatever the module prints goes to stderr.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from constellation.actors._context import Attempt
    from constellation.core.modules import ModuleDefinition

__all__ = ["IsolatedCallError", "run_isolated"]


class IsolatedCallError(Exception):
    """The child process ended without a result (killed, crashed, or unpicklable data)."""


def run_isolated(mdef: ModuleDefinition, kwargs: dict[str, Any], attempt: Attempt) -> Any:
    """Run ``mdef(**kwargs)`` in a new process and return its result (blocks).

    Raises:
        IsolatedCallError: the module is not importable, or the process died or was
            killed before answering.
        Exception: whatever the module raised (re-raised here).
    """
    func = mdef.func
    if func.__module__ == "__main__" or "<locals>" in func.__qualname__:
        raise IsolatedCallError(
            f"module {mdef.name} runs in a separate process, so it must be importable: "
            f"define {func.__qualname__} at the top level of a module, not in __main__ "
            "or inside a function")
    try:
        payload = pickle.dumps((mdef, kwargs))
    except Exception as exc:
        raise IsolatedCallError(f"the arguments of {mdef.name} cannot be sent to another "
                                f"process: {exc}") from exc
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    process = subprocess.Popen(
        [sys.executable, "-m", "constellation.actors._isolated_child"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    attempt.process = process
    if attempt.abandoned:  # abandoned while starting: abandon() may have missed it
        process.kill()
    out, err = process.communicate(payload)
    if process.returncode != 0 or not out:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        why = "it was killed" if process.returncode and process.returncode < 0 \
            else f"exit code {process.returncode}"
        raise IsolatedCallError(f"the process running {mdef.name} ended without a result "
                                f"({why}){': ' + ' | '.join(tail) if tail else ''}")
    ok, value = pickle.loads(out)
    if ok:
        return value
    raise value
