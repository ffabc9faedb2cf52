"""Fixtures for the HMI: a running controller (in-process, with the simulated meter over
Modbus TCP and the simulated breaker) serving the HMI on an ephemeral loopback port."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.config import Config, parse_config
from controller.hmi.auth import hash_password
from controller.hmi.server import serve
from controller.runtime import Runtime
from controller.store import Store
from hal.meter import build_meter
from hal.sim.breaker import SimBreaker
from hal.sim.meter import SimMeter

PIN = "2468"
# cheap scrypt parameters keep the tests fast; the format and the check are the same
USERS = {"alice": hash_password(PIN, n=2**10), "bob": hash_password("bob-secret", n=2**10)}


def site_config(store: Path, meter_port: int, **scheme: Any) -> Config:
    """CLM 100 kW, 0.2 s periods, 1 s deadlines: an overload trips within ~3 s."""
    return parse_config(
        {
            "site": {"id": "hmi-test", "name": "HMI test site", "clock_trusted": True},
            "scheme": {"type": "CLM", "limit": 100.0, "margin": 5.0, **scheme},
            "ev_site": {"max_kw": 80.0, "min_kw": 2.0, "fallback_kw": 20.0},
            "control": {"period_s": 0.2, "release_hold_s": 1.0, "ramp_kw_per_s": 50.0},
            "escalation": {
                "compliance_deadline_s": 1.0,
                "compliance_deadline_unreachable_s": 1.0,
                "trip_delay_s": 1.0,
                "meter_timeout_s": 2.0,
                "meter_trip_timeout_s": 30.0,
            },
            "meter": {
                "transport": "tcp",
                "host": "127.0.0.1",
                "tcp_port": meter_port,
                "profile": "sdm630",
                "poll_interval_s": 0.1,
                "timeout_s": 0.3,
                "ct_rating_a": 400.0,
            },
            "breaker": {"transport": "sim"},
            "hmi": {"port": 0, "users": USERS},
            "store": {"path": str(store)},
        }
    )


@dataclass
class Site:
    runtime: Runtime
    sim: SimMeter
    breaker: SimBreaker
    url: str
    db: Path

    async def until(self, cond: Any, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            while not cond():  # noqa: ASYNC110 (polls state owned by other tasks)
                await asyncio.sleep(0.05)

    async def trip(self) -> None:
        self.sim.set_power_kw(130.0)  # the EV site ignores its limit
        await self.until(lambda: self.runtime.status.state == "tripped")
        await self.until(lambda: self.breaker.history[-1:] == ["trip"])


@pytest.fixture
async def site(tmp_path: Path, sim_meter: tuple[SimMeter, int]) -> AsyncIterator[Site]:
    async with running_site(tmp_path, sim_meter) as s:
        yield s


@contextlib.asynccontextmanager
async def running_site(
    tmp_path: Path, sim_meter: tuple[SimMeter, int], **scheme: Any
) -> AsyncIterator[Site]:
    sim, port = sim_meter
    db = tmp_path / "gw.sqlite"
    cfg = site_config(db, port, **scheme)
    store = Store(db)
    await store.start()
    assert cfg.meter is not None
    breaker = SimBreaker()
    rt = Runtime(
        cfg, meter=build_meter(cfg.meter), breaker=breaker, cpo=None, store=store,
        status_server=serve,
    )  # fmt: skip
    task = asyncio.create_task(rt.run())
    try:
        async with asyncio.timeout(10):
            await rt.http_ready.wait()
        host, http_port = rt.http_addresses[0]
        s = Site(rt, sim, breaker, f"http://{host}:{http_port}", db)
        await s.until(lambda: rt.status.state in ("normal", "curtailing"))
        yield s
    finally:
        rt.stop()
        assert await asyncio.wait_for(task, 10) == 0
