"""``POST /execute`` of a stored 10-node pipeline against a real ``constellation serve``
process on loopback, side by side with a *baseline*: a minimal FastAPI app whose
``async def`` endpoint takes the same request body and runs the same ten functions
inline (no engine), served by uvicorn with the same settings.

The two servers are run alternately -- one server and the load generator at a time, the
baseline then the daemon, for each number of clients -- so they share the machine the
same way. The load generator is ``wrk`` (a Lua script POSTs the JSON body) when it is
installed, else an asyncio httpx client. Requests/s, p50 and p99 latency for each; the
engine's in-process W3 figure (executions/s of a 10-node diamond) is printed after.

    python bench/http_throughput.py [--clients 16 64] [--seconds 5] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# At run time (FastAPI reads the baseline endpoint's annotation), after sys.path.
from constellation.http.models import ExecuteRequest  # noqa: E402, TC001

# Ten module calls: one inc, eight distinct add2 (distinct, or CSE would merge them), a sum.
SOURCE = "in x: Int\nt = bench.inc(x)\n" + "".join(
    f"m{i} = bench.add2(t, {i})\n" for i in range(1, 9)) + \
    "r = bench.sum([" + ", ".join(f"m{i}" for i in range(1, 9)) + "])\nout r\n"
BODY = {"ref": "ten", "inputs": {"x": 1}}
EXPECTED = sum(2 + i for i in range(1, 9))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


KINDS = ("baseline", "pooled", "embedded", "constellation")
LABELS = {
    "baseline": "baseline (async def, inline)",
    "pooled": "pooled (2 threads, no engine)",
    "embedded": "engine in a bare endpoint",
    "constellation": "constellation serve",
}


def baseline_app(variant: str = "baseline") -> Any:
    """A minimal FastAPI app with one ``async def`` endpoint taking the same body model
    and giving the same response shape. ``variant``:

    - ``baseline``: the ten functions called inline on the event loop;
    - ``pooled``: the same ten calls as a dependency-counting graph on a 2-thread
      ``ThreadPoolExecutor``, the result handed back to the loop -- the floor of any
      engine that keeps module code off the event loop (no engine code at all);
    - ``embedded``: an embedded ``Constellation`` engine running the stored pipeline
      (``await engine.submit(...)``): the engine without the daemon's layers
      (auth, limits, metrics, the store).
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from bench.workloads import add2, inc, sum_all

    app = FastAPI()
    f_inc, f_add2, f_sum = inc.func, add2.func, sum_all.func

    def answer(body: ExecuteRequest, r: Any) -> JSONResponse:
        return JSONResponse({"execution_id": "-", "pipeline": body.ref,
                             "structural_hash": "-", "status": "completed",
                             "outputs": {"r": r}, "errors": [], "missing_inputs": {},
                             "duration_ms": 0.0})

    if variant == "baseline":
        @app.post("/execute")
        async def execute(body: ExecuteRequest) -> JSONResponse:
            t = f_inc(body.inputs["x"])
            return answer(body, f_sum([f_add2(t, i) for i in range(1, 9)]))
    elif variant == "pooled":
        pool = ThreadPoolExecutor(2)

        @app.post("/execute")
        async def execute(body: ExecuteRequest) -> JSONResponse:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[int] = loop.create_future()
            mids: list[int] = []
            lock = threading.Lock()

            def mid(t: int, i: int) -> None:
                v = f_add2(t, i)
                with lock:
                    mids.append(v)
                    last = len(mids) == 8
                if last:
                    pool.submit(bottom)

            def bottom() -> None:
                r = f_sum(mids)
                loop.call_soon_threadsafe(done.set_result, r)

            def top(x: int) -> None:
                t = f_inc(x)
                for i in range(1, 9):
                    pool.submit(mid, t, i)

            pool.submit(top, body.inputs["x"])
            return answer(body, await done)
    else:
        from bench.workloads import MODULES
        from constellation import Constellation, SchedulerConfig

        engine = Constellation(MODULES, scheduler=SchedulerConfig(max_queue_size=None))
        pipeline = engine.compile(SOURCE)

        @app.post("/execute")
        async def execute(body: ExecuteRequest) -> JSONResponse:
            result = await engine.submit(pipeline, body.inputs)
            return answer(body, result.outputs["r"])

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_baseline(port: int, variant: str) -> None:
    import uvicorn

    # The settings `constellation serve` runs uvicorn with.
    uvicorn.run(baseline_app(variant), host="127.0.0.1", port=port, lifespan="off",
                log_level="info", timeout_graceful_shutdown=5)


def start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind != "constellation":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port),
               "--variant", kind]
    else:
        cmd = [sys.executable, "-m", "constellation.cli", "serve", "--port", str(port),
               "--plugin", "bench.workloads", "--storage", "memory",
               "--max-queue-size", "10000"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/health/live", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit(f"the {kind} server did not start") from None
            time.sleep(0.05)
    if kind == "constellation":
        httpx.post(f"{url}/compile", json={"source": SOURCE, "name": "ten"},
                   timeout=30).raise_for_status()
    check = httpx.post(f"{url}/execute", json=BODY, timeout=30)
    assert check.status_code == 200, check.text
    assert check.json()["outputs"]["r"] == EXPECTED, check.text
    return proc, url


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def load_wrk(url: str, clients: int, seconds: float, script: Path) -> dict[str, float]:
    def run(duration: float) -> str:
        return subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--latency", "--timeout",
             "10s", "-s", str(script), f"{url}/execute"],
            capture_output=True, text=True, check=True).stdout

    run(1)  # warm up
    out = run(seconds)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50": p50, "p99": p99, "errors": float(bad.group(1)) if bad else 0.0,
            "socket_errors": 0.0 if errors is None else 1.0}


def load_httpx(url: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0

    async def go(duration: float, record: bool) -> None:
        nonlocal errors
        stop = time.monotonic() + duration
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
            async def client() -> None:
                nonlocal errors
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    r = await c.post("/execute", json=BODY)
                    if r.status_code != 200:
                        errors += 1
                    if record:
                        latencies.append((time.perf_counter() - t0) * 1000.0)
            await asyncio.gather(*(client() for _ in range(clients)))

    asyncio.run(go(1.0, False))
    t = time.monotonic()
    asyncio.run(go(seconds, True))
    elapsed = time.monotonic() - t
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99)], "errors": float(errors),
            "socket_errors": 0.0}


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
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each pair this many times; the median is reported")
    parser.add_argument("--httpx", action="store_true", help="use httpx even with wrk")
    parser.add_argument("--servers", nargs="+", choices=KINDS, default=list(KINDS),
                        help="which servers to measure (the baseline always)")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="baseline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.variant)
        return
    kinds = [k for k in KINDS if k == "baseline" or k in args.servers]
    use_wrk = shutil.which("wrk") is not None and not args.httpx
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text('wrk.method = "POST"\n'
                          'wrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = {json.dumps(json.dumps(BODY))}\n")
        rows: list[tuple[int, str, dict[str, float]]] = []
        for clients in args.clients:
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for kind in kinds:  # alternately, one at a time
                    proc, url = start(kind)
                    try:
                        runs[kind].append(load_wrk(url, clients, args.seconds, script)
                                          if use_wrk else
                                          load_httpx(url, clients, args.seconds))
                    finally:
                        proc.terminate()
                        proc.wait(30)
            for kind, got in runs.items():
                median = {k: statistics.median(r[k] for r in got) for k in got[0]}
                rows.append((clients, kind, median))
    gen = "wrk -t1" if use_wrk else "httpx asyncio"
    print(f"POST /execute, 10-node pipeline, {args.seconds:g} s per run, load: {gen}, "
          f"median of {args.rounds} round(s)")
    print(f"{'clients':>7}  {'server':<30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'p99/p50':>7} {'vs base':>7} {'errors':>6}")
    base: dict[int, float] = {}
    for clients, kind, r in rows:
        if kind == "baseline":
            base[clients] = r["rps"]
        label = LABELS[kind]
        print(f"{clients:>7}  {label:<30} {r['rps']:>8,.0f} {r['p50']:>8.2f} "
              f"{r['p99']:>8.2f} {r['p99'] / r['p50']:>7.2f} "
              f"{r['rps'] / base[clients]:>7.2f} {r['errors']:>6.0f}")
    w3 = engine_w3()
    print(f"engine W3 in-process (10-node diamond): {w3:,.0f} executions/s")


if __name__ == "__main__":
    main()
