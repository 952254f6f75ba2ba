"""The engine end to end: correct results, bad input, scheduling and lifecycle."""

from __future__ import annotations

import collections
import dataclasses
import decimal
import enum
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypedDict

import pytest

from bench.workloads import MODULES, chain, diamond, fan_out, sleepers
from constellation import (
    Backends,
    CallContext,
    CompilationError,
    ConfigurationError,
    Constellation,
    DagSpec,
    ExecutionStatus,
    InputTypeError,
    LifecycleState,
    ModuleExecutionError,
    ModuleOutputTypeError,
    NodeStatus,
    PipelineBuilder,
    Priority,
    QueueFullError,
    SchedulerConfig,
    ShuttingDownError,
    UnknownInputError,
    UnknownModuleError,
    module,
)
from constellation.core.dag import Transform
from constellation.core.options import CallOptions
from constellation.core.types import INT, STRING, CHandled, CRecord, CType, Tagged, render

Factory = Callable[..., Constellation]


# --- reference workloads -----------------------------------------------------------

@pytest.mark.parametrize("make", [chain, fan_out, diamond, sleepers],
                         ids=["chain-1000", "fanout-1000", "diamond-10", "sleepers-64"])
def test_reference_workloads_give_correct_results(engine_factory: Factory,
                                                  make: Callable[[], Any]) -> None:
    wl = make()
    engine = engine_factory(MODULES, scheduler=SchedulerConfig(worker_threads=64))
    result = engine.run(wl.spec, wl.inputs)
    assert result.status is ExecutionStatus.COMPLETED, result.errors
    assert result.outputs == {wl.output: wl.expected}
    assert len(result.modules) == len(wl.spec.modules)
    assert all(r.status is NodeStatus.COMPLETED and r.attempts == 1
               for r in result.modules.values())


def test_independent_modules_run_in_parallel(engine_factory: Factory) -> None:
    wl = sleepers(64)
    engine = engine_factory(MODULES, scheduler=SchedulerConfig(worker_threads=64))
    pipeline = engine.compile(wl.spec)
    engine.run(pipeline, wl.inputs)  # warm the pool up
    started = time.perf_counter()
    assert engine.run(pipeline, wl.inputs).ok
    # 64 x 10 ms one after another would take 640 ms.
    assert time.perf_counter() - started < 0.5


def test_results_record_each_node(engine_factory: Factory) -> None:
    engine = engine_factory()
    b = PipelineBuilder("text")
    doc = b.input("document", str)
    cleaned = b.call("Trim", text=doc)
    b.output("cleaned", cleaned)
    b.output("words", b.call("WordCount", text=b.call("Lowercase", text=cleaned)))
    result = engine.run(b, {"document": "  Hello World\nLine 2  "})
    assert result.outputs == {"cleaned": "Hello World\nLine 2", "words": 4}
    assert set(result.modules) == {"Trim", "Lowercase", "WordCount"}
    rec = result.modules["WordCount"]
    assert (rec.module, rec.status, rec.attempts) == ("WordCount", NodeStatus.COMPLETED, 1)
    assert rec.duration_ms >= 0
    assert result.duration_ms > 0
    assert result.queued_ms >= 0
    assert len(result.structural_hash) == 64


def test_records_and_dataclasses_flow_through(engine_factory: Factory) -> None:
    @dataclass
    class Order:
        item: str
        qty: int

    @module("Total")
    def total(order: Order, price: float) -> TotalOut:
        assert isinstance(order, Order)
        return {"total": order.qty * price}

    engine = engine_factory([total])
    b = PipelineBuilder("orders")
    out = b.call("Total", order=b.input("order", Order), price=b.input("price", float))
    b.output("total", b.field(out, "total"))
    result = engine.run(b, {"order": Order("pen", 3), "price": 2})
    assert result.outputs == {"total": 6.0}


class TotalOut(TypedDict):
    total: float


# --- bad input ---------------------------------------------------------------------

@pytest.fixture
def counted(engine_factory: Factory) -> tuple[Constellation, list[str]]:
    calls: list[str] = []

    @module("Count")
    def count(text: str) -> int:
        calls.append(text)
        return len(text)

    return engine_factory([count]), calls


def count_pipeline() -> PipelineBuilder:
    b = PipelineBuilder("count")
    b.output("n", b.call("Count", text=b.input("text", str)))
    return b


def test_wrong_input_type_is_rejected_before_any_module_runs(
        counted: tuple[Constellation, list[str]]) -> None:
    engine, calls = counted
    with pytest.raises(InputTypeError) as info:
        engine.submit(count_pipeline(), {"text": 42})
    assert "input 'text'" in info.value.message
    assert "expected String" in info.value.message
    assert calls == []
    assert engine.run(count_pipeline(), {"text": "ok"}).outputs == {"n": 2}  # still usable


def test_several_wrong_inputs_are_reported_together(engine_factory: Factory) -> None:
    engine = engine_factory()
    b = PipelineBuilder("two")
    b.output("o", b.call("Replace", text=b.input("a", str), find=b.input("b", str),
                         replace="x"))
    with pytest.raises(InputTypeError) as info:
        engine.submit(b, {"a": 1, "b": 2})
    assert "input 'a'" in info.value.message
    assert "input 'b'" in info.value.message
    assert len(info.value.details["errors"]) == 2


def test_unknown_input_name_suggests_the_declared_one(
        counted: tuple[Constellation, list[str]]) -> None:
    engine, calls = counted
    with pytest.raises(UnknownInputError, match="did you mean 'text'"):
        engine.submit(count_pipeline(), {"txt": "a"})
    assert calls == []


def test_missing_input_suspends_and_names_it(counted: tuple[Constellation, list[str]]) -> None:
    engine, calls = counted
    result = engine.run(count_pipeline(), {})
    assert result.status is ExecutionStatus.SUSPENDED
    assert result.missing_inputs == {"text": "String"}
    assert [e.code for e in result.errors] == ["E201"]
    assert "input 'text'" in result.errors[0].message
    assert calls == []


def test_missing_input_still_runs_what_does_not_need_it(engine_factory: Factory) -> None:
    engine = engine_factory()
    b = PipelineBuilder("partial")
    b.output("up", b.call("Uppercase", text=b.input("a", str)))
    b.output("low", b.call("Lowercase", text=b.input("b", str)))
    result = engine.run(b, {"a": "x"})
    assert result.status is ExecutionStatus.SUSPENDED
    assert result.outputs == {"up": "X"}
    assert result.modules["Lowercase"].status is NodeStatus.PENDING


def test_unknown_module_fails_at_compile_with_a_suggestion(engine_factory: Factory) -> None:
    engine = engine_factory()
    b = PipelineBuilder("p")
    b.output("o", b.call("WordCont", text=b.input("t", str)))
    with pytest.raises(UnknownModuleError, match="did you mean 'WordCount'"):
        engine.compile(b)


def test_a_module_that_raises_fails_the_execution_naming_node_and_module(
        engine_factory: Factory) -> None:
    @module("Explode")
    def explode(text: str) -> str:
        raise RuntimeError("kaboom")

    engine = engine_factory([explode])
    b = PipelineBuilder("p")
    t = b.input("t", str)
    b.output("bad", b.call("Explode", text=t))
    result = engine.run(b, {"t": "x"})
    assert result.status is ExecutionStatus.FAILED
    err = result.errors[0]
    assert isinstance(err, ModuleExecutionError)
    assert err.code == "E300"
    assert "Explode" in err.message
    assert "kaboom" in err.message
    assert err.details["node"] == "Explode"
    assert isinstance(err.__cause__, RuntimeError)
    assert result.modules["Explode"].status is NodeStatus.FAILED
    with pytest.raises(ModuleExecutionError):
        result.raise_for_status()
    ok = PipelineBuilder("ok")
    ok.output("o", ok.call("Uppercase", text=ok.input("t", str)))
    assert engine.run(ok, {"t": "still fine"}).ok


def test_a_module_returning_the_wrong_type_fails_clearly(engine_factory: Factory) -> None:
    @module("Liar")
    def liar(text: str) -> int:
        return text  # type: ignore[return-value]

    engine = engine_factory([liar])
    b = PipelineBuilder("p")
    b.output("o", b.call("Liar", text=b.input("t", str)))
    result = engine.run(b, {"t": "x"})
    assert result.status is ExecutionStatus.FAILED
    err = result.errors[0]
    assert isinstance(err, ModuleOutputTypeError)
    assert err.code == "E302"
    assert "Liar" in err.message
    assert "expected Int, got str" in err.message


def test_failure_keeps_outputs_computed_so_far(engine_factory: Factory) -> None:
    @module("Fail")
    def fail(text: str) -> str:
        raise ValueError("no")

    engine = engine_factory([fail])
    b = PipelineBuilder("p")
    t = b.input("t", str)
    b.output("good", b.call("Uppercase", text=t))
    b.output("bad", b.call("Fail", text=b.call("Trim", text=b.call("Lowercase", text=t))))
    result = engine.run(b, {"t": "A"})
    assert result.status is ExecutionStatus.FAILED
    assert result.outputs.get("good") in (None, "A")  # may finish before or after the failure
    assert "bad" not in result.outputs


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": 1.5}, "max_concurrency"),
    ({"max_queue_size": 0}, "max_queue_size"),
    ({"starvation_timeout": 0}, "starvation_timeout"),
    ({"worker_threads": -1}, "worker_threads"),
    ({"dispatcher_threads": 0}, "dispatcher_threads"),
])
def test_invalid_scheduler_config_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SchedulerConfig(**kwargs)
    assert info.value.details["field"] == field
    assert field in info.value.message


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"default_timeout": 0}, "default_timeout"),
    ({"scheduler": {"max_concurrency": 4}}, "scheduler"),
    ({"executor": "thread-pool"}, "executor"),
    ({"modules": [lambda x: x]}, "modules"),
    ({"backends": Backends(cache=object())}, "backends.cache"),
    ({"backends": Backends(storage=object())}, "backends.storage"),
    ({"backends": Backends(listener=object())}, "backends.listener"),
    ({"backends": Backends(metrics=42)}, "backends.metrics"),
])
def test_invalid_engine_arguments_raise_configuration_error(
        kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Constellation(**kwargs)
    assert info.value.details["field"] == field


def test_registering_two_modules_with_one_name_is_an_error(engine_factory: Factory) -> None:
    @module("Uppercase")
    def other(text: str) -> str:
        return text

    with pytest.raises(ConfigurationError, match="already registered"):
        engine_factory([other])
    engine = engine_factory()
    engine.register(other, replace=True)
    assert engine.modules["Uppercase"] is other


# --- scheduling --------------------------------------------------------------------

@pytest.fixture
def gated(engine_factory: Factory) -> tuple[Constellation, threading.Event, list[str]]:
    gate = threading.Event()
    order: list[str] = []

    @module("Gate")
    def gate_module(tag: str) -> str:
        order.append(tag)
        if tag == "blocker":
            gate.wait(10)
        return tag

    engine = engine_factory([gate_module], scheduler=SchedulerConfig(
        max_concurrency=1, max_queue_size=5))
    return engine, gate, order


def gate_pipeline() -> PipelineBuilder:
    b = PipelineBuilder("gate")
    b.output("o", b.call("Gate", tag=b.input("tag", str)))
    return b


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_queued_executions_start_by_priority_then_fifo(
        gated: tuple[Constellation, threading.Event, list[str]]) -> None:
    engine, gate, order = gated
    p = engine.compile(gate_pipeline())
    blocker = engine.submit(p, {"tag": "blocker"})
    wait_until(lambda: order == ["blocker"])
    handles = [engine.submit(p, {"tag": tag}, priority=prio) for tag, prio in [
        ("low", Priority.LOW), ("normal-1", "normal"), ("critical", Priority.CRITICAL),
        ("normal-2", 50), ("high", Priority.HIGH)]]
    assert all(h.status is ExecutionStatus.QUEUED for h in handles)
    gate.set()
    for h in [blocker, *handles]:
        assert h.result(10).ok
    assert order == ["blocker", "critical", "high", "normal-1", "normal-2", "low"]


def test_a_full_queue_rejects_submit_at_once(
        gated: tuple[Constellation, threading.Event, list[str]]) -> None:
    engine, gate, order = gated
    p = engine.compile(gate_pipeline())
    blocker = engine.submit(p, {"tag": "blocker"})
    wait_until(lambda: order == ["blocker"])
    queued = [engine.submit(p, {"tag": f"q{i}"}) for i in range(5)]
    started = time.perf_counter()
    with pytest.raises(QueueFullError) as info:
        engine.submit(p, {"tag": "one too many"})
    assert time.perf_counter() - started < 0.5
    assert info.value.code == "E401"
    assert engine.rejected_count == 1
    assert engine.queued_count == 5
    gate.set()
    assert all(h.result(10).ok for h in [blocker, *queued])
    assert engine.submit(p, {"tag": "after"}).result(10).ok


def test_thousand_executions_from_eight_threads_with_bounded_threads(
        engine_factory: Factory) -> None:
    wl = diamond()
    engine = engine_factory(MODULES, scheduler=SchedulerConfig(
        max_concurrency=16, max_queue_size=None, worker_threads=8, dispatcher_threads=2))
    pipeline = engine.compile(wl.spec)
    baseline_threads = threading.active_count()
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], threading.active_count())
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()

    def submit_many(k: int) -> list[Any]:
        return [engine.submit(pipeline, {"x": k}) for _ in range(125)]

    with ThreadPoolExecutor(8) as submitters:
        batches = list(submitters.map(submit_many, range(8)))
    results = [h.result(60) for batch in batches for h in batch]
    stop.set()
    watcher.join()
    assert len(results) == 1000
    for k, batch in enumerate(batches):
        for h in batch:
            r = h.result()
            assert r.ok
            assert r.outputs == {"result": 8 * (k + 2)}
    # 8 submitter threads + the watcher come and go; the engine adds at most its budget.
    assert peak[0] <= baseline_threads + 8 + 1 + engine.thread_budget
    assert engine.thread_budget == 2 + 8 + 1


def test_timeout_ends_the_execution_with_partial_outputs(engine_factory: Factory) -> None:
    @module("Sleepy")
    def sleepy(text: str, ctx: CallContext) -> str:
        while not ctx.cancelled:
            time.sleep(0.005)
        return text

    engine = engine_factory([sleepy])
    b = PipelineBuilder("slow")
    t = b.input("t", str)
    b.output("fast", b.call("Uppercase", text=t))
    b.output("slow", b.call("Sleepy", text=t))
    started = time.perf_counter()
    result = engine.run(b, {"t": "a"}, timeout=0.2)
    assert time.perf_counter() - started < 2
    assert result.status is ExecutionStatus.TIMED_OUT
    assert result.outputs == {"fast": "A"}
    assert result.errors[0].code == "E502"
    assert result.modules["Sleepy"].status is NodeStatus.CANCELLED


def test_default_timeout_applies(engine_factory: Factory) -> None:
    @module("Forever")
    def forever(text: str, ctx: CallContext) -> str:
        while not ctx.cancelled:
            time.sleep(0.005)
        return text

    engine = engine_factory([forever], default_timeout=0.2)
    b = PipelineBuilder("p")
    b.output("o", b.call("Forever", text=b.input("t", str)))
    assert engine.run(b, {"t": "a"}).status is ExecutionStatus.TIMED_OUT


def test_cancel_a_running_and_a_queued_execution(
        gated: tuple[Constellation, threading.Event, list[str]]) -> None:
    engine, gate, order = gated
    p = engine.compile(gate_pipeline())
    running = engine.submit(p, {"tag": "blocker"})
    wait_until(lambda: order == ["blocker"])
    queued = engine.submit(p, {"tag": "never"})
    assert queued.cancel() is True
    assert queued.result(5).status is ExecutionStatus.CANCELLED
    assert running.cancel() is True
    result = running.result(5)
    assert result.status is ExecutionStatus.CANCELLED
    assert result.errors[0].code == "E501"
    gate.set()
    assert running.cancel() is False
    assert "never" not in order
    assert engine.inflight_count == 0


def test_shutdown_drains_then_rejects(engine_factory: Factory) -> None:
    @module("Nap")
    def nap(text: str) -> str:
        time.sleep(0.05)
        return text

    engine = engine_factory([nap])
    b = PipelineBuilder("p")
    b.output("o", b.call("Nap", text=b.input("t", str)))
    handles = [engine.submit(b, {"t": str(i)}) for i in range(5)]
    assert engine.shutdown(drain_timeout=10) is True
    assert engine.state is LifecycleState.STOPPED
    assert [h.result(1).outputs["o"] for h in handles] == [str(i) for i in range(5)]
    with pytest.raises(ShuttingDownError):
        engine.submit(b, {"t": "late"})


def test_shutdown_leaves_no_engine_threads() -> None:
    before = {t.name for t in threading.enumerate()}
    with Constellation(MODULES) as engine:
        wl = fan_out(200)
        assert engine.run(wl.spec, wl.inputs).ok
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra = {t.name for t in threading.enumerate()} - before
        if not any(n.startswith("constellation") for n in extra):
            break
        time.sleep(0.02)
    assert not any(n.startswith("constellation") for n in extra), extra


def test_any_executor_can_run_modules(engine_factory: Factory) -> None:
    with ThreadPoolExecutor(4, thread_name_prefix="user-pool") as pool:
        seen: set[str] = set()

        @module("Where")
        def where(x: int) -> int:
            seen.add(threading.current_thread().name)
            return x + 1

        engine = engine_factory([where], executor=pool)
        b = PipelineBuilder("p")
        b.output("o", b.call("Where", x=b.call("Where", x=b.input("x", int))))
        assert engine.run(b, {"x": 1}).outputs == {"o": 3}
        assert seen
        assert all(n.startswith("user-pool") for n in seen)


def test_executions_leave_no_cyclic_garbage(engine_factory: Factory) -> None:
    # Cyclic garbage is only freed by the cyclic collector, whose passes cost a third of
    # the time of short executions when every node actor was left in a cycle.
    import gc

    wl = diamond()
    engine = engine_factory(MODULES)
    pipeline = engine.compile(wl.spec)
    for _ in range(20):
        engine.run(pipeline, wl.inputs)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(50):
            assert engine.run(pipeline, wl.inputs).ok
        time.sleep(0.1)  # let the last execution's actors finish their turns
        gc.collect()
        leaked = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leaked == []


def test_done_callbacks_and_result_timeout(
        gated: tuple[Constellation, threading.Event, list[str]]) -> None:
    engine, gate, _order = gated
    p = engine.compile(gate_pipeline())
    execution = engine.submit(p, {"tag": "blocker"})
    seen: list[str] = []
    execution.add_done_callback(lambda r: seen.append(r.outputs["o"]))
    with pytest.raises(TimeoutError, match="still running"):
        execution.result(timeout=0.05)
    assert not execution.done()
    gate.set()
    assert execution.result(timeout=5).outputs == {"o": "blocker"}
    assert execution.done()
    assert seen == ["blocker"]
    late: list[str] = []
    execution.add_done_callback(lambda r: late.append(r.status.value))  # runs at once
    assert late == ["completed"]


def test_execution_ids_are_unique_and_uuid_shaped(engine_factory: Factory) -> None:
    import uuid

    engine = engine_factory()
    b = PipelineBuilder("p")
    b.output("o", b.call("Uppercase", text=b.input("t", str)))
    ids = {engine.submit(b, {"t": "x"}).execution_id for _ in range(200)}
    assert len(ids) == 200
    assert all(str(uuid.UUID(i)) == i for i in ids)


def test_a_module_may_run_another_pipeline_and_wait_for_it() -> None:
    # The inner execution must not queue behind the very call that waits for it.
    inner = PipelineBuilder("inner")
    inner.output("o", inner.call("Uppercase", text=inner.input("t", str)))
    holder: dict[str, Constellation] = {}

    @module("Nested")
    def nested(text: str) -> str:
        return holder["engine"].run(inner, {"t": text}, timeout=5).outputs["o"]

    with Constellation([nested], scheduler=SchedulerConfig(
            worker_threads=2, dispatcher_threads=1, max_concurrency=4)) as engine:
        holder["engine"] = engine
        outer = PipelineBuilder("outer")
        t = outer.input("t", str)
        outer.output("a", outer.call("Nested", text=t))
        outer.output("b", outer.call("Nested", text=outer.call("Trim", text=t)))
        for _ in range(20):  # the quick-call path kicks in after the first calls
            result = engine.run(outer, {"t": " x "}, timeout=10)
            assert result.ok, result.errors
            assert result.outputs == {"a": " X ", "b": "X"}


def test_aging_serves_a_long_waiting_low_priority_execution_first(
        engine_factory: Factory) -> None:
    now = [1000.0]
    gate = threading.Event()
    order: list[str] = []

    @module("Tagged")
    def tagged(tag: str) -> str:
        order.append(tag)
        if tag == "blocker":
            gate.wait(10)
        return tag

    engine = engine_factory([tagged], clock=lambda: now[0], scheduler=SchedulerConfig(
        max_concurrency=1, starvation_timeout=30.0))
    b = PipelineBuilder("aging")
    b.output("o", b.call("Tagged", tag=b.input("tag", str)))
    p = engine.compile(b)
    blocker = engine.submit(p, {"tag": "blocker"})
    wait_until(lambda: order == ["blocker"])
    old_low = engine.submit(p, {"tag": "old-background"}, priority=Priority.BACKGROUND)
    now[0] += 31.0  # it has now waited longer than starvation_timeout
    new_critical = engine.submit(p, {"tag": "new-critical"}, priority=Priority.CRITICAL)
    fresh_low = engine.submit(p, {"tag": "fresh-low"}, priority=Priority.LOW)
    gate.set()
    for h in (blocker, old_low, new_critical, fresh_low):
        assert h.result(10).ok
    assert order == ["blocker", "old-background", "new-critical", "fresh-low"]


# --- compile cache -------------------------------------------------------------------

@module("Shout")
def shout(text: str) -> str:
    return text.upper()


def _shout_builder(name: str = "shout") -> PipelineBuilder:
    b = PipelineBuilder(name)
    b.output("loud", b.call("Shout", text=b.input("text", str)))
    return b


def test_an_unchanged_builder_builds_the_same_spec_and_a_changed_one_a_new_spec() -> None:
    b = _shout_builder()
    first = b.build()
    assert b.build() is first
    b.output("again", b.call("Shout", text=b.literal("x")))
    second = b.build()
    assert second is not first
    assert [name for name, _ in second.outputs] == ["loud", "again"]
    assert b.build() is second


def test_a_dagspec_or_builder_is_compiled_once_by_its_structure(
        engine_factory: Factory) -> None:
    engine = engine_factory([shout])
    b = _shout_builder()
    pipeline = engine.compile(b.build())
    assert engine.compile(b.build()) is pipeline
    assert engine.compile(b) is pipeline
    # A structurally equal spec built afresh finds it too.
    assert engine.compile(_shout_builder().build()) is pipeline
    assert engine.run(b.build(), {"text": "hi"}).outputs == {"loud": "HI"}
    assert engine.run(b, {"text": "yo"}).outputs == {"loud": "YO"}


def test_specs_alike_but_for_their_names_are_compiled_apart(engine_factory: Factory) -> None:
    engine = engine_factory([shout])
    one = engine.compile(_shout_builder("one"))
    two = engine.compile(_shout_builder("two"))
    assert one.structural_hash == two.structural_hash
    assert one is not two
    assert (one.name, two.name) == ("one", "two")
    assert engine.run(_shout_builder("two"), {"text": "a"}).pipeline == "two"


def _changed(value: Any) -> Any:
    """Another value of the same kind (for the field-by-field test below)."""
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, CallOptions):
        return CallOptions(retry=1)
    if isinstance(value, CType) or value is None:
        return INT if value != INT else STRING
    if isinstance(value, Transform):
        return Transform(value.op, (*value.params, ("extra", 1)))
    if isinstance(value, tuple):
        return (*value, ("extra", "extra"))
    if isinstance(value, float):
        return value + 1.0
    raise AssertionError(f"no other value for {value!r}")


def test_every_field_of_a_spec_and_its_nodes_is_in_its_compile_key() -> None:
    # The engine's compile cache finds a DagSpec by this key, not by the (slower)
    # structural hash: a field left out would hand a spec another spec's pipeline.
    b = PipelineBuilder("keyed", description="d", timeout=5.0)
    b.output("loud", b.call("Shout", text=b.input("text", str), options={"retry": 2}))
    b.output("lit", b.call("Shout", text=b.literal("x")))
    spec = b.build()
    key = spec._compile_key
    assert dataclasses.replace(spec)._compile_key == key  # equal, not identical
    assert hash(dataclasses.replace(spec)._compile_key) == hash(key)
    checked = []
    for f in dataclasses.fields(spec):
        if f.name not in ("data", "modules"):
            other = dataclasses.replace(spec, **{f.name: _changed(getattr(spec, f.name))})
            assert other._compile_key != key, f.name
            checked.append(f.name)
            continue
        nodes = getattr(spec, f.name)
        for nf in dataclasses.fields(nodes[-1]):
            i = len(nodes) - 1
            if f.name == "data":  # a node with a transform: the literal
                i = next(j for j, d in enumerate(nodes) if d.transform is not None)
            node = dataclasses.replace(
                nodes[i], **{nf.name: _changed(getattr(nodes[i], nf.name))})
            other = dataclasses.replace(
                spec, **{f.name: (*nodes[:i], node, *nodes[i + 1:])})
            assert other._compile_key != key, (f.name, nf.name)
            checked.append(f"{f.name}.{nf.name}")
    assert {"data.ctype", "data.transform", "modules.options", "timeout"} <= set(checked)
    # A node more or less, or the nodes in another order, is another key.
    assert dataclasses.replace(spec, modules=spec.modules[:1])._compile_key != key
    assert dataclasses.replace(spec, data=spec.data[::-1])._compile_key != key


def test_a_fresh_spec_differing_only_in_a_literal_gets_its_own_pipeline(
        engine_factory: Factory) -> None:
    engine = engine_factory([shout])

    def build(word: str) -> PipelineBuilder:
        b = PipelineBuilder("lit")
        b.output("loud", b.call("Shout", text=b.literal(word)))
        return b

    assert engine.run(build("ab").build()).outputs == {"loud": "AB"}
    assert engine.run(build("cd").build()).outputs == {"loud": "CD"}
    assert engine.compile(build("ab").build()) is engine.compile(build("ab"))
    assert engine.compile(build("ab")) is not engine.compile(build("cd"))


def _error_class() -> type[Exception]:
    class RefusedError(Exception):  # every class made here prints alike
        pass
    return RefusedError


@module("Refuse")
def refuse(text: str) -> str:
    raise _RAISE[0]("no")


_RAISE: list[type[Exception]] = [ValueError]


def test_a_spec_is_not_mistaken_for_another_whose_options_print_alike(
        engine_factory: Factory) -> None:
    # Two exception classes of one name have one repr: a key built from reprs (as the
    # structural hash is) handed the second spec the first one's pipeline, retrying
    # on the wrong class.
    engine = engine_factory([refuse])
    first, second = _error_class(), _error_class()
    assert repr(first) == repr(second)

    def build(retry_on: type[Exception]) -> PipelineBuilder:
        b = PipelineBuilder("retrying")
        b.output("out", b.call("Refuse", text=b.input("text", str),
                               options={"retry": 2, "retry_on": (retry_on,),
                                        "delay": 0.001}))
        return b

    assert engine.compile(build(first).build()) is engine.compile(build(first).build())
    assert engine.compile(build(first).build()) is not engine.compile(build(second).build())
    _RAISE[0] = second
    try:
        result = engine.run(build(second).build(), {"text": "a"})
    finally:
        _RAISE[0] = ValueError
    assert not result.ok
    assert result.modules["Refuse"].attempts == 3  # retried: second is its retry_on


def test_literals_of_a_handled_type_equal_but_printed_apart_get_their_own_pipelines(
        engine_factory: Factory) -> None:
    import decimal

    @module("Show")
    def show(d: decimal.Decimal) -> str:
        return str(d)

    engine = engine_factory([show])

    def build(text: str) -> DagSpec:
        b = PipelineBuilder("decimal")
        b.output("s", b.call("Show", d=b.literal(decimal.Decimal(text), decimal.Decimal)))
        return b.build()

    assert [engine.run(build(t)).outputs["s"] for t in ("1.0", "1.00", "1.0")] == [
        "1.0", "1.00", "1.0"]
    assert engine.compile(build("1.0")) is engine.compile(build("1.0"))


@module("Last")
def last_of(x: Any) -> str:
    return f"{type(x[-1]).__name__} {x[-1]!r}"


class _Choice(enum.IntEnum):
    A = 1


@pytest.mark.parametrize(("first", "second"), [
    (Tagged("Int", 1), {"tag": "Int", "value": 1}),
    (["<opaque 1>", decimal.Decimal(1)], [decimal.Decimal(1), "<opaque 1>"]),
    ({1: "a"}, {"1": "a"}),
    ({1: "a", "1": "b"}, {"1": "b"}),
    ((1, 2), [1, 2]),
    (collections.namedtuple("P", "a b")(1, 2), (1, 2)),
    (_Choice.A, 1),
    (True, 1),
    (1, 1.0),
    (0.0, -0.0),
])
def test_literals_that_a_module_can_tell_apart_never_share_a_pipeline(
        engine_factory: Factory, first: Any, second: Any) -> None:
    # The literal's name is a short repr (the first items): both specs below have the
    # same names, so only the key's form of the values tells them apart.
    def build(v: Any) -> DagSpec:
        b = PipelineBuilder("p")
        b.output("s", b.call("Last", x=b.literal([0, 1, 2, 3, 4, 5, 6, v], "Any")))
        return b.build()

    alone = engine_factory([last_of]).run(build(second)).outputs["s"]
    engine = engine_factory([last_of])
    engine.run(build(first))
    assert engine.run(build(second)).outputs["s"] == alone
    assert engine.compile(build(second)) is engine.compile(build(second))


def test_a_spec_timeout_of_true_is_not_a_timeout_of_one(engine_factory: Factory) -> None:
    engine = engine_factory([shout])
    spec = _shout_builder().build()
    with pytest.raises(ConfigurationError, match="timeout"):
        engine.run(dataclasses.replace(spec, timeout=True), {"text": "a"})
    assert engine.run(dataclasses.replace(spec, timeout=1), {"text": "a"}).ok


def test_types_that_render_alike_are_keyed_apart() -> None:
    # CHandled("Int") renders as Int; a record field named "a: Int, b" renders as two.
    spec = _shout_builder().build()
    for one, other in [(INT, CHandled("Int")),
                       (CRecord.of(a=INT, b=STRING), CRecord((("a: Int, b", STRING),)))]:
        assert render(one) == render(other)
        a, b = (dataclasses.replace(spec, data=(dataclasses.replace(spec.data[0], ctype=t),
                                                *spec.data[1:])) for t in (one, other))
        assert a._compile_key != b._compile_key


def test_a_hand_built_spec_too_deep_or_malformed_is_a_compilation_error(
        engine_factory: Factory) -> None:
    engine = engine_factory([shout, last_of])
    b = PipelineBuilder("deep")
    b.output("s", b.call("Last", x=b.literal([0], "Any")))
    spec = b.build()
    deep: Any = 0
    for _ in range(10_000):
        deep = [deep]
    lit = next(i for i, d in enumerate(spec.data) if d.transform is not None)
    node = dataclasses.replace(spec.data[lit], transform=Transform(
        "literal", (("type", spec.data[lit].ctype), ("value", deep))))
    deep_spec = dataclasses.replace(spec, data=(*spec.data[:lit], node, *spec.data[lit + 1:]))
    assert deep_spec._compile_key is None
    with pytest.raises(CompilationError, match="E150"):
        engine.compile(deep_spec)
    wrong = dataclasses.replace(spec, data=(*spec.data, spec.modules[0]))
    with pytest.raises(CompilationError, match=r"E100.*DagSpec\.data must hold DataNodes"):
        engine.compile(wrong)


class _Unhashable:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Unhashable)

    __hash__ = None  # type: ignore[assignment]


def test_a_spec_that_cannot_be_keyed_is_compiled_each_time(engine_factory: Factory) -> None:
    # Lists where the spec declares tuples are keyed (as lists); an unhashable object in
    # a literal is not: no cache entry, but the spec runs (a hand-built spec with lists
    # used to raise TypeError from the cache lookup).
    engine = engine_factory([shout, last_of])
    spec = _shout_builder().build()
    listed = dataclasses.replace(spec, inputs=list(spec.inputs), outputs=list(spec.outputs))
    assert engine.run(listed, {"text": "a"}).outputs == {"loud": "A"}
    assert engine.compile(listed) is engine.compile(listed)
    b = PipelineBuilder("unhashable")
    b.output("s", b.call("Last", x=b.literal([_Unhashable()], "Any")))
    odd = b.build()
    assert odd._compile_key is None
    assert engine.run(odd).outputs["s"].startswith("_Unhashable")
    assert engine.compile(odd) is not engine.compile(odd)


def test_registering_a_module_again_recompiles_cached_specs(engine_factory: Factory) -> None:
    engine = engine_factory([shout])
    b = _shout_builder()
    before = engine.compile(b)
    assert engine.run(b, {"text": "hi"}).outputs == {"loud": "HI"}

    @module("Shout")
    def whisper(text: str) -> str:
        return text.lower()

    engine.register(whisper, replace=True)
    after = engine.compile(b)
    assert after is not before
    assert engine.run(b.build(), {"text": "HI"}).outputs == {"loud": "hi"}

    @module("Shout")
    def length(text: str) -> int:
        return len(text)

    engine.register(length, replace=True)  # the output type changes with the module
    assert engine.compile(b).outputs == {"loud": INT}
    assert engine.run(b, {"text": "four"}).outputs == {"loud": 4}


def test_sources_with_one_structure_keep_their_own_source_hashes(
        engine_factory: Factory) -> None:
    engine = engine_factory()
    a = engine.compile("in t: String\nu = Uppercase(t)\nout u\n")
    b = engine.compile("# the same pipeline\nin t: String\nu = Uppercase(t)\nout u\n")
    assert a.structural_hash == b.structural_hash
    assert a.syntactic_hash != b.syntactic_hash
    assert engine.compile("in t: String\nu = Uppercase(t)\nout u\n") is a
