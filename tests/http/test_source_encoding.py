"""Request bodies that are not UTF-8, or sources that are not text, get located errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.http.conftest import Server


def test_a_body_that_is_not_utf8_gets_e109_at_the_bad_byte(server: Server) -> None:
    body = b'{"source": "in x: Int\\nout \xff x\\n"}'
    response = server.client.post("/compile", content=body,
                                   headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "E109"
    located = error["details"]["errors"][0]
    assert (located["line"], located["column"]) == (1, body.index(b"\xff") + 1)


def test_a_source_with_a_lone_surrogate_is_refused(server: Server) -> None:
    body = b'{"source": "in x: Int\\nout \\ud800 x\\n"}'
    response = server.client.post("/compile", content=body,
                                  headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"E108", "E600"}
