"""Your own modules: typed records in and out, fan-out to parallel calls, and a fan-in.

Run:  python examples/custom_modules.py
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TypedDict

from constellation import Constellation, PipelineBuilder, SchedulerConfig, module


@dataclass
class Customer:
    name: str
    tier: str


class Quote(TypedDict):
    supplier: str
    price: float


@module("FetchQuote", description="Ask one supplier for a price (pretend I/O)")
def fetch_quote(supplier: str, customer: Customer) -> Quote:
    time.sleep(0.05)  # stands in for a network call; the three run at the same time
    base = {"acme": 12.5, "globex": 11.0, "initech": 13.25}[supplier]
    discount = 0.9 if customer.tier == "gold" else 1.0
    return {"supplier": supplier, "price": round(base * discount, 2)}


@module("Cheapest", description="Pick the lowest quote")
def cheapest(quotes: list[Quote]) -> Quote:
    return min(quotes, key=lambda q: q["price"])


def build() -> PipelineBuilder:
    b = PipelineBuilder("best-quote")
    customer = b.input("customer", Customer)
    quotes = [b.call("FetchQuote", supplier=s, customer=customer)
              for s in ("acme", "globex", "initech")]
    best = b.call("Cheapest", quotes=b.list(quotes))
    b.output("best", best)
    b.output("supplier", b.field(best, "supplier"))
    return b


def main() -> int:
    with Constellation([fetch_quote, cheapest],
                       scheduler=SchedulerConfig(max_concurrency=4)) as engine:
        started = time.perf_counter()
        result = engine.run(build(), {"customer": Customer("Ada", "gold")})
        elapsed = time.perf_counter() - started
    # Three 50 ms calls ran in parallel: well under 150 ms in total.
    assert elapsed < 0.15 * 3, elapsed
    print(json.dumps({"status": result.status.value, "outputs": dict(result.outputs)},
                     indent=2, sort_keys=True))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
