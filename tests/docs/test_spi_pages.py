"""The Python examples of docs/spi/<page>.md run as written, against the real services
(Redis, PostgreSQL) and, for tracing, a real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import http.server
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from tests.spi.services import POSTGRES_DSN, REDIS_URL, postgres_dsn, redis_client

DOCS = Path(__file__).resolve().parents[2] / "docs" / "spi"
PAGES = ["metrics", "tracing", "listeners", "storage", "cache", "retry", "pipelines",
         "secrets"]


def examples(page: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / f"{page}.md").read_text(), re.S)
    # The first block of each page is the protocol's signature, not an example.
    return [b for b in blocks if "(Protocol):" not in b]


def run_page(page: str) -> dict[str, Any]:
    mod = types.ModuleType(f"spi_docs_{page}")
    sys.modules[mod.__name__] = mod
    try:
        for i, block in enumerate(examples(page), 1):
            try:
                exec(compile(block, f"{page}.md example {i}", "exec"), mod.__dict__)
            except Exception as exc:
                raise AssertionError(f"{page}.md example {i} failed: {exc!r}\n{block}"
                                     ) from exc
    finally:
        del sys.modules[mod.__name__]
    return mod.__dict__


@pytest.fixture(autouse=True)
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("page", PAGES)
def test_page_has_examples_and_links_from_the_overview(page: str) -> None:
    assert examples(page), f"{page}.md has no runnable example"
    assert f"({page}.md)" in (DOCS / "README.md").read_text()


def test_metrics_page() -> None:
    ns = run_page("metrics")
    assert ns["completed"][0].value == 3.0


def test_listeners_page() -> None:
    ns = run_page("listeners")
    assert ns["outbox"].pending() == 0
    assert Path("audit.jsonl").read_text().count('"completed"') == 2


def test_storage_page(monkeypatch: pytest.MonkeyPatch) -> None:
    postgres_dsn()  # skips locally (fails under CI) without PostgreSQL
    monkeypatch.setenv("DATABASE_URL", POSTGRES_DSN)
    ns = run_page("storage")
    assert ns["resumed"].outputs == {"j": "left-right"}


def test_pipelines_page(monkeypatch: pytest.MonkeyPatch) -> None:
    postgres_dsn()  # skips locally (fails under CI) without PostgreSQL
    monkeypatch.setenv("DATABASE_URL", POSTGRES_DSN)
    ns = run_page("pipelines")
    assert ns["outputs"].count("hi") == 2
    assert ns["promoted"] == 2
    assert ns["status"].candidate.runs == 2


def test_cache_page(monkeypatch: pytest.MonkeyPatch) -> None:
    redis_client().close()
    monkeypatch.setenv("CONSTELLATION_REDIS_URL", REDIS_URL)
    ns = run_page("cache")
    assert ns["redis_cache"].stats().hits == 1


def test_retry_page() -> None:
    ns = run_page("retry")
    assert ns["policy"].should_retry(RuntimeError(), 4) is None


def test_secrets_page() -> None:
    ns = run_page("secrets")
    assert "refused" in ns["failed"].errors[0].message
    assert "sk-live" not in ns["failed"].errors[0].message
    assert ns["charge_remote"].secrets == ("payments_key",)


def test_tracing_page_exports_over_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http",
                        reason="the OTLP exporter is in the test extra")
    received: list[tuple[str, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                       f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
    try:
        run_page("tracing")
    finally:
        server.shutdown()
        server.server_close()
    assert received, "no spans were exported"
    assert all(path == "/v1/traces" for path, _ in received)
    body = b"".join(b for _, b in received)
    for name in (b"execute(pipeline)", b"module(Uppercase)", b"my-pipelines"):
        assert name in body
