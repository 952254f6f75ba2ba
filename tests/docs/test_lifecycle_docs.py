"""The Python snippets of docs/lifecycle.md run as written, in order."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"


def test_lifecycle_snippets_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 3
    mod = types.ModuleType("lifecycle_doc")
    sys.modules[mod.__name__] = mod
    try:
        for i, block in enumerate(blocks, 1):
            exec(compile(block, f"lifecycle.md snippet {i}", "exec"), mod.__dict__)
    finally:
        del sys.modules[mod.__name__]
    assert str(mod.__dict__["execution"].result().status) == "ExecutionStatus.CANCELLED"


def test_docs_link_the_new_pages() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    assert (docs / "performance-tuning.md").exists()
    guide = (docs / "embedding-guide.md").read_text()
    assert "lifecycle.md" in guide
    assert "performance-tuning.md" in guide
