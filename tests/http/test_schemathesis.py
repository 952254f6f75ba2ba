"""schemathesis against the served OpenAPI spec, on a server with API keys: no 5xx, no
response that violates the schema, every status and content type documented, and every
operation that declares the API-key security scheme refusing requests without a key or
with a wrong one (``ignored_auth``). Bounded: a few dozen examples per operation.

Every check runs but ``positive_data_acceptance`` -- a schema-valid body can still be a
pipeline that does not compile, a module input of the wrong type, or a name nothing is
stored under (the schema cannot express the language or the store), which is a correct
4xx.
Not called: ``GET /executions/events`` -- a Server-Sent Events stream has no end, so a
client that reads the whole response never returns; tests/http/test_watch.py tests it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import checks  # noqa: E402

from constellation.http.auth import StaticKeys  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.http.conftest import Server

ADMIN = {"Authorization": "Bearer schemathesis-admin"}
ALL_CHECKS = [
    checks.not_a_server_error, checks.status_code_conformance,
    checks.content_type_conformance, checks.response_schema_conformance,
    checks.response_headers_conformance, checks.negative_data_rejection,
    checks.missing_required_header, checks.unsupported_method,
    checks.allow_header_conformance, checks.use_after_free,
    checks.ensure_resource_availability, checks.ignored_auth,
    checks.object_level_authorization,
]


def test_every_operation_conforms_to_the_served_spec(
        make_server: Callable[..., Server]) -> None:
    server = make_server(auth=StaticKeys({"schemathesis-admin": "admin"}))
    for source in ("in x: Int\ny = Double(x)\nout y", "in x: Int\ny = Double(x)\n"
                   "z = Double(y)\nout z"):
        r = server.client.post("/compile", json={"source": source, "name": "doubler"},
                               headers=ADMIN)
        assert r.status_code == 200, r.text
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    assert "securitySchemes" in schema.raw_schema["components"]
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/executions/events":
            continue  # an endless stream (see the module docstring)

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case: Any) -> None:
            case.call_and_validate(headers=ADMIN, checks=ALL_CHECKS)

        check()
        checked.append(operation.label)
    assert len(checked) >= 28, checked
