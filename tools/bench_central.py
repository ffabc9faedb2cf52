"""Benchmark of the CMC link: commands/s and command->ack latency for 50-200 sites.

    .venv/bin/python tools/bench_central.py [--sites 50 100 200] [--rounds 20]
                                            [--broker HOST:PORT]

Without ``--broker`` a private mosquitto is started on an ephemeral loopback port and
stopped at the end. Each site is the firmware's own MQTT link (``controller.central``) on
one event loop, answering as a controller would; the central simulator sends every site a
limit per round and waits for all acks. Everything runs on one host and one core, so the
figures are a floor for a real deployment, not a ceiling.
"""

import argparse
import asyncio
import contextlib
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from controller.config import CentralConfig
from hil.central_sim import CentralSim, SimulatedSites, demo_model


@contextlib.contextmanager
def private_mosquitto() -> Iterator[int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"user root\npersistence false\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 100000\nset_tcp_nodelay true\n"
        )
        proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("mosquitto did not start") from None
                    time.sleep(0.02)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


async def bench(host: str, port: int, n_sites: int, rounds: int) -> dict[str, float]:
    model = demo_model(n_sites)
    sim = CentralSim(model, host=host, port=port, auto_limits=False, identifier="bench-central")
    cfg = CentralConfig(host=host, port=port, tls=False, telemetry_s=5.0)
    sites = SimulatedSites([s.site_id for s in model.sites], cfg, period_s=1.0)
    tasks = [asyncio.create_task(sim.run()), asyncio.create_task(sites.run())]
    try:
        await sim.wait_ready()
        async with asyncio.timeout(60.0):
            while not sites.all_connected():  # noqa: ASYNC110 (polling N links)
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        sim.ack_log.clear()
        start = time.perf_counter()
        for _ in range(rounds):
            sent = await sim.send_limits()
            for cid in sent.values():
                await sim.wait_ack(cid, 30.0)
        elapsed = time.perf_counter() - start
        lat = sim.latencies_s()
        return {
            "sites": n_sites,
            "commands": len(lat),
            "commands_per_s": len(lat) / elapsed,
            "p50_ms": 1000 * sorted(lat)[len(lat) // 2],
            "p99_ms": 1000 * p99(lat),
            "refused": sum(1 for r in sim.ack_log if not r.ack.get("accepted")),
        }
    finally:
        await sites.aclose()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--broker", default=None, metavar="HOST:PORT")
    args = parser.parse_args(argv)

    def run_all(host: str, port: int) -> None:
        print(f"{'sites':>6} {'commands':>9} {'cmd/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for n in args.sites:
            r = asyncio.run(bench(host, port, n, args.rounds))
            print(
                f"{r['sites']:>6} {r['commands']:>9} {r['commands_per_s']:>9.0f}"
                f" {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
                + (f"  refused {r['refused']}" if r["refused"] else ""),
                flush=True,
            )

    if args.broker:
        host, _, port = args.broker.rpartition(":")
        run_all(host, int(port))
    else:
        with private_mosquitto() as port:
            run_all("127.0.0.1", port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
