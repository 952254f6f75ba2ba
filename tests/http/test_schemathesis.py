"""schemathesis against the served OpenAPI spec: no 5xx, no response that violates the
schema, every status and content type documented. Bounded: a few dozen examples per
operation.

Not run: ``positive_data_acceptance`` -- a schema-valid body can still be a pipeline
that does not compile (the schema cannot express the language), which is a correct 400.
Not called: ``GET /executions/events`` -- a Server-Sent Events stream has no end, so a
client that reads the whole response never returns; tests/http/test_watch.py tests it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import checks  # noqa: E402

if TYPE_CHECKING:
    from tests.http.conftest import Server


def test_every_operation_conforms_to_the_served_spec(server: Server) -> None:
    server.client.post("/compile", json={"source": "in x: Int\ny = Double(x)\nout y",
                                         "name": "doubler"})
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/executions/events":
            continue  # an endless stream (see the module docstring)

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case: Any) -> None:
            case.call_and_validate(checks=[
                checks.not_a_server_error, checks.status_code_conformance,
                checks.content_type_conformance, checks.response_schema_conformance,
                checks.response_headers_conformance, checks.negative_data_rejection])

        check()
        checked.append(operation.label)
    assert len(checked) >= 15, checked
