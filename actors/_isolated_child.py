"""The child side of process isolation (see ``constellation.actors._isolation``): read a
pickled ``(python module, qualified name, module name, arguments)`` from stdin, look the
function up and call it, write ``(ok, value or error)`` pickled to stdout. Output the
module prints goes to stderr.

While the function's module is imported (and the arguments unpickled, which may import
more), ``constellation.module`` is the cheap decorator of ``constellation._child_module``,
so that start-up does not build module definitions the parent already validated.
"""

from __future__ import annotations

import os
import pickle
import sys

import constellation


def _lookup(module_name: str, qualname: str, name: str) -> object:
    from constellation._child_module import find_definition

    obj = find_definition(module_name, qualname, name)
    func = getattr(obj, "func", obj)  # a ChildModule, or a full ModuleDefinition
    if not callable(func):
        raise LookupError(f"module {name}: {module_name}.{qualname} is not callable")
    return func


def main() -> int:
    """Run one call; the exit code is 0 whenever an answer was written, 3 when the
    function could not be found or its arguments not loaded (the reason on stderr)."""
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the module's prints go to stderr, not into the result
    constellation._isolated_child = True
    try:
        module_name, qualname, name, kwargs = pickle.load(sys.stdin.buffer)
        func = _lookup(module_name, qualname, name)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    finally:
        constellation._isolated_child = False
    try:
        answer: tuple[bool, object] = (True, func(**kwargs))  # type: ignore[operator]
    except BaseException as exc:  # SystemExit too: the parent reports it as the failure
        answer = (False, exc)
    try:
        data = pickle.dumps(answer)
    except BaseException as exc:  # a value (or exception) that does not pickle
        data = pickle.dumps((False, RuntimeError(f"the result could not be pickled: {exc!r}")))
    result.write(data)
    result.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
