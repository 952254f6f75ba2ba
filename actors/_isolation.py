"""Process isolation: ``@module(..., isolation="process")`` calls run in a child process
of their own, in a new session (its own process group), and the whole group is killed
(SIGKILL) when the call is cancelled or times out -- processes the module started
too. When the call returns, whatever the module left running in its group is killed as
well: a call's processes do not outlive it.

On a process pool or a dask cluster the child is started by the worker running the
call (see ``constellation.actors._remote``), so it runs on the executor's machine.

The child is a fresh interpreter (``python -m constellation.actors._isolated_child``),
never a fork of the engine's multi-threaded process, and it does not re-run the embedding program's
``__main__``. The function travels by reference (its module and qualified name) with the
pickled arguments on the child's stdin: an isolated module must be importable, i.e.
defined at the top level of a module other than ``__main__``. The child imports that
module with a cheap stand-in for ``@module`` (``constellation._child_module``), so it
does not build module definitions the parent has already checked. Its
result comes back pickled on stdout; whatever the module prints goes to stderr.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from constellation.actors._context import kill_process

if TYPE_CHECKING:
    from constellation.core.modules import ModuleDefinition

__all__ = ["IsolatedCallError", "run_isolated"]


class IsolatedCallError(Exception):
    """The child process ended without a result (killed, crashed, or unpicklable data)."""


def run_isolated(mdef: ModuleDefinition, kwargs: dict[str, Any], attempt: Any) -> Any:
    """Run ``mdef(**kwargs)`` in a new process and return its result (blocks).

    ``attempt`` is the call's Attempt (or a stand-in with ``process`` and
    ``abandoned``): the process is stored on it, so that abandoning it kills the group.

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
        payload = pickle.dumps((func.__module__, func.__qualname__, mdef.name, kwargs))
    except Exception as exc:
        raise IsolatedCallError(f"the arguments of {mdef.name} cannot be sent to another "
                                f"process: {exc}") from exc
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    process = subprocess.Popen(
        [sys.executable, "-m", "constellation.actors._isolated_child"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    attempt.process = process
    if attempt.abandoned:  # abandoned while starting: abandon() may have missed it
        kill_process(process)
    try:
        out, err = process.communicate(payload)
    finally:
        kill_process(process, group_only=True)  # what the module left running
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
