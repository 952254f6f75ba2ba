"""The engine's story in log records: what a person wants to read when something happens.

Three loggers (the library never configures logging: attach your own handlers):

- ``constellation.execution`` -- an execution starting and ending (DEBUG when it
  completed; WARNING when it was cancelled, timed out or suspended; ERROR when it
  failed) and a submission rejected because the queue is full (WARNING);
- ``constellation.module`` -- a call retried (WARNING, with the attempt and the delay),
  an attempt timed out (WARNING), a fallback used (WARNING), a call that failed for
  good (ERROR), a zero value used by ``on_error: log`` (WARNING);
- ``constellation.breaker`` -- a circuit breaker opening and closing (WARNING) and
  letting a probe through (INFO).

Every record carries the fields ``execution_id``, ``pipeline``, ``node`` and
``module_name`` (``None`` where one does not apply: a breaker is shared by executions),
plus ``attempt`` and ``delay`` where they mean something, for structured handlers (a
JSON formatter reads them from the record). The module's name is ``module_name``, not
``module``: a :class:`logging.LogRecord` already has a ``module`` attribute (the Python
module that logged) and refuses ``extra`` keys that would overwrite it.

Cost: each site first asks ``logger.isEnabledFor(level)`` (cached by the logging
module), so with logging off a record is never built; a successful execution passes two
such checks (start, end) and a successful call none. Handlers run on the engine's
threads, as with any library: give slow ones a ``logging.handlers.QueueHandler``. A
handler or filter that raises is ignored -- logging never fails an execution.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

__all__ = ["BREAKER", "EXECUTION", "MODULE", "log"]

EXECUTION = logging.getLogger("constellation.execution")
MODULE = logging.getLogger("constellation.module")
BREAKER = logging.getLogger("constellation.breaker")


def log(logger: logging.Logger, level: int, message: str, *args: Any,
        execution_id: str | None = None, pipeline: str | None = None,
        node: str | None = None, module_name: str | None = None,
        **fields: Any) -> None:
    """Log ``message % args`` with the structured fields, if ``level`` is enabled."""
    if not logger.isEnabledFor(level):
        return
    extra = {"execution_id": execution_id, "pipeline": pipeline, "node": node,
             "module_name": module_name, **fields}
    with contextlib.suppress(Exception):  # a user's filter or handler raised: logging
        logger.log(level, message, *args, extra=extra)  # never breaks the engine
