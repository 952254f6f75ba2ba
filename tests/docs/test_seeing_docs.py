"""The Python snippets of docs/seeing-what-runs.md run as written, in order."""

from __future__ import annotations

import logging
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "seeing-what-runs.md"


def test_the_snippets_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2
    namespace: dict[str, object] = {}
    lg = logging.getLogger("constellation")
    handlers, level = list(lg.handlers), lg.level
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
        engine = namespace["engine"]
        engine.run(namespace["pipeline"], {"numbers": [1], "threshold": 4})  # type: ignore[attr-defined]
    finally:
        for h in lg.handlers:
            if h not in handlers:
                lg.removeHandler(h)
        lg.setLevel(level)
        namespace["engine"].shutdown()  # type: ignore[attr-defined]


def test_the_logger_table_names_what_the_engine_logs() -> None:
    text = DOC.read_text()
    for name in ("constellation.execution", "constellation.module",
                 "constellation.breaker"):
        assert f"`{name}`" in text
    source = (Path(__file__).resolve().parents[2] / "actors" / "_log.py").read_text()
    for name in re.findall(r'getLogger\("([^"]+)"\)', source):
        assert f"`{name}`" in text
