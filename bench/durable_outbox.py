"""Durable delivery under load: N executions of a 3-node pipeline at full speed through
an OutboxListener (and, with ``--records``, a SQLite execution storage), reporting
events delivered and dropped, throughput, and how long shutdown and delivery took.

Before issue 11's durable outbox: 5,226 of 16,000 events delivered for 2,000 executions
(5,814 dropped at the listener backlog, the rest abandoned at shutdown). Usage::

    python bench/durable_outbox.py [--executions 2000] [--records]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from constellation import Backends, Constellation, SchedulerConfig, module
from constellation.spi import NoOpListener, OutboxListener, SqliteExecutionStorage

PIPELINE = "in x: Int\na = Inc(x)\nb = Inc(a)\nc = Inc(b)\nout c\n"


@module("Inc")
def inc(x: int) -> int:
    return x + 1


class Counter(NoOpListener):
    """Counts the events the outbox's relay delivers."""

    def __init__(self) -> None:
        self.count = 0

    def _seen(self, event: Any) -> None:
        self.count += 1

    on_execution_start = on_module_start = on_module_complete = _seen
    on_module_failed = on_execution_complete = _seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--records", action="store_true",
                        help="also record executions in a SQLite storage")
    args = parser.parse_args()
    n = args.executions
    with tempfile.TemporaryDirectory() as tmp:
        counter = Counter()
        outbox = OutboxListener(counter, Path(tmp) / "outbox.sqlite", poll_interval=0.05)
        storage = SqliteExecutionStorage(Path(tmp) / "records.sqlite") if args.records \
            else None
        engine = Constellation([inc], backends=Backends(listener=outbox, storage=storage),
                               scheduler=SchedulerConfig(max_concurrency=64,
                                                         max_queue_size=None))
        pipeline = engine.compile(PIPELINE)
        started = time.perf_counter()
        handles = [engine.submit(pipeline, {"x": i}) for i in range(n)]
        assert all(h.result(120).ok for h in handles)
        ran = time.perf_counter() - started
        engine.shutdown(drain_timeout=120)
        committed = time.perf_counter() - started
        health = engine.health()
        deadline = time.monotonic() + 120
        while counter.count < 8 * n and time.monotonic() < deadline:
            time.sleep(0.01)
        delivered_at = time.perf_counter() - started
        outbox.close()
        events = health["events"] or {}
        print(f"outbox: {n} executions x 3 nodes: {counter.count}/{8 * n} events delivered, "
              f"{events.get('dropped')} dropped, {events.get('lost')} lost; "
              f"{n / ran:,.0f} executions/s ({8 * n / ran:,.0f} events/s) to the last "
              f"result in {ran:.2f} s, all committed at shutdown {committed:.2f} s, all "
              f"delivered {delivered_at:.2f} s")
        if storage is not None:
            records = health["records"]
            stored = len(storage.list(limit=2 * n))
            print(f"records: {stored}/{n} in SQLite at shutdown, written {records['written']}"
                  f" (RUNNING records replaced before being written are not counted), "
                  f"failed {records['failed']}, dropped {records['dropped']}")
            storage.close()


if __name__ == "__main__":
    main()
