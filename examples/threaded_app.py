"""Embedding in a threaded application: many submissions, priorities, a timeout, a cancel.

Run:  python examples/threaded_app.py
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from constellation import (
    CallContext,
    Constellation,
    PipelineBuilder,
    Priority,
    QueueFullError,
    SchedulerConfig,
    module,
)


@module("Score", description="Score a text (cheap)")
def score(text: str) -> int:
    return sum(ord(c) for c in text) % 100


@module("Crawl", description="A long job that checks for cancellation")
def crawl(url: str, ctx: CallContext) -> str:
    while not ctx.cancelled:  # cooperative: stops soon after a cancel or deadline
        time.sleep(0.01)
    return url


def main() -> int:
    scoring = PipelineBuilder("score")
    scoring.output("score", scoring.call("Score", text=scoring.input("text", str)))
    crawling = PipelineBuilder("crawl")
    crawling.output("page", crawling.call("Crawl", url=crawling.input("url", str)))

    summary: dict[str, object] = {}
    with Constellation([score, crawl], scheduler=SchedulerConfig(
            max_concurrency=8, max_queue_size=500)) as engine:
        scoring_p = engine.compile(scoring)
        crawling_p = engine.compile(crawling)

        # Request threads submit concurrently; each waits for its own result.
        def handle_request(i: int) -> int:
            while True:
                try:
                    execution = engine.submit(scoring_p, {"text": f"request-{i}"},
                                              priority=Priority.HIGH if i % 10 == 0 else
                                              Priority.NORMAL)
                    break
                except QueueFullError:
                    time.sleep(0.001)  # back off and retry
            return execution.result().outputs["score"]

        with ThreadPoolExecutor(8) as request_threads:
            scores = list(request_threads.map(handle_request, range(200)))
        summary["scored"] = len(scores)
        summary["first_scores"] = scores[:5]

        slow = engine.run(crawling_p, {"url": "https://example.invalid"}, timeout=0.1)
        summary["timed_out"] = slow.status.value

        job = engine.submit(crawling_p, {"url": "https://example.invalid"})
        time.sleep(0.05)
        job.cancel()
        summary["cancelled"] = job.result().status.value
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
