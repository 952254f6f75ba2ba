"""The engine's log records: levels, messages and the structured ``extra`` fields."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from constellation import (
    CircuitBreakerConfig,
    Constellation,
    ExecutionStatus,
    PipelineBuilder,
    QueueFullError,
    SchedulerConfig,
    module,
)
from tests.waiting import wait_for

FIELDS = ("execution_id", "pipeline", "node", "module_name")


class Capture(logging.Handler):
    """Keeps the records of the constellation loggers (level DEBUG and up)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, logger: str, level: int | None = None) -> list[logging.LogRecord]:
        return [r for r in self.records
                if r.name == logger and (level is None or r.levelno == level)]


@pytest.fixture
def capture() -> Any:
    handler = Capture()
    loggers = [logging.getLogger(n) for n in
               ("constellation.execution", "constellation.module", "constellation.breaker")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, level in zip(loggers, saved, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


calls = {"flaky": 0}


@module("log.Flaky")
def flaky(text: str) -> str:
    calls["flaky"] += 1
    if calls["flaky"] < 3:
        raise ConnectionError("try again")
    return text


@module("log.Slow")
def slow(text: str) -> str:
    time.sleep(0.5)
    return text


@module("log.Down")
def down(text: str) -> str:
    raise RuntimeError("service down")


def _one_call(name: str, call: str, **options: Any) -> Any:
    b = PipelineBuilder(name)
    b.output("o", b.call(call, text=b.input("t", str), options=options or None))
    return b


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in FIELDS}


def test_a_retry_is_a_warning_with_module_attempt_and_delay(capture: Capture) -> None:
    calls["flaky"] = 0
    with Constellation([flaky]) as engine:
        result = engine.run(_one_call("retrying", "log.Flaky", retry=3, delay=0.01), {"t": "x"})
    assert result.ok
    retries = [r for r in capture.of("constellation.module", logging.WARNING)
               if "retrying in" in r.getMessage()]
    assert [r.attempt for r in retries] == [1, 2]
    first = retries[0]
    assert first.getMessage() == ("module log.Flaky (node 'log.Flaky') raised "
                                  "ConnectionError: try again; attempt 1 failed, retrying "
                                  "in 0.01 s")
    assert first.delay == pytest.approx(0.01)
    assert first.code == "E300"
    assert _fields(first) == {"execution_id": result.execution_id, "pipeline": "retrying",
                              "node": "log.Flaky", "module_name": "log.Flaky"}


def test_a_timed_out_attempt_is_a_warning_and_the_failure_an_error(capture: Capture) -> None:
    with Constellation([slow]) as engine:
        result = engine.run(_one_call("timing-out", "log.Slow", timeout=0.05), {"t": "x"})
    assert result.status is ExecutionStatus.FAILED
    timeouts = [r for r in capture.of("constellation.module", logging.WARNING)
                if "did not finish" in r.getMessage()]
    assert len(timeouts) == 1
    assert timeouts[0].getMessage() == ("module log.Slow (node 'log.Slow') did not finish "
                                        "attempt 1 within 0.05 s")
    assert timeouts[0].timeout == 0.05
    assert timeouts[0].attempt == 1
    assert _fields(timeouts[0]) == {"execution_id": result.execution_id,
                                    "pipeline": "timing-out", "node": "log.Slow",
                                    "module_name": "log.Slow"}
    failed = capture.of("constellation.module", logging.ERROR)
    assert len(failed) == 1
    assert failed[0].code == "E303"
    assert failed[0].getMessage() == timeouts[0].getMessage() + "; failed after 1 attempt(s)"
    ended = capture.of("constellation.execution", logging.ERROR)
    assert len(ended) == 1
    assert ended[0].getMessage().startswith(
        f"execution {result.execution_id} of timing-out failed in ")
    assert ended[0].status == "failed"
    assert ended[0].execution_id == result.execution_id
    assert ended[0].pipeline == "timing-out"


def test_an_opened_and_closed_breaker_are_warnings(capture: Capture) -> None:
    state = {"up": False}

    @module("log.Remote")
    def remote(text: str) -> str:
        if not state["up"]:
            raise RuntimeError("remote down")
        return text

    with Constellation([remote], circuit_breakers={
            # Open for 1 s: the run below must come before the breaker half-opens, on a
            # loaded machine too (0.05 s was not always enough under CI).
            "log.Remote": CircuitBreakerConfig(failure_threshold=2, reset_timeout=1.0)
    }) as engine:
        pipeline = _one_call("breaking", "log.Remote")
        ids = [engine.run(pipeline, {"t": "x"}).execution_id for _ in range(2)]
        opened = capture.of("constellation.breaker", logging.WARNING)
        assert len(opened) == 1
        assert opened[0].getMessage() == ("circuit breaker of module log.Remote opened (2 "
                                          "consecutive failed calls); calls fail at once "
                                          "for 1 s")
        assert opened[0].state == "open"
        assert _fields(opened[0]) == {"execution_id": ids[1], "pipeline": "breaking",
                                      "node": "log.Remote", "module_name": "log.Remote"}
        assert engine.run(pipeline, {"t": "x"}).errors[0].code == "E403"  # open: not called
        time.sleep(1.1)
        state["up"] = True
        assert engine.run(pipeline, {"t": "x"}).ok  # the probe
    probe = capture.of("constellation.breaker", logging.INFO)
    assert [r.state for r in probe] == ["half_open"]
    closed = capture.of("constellation.breaker", logging.WARNING)[1:]
    assert [r.state for r in closed] == ["closed"]
    assert closed[0].getMessage().endswith("closed: the probe call succeeded")


def test_a_fallback_used_and_on_error_log_are_warnings(capture: Capture) -> None:
    with Constellation([down]) as engine:
        b = PipelineBuilder("falling-back")
        t = b.input("t", str)
        b.output("a", b.call("log.Down", text=t, options={"fallback": "spare"}))
        b.output("b", b.call("log.Down", text=t, options={"on_error": "log"}))
        result = engine.run(b, {"t": "x"})
    assert result.ok
    assert result.outputs == {"a": "spare", "b": ""}
    warnings = capture.of("constellation.module", logging.WARNING)
    fallback = [r for r in warnings if "; using its fallback after 1 attempt(s)" in r.getMessage()]
    logged = [r for r in warnings if "on_error: log" in r.getMessage()]
    assert len(fallback) == 1
    assert len(logged) == 1
    assert fallback[0].module_name == "log.Down"
    assert fallback[0].execution_id == result.execution_id
    assert {fallback[0].node, logged[0].node} == {"log.Down", "log.Down#2"}
    assert capture.of("constellation.module", logging.ERROR) == []


def test_start_and_finish_are_debug_and_unfinished_ends_warnings(capture: Capture) -> None:
    gate = threading.Event()

    @module("log.Wait")
    def wait(text: str) -> str:
        gate.wait(10)
        return text

    with Constellation([wait], scheduler=SchedulerConfig(max_concurrency=1,
                                                          max_queue_size=1)) as engine:
        ok = engine.run("in t: String\nout t\n", {"t": "x"})
        debug = capture.of("constellation.execution", logging.DEBUG)
        assert [r.getMessage().split(" ")[4] for r in debug] == ["started", "completed"]
        assert {r.execution_id for r in debug} == {ok.execution_id}
        pipeline = _one_call("waiting", "log.Wait")
        running = engine.submit(pipeline, {"t": "1"})
        wait_for(lambda: running.status is ExecutionStatus.RUNNING)
        queued = engine.submit(pipeline, {"t": "2"})
        with pytest.raises(QueueFullError):
            engine.submit(pipeline, {"t": "3"})
        rejected = [r for r in capture.of("constellation.execution", logging.WARNING)
                    if "rejected" in r.getMessage()]
        assert len(rejected) == 1
        assert rejected[0].pipeline == "waiting"
        assert rejected[0].code == "E401"
        queued.cancel()
        assert queued.result(5).status is ExecutionStatus.CANCELLED
        gate.set()
        assert running.result(5).ok
        cancelled = [r for r in capture.of("constellation.execution", logging.WARNING)
                     if r.execution_id == queued.execution_id]
        assert len(cancelled) == 1
        assert cancelled[0].status == "cancelled"


def test_a_raising_filter_or_handler_changes_nothing(capture: Capture) -> None:
    class Bad(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("filter bug")

    lg = logging.getLogger("constellation.module")
    bad = Bad()
    lg.addFilter(bad)
    try:
        calls["flaky"] = 0
        with Constellation([flaky]) as engine:
            result = engine.run(_one_call("retrying", "log.Flaky", retry=3, delay=0.01),
                                {"t": "x"})
        assert result.ok
        assert calls["flaky"] == 3
    finally:
        lg.removeFilter(bad)


def test_nothing_is_logged_or_built_when_logging_is_off() -> None:
    """With the loggers above WARNING nothing reaches a handler; the engine never
    configures logging itself (no handler of its own but the NullHandler)."""
    handler = Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    lg = logging.getLogger("constellation")
    saved = lg.level
    lg.setLevel(logging.CRITICAL)
    try:
        calls["flaky"] = 0
        with Constellation([flaky, down]) as engine:
            assert engine.run(_one_call("r", "log.Flaky", retry=3, delay=0.01), {"t": "x"}).ok
            assert not engine.run(_one_call("d", "log.Down"), {"t": "x"}).ok
    finally:
        lg.setLevel(saved)
        root.removeHandler(handler)
    assert [r for r in handler.records if r.name.startswith("constellation")] == []
    assert all(type(h) is logging.NullHandler for h in lg.handlers)
