"""docs/http-api.md documents every route the server serves, and the error codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_served_route_is_documented() -> None:
    spec = json.loads((DOCS / "api" / "openapi.json").read_text())
    text = (DOCS / "http-api.md").read_text()
    for path, ops in spec["paths"].items():
        # /executions/{execution_id}/cancel matches /executions/{id}/cancel or a real id.
        pattern = "".join(r"[^\s/`]+" if part.startswith("{") else re.escape(part)
                          for part in re.split(r"(\{[^}]+\})", path))
        assert re.search(rf"{pattern}(?![\w/])", text), f"{path} is not documented"
        for method in ops:
            if method != "get":  # the non-GET ones are named with their method
                assert re.search(rf"{method.upper()} `?{pattern}", text), \
                    f"{method.upper()} {path} is not documented"

def test_security_page_exists_and_is_linked() -> None:
    assert (DOCS / "security.md").exists()
    assert "security.md" in (DOCS.parent / "README.md").read_text()
