"""Stored pipelines in a real ``constellation serve`` process: versions, aliases and the
canary setting survive a restart on the same storage file; --pipelines-dir adds versions
only for changed files; --watch reloads a changed file and survives a corrupt one."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from tests.http.daemon import Daemon

if TYPE_CHECKING:
    from pathlib import Path

ONE = "in t: String\ny = SlowEcho(t, 0.0)\nout y"
TWO = "in t: String\ny = SlowEcho(t, 0.0)\nz = Uppercase(y)\nout z"


def post(daemon: Daemon, path: str, body: Any = None) -> dict[str, Any]:
    r = httpx.post(f"{daemon.url}{path}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def get(daemon: Daemon, path: str) -> Any:
    return httpx.get(f"{daemon.url}{path}", timeout=30).json()


def until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def test_versions_aliases_and_the_canary_survive_a_restart(tmp_path: Path) -> None:
    first = Daemon(tmp_path)
    try:
        assert post(first, "/compile", {"source": ONE, "name": "echo"})["version"] == 1
        assert post(first, "/compile", {"source": TWO, "name": "echo"})["version"] == 2
        assert post(first, "/pipelines/echo/rollback")["version"] == 1
        h1 = get(first, "/pipelines/echo/versions")["versions"][0]["structural_hash"]
        r = httpx.put(f"{first.url}/pipelines/stable/alias", json={"structural_hash": h1})
        assert r.status_code == 200, r.text
        canary = post(first, "/pipelines/echo/canary", {"version": 2, "weight": 0.5})
        assert canary["candidate"]["version"] == 2
        before = (get(first, "/pipelines/echo/versions"), get(first, "/aliases"))
    finally:
        first.stop()
    second = Daemon(tmp_path)
    try:
        assert (get(second, "/pipelines/echo/versions"), get(second, "/aliases")) == before
        status = get(second, "/pipelines/echo/canary")
        assert (status["weight"], status["candidate"]["version"],
                status["current"]["version"]) == (0.5, 2, 1)
        assert status["candidate"]["runs"] == 0  # counts are per daemon, in memory
        outs = [post(second, "/execute", {"ref": "echo", "inputs": {"t": "hi"}})["outputs"]
                for _ in range(4)]
        assert outs.count({"z": "HI"}) == 2
        assert outs.count({"y": "hi"}) == 2
        assert post(second, "/execute", {"ref": "stable", "inputs": {"t": "a"}})[
            "outputs"] == {"y": "a"}
        listed = get(second, "/pipelines")["pipelines"]
        assert [(p["name"], p["version"]) for p in listed] == [("echo", 1)]
        assert post(second, "/pipelines/echo/canary/promote")["version"] == 2
        # A compile of a known source adds no version after the restart either.
        assert post(second, "/compile", {"source": ONE, "name": "echo"})["version"] == 1
    finally:
        second.stop()
    third = Daemon(tmp_path)
    try:
        assert get(third, "/pipelines/echo/versions")["current"] == 2
        assert get(third, "/pipelines/echo/canary")["error"]["code"] == "E706"
    finally:
        third.stop()


def test_pipelines_dir_at_start_adds_versions_for_changed_files(tmp_path: Path) -> None:
    pipes = tmp_path / "pipes"
    pipes.mkdir()
    (pipes / "echo.cst").write_text(ONE)
    first = Daemon(tmp_path, "--pipelines-dir", str(pipes))
    try:
        assert get(first, "/pipelines/echo/versions")["current"] == 1
    finally:
        first.stop()
    again = Daemon(tmp_path, "--pipelines-dir", str(pipes))  # unchanged: no version
    try:
        assert len(get(again, "/pipelines/echo/versions")["versions"]) == 1
    finally:
        again.stop()
    (pipes / "echo.cst").write_text(TWO)
    changed = Daemon(tmp_path, "--pipelines-dir", str(pipes))
    try:
        versions = get(changed, "/pipelines/echo/versions")
        assert (len(versions["versions"]), versions["current"]) == (2, 2)
        post(changed, "/pipelines/echo/rollback")
    finally:
        changed.stop()
    kept = Daemon(tmp_path, "--pipelines-dir", str(pipes))  # the rollback stays
    try:
        assert get(kept, "/pipelines/echo/versions")["current"] == 1
    finally:
        kept.stop()


def test_watch_reloads_changed_files_and_keeps_serving_through_a_bad_one(
        tmp_path: Path) -> None:
    pipes = tmp_path / "pipes"
    pipes.mkdir()
    (pipes / "echo.cst").write_text(ONE)
    daemon = Daemon(tmp_path, "--pipelines-dir", str(pipes), "--watch",
                    "--watch-interval", "0.2")
    try:
        run = {"ref": "echo", "inputs": {"t": "w"}}
        assert post(daemon, "/execute", run)["outputs"] == {"y": "w"}
        (pipes / "echo.cst").write_text(TWO)
        until(lambda: get(daemon, "/pipelines/echo/versions")["current"] == 2)
        assert post(daemon, "/execute", run)["outputs"] == {"z": "W"}
        (pipes / "echo.cst").write_text("in t: String\nz = Uppercase(t\nout z")
        (pipes / "new.cst").write_text(ONE)
        until(lambda: "error" not in get(daemon, "/pipelines/new/versions"))
        assert post(daemon, "/execute", run)["outputs"] == {"z": "W"}  # still version 2
        assert get(daemon, "/pipelines/echo/versions")["current"] == 2
        r = httpx.post(f"{daemon.url}/pipelines/echo/reload", timeout=30)
        assert r.status_code == 400
        assert "echo.cst:" in r.json()["error"]["message"]
        (pipes / "echo.cst").write_text(ONE)  # changed back: version 1 is served again
        until(lambda: get(daemon, "/pipelines/echo/versions")["current"] == 1)
    finally:
        out = daemon.stop()
    assert "pipeline file not loaded" in out
    assert "echo.cst:" in out
    assert daemon.proc.returncode == 0
