"""Benchmark of the daemon on the real stack: sense -> limit latency, tick jitter, RSS, CPU.

The real `gridwarden run` process reads a simulated meter over Modbus RTU on a socat pty
pair and sends limits to the CPO simulator over HTTP, both in this process. Each step
raises the background load at the constraint (40 -> 120 kW, no overload) after a quiet
spell; its latency is the time from the new value being served by the meter to the CPO
receiving the limit computed from it. Then the load falls back and the limit recovers
before the next step (that part is not timed: raises wait for the CPO's next demand
report, by design — see docs/architecture.md). Prints figures; asserts nothing.

    python -m tools.bench_daemon [--steps 200] [--period-s 1.0]
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from hal.sim.meter import SimMeter, balanced_values
from hal.sim.pty import PtyPair
from hil.cpo_sim import CpoSimulator, SiteSettings

ROOT = Path(__file__).resolve().parents[1]
SITE = "bench-site"


def config(tmp: Path, port: Path, cpo_url: str, period_s: float) -> Path:
    path = tmp / "site.toml"
    path.write_text(
        f"""
[site]
id = "{SITE}"
clock_trusted = true
[scheme]
type = "CLM"
limit = 200.0
margin = 5.0
[ev_site]
max_kw = 150.0
fallback_kw = 150.0
[control]
period_s = {period_s}
release_hold_s = 0.0
ramp_kw_per_s = 10000.0
cut_confirm_s = 0.0
deadband_kw = 0.1
demand_stale_s = 2.0
[meter]
port = "{port}"
baud = 38400
inter_frame_gap_ms = 2.0
poll_interval_s = {min(period_s, 1.0) / 2}
ct_rating_a = 600.0
[breaker]
transport = "sim"
[cpo]
base_url = "{cpo_url}"
token = "t"
demand_poll_s = 0.5
[hmi]
port = 0
[store]
path = "{tmp / "bench.sqlite"}"
"""
    )
    return path


def read_status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/status", timeout=5) as resp:
        data: dict[str, Any] = json.load(resp)
        return data


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


async def main(steps: int, period_s: float) -> None:
    background = {"kw": 40.0}
    cpo = CpoSimulator([SiteSettings(SITE)], token="t")
    cpo_url = await cpo.start(port=0)
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as d:
        tmp = Path(d)
        cable = PtyPair(tmp / "driver", tmp / "sim")
        await cable.start()
        meter = SimMeter("sdm630", source=lambda _e: balanced_values(background["kw"]), jitter=True)
        await meter.start_serial(tmp / "sim", baud=38400)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "run", "--config",
            str(config(tmp, tmp / "driver", cpo_url, period_s)),
            cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        url = ""
        while not url:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise SystemExit("the daemon exited early")
            found = re.search(r"HMI on (http://\S+)", line)
            url = found.group(1) if found else ""

        async def drain() -> None:
            assert proc.stderr is not None
            while await proc.stderr.readline():
                pass

        drainer = asyncio.create_task(drain())
        received = cpo.site(SITE).received
        await asyncio.sleep(3 * period_s + 1.0)
        cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()
        latencies = []

        async def until_limit(expect: float, since: int, within_s: float) -> bool:
            end = time.monotonic() + within_s
            while not any(abs(x.limit_kw - expect) < 1.0 for x in received[since:]):
                if time.monotonic() > end:
                    return False
                await asyncio.sleep(0.002)
            return True

        for _ in range(steps):
            before = len(received)
            background["kw"] = 120.0  # the EV limit must fall from 150 to 75 kW
            start = time.monotonic()
            if await until_limit(75.0, before, 10 * period_s + 5):
                latencies.append(time.monotonic() - start)
            before = len(received)
            background["kw"] = 40.0
            await until_limit(150.0, before, 10 * period_s + 10)
            await asyncio.sleep(2.5)  # a quiet spell: no raise of ours in the last 2 s
        cpu_pct = 100.0 * (proc_cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0)
        rss = proc_rss_mb(proc.pid)
        status = await asyncio.to_thread(read_status, url)
        proc.terminate()
        await proc.wait()
        drainer.cancel()
        await meter.stop()
        await cable.stop()
    await cpo.stop()
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    print(f"daemon, control period {period_s:g} s, {len(lat)}/{steps} steps measured")
    print(
        f"  sense -> limit at the CPO: p50 {1000 * statistics.median(lat):.0f} ms,"
        f" p99 {1000 * p99:.0f} ms (meter poll + period + HTTP)"
    )
    print(f"  tick lateness p99: {status['tick']['lateness_p99_ms']:.2f} ms")
    print(f"  RSS {rss:.1f} MB, CPU {cpu_pct:.1f} % of one core")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--period-s", type=float, default=1.0)
    args = ap.parse_args()
    asyncio.run(main(args.steps, args.period_s))
