"""Getting module code onto dask workers: code that is not importable there fails with
the engine's own error (naming the module and what to do); ShipModules installs it;
modules defined in ``__main__`` travel by value."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from constellation import Constellation, ExecutionStatus, PipelineBuilder
from constellation.core.errors import ConfigurationError
from constellation.executors import ShipModules
from tests.distributed.conftest import ROOT

if TYPE_CHECKING:
    from pathlib import Path

    from tests.distributed.conftest import Cluster


def test_code_missing_on_the_workers_is_named_and_shipmodules_installs_it(
        dask_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"shipped_{uuid.uuid4().hex[:8]}"
    source = tmp_path / f"{name}.py"
    source.write_text(textwrap.dedent('''
        from constellation import module

        @module("Shipped.Triple")
        def triple(x: int) -> int:
            return 3 * x
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    shipped = importlib.import_module(name)
    b = PipelineBuilder("ship")
    b.output("out", b.call("Shipped.Triple", x=5))
    with Constellation([shipped.triple], executor=dask_client.get_executor()) as e:
        missing = e.run(b, {}, timeout=60)
        assert missing.status is ExecutionStatus.FAILED
        error = missing.errors[0]
        assert error.code == "E312", error
        assert "Shipped.Triple" in error.message
        assert "could not be loaded" in error.message
        assert "ShipModules" in error.message
        assert "upload_file" in error.message
        dask_client.register_plugin(ShipModules([source]))
        shipped_result = e.run(b, {}, timeout=60)
    assert shipped_result.ok, shipped_result.errors
    assert shipped_result.outputs == {"out": 15}


def test_shipmodules_reads_files_packages_and_modules(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "sub.py").write_text("Y = 2\n")
    (tmp_path / "single.py").write_text("Z = 3\n")
    plugin = ShipModules([tmp_path / "pkg", tmp_path / "single.py"])
    assert sorted(plugin.files) == ["pkg/__init__.py", "pkg/sub.py", "single.py"]
    assert plugin.modules == ["pkg", "single"]
    target = tmp_path / "worker"
    target.mkdir()

    class FakeWorker:
        local_directory = str(target)

    before = list(sys.path)
    try:
        plugin.setup(FakeWorker())
        assert (target / "constellation-modules" / "pkg" / "sub.py").read_text() == "Y = 2\n"
        assert sys.path[0] == str(target / "constellation-modules")
    finally:
        sys.path[:] = before
    with pytest.raises(ConfigurationError, match=r"not a \.py file"):
        ShipModules([tmp_path / "nothing.txt"])
    with pytest.raises(ConfigurationError, match="submodule"):
        ShipModules([importlib.import_module("tests.distributed.modules")])


MAIN_SCRIPT = '''
import json, sys
from constellation import Constellation, PipelineBuilder, module

@module("Main.Add")
def add(x: int, y: int) -> int:
    return x + y

if __name__ == "__main__":
    executor = sys.argv[1]
    if executor.startswith("tcp://"):
        import distributed
        client = distributed.Client(executor, timeout=20)
        executor = client.get_executor()
    b = PipelineBuilder("main")
    b.output("out", b.call("Main.Add", x=2, y=3))
    with Constellation([add], executor=executor) as e:
        r = e.run(b, {}, timeout=60)
    print(json.dumps({"status": r.status.name, "outputs": dict(r.outputs),
                      "errors": [x.message for x in r.errors]}))
'''


@pytest.mark.parametrize("where", ["process", "dask"])
def test_a_module_defined_in_main_runs(where: str, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    script = tmp_path / "main_script.py"
    script.write_text(MAIN_SCRIPT)
    executor = "process:1"
    if where == "dask":
        cluster: Cluster = request.getfixturevalue("dask_cluster")
        executor = cluster.address
    out = subprocess.run([sys.executable, str(script), executor], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer == {"status": "COMPLETED", "outputs": {"out": 5}, "errors": []}, answer
