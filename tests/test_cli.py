"""The ``constellation`` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

from constellation.cli import main

if TYPE_CHECKING:
    from pathlib import Path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "constellation.cli", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "p.cst"
    path.write_text(source)
    return path


def test_modules_lists_signatures_and_functions() -> None:
    proc = run_cli("modules")
    assert proc.returncode == 0
    assert "Uppercase(text: String) -> String" in proc.stdout
    assert "stdlib.math.add(a: Int, b: Int) -> Int" in proc.stdout
    assert "stdlib.collection.filter(" in proc.stdout


def test_modules_as_json() -> None:
    data = json.loads(run_cli("modules", "--json").stdout)
    by_name = {m["name"]: m for m in data["modules"]}
    assert by_name["WordCount"]["inputs"] == {"text": "String"}
    assert by_name["WordCount"]["output"] == "Int"
    assert {f["name"] for f in data["functions"]} >= {"stdlib.collection.map"}


def test_run_with_inputs_on_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "in text: String\nin n: Int\nin xs: List<Int>\n"
                           "u = Uppercase(text)\ns = SumList(xs)\nout u\nout s\nout n\n")
    proc = run_cli("run", str(path), "--input", "text=hi there", "--input", "n=3",
                   "--input", "xs=[1, 2]")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"status": "completed",
                                       "outputs": {"u": "HI THERE", "s": 3, "n": 3}}


def test_run_failure_exits_1_with_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, "in a: Int\nin b: Int\nq = a / b\nout q\n")
    proc = run_cli("run", str(path), "--input", "a=1", "--input", "b=0")
    assert proc.returncode == 1
    body = json.loads(proc.stdout)
    assert body["status"] == "failed"
    assert body["errors"][0]["code"] == "E300"


def test_run_compile_error_exits_2_with_located_diagnostics(tmp_path: Path) -> None:
    path = write(tmp_path, "in a: Int\nb = Uppercse(a)\nout b\n")
    proc = run_cli("run", str(path), "--input", "a=1")
    assert proc.returncode == 2
    assert f"{path}:2:5: E110 unknown function 'Uppercse'" in proc.stderr
    assert "    b = Uppercse(a)\n        ^" in proc.stderr


def test_run_usage_errors_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "in a: Int\nout a\n")
    assert run_cli("run", str(tmp_path / "missing.cst")).returncode == 2
    assert run_cli("run", str(path), "--input", "a").returncode == 2
    assert run_cli("run", str(path), "--input", "b=1").returncode == 2
    assert run_cli("run", str(path), "--input", "a=notjson").returncode == 2
    bad = run_cli("run", str(path), "--input", "a=\"text\"")
    assert bad.returncode == 2
    assert "expected Int" in bad.stderr


def test_missing_inputs_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "in a: Int\nout a\n")
    proc = run_cli("run", str(path))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["missing_inputs"] == {"a": "Int"}


def test_check_prints_diagnostics(tmp_path: Path) -> None:
    good = write(tmp_path, "in t: String\nu = Trim(t) with retry: 11\nout u\n")
    proc = run_cli("check", str(good))
    assert proc.returncode == 0
    assert "W204 (warning)" in proc.stdout and "ok (1 module call" in proc.stdout  # noqa: PT018
    bad = tmp_path / "bad.cst"
    bad.write_text("in t: String\nu = Trim(q)\nout v\n")
    proc = run_cli("check", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:2:10: E130 undefined name 'q'" in proc.stdout
    assert f"{bad}:3:1: E130 undefined name 'v'" in proc.stdout


def test_version_and_usage_errors() -> None:
    assert main(["version"]) == 0
    assert main([]) == 2
    assert run_cli("bogus").returncode == 2


def test_call_options_apply_on_the_command_line(tmp_path: Path) -> None:
    src = tmp_path / "opt.cst"
    src.write_text("in a: Int\nin b: Int\nq = divide(a, b) with retry: 1, fallback: -1\n"
                   "out q\n")
    failed_then_fallback = run_cli("run", str(src), "--input", "a=4", "--input", "b=0")
    assert failed_then_fallback.returncode == 0, failed_then_fallback.stderr
    assert json.loads(failed_then_fallback.stdout)["outputs"] == {"q": -1}
    ok = run_cli("run", str(src), "--input", "a=4", "--input", "b=2")
    assert json.loads(ok.stdout)["outputs"] == {"q": 2}
