"""The ``constellation`` command as installed."""

from __future__ import annotations

import json
import subprocess
import sys

from constellation.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "constellation.cli", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_modules_lists_signatures() -> None:
    proc = run_cli("modules")
    assert proc.returncode == 0
    assert "Uppercase(text: String) -> String" in proc.stdout
    assert "FilterGreaterThan(numbers: List<Int>, threshold: Int) -> List<Int>" in proc.stdout


def test_modules_as_json() -> None:
    data = json.loads(run_cli("modules", "--json").stdout)
    by_name = {m["name"]: m for m in data["modules"]}
    assert by_name["WordCount"]["inputs"] == {"text": "String"}
    assert by_name["WordCount"]["output"] == "Int"


def test_version_and_usage_errors(capsys: object) -> None:
    assert main(["version"]) == 0
    assert main([]) == 2
    assert run_cli("bogus").returncode == 2
