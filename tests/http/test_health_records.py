"""/health/detail shows the record writer's counters and the event delivery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constellation import Backends
from constellation.spi import InMemoryExecutionStorage

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.http.conftest import Server

SOURCE = "in x: Int\ny = Double(x)\nout y"


def test_failed_record_saves_are_visible_in_the_health_detail(
        make_server: Callable[..., Server]) -> None:
    class Broken(InMemoryExecutionStorage):
        save_deferred = None  # type: ignore[assignment]

        def save_many(self, records: Any) -> None:
            raise OSError("disk full")

    server = make_server(backends=Backends(storage=Broken()))
    server.engine._records.retries = 0
    assert server.client.post("/run", json={"source": SOURCE, "inputs": {"x": 1}}
                              ).status_code == 200
    from tests.waiting import wait_for

    def failed() -> int:
        detail = server.client.get("/health/detail").json()
        return int(detail["storage"]["records"]["failed"])

    wait_for(lambda: failed() >= 1)
    detail = server.client.get("/health/detail").json()
    assert detail["storage"]["records"]["last_error"] == "OSError: disk full"
    assert detail["events"] is None  # no listener, metrics or tracer
