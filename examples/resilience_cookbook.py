"""The original engine's cookbook resilience pipelines, on its demonstration modules.

retry recovers a flaky service, a fallback (here an input) replaces a service that
always fails, on_error: skip gives the zero value, a lazy call runs only when a branch
picks it, and a per-attempt timeout with a retry gets past a slow first call.

Run:  python examples/resilience_cookbook.py
"""

from __future__ import annotations

import json

from constellation import Constellation
from constellation.examples.resilience import resilience_modules

PIPELINE = """
in request: String
in defaultValue: String
in document: String

recovered = FlakyService(request) with retry: 2, delay: 10ms
replaced = AlwaysFailsService(request) with fallback: defaultValue
skipped = AlwaysFailsService(request) with on_error: skip
check = QuickCheck(document)
deep = DeepAnalysis(document) with lazy
analysis = branch { check == "valid" -> "quick check passed", otherwise -> deep }
patient = TimeoutProneService(request) with timeout: 200ms, retry: 1

out recovered
out replaced
out skipped
out analysis
out patient
"""


def main() -> int:
    # time_scale shortens the simulated latencies (the first TimeoutProneService call
    # takes 3 s x 0.2 = 600 ms, longer than its 200 ms timeout; the retry takes 20 ms).
    with Constellation(modules=resilience_modules(time_scale=0.2)) as engine:
        result = engine.run(PIPELINE, {"request": "order-7", "defaultValue": "cached order",
                                       "document": "a simple note"}, timeout=30)
        modules = {name: m.attempts for name, m in sorted(result.modules.items())}
    print(json.dumps({"status": result.status.value, "outputs": dict(result.outputs),
                      "attempts": modules}, indent=2, sort_keys=True))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
