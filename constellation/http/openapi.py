"""Print the HTTP API's OpenAPI spec: ``python -m constellation.http.openapi``
(docs/api/openapi.json is this output; a test checks they agree)."""

from __future__ import annotations

import json
import sys


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
