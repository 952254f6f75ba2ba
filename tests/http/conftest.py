"""A real server for the HTTP tests: uvicorn on 127.0.0.1 and a free port, in a thread."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("fastapi", reason="the HTTP tests need the 'http' extra")
httpx = pytest.importorskip("httpx")

import uvicorn  # noqa: E402

from constellation import Constellation, module  # noqa: E402
from constellation.http.app import create_app  # noqa: E402
from constellation.http.settings import ServerSettings  # noqa: E402
from tests.http.daemon import free_port  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@module
def Double(x: int) -> int:
    """x times two."""
    return x * 2


@module
def Wait(seconds: float) -> float:
    """Sleeps (to hold an execution slot)."""
    time.sleep(seconds)
    return seconds


class Server:
    """A running server and a client for it."""

    def __init__(self, app: Any, engine: Constellation) -> None:
        self.engine = engine
        self.state = app.state.constellation
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off",
                                log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.state.close()
        self.engine.shutdown(drain_timeout=2)


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(settings: ServerSettings | None = None, *, auth: Any = None,
             metrics: Any = None, **engine_kwargs: Any) -> Server:
        from constellation import Backends
        from constellation.events import EventHub

        events = EventHub()  # as the daemon has one (its /executions/events)
        if "backends" not in engine_kwargs:
            engine_kwargs["backends"] = Backends(listener=events)
        else:
            events = None
        engine = Constellation([Double, Wait], **engine_kwargs)
        app = create_app(engine, settings or ServerSettings(storage="memory"), auth=auth,
                         metrics=metrics, events=events)
        server = Server(app, engine)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()
