"""The wheel installs one top-level package, ``constellation``, and works from any folder.

``actors/`` and ``spi/`` live at the repository root but ship as ``constellation.actors``
and ``constellation.spi`` (see docs/architecture.md): a user's own ``actors.py`` or
``spi/`` folder must not shadow them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pipelines" / "text-analysis.cst"
EXAMPLE_INPUTS = ROOT / "examples" / "pipelines" / "text-analysis.inputs.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build isolation fetches setuptools from the package index, as any user's build does.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(ROOT)], check=True, timeout=300, capture_output=True)
    (built,) = out.glob("constellation_engine-*.whl")
    return built


def test_the_wheel_has_one_top_level_package_constellation(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"constellation"}
    assert "constellation/actors/_node.py" in names
    assert "constellation/spi/_outbox.py" in names
    assert "constellation/actors/py.typed" in names
    assert "constellation/spi/py.typed" in names
    assert "constellation/lang/grammar.lark" in names


def test_an_installed_wheel_ignores_actors_and_spi_in_the_working_directory(
        wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    # The wheel really installed (console script included); its dependencies come from
    # this test run's environment through a .pth file, so no index is needed.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=300, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "deps.pth").write_text("\n".join(deps) + "\n")

    work = tmp_path / "work"
    work.mkdir()
    (work / "actors.py").write_text("raise SystemExit('the user actors.py was imported')\n")
    (work / "spi").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    imported = subprocess.run(
        [str(python), "-c", "import constellation, constellation.spi, constellation.actors; "
         "print(constellation.actors.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert str(venv) in imported.stdout  # the installed copy, not the repository's

    ran = subprocess.run([str(venv / "bin" / "constellation"), "run", str(EXAMPLE),
                          "--inputs", str(EXAMPLE_INPUTS)],
                         cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert '"status": "completed"' in ran.stdout


def test_the_sdist_carries_its_tests_and_runs_them(tmp_path: Path) -> None:
    """An sdist unpacked elsewhere holds the tests, docs and examples its test command
    needs, and a test module run from it imports the unpacked package."""
    import tarfile

    out = tmp_path / "sdist"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "-o", str(out), str(ROOT)],
                   check=True, timeout=300, capture_output=True)
    (built,) = out.glob("constellation_engine-*.tar.gz")
    with tarfile.open(built) as tf:
        names = tf.getnames()
        tf.extractall(tmp_path / "src", filter="data")
    (top,) = {n.split("/", 1)[0] for n in names}
    for member in ("tests/conftest.py", "tests/test_examples.py", "docs/language.md",
                   "examples/pipelines/text-analysis.cst", "LICENSE", "CHANGELOG.md",
                   "constellation/actors/_node.py", "constellation/lang/grammar.lark",
                   "constellation/http/static/dashboard.html", "pyproject.toml"):
        assert f"{top}/{member}" in names, member
    src = tmp_path / "src" / top
    proc = subprocess.run(
        [sys.executable, "-c", "import constellation, sys; print(constellation.__file__)"],
        cwd=src, capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip().startswith(str(src))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/core/test_types.py", "tests/test_error_reference.py"],
                          cwd=src, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
