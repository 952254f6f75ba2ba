"""The command line with your own modules, stdin, --version, closed pipes and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from constellation.cli import main

ROOT = Path(__file__).resolve().parent.parent
CUSTOM = ROOT / "examples/user-modules/custom.cst"
CUSTOM_INPUTS = ROOT / "examples/user-modules/custom.inputs.json"
CUSTOM_MODULES = ROOT / "examples/custom_modules.py"


def cli(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "constellation", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def test_run_with_modules_from_a_file() -> None:
    proc = cli("run", str(CUSTOM), "--modules", str(CUSTOM_MODULES), "--inputs",
               str(CUSTOM_INPUTS))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"status": "completed", "outputs": {
        "best": {"supplier": "globex", "price": 9.9}}}
    # Without them: an unknown module, located, exit 2.
    proc = cli("run", str(CUSTOM), "--inputs", str(CUSTOM_INPUTS))
    assert proc.returncode == 2
    assert "FetchQuote" in proc.stderr


def test_modules_by_import_name_and_listed(tmp_path: Path) -> None:
    (tmp_path / "mymods.py").write_text(
        "from constellation import module\n\n"
        "@module('Shout', description='louder')\n"
        "def shout(text: str) -> str:\n    return text.upper() + '!'\n")
    (tmp_path / "p.cst").write_text("in t: String\ns = Shout(t)\nout s\n")
    proc = subprocess.run([sys.executable, "-m", "constellation", "run", "p.cst",
                           "--modules", "mymods", "--input", "t=hey"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=False,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outputs"] == {"s": "HEY!"}
    listed = cli("modules", "--modules", str(tmp_path / "mymods.py"))
    assert listed.returncode == 0
    assert "Shout(text: String) -> String" in listed.stdout
    assert "louder" in listed.stdout
    checked = cli("check", str(tmp_path / "p.cst"), "--modules", str(tmp_path / "mymods.py"))
    assert checked.returncode == 0, checked.stdout


@pytest.mark.parametrize(("source", "message"), [
    ("nowhere/missing.py", "no such file"),
    ("no_such_module_xyz", "cannot import it (ModuleNotFoundError"),
    ("json", "defines no @module"),
    ("ep:nothing-here", "no entry point 'nothing-here'"),
])
def test_bad_module_sources_are_usage_errors(source: str, message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(CUSTOM), "--modules", source]) == 2
    err = capsys.readouterr().err
    assert f"--modules {source}" in err
    assert message in err


def test_a_module_file_that_raises_on_import(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('broken plugin')\n")
    assert main(["check", str(CUSTOM), "--modules", str(bad)]) == 2
    assert "importing it raised RuntimeError: broken plugin" in capsys.readouterr().err


def test_source_from_stdin_and_version() -> None:
    proc = cli("run", "-", "--input", "t= hi ", stdin="in t: String\nu = Trim(t)\nout u\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outputs"] == {"u": "hi"}
    from constellation import __version__

    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"constellation {__version__}"


def test_a_closed_pipe_ends_quietly() -> None:
    proc = subprocess.run(f"{sys.executable} -m constellation modules | head -n 1",
                          shell=True, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stderr == ""  # no BrokenPipeError traceback
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m "
                           "constellation modules --json | head -c 10 >/dev/null"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.stderr == ""
    assert done.returncode in (0, 141)


def test_a_suspended_run_is_finished_with_resume(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    source = tmp_path / "two.cst"
    source.write_text("in a: String\nin b: String\nx = Trim(a)\ny = concat(x, b)\nout y\n")
    first = cli("run", str(source), "--storage", str(db), "--input", "a= left ")
    assert first.returncode == 1, first.stderr
    body = json.loads(first.stdout)
    assert body["status"] == "suspended"
    assert body["missing_inputs"] == {"b": "String"}
    eid = body["execution_id"]
    resumed = cli("resume", eid, "--storage", str(db), "--input", "b=+right")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {"execution_id": eid, "status": "completed",
                                          "outputs": {"y": "left+right"}}
    again = cli("resume", eid, "--storage", str(db), "--input", "b=x")
    assert again.returncode == 2
    assert "constellation:" in again.stderr
    unknown = cli("resume", "no-such-id", "--storage", str(db))
    assert unknown.returncode == 2
    assert "no execution no-such-id" in unknown.stderr
    missing = cli("resume", eid, "--storage", str(tmp_path / "nope.db"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
