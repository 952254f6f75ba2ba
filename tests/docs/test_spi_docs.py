"""The self-contained snippets of docs/spi/README.md run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "spi" / "README.md"


def test_spi_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    # The snippet constructing Redis/PostgreSQL backends needs their servers and an
    # "app" database; those backends are tested in tests/spi against real servers.
    runnable = [b for b in blocks if "PostgresExecutionStorage(" not in b]
    assert len(runnable) == 4
    monkeypatch.chdir(tmp_path)  # the SQLite example writes executions.sqlite here
    namespace: dict[str, object] = {}
    try:
        for block in runnable:
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        from constellation.spi import unregister_backend

        unregister_backend("cache", "tiny")
        storage = namespace.get("storage")
        if storage is not None:
            storage.close()  # type: ignore[attr-defined]
    assert os.path.exists(tmp_path / "executions.sqlite")
