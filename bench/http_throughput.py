"""Requests per second of ``POST /execute`` on a 10-node pipeline, 16 concurrent clients,
against a real ``constellation serve`` process on loopback; the engine's own W3 figure
(in-process executions/s of a 10-node diamond) is printed beside it.

    python bench/http_throughput.py [--clients 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Ten module calls: one inc, eight distinct add2 (distinct, or CSE would merge them), a sum.
SOURCE = "in x: Int\nt = bench.inc(x)\n" + "".join(
    f"m{i} = bench.add2(t, {i})\n" for i in range(1, 9)) + \
    "r = bench.sum([" + ", ".join(f"m{i}" for i in range(1, 9)) + "])\nout r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_w3(executions: int = 2000) -> float:
    from bench.workloads import MODULES, diamond
    from constellation import Constellation, SchedulerConfig

    with Constellation(MODULES, scheduler=SchedulerConfig(
            max_concurrency=64, max_queue_size=None)) as engine:
        wl = diamond()
        pipeline = engine.compile(wl.spec)
        for h in [engine.submit(pipeline, wl.inputs) for _ in range(200)]:
            h.result()
        t = time.perf_counter()
        for h in [engine.submit(pipeline, wl.inputs) for _ in range(executions)]:
            h.result()
        return executions / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "constellation.cli", "serve", "--port", str(port),
         "--plugin", "bench.workloads", "--storage", "memory", "--max-queue-size", "10000"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/health/live", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.05)
        compiled = httpx.post(f"{url}/compile", json={"source": SOURCE, "name": "ten"})
        compiled.raise_for_status()
        body = {"ref": "ten", "inputs": {"x": 1}}
        expected = sum(2 + i for i in range(1, 9))
        counts = [0] * args.clients
        errors = [0] * args.clients
        stop = time.monotonic() + args.seconds

        def client(i: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                for _ in range(20):  # warm up
                    c.post("/execute", json=body)
                while time.monotonic() < stop:
                    r = c.post("/execute", json=body)
                    if r.status_code == 200 and r.json()["outputs"]["r"] == expected:
                        counts[i] += 1
                    else:
                        errors[i] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(30)
    rps = sum(counts) / elapsed
    w3 = engine_w3()
    print(f"POST /execute, 10-node pipeline, {args.clients} clients: {rps:,.0f} requests/s "
          f"({sum(errors)} errors)")
    print(f"engine W3 in-process (10-node diamond): {w3:,.0f} executions/s; "
          f"HTTP/W3 = {rps / w3:.2f}")


if __name__ == "__main__":
    main()
