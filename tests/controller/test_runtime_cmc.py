"""The daemon's runtime in CMC: the real MQTT link on a real mosquitto, the central
platform simulator issuing leases, the real core deciding (no local meter: the CPO's
report is the compliance view)."""

import asyncio
import contextlib
from pathlib import Path

import pytest

from controller.central import build_central_link
from controller.config import parse_config
from controller.runtime import Runtime
from controller.store import Store
from hal.sim.breaker import SimBreaker
from hil.central_sim import CentralModel, CentralSim, SiteSpec
from tests.controller.conftest import event_codes
from tests.mqtt_broker import Mosquitto

SITE = "cmc-site"


@pytest.mark.mqtt
async def test_leases_apply_lapse_to_fallback_and_central_trips_latch(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path).start()
    cfg = parse_config(
        {
            "site": {"id": SITE},
            "scheme": {"type": "CMC"},
            "ev_site": {"max_kw": 44.0, "fallback_kw": 11.0},
            "control": {"period_s": 0.2},
            "central": {
                "host": "127.0.0.1",
                "port": broker.port,
                "prefix": "gw",
                "tls": False,
                "telemetry_s": 1.0,
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
    rt = Runtime(
        cfg,
        meter=None,
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
