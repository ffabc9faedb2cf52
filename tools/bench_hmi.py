"""Benchmark: does the HMI slow the control loop? (prints, asserts nothing; not a test)

Runs the controller in this process (simulated meter over Modbus TCP on loopback, simulated
breaker, SQLite store in a temporary folder, the HMI server), measures how late the control
tick fires against its deadline while no client is connected, then again while N live
clients (server-sent events, in a separate process so their own CPU does not count
against the controller's event loop) are connected and one more client polls
``/api/status`` and ``/api/events`` as a browser on the log page would. Usage:

    .venv/bin/python -m tools.bench_hmi [--clients 50] [--seconds 20] [--period 0.1]
"""

import argparse
import asyncio
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from controller.config import parse_config
from controller.hmi.server import serve
from controller.runtime import Runtime
from controller.store import Store
from hal.meter import build_meter
from hal.sim.breaker import SimBreaker
from hal.sim.meter import SimMeter

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def describe(label: str, late_s: list[float]) -> str:
    ms = [1000.0 * v for v in late_s]
    return (
        f"{label:<28} ticks {len(ms):5d}  lateness p50 {percentile(ms, 0.5):7.3f} ms"
        f"  p99 {percentile(ms, 0.99):7.3f} ms  max {max(ms):7.3f} ms"
    )


async def window(rt: Runtime, seconds: float) -> list[float]:
    start = rt.stats.ticks
    await asyncio.sleep(seconds)
    n = rt.stats.ticks - start
    return list(rt.stats.lateness)[-n:] if n else []


async def clients_main(url: str, n: int, seconds: float) -> None:
    """The client side (a child process): n live SSE readers + one poller."""
    received = [0] * n

    async def reader(i: int, http: aiohttp.ClientSession) -> None:
        async with http.get(url + "/api/live") as r:
            async for raw in r.content:
                if raw.startswith(b"data: "):
                    received[i] += 1

    async def poller(http: aiohttp.ClientSession) -> None:
        while True:
            for path in ("/api/status", "/api/events?limit=200"):
                async with http.get(url + path) as r:
                    await r.read()
            await asyncio.sleep(1.0)

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        tasks = [asyncio.create_task(reader(i, http)) for i in range(n)]
        tasks.append(asyncio.create_task(poller(http)))
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"{n} clients: {min(received)}..{max(received)} samples each in {seconds:.0f} s")


async def bench(clients: int, seconds: float, period_s: float) -> None:
    sim = SimMeter("sdm630", power_kw=60.0, jitter=True)
    port = await sim.start_tcp("127.0.0.1", 0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(
            {
                "site": {"id": "bench-hmi", "clock_trusted": True},
                "scheme": {"type": "CLM", "limit": 100.0, "margin": 5.0},
                "ev_site": {"max_kw": 80.0, "min_kw": 2.0, "fallback_kw": 20.0},
                "control": {"period_s": period_s},
                "meter": {
                    "transport": "tcp",
                    "host": "127.0.0.1",
                    "tcp_port": port,
                    "profile": "sdm630",
                    "poll_interval_s": period_s,
                },
                "breaker": {"transport": "sim"},
                "hmi": {"port": 0},
                "store": {"path": str(Path(tmp) / "bench.sqlite")},
            }
        )
        store = Store(cfg.store.path)
        await store.start()
        assert cfg.meter is not None
        rt = Runtime(cfg, meter=build_meter(cfg.meter), breaker=SimBreaker(), cpo=None,
                     store=store, status_server=serve)  # fmt: skip
        task = asyncio.create_task(rt.run())
        try:
            await asyncio.wait_for(rt.http_ready.wait(), 10)
            host, http_port = rt.http_addresses[0]
            url = f"http://{host}:{http_port}"
            await asyncio.sleep(2.0)  # let start-up settle
            idle = await window(rt, seconds)
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tools.bench_hmi", "--as-clients", url,
                "--clients", str(clients), "--seconds", str(seconds + 3.0),
                cwd=ROOT, env=os.environ.copy(),
            )  # fmt: skip
            await asyncio.sleep(2.0)  # connections up
            loaded = await window(rt, seconds)
            await child.wait()
            idle_after = await window(rt, min(seconds, 5.0))
        finally:
            rt.stop()
            await task
            await sim.stop()
    print(f"control period {period_s * 1000:.0f} ms, {seconds:.0f} s per window")
    print(describe("idle (no HMI client)", idle))
    print(describe(f"{clients} live clients + poller", loaded))
    print(describe("idle again", idle_after))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--period", type=float, default=0.1, help="control period (s), >= 0.1")
    p.add_argument("--as-clients", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.getLogger("controller").setLevel(logging.CRITICAL)  # the figures, not the events
    t0 = time.monotonic()
    if args.as_clients:
        asyncio.run(clients_main(args.as_clients, args.clients, args.seconds))
        return
    asyncio.run(bench(args.clients, args.seconds, args.period))
    print(f"(bench took {time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
