"""Text analysis: clean a document and measure it, with independent steps in parallel.

Run:  python examples/text_analysis.py ["some text"]
"""

from __future__ import annotations

import json
import sys

from constellation import Constellation, PipelineBuilder


def build() -> PipelineBuilder:
    b = PipelineBuilder("text-analysis", description="Trim, normalize and measure a document")
    document = b.input("document", str)
    cleaned = b.call("Trim", text=document)
    normalized = b.call("Lowercase", text=cleaned)
    b.output("cleaned", cleaned)
    b.output("normalized", normalized)
    b.output("words", b.call("WordCount", text=normalized))
    b.output("chars", b.call("TextLength", text=normalized))
    b.output("lines", b.call("SplitLines", text=cleaned))
    return b


def main() -> int:
    document = sys.argv[1] if len(sys.argv) > 1 else "  Hello World\nLine 2  "
    with Constellation() as engine:
        pipeline = engine.compile(build())
        result = engine.run(pipeline, {"document": document})
    print(json.dumps({"status": result.status.value, "outputs": dict(result.outputs)},
                     indent=2, sort_keys=True))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
