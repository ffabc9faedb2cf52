"""Benchmark: requests per second the CPO simulator sustains, and the client's CPU time per
exchange (not a test). Usage:

    .venv/bin/python tools/bench_cpo.py [--seconds 3] [--clients 8] [--chargepoints 50]

The simulator runs in the same process as the clients, so the CPU figure of the
sequential run covers both ends of one exchange (an upper bound for the client alone).
It must never be run by the test suite (timings depend on the machine).
"""

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from controller.cpo import LimitRequest
from controller.cpo.rest import RestTransport
from hil.cpo_sim import CpoSimulator, SiteSettings

SITE = "bench-site"
TOKEN = "bench"


async def run(seconds: float, clients: int, chargepoints: int) -> None:
    sim = CpoSimulator(
        [SiteSettings(SITE, chargepoints=chargepoints, utilisation=0.35, tick_s=5.0)],
        token=TOKEN,
    )
    url = await sim.start(port=0)
    try:
        # sequential: CPU time per exchange (GET demand, then PUT limit)
        async with RestTransport(url, SITE, TOKEN) as t:
            await t.get_demand()
            n = 300
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                await t.get_demand()
            get_cpu = (time.process_time() - cpu0) / n
            get_wall = (time.perf_counter() - wall0) / n
            cpu0 = time.process_time()
            now = datetime.now(UTC)
            for seq in range(1, n + 1):
                await t.put_limit(
                    LimitRequest(
                        limit_kw=50.0,
                        sequence=seq,
                        reason="curtail",
                        issued_at=now,
                        valid_until=now + timedelta(seconds=300),
                    )
                )
            put_cpu = (time.process_time() - cpu0) / n
        # concurrent: throughput of GET demand
        done = 0
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            async with RestTransport(url, SITE, TOKEN) as t:
                while time.perf_counter() < deadline:
                    await t.get_demand()
                    done += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        rate = done / (time.perf_counter() - started)
    finally:
        await sim.stop()
    print(
        f"{chargepoints} chargepoints: GET demand {get_wall * 1e3:.2f} ms,"
        f" {get_cpu * 1e3:.2f} ms CPU (both ends); PUT limit {put_cpu * 1e3:.2f} ms CPU;"
        f" {clients} clients: {rate:.0f} requests/s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--chargepoints", type=int, default=50)
    args = p.parse_args()
    asyncio.run(run(args.seconds, args.clients, args.chargepoints))


if __name__ == "__main__":
    main()
