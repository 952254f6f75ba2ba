"""The HTTP daemon (``constellation serve``): FastAPI + uvicorn, the ``http`` extra.

``create_app(engine, settings)`` builds the application on a running engine;
``serve(settings)`` runs the daemon (engine, storage, pipelines, signals) until SIGTERM.
"""

from __future__ import annotations

from typing import Any

from constellation.core.errors import ConfigurationError

__all__ = ["ServerSettings", "create_app", "serve"]

INSTALL_HINT = ("the HTTP server needs the 'http' extra: "
                "pip install 'constellation-engine[http]'")


def _require() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(f"{INSTALL_HINT} ({exc.name} is missing)",
                                 details={"extra": "http"}) from None


def __getattr__(name: str) -> Any:
    if name == "ServerSettings":
        from constellation.http.settings import ServerSettings

        return ServerSettings
    if name == "create_app":
        _require()
        from constellation.http.app import create_app

        return create_app
    if name == "serve":
        _require()
        from constellation.http.server import serve

        return serve
    raise AttributeError(f"module 'constellation.http' has no attribute {name!r}")
