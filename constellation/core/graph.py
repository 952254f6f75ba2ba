"""Pictures of a pipeline: its DagSpec as Mermaid or Graphviz DOT text.

One model, two spellings. :func:`graph_of` reduces a DagSpec to what a person wants to
see -- the pipeline's inputs, its module calls (node, module, output type, call
options), its declared outputs -- and the edges between them. Inline transforms (field
access, merges, arithmetic, literals ...) are *collapsed* by default: an edge then runs
from the call or input that produced a value to the call that reads it, labelled with
the parameter and the transforms on the way. With ``transforms=True`` they are nodes of
their own. An :class:`~constellation.core.results.ExecutionResult` colours each call by
its status.

Everything here is iterative (a chain of 100,000 transforms draws without recursion),
and the output is deterministic: the same DagSpec and options give the same text, so a
committed picture can be checked against its pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from constellation.core.types import render

if TYPE_CHECKING:
    from constellation.core.dag import DagSpec, ModuleNode
    from constellation.core.results import ExecutionResult

__all__ = ["STATUS_COLOURS", "Graph", "GraphEdge", "GraphNode", "graph_of", "to_dot",
           "to_mermaid"]

# Fill colours by node status (NodeStatus values), light enough for black text.
STATUS_COLOURS = {
    "completed": "#c8e6c9",
    "failed": "#ffcdd2",
    "cancelled": "#ffe0b2",
    "running": "#bbdefb",
    "pending": "#eeeeee",
    "skipped": "#f5f5f5",
}

_MAX_VIA = 3  # transforms named on a collapsed edge; more are "..."


@dataclass(frozen=True, slots=True)
class GraphNode:
    """One node of the picture.

    Attributes:
        id: the DagSpec id (``in:text``, ``mod:Uppercase``, ``out:result``, a data id).
        kind: ``input``, ``module``, ``transform`` or ``output``.
        label: lines of text shown in the node.
        status: the node's status in the given result (modules only), or None.
    """

    id: str
    kind: str
    label: tuple[str, ...]
    status: str | None = None


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """An edge ``source`` → ``target`` (GraphNode ids), with an optional label."""

    source: str
    target: str
    label: str = ""


@dataclass(frozen=True)
class Graph:
    """Nodes and edges, in a deterministic order (inputs, calls, transforms, outputs)."""

    name: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"name", "nodes": [{"id", "kind", "label", "status"}], "edges":
        [{"source", "target", "label"}]}`` (what the daemon's ``/pipelines/{ref}/graph``
        serves and its dashboard draws)."""
        return {"name": self.name,
                "nodes": [{"id": n.id, "kind": n.kind, "label": list(n.label),
                           "status": n.status} for n in self.nodes],
                "edges": [{"source": e.source, "target": e.target, "label": e.label}
                          for e in self.edges]}


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}min"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def _option_text(name: str, value: Any) -> str:
    if name in ("timeout", "delay", "cache"):
        return f"{name}: {_duration(value)}"
    if name == "throttle":
        count, per = value
        return f"throttle: {count}/{_duration(per)}"
    if name == "lazy":
        return "lazy"
    if name == "fallback":
        text = repr(value)
        return f"fallback: {text if len(text) <= 24 else text[:21] + '...'}"
    return f"{name}: {value}"


def _module_label(m: ModuleNode, spec: DagSpec) -> tuple[str, ...]:
    lines = [m.name]
    if m.module != m.name:
        lines.append(m.module)
    out = spec.data_by_id.get(m.output)
    if out is not None and out.ctype is not None:
        lines.append(f"→ {render(out.ctype)}")
    options = m.options.as_dict()
    if options:
        lines.append(", ".join(_option_text(k, v) for k, v in sorted(options.items())))
    return tuple(lines)


def graph_of(spec: DagSpec, result: ExecutionResult | None = None, *,
             transforms: bool = False) -> Graph:
    """The picture's model of ``spec`` (see the module docstring).

    Args:
        spec: the pipeline's DagSpec.
        result: colour each call by its status in this execution's result.
        transforms: draw inline transforms as nodes instead of collapsing them.
    """
    data = spec.data_by_id
    producer = {m.output: m.id for m in spec.modules}  # data id -> module node id
    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []
    for name, did in spec.inputs:
        d = data.get(did)
        ctype = f": {render(d.ctype)}" if d is not None and d.ctype is not None else ""
        nodes.append(GraphNode(did, "input", (f"{name}{ctype}",)))
    statuses = {} if result is None else {
        name: record.status.value for name, record in result.modules.items()}
    nodes.extend(GraphNode(m.id, "module", _module_label(m, spec), statuses.get(m.name))
                 for m in spec.modules)

    def source_of(did: str) -> str | None:
        # The graph node that stands for data node ``did`` itself, if any.
        if did in producer:
            return producer[did]
        d = data.get(did)
        if d is None:
            return None
        if d.transform is None:
            return did  # an input
        return did if transforms else None

    def sources(did: str) -> list[tuple[str, tuple[str, ...]]]:
        """(graph node, transforms passed on the way) for every value ``did`` is made of,
        walking back through collapsed transforms without recursion."""
        found: list[tuple[str, tuple[str, ...]]] = []
        seen: set[str] = set()
        stack: list[tuple[str, tuple[str, ...]]] = [(did, ())]
        while stack:
            cur, via = stack.pop()
            node = source_of(cur)
            if node is not None:
                found.append((node, via))
                continue
            if cur in seen:
                continue
            seen.add(cur)
            d = data.get(cur)
            if d is None or d.transform is None:
                continue
            # Walking back: the transform met first was applied last, so it goes first.
            nv = via if len(via) > _MAX_VIA else (d.transform.op, *via)
            stack.extend((inp, nv) for inp in reversed(d.inputs))
        found.reverse()
        return found

    def via_text(via: tuple[str, ...]) -> str:
        shown = via if len(via) <= _MAX_VIA else ("...", *via[-_MAX_VIA:])
        return ", ".join(shown)

    def connect(did: str, target: str, label: str) -> None:
        taken: set[tuple[str, str]] = set()
        for src, via in sources(did):
            text = label if not via else f"{label} ({via_text(via)})" if label \
                else via_text(via)
            if (src, text) in taken:
                continue
            taken.add((src, text))
            edges.append(GraphEdge(src, target, text))

    for m in spec.modules:
        for param, did in m.args:
            connect(did, m.id, param)
    if transforms:
        for d in spec.data:
            if d.transform is None or d.id in producer:
                continue
            nodes.append(GraphNode(d.id, "transform", (d.transform.op,)))
            for i, inp in enumerate(d.inputs):
                connect(inp, d.id, "" if len(d.inputs) == 1 else str(i))
    for name, did in spec.outputs:
        oid = f"out:{name}"
        nodes.append(GraphNode(oid, "output", (f"out {name}",)))
        connect(did, oid, "")
    return Graph(spec.name, tuple(nodes), tuple(edges))


# --- DOT ---------------------------------------------------------------------------------

def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_SHAPES = {"input": "shape=parallelogram, style=filled, fillcolor=\"#e3f2fd\"",
               "module": "shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"",
               "transform": "shape=ellipse, style=dashed, fontsize=10",
               "output": "shape=parallelogram, style=filled, fillcolor=\"#fff9c4\""}


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text for ``graph`` (render it with ``dot -Tsvg``)."""
    lines = [f"digraph {_dot_quote(graph.name)} {{", "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for n in graph.nodes:
        attrs = _DOT_SHAPES[n.kind]
        if n.status is not None:
            attrs = attrs.replace('fillcolor="#ffffff"',
                                  f'fillcolor="{STATUS_COLOURS.get(n.status, "#ffffff")}"')
        label = "\n".join(n.label)
        status = f", tooltip={_dot_quote(n.status)}" if n.status else ""
        lines.append(f"  {_dot_quote(n.id)} [label={_dot_quote(label)}, {attrs}{status}];")
    for e in graph.edges:
        label = f" [label={_dot_quote(e.label)}]" if e.label else ""
        lines.append(f"  {_dot_quote(e.source)} -> {_dot_quote(e.target)}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- Mermaid -----------------------------------------------------------------------------

def _mermaid_text(text: str) -> str:
    # Mermaid labels in double quotes: quotes and markup characters as entity codes.
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;") \
        .replace(">", "#gt;").replace("|", "#124;")


_MERMAID_SHAPES = {"input": ('[/"', '"/]'), "module": ('("', '")'),
                   "transform": ('(["', '"])'), "output": ('[\\"', '"\\]')}


def to_mermaid(graph: Graph) -> str:
    """Mermaid flowchart text for ``graph`` (GitHub and most Markdown viewers draw it)."""
    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}
    kinds = {n.id: n.kind for n in graph.nodes}
    lines = ["flowchart LR"]
    for n in graph.nodes:
        left, right = _MERMAID_SHAPES[n.kind]
        label = "<br/>".join(_mermaid_text(line) for line in n.label)
        lines.append(f"  {ids[n.id]}{left}{label}{right}")
    for e in graph.edges:
        arrow = "-.->" if kinds.get(e.target) == "transform" else "-->"
        label = f"|\"{_mermaid_text(e.label)}\"|" if e.label else ""
        lines.append(f"  {ids[e.source]} {arrow}{label} {ids[e.target]}")
    used = sorted({n.status for n in graph.nodes if n.status})
    for status in used:
        lines.append(f"  classDef {status} fill:{STATUS_COLOURS.get(status, '#ffffff')},"
                     "stroke:#333")
        members = ",".join(ids[n.id] for n in graph.nodes if n.status == status)
        lines.append(f"  class {members} {status}")
    return "\n".join(lines) + "\n"



# --- Graphviz ----------------------------------------------------------------------------

GRAPHVIZ_HINT = ("svg and png need Graphviz's `dot` on PATH (Debian/Ubuntu: apt-get install "
                 "graphviz; macOS: brew install graphviz); --format mermaid and --format dot "
                 "need nothing")


def render_graphviz(dot_text: str, fmt: str, *, timeout: float = 60.0) -> bytes:
    """Render DOT text to ``svg`` or ``png`` with Graphviz's ``dot`` command.

    Raises:
        ConfigurationError: ``dot`` is not installed, failed, or took longer than
            ``timeout`` seconds (it is killed).
    """
    import shutil
    import subprocess

    from constellation.core.errors import ConfigurationError

    if fmt not in ("svg", "png"):
        raise ConfigurationError(f"Graphviz output format must be svg or png, got {fmt!r}",
                                 details={"field": "format"})
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigurationError(f"Graphviz is not installed: {GRAPHVIZ_HINT}",
                                 details={"field": "format"})
    try:
        done = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigurationError(f"Graphviz did not finish within {timeout:g} s",
                                 details={"field": "format"}) from None
    except OSError as exc:
        raise ConfigurationError(f"could not run Graphviz ({dot}): {exc}",
                                 details={"field": "format"}) from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()[:500]
        raise ConfigurationError(f"Graphviz failed (exit {done.returncode}): {reason}",
                                 details={"field": "format"})
    return done.stdout
