"""The snippets of docs/types.md run as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "types.md"


def test_the_snippets_run() -> None:
    from constellation.core.handlers import unregister_type_handler

    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert blocks
    mod = types.ModuleType("types_doc")
    sys.modules[mod.__name__] = mod
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), mod.__dict__)
    finally:
        unregister_type_handler("Money")
        del sys.modules[mod.__name__]
