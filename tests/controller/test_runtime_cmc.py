"""The daemon's runtime in CMC: the real MQTT link on a real mosquitto, the central
platform simulator issuing leases, the real core deciding, the simulated meter (Modbus
TCP) as the local backstop on a 200 kW limit."""

import asyncio
import contextlib
from pathlib import Path

import pytest

from controller.central import build_central_link
from controller.config import parse_config
from controller.runtime import Runtime
from controller.store import Store
from hal.meter import build_meter
from hal.sim.breaker import SimBreaker
from hal.sim.meter import SimMeter
from hil.central_sim import CentralModel, CentralSim, SiteSpec
from tests.controller.conftest import event_codes
from tests.mqtt_broker import Mosquitto

SITE = "cmc-site"


@pytest.mark.mqtt
async def test_leases_apply_lapse_to_fallback_and_central_trips_latch(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    _meter_sim, meter_port = sim_meter
    broker = Mosquitto(tmp_path).start()
    cfg = parse_config(
        {
            "site": {"id": SITE},
            "scheme": {"type": "CMC", "limit": 200.0, "margin": 5.0},
            "ev_site": {"max_kw": 44.0, "fallback_kw": 11.0},
            "control": {"period_s": 0.2, "release_hold_s": 0.5, "ramp_kw_per_s": 100.0},
            "central": {
                "host": "127.0.0.1",
                "port": broker.port,
                "prefix": "gw",
                "tls": False,
                "telemetry_s": 1.0,
            },
            "meter": {
                "transport": "tcp",
                "host": "127.0.0.1",
                "tcp_port": meter_port,
                "poll_interval_s": 0.1,
                "ct_rating_a": 400.0,
            },
            "breaker": {"transport": "sim"},
            "store": {"path": str(tmp_path / "gw.sqlite")},
        }
    )
    assert cfg.central is not None
    sim = CentralSim(
        CentralModel([SiteSpec(SITE, 44.0)], []), port=broker.port, prefix="gw",
        auto_limits=False, identifier="central",
    )  # fmt: skip
    store = Store(cfg.store.path)
    await store.start()
    breaker = SimBreaker()
    assert cfg.meter is not None
    rt = Runtime(
        cfg,
        meter=build_meter(cfg.meter),
        breaker=breaker,
        cpo=None,
        store=store,
        central=build_central_link(cfg.central, SITE, reconnect_min_s=0.2),
    )
    tasks = [asyncio.create_task(sim.run()), asyncio.create_task(rt.run())]

    async def until(cond: object, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            while not cond():  # type: ignore[operator]  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    try:
        await sim.wait_ready()
        await until(lambda: rt.central_connected and rt.status.state == "fallback")
        assert rt.status.ev_limit_kw == 11.0  # no lease yet
        cid = await sim.send_limit(SITE, 30.0, valid_for_s=2.0)
        assert (await sim.wait_ack(cid))["accepted"] is True
        await until(lambda: rt.status.ev_limit_kw == 30.0)
        assert rt.status.state == "curtailing"
        assert rt.status.constraint == pytest.approx(40.0, abs=1.0)  # the backstop reads
        await until(lambda: rt.status.ev_limit_kw == 11.0, within_s=4.0)  # the lease lapsed
        cid = await sim.send_breaker(SITE, "trip")
        assert (await sim.wait_ack(cid))["accepted"] is True
        await until(lambda: breaker.history[-1:] == ["trip"])
        assert rt.status.state == "tripped"
        cid = await sim.send_breaker(SITE, "permit_close")
        ack = await sim.wait_ack(cid)
        assert ack["accepted"] is True  # the central's own trip, no local objection
        await until(lambda: breaker.history[-1:] == ["permit_close"])
        rt.stop()
        assert await asyncio.wait_for(tasks[1], 10) == 0
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        broker.stop()
    codes = event_codes(tmp_path / "gw.sqlite")
    assert "TRIP" in codes and "TRIP_RESET" in codes and "CENTRAL_FALLBACK" in codes
