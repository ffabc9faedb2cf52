"""Benchmark: meter polls per second and CPU time per poll over a real pty (not a test).

Starts socat and the simulated meter in-process, polls with the production driver for a
fixed number of polls per profile, and prints one line per profile. Usage:

    .venv/bin/python tools/bench_meter.py [--polls 200] [--baud 115200] [--gap-ms 0]

It must never be run by the test suite (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from hal.meter import MeterSettings, ModbusMeter
from hal.profile import shipped_profiles
from hal.sim.meter import SimMeter
from hal.sim.pty import PtyPair


async def bench(profile: str, polls: int, baud: int, gap_ms: float, folder: Path) -> str:
    """One profile's figures: the simulator runs in this process, so CPU covers both ends."""
    async with PtyPair(folder / f"{profile}-drv", folder / f"{profile}-sim") as pair:
        sim = SimMeter(profile, power_kw=11.0, jitter=True)
        await sim.start_serial(pair.slave_path, baud=baud)
        meter = ModbusMeter(
            MeterSettings(
                port=pair.master_path,
                baud=baud,
                profile=profile,
                timeout_s=1.0,
                inter_frame_gap_ms=gap_ms,
            )
        )
        try:
            await meter.read()  # open the port outside the measurement
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(polls):
                await meter.read()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            await meter.close()
            await sim.stop()
    return (
        f"{profile:>10}: {len(meter.blocks)} transaction(s)/poll, {polls / wall:7.1f} polls/s, "
        f"{1000 * cpu / polls:6.2f} ms CPU/poll (driver + simulator)"
    )


async def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for every shipped profile (or those named)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--gap-ms", type=float, default=0.0, help="inter-frame gap")
    parser.add_argument("profiles", nargs="*", default=None)
    args = parser.parse_args(argv)
    names = args.profiles or sorted({p.stem for p in shipped_profiles().values()})
    print(f"{args.polls} polls per profile, {args.baud} baud on a pty, gap {args.gap_ms} ms")
    # a pty does not pace bytes at the baud rate: polls/s is an upper bound set by CPU,
    # a real RS485 line adds about 11 bits per byte at the configured baud
    print("(a pty is not paced at the baud rate: polls/s is the software ceiling)")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(await bench(name, args.polls, args.baud, args.gap_ms, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
