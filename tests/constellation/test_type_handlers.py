"""Python-native types through type handlers: modules, cache, storage, process pools."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from constellation import (
    CompilationError,
    ConfigurationError,
    Constellation,
    ExecutionStatus,
    InputTypeError,
    PipelineBuilder,
    module,
)
from constellation.core.handlers import (
    TypeHandler,
    handler_for,
    list_type_handlers,
    register_type_handler,
    unregister_type_handler,
)
from constellation.core.types import CHandled, from_json, render, to_json
from tests.constellation import typed_modules as tm

if TYPE_CHECKING:
    from pathlib import Path

WHEN = dt.datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
SOURCE = ("in at: DateTime\nin p: Point\nnext = typed.NextDay(at) with cache: 1min\n"
          "moved = typed.Move(p, 3)\nout next\nout moved\n")


def test_builtin_handlers_map_hints_and_round_trip_json() -> None:
    values = {"DateTime": WHEN, "Date": dt.date(2026, 2, 28), "Bytes": b"\x00\xffbin",
              "Decimal": decimal.Decimal("12.3400"), "UUID": uuid.UUID(int=7)}
    for name, value in values.items():
        h = handler_for(type(value))
        assert h is not None
        assert h.name == name
        t = CHandled(name)
        data = to_json(t, value)
        json.dumps(data)  # JSON-ready
        back = from_json(t, data)
        assert back == value
        assert type(back) is type(value)
        assert h.decode(h.encode(value)) == value
    assert handler_for(Any).name == "Any"  # type: ignore[union-attr]
    names = [h.name for h in list_type_handlers()]
    assert names.index("DateTime") < names.index("Date")  # the subclass first


def test_a_pipeline_round_trips_values_through_modules_cache_and_sqlite(tmp_path: Path) -> None:
    from constellation import Backends
    from constellation.spi import SqliteExecutionStorage

    tm.calls["n"] = 0
    db = tmp_path / "runs.db"
    with Constellation([tm.next_day, tm.move], backends=Backends(
            storage=SqliteExecutionStorage(str(db)))) as engine:
        pipeline = engine.compile(SOURCE)
        assert render(pipeline.inputs["at"]) == "DateTime"
        first = engine.run(pipeline, {"at": WHEN, "p": tm.Point(1, 2)})
        second = engine.run(pipeline, {"at": WHEN, "p": tm.Point(1, 2)})
        assert first.outputs == {"next": WHEN + dt.timedelta(days=1), "moved": tm.Point(4, -1)}
        assert second.outputs == first.outputs
        assert type(second.outputs["next"]) is dt.datetime
        assert second.outputs["next"].tzinfo == WHEN.tzinfo
        assert tm.calls["n"] == 1  # the second came from the cache, decoded exactly
    # The records, read back by a new engine from the SQLite file.
    with Constellation([tm.next_day, tm.move], backends=Backends(
            storage=SqliteExecutionStorage(str(db)))) as engine:
        record = engine.execution(first.execution_id)
        assert record is not None
        assert record.outputs == {"next": (WHEN + dt.timedelta(days=1)).isoformat(),
                                  "moved": [4, -1]}
        assert record.inputs["at"] == WHEN.isoformat()


def test_a_process_pool_runs_modules_over_handled_types() -> None:
    with Constellation([tm.next_day, tm.move, tm.stamped], executor="process") as engine:
        result = engine.run(SOURCE.replace(" with cache: 1min", ""),
                            {"at": WHEN, "p": tm.Point(5, 5)})
        assert result.ok, result.errors
        assert result.outputs == {"next": WHEN + dt.timedelta(days=1), "moved": tm.Point(8, 2)}
        b = PipelineBuilder("stamp")
        b.output("s", b.call(tm.stamped, when=b.input("w", dt.datetime), note="hi"))
        stamped = engine.run(b, {"w": WHEN})
        assert stamped.outputs == {"s": {"at": WHEN, "note": "hi"}}


def test_wrong_values_are_input_and_output_type_errors() -> None:
    with Constellation([tm.next_day, tm.wrong]) as engine:
        pipeline = engine.compile(SOURCE.replace("moved = typed.Move(p, 3)\n", "")
                                  .replace("out moved\n", ""), name="dates")
        with pytest.raises(InputTypeError, match="expected DateTime, got str"):
            engine.run(pipeline, {"at": "2026-12-01", "p": tm.Point(0, 0)})
        b = PipelineBuilder("wrong")
        b.output("o", b.call(tm.wrong, p=b.input("p", tm.Point)))
        result = engine.run(b, {"p": tm.Point(1, 1)})
        assert result.status is ExecutionStatus.FAILED
        assert result.errors[0].code == "E302"
        assert "expected Point, got tuple" in result.errors[0].message


def test_unknown_type_names_suggest_the_handlers() -> None:
    with Constellation() as engine, pytest.raises(CompilationError) as info:
        engine.compile("in t: Datetime\nout t\n")
    assert "did you mean 'DateTime'" in info.value.errors[0].message


def test_any_stays_in_process() -> None:
    @module("typed.Ident")
    def ident(x: Any) -> Any:
        return x

    marker = object()
    with Constellation([ident]) as engine:
        b = PipelineBuilder("any")
        b.output("o", b.call(ident, x=b.input("x", Any)))
        assert engine.run(b, {"x": marker}).outputs["o"] is marker
    with pytest.raises(Exception, match="no JSON form"):
        to_json(CHandled("Any"), marker)


def test_registering_is_checked() -> None:
    def h(name: str) -> TypeHandler:
        return TypeHandler(name, object, lambda v: v, lambda v: v, lambda v: v)

    for bad in ("lower", "Int", "List", "Not an identifier", ""):
        with pytest.raises(ConfigurationError):
            register_type_handler(h(bad))
    with pytest.raises(ConfigurationError, match="registered already"):
        register_type_handler(h("Point"))
    register_type_handler(h("Temporary"))
    assert unregister_type_handler("Temporary")
    assert not unregister_type_handler("Temporary")
    with pytest.raises(ConfigurationError):
        register_type_handler("DateTime")  # type: ignore[arg-type]


def test_a_dataframe_pipeline(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is not installed") \
        if os.environ.get("CI") != "true" else __import__("pandas")

    @module("typed.Totals")
    def totals(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.groupby("city", as_index=False)["amount"].sum()

    frame = pd.DataFrame({"city": ["a", "b", "a"], "amount": [1.5, 2.0, 3.0]})
    with Constellation([totals]) as engine:
        result = engine.run("in f: DataFrame\nt = typed.Totals(f)\nout t\n", {"f": frame})
    assert result.ok, result.errors
    out = result.outputs["t"]
    assert out.to_dict("list") == {"city": ["a", "b"], "amount": [4.5, 2.0]}
    t = CHandled("DataFrame")
    back = from_json(t, json.loads(json.dumps(to_json(t, out))))
    pd.testing.assert_frame_equal(back, out)
    h = handler_for(pd.DataFrame)
    assert h is not None
    pd.testing.assert_frame_equal(h.decode(h.encode(out)), out)
    np = pytest.importorskip("numpy")
    a = np.arange(6, dtype="int32").reshape(2, 3)
    ah = handler_for(np.ndarray)
    assert ah is not None
    assert ah.name == "Array"
    assert (from_json(CHandled("Array"), to_json(CHandled("Array"), a)) == a).all()
    assert ah.decode(ah.encode(a)).dtype == a.dtype
