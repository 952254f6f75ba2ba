"""Print the HTTP API's OpenAPI spec: ``python -m constellation.http.openapi``
(docs/api/openapi.json is this output; a test checks they agree)."""

from __future__ import annotations

import json
import sys
from typing import Any

SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "an API key: `Authorization: Bearer <key>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "an API key: `X-API-Key: <key>`"},
}


def declare_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the API-key schemes in ``schema``, required by every operation that
    needs a key when keys are configured (all but health, metrics and the spec)."""
    from constellation.http.middleware import EXEMPT, PUBLIC

    schema.setdefault("components", {})["securitySchemes"] = SCHEMES
    for path, ops in schema.get("paths", {}).items():
        if path in EXEMPT or path in PUBLIC:
            continue
        for op in ops.values():
            if isinstance(op, dict):
                op["security"] = [{"bearer": []}, {"apiKey": []}]
    return schema


def main() -> int:
    """Write the spec of a default server to stdout."""
    from constellation.engine import Constellation
    from constellation.events import EventHub
    from constellation.http.app import create_app
    from constellation.http.settings import ServerSettings
    from constellation.spi import Backends

    hub = EventHub()
    with Constellation(backends=Backends(listener=hub)) as engine:
        app = create_app(engine, ServerSettings(storage="memory"), events=hub)
        json.dump(app.openapi(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
