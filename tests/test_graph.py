"""Pictures of a pipeline: Pipeline.to_dot / to_mermaid and ``constellation graph``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from constellation import Constellation, ExecutionStatus, PipelineBuilder, module
from constellation.cli import main
from constellation.core.dag import DagSpec, DataNode, ModuleNode, Transform
from constellation.core.graph import STATUS_COLOURS, graph_of, to_dot, to_mermaid

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "examples" / "pipelines").glob("*.cst"))
DOCS_PICTURE = ROOT / "docs" / "images" / "data-pipeline.svg"

_NODE = re.compile(r'^  "([^"]+)" \[label=', re.M)
_EDGE = re.compile(r'^  "([^"]+)" -> "([^"]+)"', re.M)


def parse_dot(text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Node ids and (source, target) pairs of our DOT output."""
    return set(_NODE.findall(text)), set(_EDGE.findall(text))


def producers(spec: DagSpec, did: str) -> set[str]:
    """What the picture should draw an edge from for data node ``did``: the module that
    computes it, the input it is, or (through inline transforms) what those read."""
    for m in spec.modules:
        if m.output == did:
            return {m.id}
    d = spec.data_by_id[did]
    if d.transform is None:
        return {did}
    found: set[str] = set()
    for inp in d.inputs:
        found |= producers(spec, inp)
    return found


def expected_edges(spec: DagSpec) -> set[tuple[str, str]]:
    edges = {(src, m.id) for m in spec.modules for _, did in m.args
             for src in producers(spec, did)}
    edges |= {(src, f"out:{name}") for name, did in spec.outputs
              for src in producers(spec, did)}
    return edges


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_the_dot_picture_has_the_dagspecs_nodes_and_edges(path: Path,
                                                          capsys: Any) -> None:
    with Constellation() as engine:
        pipeline = engine.compile(path.read_text(), name=path.stem)
    spec = pipeline.spec
    dot = pipeline.to_dot()
    nodes, edges = parse_dot(dot)
    assert nodes == ({did for _, did in spec.inputs} | {m.id for m in spec.modules}
                     | {f"out:{name}" for name, _ in spec.outputs})
    assert edges == expected_edges(spec)
    # The CLI draws exactly what the Python API draws.
    assert main(["graph", str(path), "--format", "dot"]) == 0
    assert capsys.readouterr().out == dot
    assert main(["graph", str(path)]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid == pipeline.to_mermaid()
    assert mermaid.startswith("flowchart LR\n")
    assert len(re.findall(r" -(?:-|\.-)>", mermaid)) == len(_EDGE.findall(dot))


def test_call_options_module_and_output_type_are_in_the_labels() -> None:
    with Constellation() as engine:
        pipeline = engine.compile((ROOT / "examples/pipelines/call-options.cst").read_text())
    dot = pipeline.to_dot()
    assert "retry: 2" in dot
    assert "timeout: 5s" in dot
    assert "delay: 100ms" in dot
    assert "cache: 10min" in dot
    assert "throttle: 100/1s" in dot
    assert "fallback: 0" in dot
    assert "→ Int" in dot
    assert "text: String" in dot


def test_shown_transforms_are_nodes_with_edges_from_what_they_read() -> None:
    with Constellation() as engine:
        pipeline = engine.compile("in a: {x: Int, y: Int}\ns = a.x + a.y\nout s\n")
    spec = pipeline.spec
    collapsed = parse_dot(pipeline.to_dot())
    assert collapsed[1] == {("in:a", "mod:add"), ("mod:add", "out:s")}
    assert '[label="a (field)"]' in pipeline.to_dot()
    nodes, edges = parse_dot(pipeline.to_dot(transforms=True))
    fields = {d.id for d in spec.data if d.transform is not None and d.transform.op == "field"}
    assert len(fields) == 2
    assert fields <= nodes
    assert {("in:a", f) for f in fields} <= edges
    assert {(f, "mod:add") for f in fields} <= edges


@module("graph.Boom")
def boom(text: str) -> str:
    raise RuntimeError("boom")


def test_a_result_colours_each_call_by_its_status() -> None:
    b = PipelineBuilder("colours")
    t = b.input("t", str)
    ok = b.call("Trim", text=t)
    b.output("ok", ok)
    b.output("bad", b.call(boom, text=ok))
    with Constellation([boom]) as engine:
        pipeline = engine.compile(b.build())
        result = engine.run(pipeline, {"t": " x "})
    assert result.status is ExecutionStatus.FAILED
    dot = pipeline.to_dot(result)
    trim = re.search(r'"mod:Trim" \[.*\];', dot)
    failed = re.search(r'"mod:graph\.Boom" \[.*\];', dot)
    assert trim
    assert f'fillcolor="{STATUS_COLOURS["completed"]}"' in trim.group(0)
    assert failed
    assert f'fillcolor="{STATUS_COLOURS["failed"]}"' in failed.group(0)
    mermaid = pipeline.to_mermaid(result)
    assert "classDef failed" in mermaid
    assert "classDef completed" in mermaid
    assert pipeline.to_dot() != dot  # without a result: no colours


def test_ten_thousand_chained_transforms_draw_without_recursion() -> None:
    n = 10_000
    data = [DataNode("in:x", "x", None)]
    for i in range(n):
        data.append(DataNode(f"t:{i}", f"t{i}", None, Transform("field", (("name", "a"),)),
                             (data[-1].id,)))
    data.append(DataNode("m.out", "m.out", None))
    spec = DagSpec("deep", (("x", "in:x"),), tuple(data),
                   (ModuleNode("mod:m", "m", "Trim", (("text", data[-2].id),), "m.out"),),
                   (("r", "m.out"),))
    graph = graph_of(spec)
    assert {(e.source, e.target) for e in graph.edges} == {("in:x", "mod:m"),
                                                           ("mod:m", "out:r")}
    label = next(e.label for e in graph.edges if e.target == "mod:m")
    assert label == "text (..., field, field, field)"
    assert len(parse_dot(to_dot(graph_of(spec, transforms=True)))[0]) == n + 3
    assert to_mermaid(graph).count("-->") == 2


def test_quotes_and_markup_in_names_stay_inside_their_labels() -> None:
    spec = DagSpec('we"ird', (('a"b<c>|d', "in:q"),), (DataNode("in:q", 'a"b<c>|d', None),),
                   (), (("o", "in:q"),))
    dot = to_dot(graph_of(spec))
    assert 'label="a\\"b<c>|d"' in dot
    assert dot.startswith('digraph "we\\"ird" {')
    mermaid = to_mermaid(graph_of(spec))
    assert "a#quot;b#lt;c#gt;#124;d" in mermaid
    assert '"b<' not in mermaid


def test_png_needs_an_output_file_and_svg_needs_graphviz(tmp_path: Path, capsys: Any,
                                                         monkeypatch: Any) -> None:
    path = ROOT / "examples/pipelines/text-analysis.cst"
    assert main(["graph", str(path), "--format", "png"]) == 2
    assert "-o FILE.png" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` here
    assert main(["graph", str(path), "--format", "svg"]) == 2
    err = capsys.readouterr().err
    assert "Graphviz is not installed" in err
    assert "apt-get install graphviz" in err
    assert main(["graph", str(path), "--format", "mermaid", "-o",
                 str(tmp_path / "p.mmd")]) == 0
    assert (tmp_path / "p.mmd").read_text().startswith("flowchart LR")
    assert main(["graph", str(tmp_path / "missing.cst")]) == 2


def _needs_graphviz() -> None:
    if shutil.which("dot") is None:
        import os

        if os.environ.get("CI") == "true":
            pytest.fail("Graphviz (dot) is missing under CI: .ci/run installs it")
        pytest.skip("Graphviz's dot is not installed")


def test_svg_and_png_are_drawn_by_graphviz(tmp_path: Path) -> None:
    _needs_graphviz()
    path = ROOT / "examples/pipelines/text-analysis.cst"
    assert main(["graph", str(path), "--format", "svg", "-o", str(tmp_path / "p.svg")]) == 0
    svg = (tmp_path / "p.svg").read_text()
    assert "<svg" in svg
    assert "WordCount" in svg
    assert main(["graph", str(path), "--format", "png", "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


def test_the_picture_in_the_docs_is_current() -> None:
    """docs/images/data-pipeline.svg is what the CLI draws for the example today."""
    _needs_graphviz()
    done = subprocess.run(
        [sys.executable, "-m", "constellation", "graph",
         str(ROOT / "examples/pipelines/data-pipeline.cst"), "--format", "svg"],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == DOCS_PICTURE.read_text(), (
        "docs/images/data-pipeline.svg is stale: regenerate it with `constellation graph "
        "examples/pipelines/data-pipeline.cst --format svg -o docs/images/data-pipeline.svg`")


def test_the_graph_as_json_has_the_same_nodes_and_edges_as_the_dot() -> None:
    import json

    with Constellation() as engine:
        pipeline = engine.compile((ROOT / "examples/pipelines/data-pipeline.cst").read_text())
    body = json.loads(json.dumps(graph_of(pipeline.spec).as_dict()))
    nodes, edges = parse_dot(pipeline.to_dot())
    assert {n["id"] for n in body["nodes"]} == nodes
    assert {(e["source"], e["target"]) for e in body["edges"]} == edges
    assert {n["kind"] for n in body["nodes"]} == {"input", "module", "output"}
