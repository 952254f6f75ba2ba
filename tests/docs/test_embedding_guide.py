"""Every Python snippet of docs/embedding-guide.md runs, in order, in one namespace."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "embedding-guide.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_guide_has_snippets() -> None:
    assert len(python_blocks(GUIDE.read_text())) >= 8


def test_every_snippet_runs() -> None:
    # A real module, as a reader's script would be (dataclasses look themselves up in it).
    mod = types.ModuleType("embedding_guide")
    sys.modules[mod.__name__] = mod
    namespace = mod.__dict__
    engines = []
    try:
        for i, block in enumerate(python_blocks(GUIDE.read_text()), 1):
            try:
                exec(compile(block, f"{GUIDE.name} snippet {i}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"snippet {i} failed: {exc!r}\n{block}") from exc
            if "engine" in namespace:
                engines.append(namespace["engine"])
    finally:
        for e in engines:
            e.shutdown(drain_timeout=1)  # type: ignore[attr-defined]
        del sys.modules[mod.__name__]
