"""The isolated child's start-up: it looks the function up without building module
definitions (the cheap ``@module`` of ``constellation._child_module``), and says clearly
when it cannot find it."""

from __future__ import annotations

import pickle

import pytest

from constellation import Constellation, ModuleDefinition
from constellation.actors._isolation import IsolatedCallError, run_isolated
from constellation.core.results import ExecutionStatus
from tests.constellation.isolated_modules import LoadedInChild, SelfSignature, Vanishing


class _Attempt:
    process = None
    abandoned = False


def test_the_child_does_not_build_module_definitions() -> None:
    loaded = run_isolated(LoadedInChild, {"prefix": "constellation"}, _Attempt())
    assert "constellation._child_module" in loaded
    assert "constellation.core.modules" not in loaded
    assert "constellation.core.types" not in loaded
    # After the lookup the real decorator is back for the module's own code.
    assert loaded[-1] == "module=constellation.core.modules"


def test_the_stand_in_builds_the_real_definition_when_asked() -> None:
    with Constellation([SelfSignature]) as engine:
        from constellation import PipelineBuilder

        b = PipelineBuilder("self")
        b.output("s", b.call(SelfSignature, x=b.input("x", int)))
        result = engine.run(b, {"x": 3}, timeout=60)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.outputs["s"] == "3: SelfSignature(x: Int) -> String"


def test_a_function_the_child_cannot_find_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSTELLATION_TEST_VANISH", "1")
    with pytest.raises(IsolatedCallError, match=r"exit code 3.*cannot find "
                       r"tests\.constellation\.isolated_modules\.Vanishing"):
        run_isolated(Vanishing, {"x": 1}, _Attempt())


def test_import_time_code_sees_definitions_in_the_child() -> None:
    # The file registers its modules in an engine and filters its globals with
    # isinstance(..., ModuleDefinition) at import: the child's stand-ins must pass both
    # (they failed "is not a module" / were filtered out).
    from tests.constellation.isolated_registering import DEFINED, Defined, via_package

    assert run_isolated(Defined, {"x": 1}, _Attempt()) == f"1: {DEFINED}"
    assert DEFINED == ["PlusOne", "ViaPackage"]
    assert run_isolated(via_package, {"x": 2}, _Attempt()) == 20


def test_an_isolated_function_can_run_an_engine_over_its_siblings() -> None:
    from tests.constellation.isolated_registering import RunsAnEngine

    assert run_isolated(RunsAnEngine, {"x": 41}, _Attempt()) == 42


def test_a_stand_in_pickles_as_a_reference_to_the_real_definition() -> None:
    # A stand-in sent elsewhere from the child (a process pool of an inner engine, a
    # return value) must arrive as the definition, not as a pickled stand-in.
    import pickle

    from constellation._child_module import module as child_module
    from tests.constellation.isolated_registering import PlusOne

    stand_in = child_module(PlusOne.func)
    assert isinstance(stand_in, ModuleDefinition)
    assert pickle.loads(pickle.dumps(stand_in)) is PlusOne


def test_a_function_whose_name_was_rebound_is_not_silently_replaced() -> None:
    # FirstF's function is no longer reachable as `f` (a second `def f` rebound it):
    # the lookup checks the definition's name and finds FirstF's own.
    from tests.constellation.isolated_redefined import FirstF, f

    assert run_isolated(FirstF, {"x": 0}, _Attempt()) == 1
    assert run_isolated(f, {"x": 0}, _Attempt()) == 2
    # The same for a definition pickled by reference (process pools, dask).
    assert pickle.loads(pickle.dumps(FirstF)) is FirstF
    assert pickle.loads(pickle.dumps(f)) is f
