"""A data pipeline: filter, scale and summarize a list of numbers.

Run:  python examples/data_pipeline.py
"""

from __future__ import annotations

import json

from constellation import Constellation, PipelineBuilder


def build() -> PipelineBuilder:
    b = PipelineBuilder("data-pipeline")
    numbers = b.input("numbers", list[int])
    threshold = b.input("threshold", int)
    kept = b.call("FilterGreaterThan", numbers=numbers, threshold=threshold)
    scaled = b.call("MultiplyEach", numbers=kept, multiplier=10)
    b.output("kept", kept)
    b.output("scaled", scaled)
    b.output("total", b.call("SumList", numbers=scaled))
    b.output("largest", b.call("Max", numbers=kept))
    b.output("average", b.call("Average", numbers=kept))
    b.output("label", b.call("FormatNumber", number=b.call("SumList", numbers=scaled)))
    return b


def main() -> int:
    with Constellation() as engine:
        result = engine.run(build(), {"numbers": [3, 8, 1, 15, 42, 7, 23], "threshold": 7})
    print(json.dumps({"status": result.status.value, "outputs": dict(result.outputs)},
                     indent=2, sort_keys=True))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
