"""Every example runs as a user would run it and prints the outputs recorded beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_every_example_has_expected_output() -> None:
    assert EXAMPLES, "no examples found"
    for path in EXAMPLES:
        assert (ROOT / "examples" / "expected" / f"{path.stem}.json").exists(), path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_prints_its_expected_outputs(path: Path) -> None:
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    expected = json.loads((ROOT / "examples" / "expected" / f"{path.stem}.json").read_text())
    assert json.loads(proc.stdout) == expected


PIPELINES = sorted((ROOT / "examples" / "pipelines").glob("*.cst"))


def test_there_are_at_least_ten_example_pipelines() -> None:
    assert len(PIPELINES) >= 10
    for path in PIPELINES:
        for suffix in (".inputs.json", ".expected.json"):
            assert path.with_name(path.stem + suffix).exists(), path.stem + suffix


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_example_pipeline_runs_from_the_command_line(path: Path) -> None:
    inputs = path.with_name(path.stem + ".inputs.json")
    proc = subprocess.run([sys.executable, "-m", "constellation.cli", "run", str(path),
                           "--inputs", str(inputs)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    assert json.loads(proc.stdout) == expected
