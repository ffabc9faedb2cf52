"""`gridwarden run` as a real process: the status API, a clean stop on SIGTERM, and a
latched trip that survives `kill -9` (the store is a real SQLite file on disk)."""

import asyncio
import json
import os
import re
import signal
import sqlite3
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hal.sim.meter import SimMeter
from tests.controller.conftest import event_codes

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, meter_port: int) -> Path:
    cfg = tmp / "site.toml"
    cfg.write_text(
        f"""
[site]
id = "proc-test"
clock_trusted = true
[scheme]
type = "CLM"
limit = 100.0
margin = 5.0
[ev_site]
max_kw = 80.0
min_kw = 2.0
fallback_kw = 20.0
[control]
period_s = 0.2
[escalation]
compliance_deadline_s = 1.0
compliance_deadline_unreachable_s = 1.0
trip_delay_s = 1.0
meter_timeout_s = 2.0
[meter]
transport = "tcp"
host = "127.0.0.1"
tcp_port = {meter_port}
poll_interval_s = 0.2
timeout_s = 0.3
ct_rating_a = 400.0
[breaker]
transport = "sim"
[hmi]
port = 0
[store]
path = "{tmp / "gw.sqlite"}"
"""
    )
    return cfg


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    async def status(self) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            url = f"http://127.0.0.1:{self.port}/api/status"
            with urllib.request.urlopen(url, timeout=2) as resp:
                data: dict[str, Any] = json.load(resp)
                return data

        return await asyncio.to_thread(get)

    async def wait_state(self, state: str, within_s: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(within_s):
            while True:
                st = await self.status()
                if st["state"] == state:
                    return st
                await asyncio.sleep(0.1)


async def start_daemon(cfg: Path) -> Daemon:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        "run",
        "--config",
        str(cfg),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "JOURNAL_STREAM": ""},
    )
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, f"daemon exited early with {await proc.wait()}"
            found = re.search(r"HMI on http://127\.0\.0\.1:(\d+)", line)
            if found:
                break
    # keep draining stderr so the daemon never blocks on a full pipe
    asyncio.get_running_loop().create_task(_drain(proc))
    return Daemon(proc, int(found.group(1)))


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


async def test_sigterm_stops_cleanly_with_the_store_flushed(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    _sim, port = sim_meter
    daemon = await start_daemon(write_config(tmp_path, port))
    try:
        st = await daemon.wait_state("curtailing")
        assert st["scheme"] == "CLM" and st["constraint"]["unit"] == "kW"
        assert st["meter"]["power_kw"] == pytest.approx(40.0, abs=1.0)
        daemon.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.proc.wait(), 10) == 0
    finally:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()
    assert "STARTED" in event_codes(tmp_path / "gw.sqlite")


async def test_kill_minus_9_after_a_trip_never_unlatches_it(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    sim, port = sim_meter
    cfg = write_config(tmp_path, port)
    daemon = await start_daemon(cfg)
    try:
        await daemon.wait_state("curtailing")
        sim.set_power_kw(130.0)
        st = await daemon.wait_state("tripped")
        assert st["breaker"]["wanted"] == "trip"
        daemon.proc.kill()  # SIGKILL: no shutdown code runs
        await daemon.proc.wait()
        sim.set_power_kw(30.0)
        daemon = await start_daemon(cfg)
        st = await daemon.wait_state("tripped", within_s=10)
        assert "TRIPPED" in st["alarms"]
        await asyncio.sleep(1.0)
        assert (await daemon.status())["state"] == "tripped"
    finally:
        if daemon.proc.returncode is None:
            daemon.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(daemon.proc.wait(), 10)
    db = tmp_path / "gw.sqlite"
    assert "TRIP_LATCHED" in event_codes(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
