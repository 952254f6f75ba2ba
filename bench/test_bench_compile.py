"""Compile-time benchmarks (tox -e bench). Targets: 1,000-node program < 1 s, cache hit
< 50 µs."""

from __future__ import annotations

from typing import Any

from bench.programs import hundred_lines, thousand_nodes
from constellation import Constellation
from constellation.lang.compiler import compile_source


def test_compile_100_line_program(benchmark: Any) -> None:
    source = hundred_lines()
    with Constellation() as engine:
        compiled = benchmark(compile_source, source, engine.modules)
    assert len(compiled.spec.outputs) == 4


def test_compile_1000_node_program(benchmark: Any) -> None:
    source = thousand_nodes()
    with Constellation() as engine:
        compiled = benchmark.pedantic(compile_source, (source, engine.modules), rounds=5)
    assert len(compiled.spec.modules) == 1000


def test_compile_cache_hit(benchmark: Any) -> None:
    source = thousand_nodes()
    with Constellation() as engine:
        engine.compile(source)
        pipeline = benchmark(engine.compile, source)
        assert engine.compile_cache_info()["hits"] >= 1
    assert len(pipeline.spec.modules) == 1000


def test_compile_cache_hit_with_a_name_and_a_sqlite_pipeline_store(benchmark: Any,
                                                                   tmp_path: Any) -> None:
    # A recorded pipeline's cache hit must make no store call: same cost as above.
    from constellation import Backends
    from constellation.spi import SqlitePipelineStore

    source = thousand_nodes()
    with SqlitePipelineStore(tmp_path / "p.sqlite") as store, \
            Constellation(backends=Backends(pipelines=store)) as engine:
        engine.compile(source, name="big")
        pipeline = benchmark(engine.compile, source, name="big")
        assert [v.version for v in engine.pipelines.versions("big")] == [1]
    assert len(pipeline.spec.modules) == 1000
