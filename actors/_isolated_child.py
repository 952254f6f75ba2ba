"""The child side of process isolation (see ``constellation.actors._isolation``): read a pickled
``(module definition, arguments)`` from stdin, call it, write ``(ok, value or error)``
pickled to stdout. Output the module prints goes to stderr."""

from __future__ import annotations

import os
import pickle
import sys


def main() -> int:
    """Run one call; the exit code is 0 whenever an answer was written."""
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the module's prints go to stderr, not into the result
    mdef, kwargs = pickle.load(sys.stdin.buffer)
    try:
        answer: tuple[bool, object] = (True, mdef.func(**kwargs))
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
