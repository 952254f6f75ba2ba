"""pytest-benchmark cases for the reference workloads (W1-W4). Run: tox -e bench

Each case asserts the result, so a fast wrong answer cannot pass as a speed-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from bench.workloads import MODULES, Workload, chain, diamond, fan_out, sleepers
from constellation import Constellation, SchedulerConfig

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def engine() -> Iterator[Constellation]:
    with Constellation(MODULES, scheduler=SchedulerConfig(
            max_concurrency=64, worker_threads=64, max_queue_size=None)) as e:
        yield e


def _run(engine: Constellation, wl: Workload, benchmark: Any) -> None:
    pipeline = engine.compile(wl.spec)

    def once() -> None:
        result = engine.run(pipeline, wl.inputs)
        assert result.ok
        assert result.outputs[wl.output] == wl.expected

    benchmark(once)


def test_w1_chain_1000(engine: Constellation, benchmark: Any) -> None:
    _run(engine, chain(1000), benchmark)


def test_w2_fan_out_1000(engine: Constellation, benchmark: Any) -> None:
    _run(engine, fan_out(1000), benchmark)


def test_w4_sleepers_64x10ms(engine: Constellation, benchmark: Any) -> None:
    _run(engine, sleepers(64), benchmark)


def test_w3_diamond_1000_executions(engine: Constellation, benchmark: Any) -> None:
    """1,000 executions of the 10-node diamond submitted at once (executions/s = 1000/t)."""
    wl = diamond()
    pipeline = engine.compile(wl.spec)

    def batch() -> None:
        handles = [engine.submit(pipeline, wl.inputs) for _ in range(1000)]
        for h in handles:
            assert h.result().outputs[wl.output] == wl.expected

    benchmark.pedantic(batch, rounds=5, warmup_rounds=1)


def test_w3_diamond_single_run_latency(engine: Constellation, benchmark: Any) -> None:
    _run(engine, diamond(), benchmark)
