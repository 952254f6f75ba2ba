"""Every error code the library can emit is documented in docs/error-reference.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_code_in_the_source_is_documented() -> None:
    used: set[str] = set()
    # constellation/actors and constellation/spi are links to these root folders.
    for package in ("constellation", "actors", "spi"):
        for path in (ROOT / package).rglob("*.py"):
            used |= set(re.findall(r'"([EW]\d{3})"', path.read_text()))
    documented = set(re.findall(r"\b([EW]\d{3})\b",
                                (ROOT / "docs" / "error-reference.md").read_text()))
    assert used, "no codes found"
    assert sorted(used - documented) == []
