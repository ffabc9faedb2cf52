"""The daemon's runtime with real parts: the simulated meter served over Modbus TCP on
loopback read by the real driver, the simulated breaker, a real SQLite file.

Timings are shortened (0.2 s periods, 1 s deadlines) so escalation happens in seconds.
"""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from controller import core
from controller.config import Config, CpoConfig, parse_config
from controller.runtime import Runtime
from controller.store import Store
from hal.meter import MeterSettings, Reading, build_meter
from hal.sim.breaker import SimBreaker
from hal.sim.meter import SimMeter
from tests.controller.conftest import event_codes


def fast_config(store: Path, port: int, **scheme: Any) -> Config:
    return parse_config(
        {
            "site": {"id": "rt-test", "clock_trusted": True},
            "scheme": {"type": "CLM", "limit": 100.0, "margin": 5.0, **scheme},
            "ev_site": {"max_kw": 80.0, "min_kw": 2.0, "fallback_kw": 20.0},
            "control": {"period_s": 0.2, "release_hold_s": 1.0, "ramp_kw_per_s": 50.0},
            "escalation": {
                "compliance_deadline_s": 1.0,
                "compliance_deadline_unreachable_s": 1.0,
                "trip_delay_s": 1.0,
                "meter_timeout_s": 1.0,
                "meter_trip_timeout_s": 30.0,
            },
            "meter": {
                "transport": "tcp",
                "host": "127.0.0.1",
                "tcp_port": port,
                "profile": "sdm630",
                "poll_interval_s": 0.1,
                "timeout_s": 0.3,
                "ct_rating_a": 400.0,
            },
            "breaker": {"transport": "sim"},
            "store": {"path": str(store)},
        }
    )


async def start(cfg: Config, breaker: SimBreaker, **kw: Any) -> tuple[Runtime, asyncio.Task[int]]:
    store = Store(cfg.store.path)
    await store.start()
    assert cfg.meter is not None
    rt = Runtime(cfg, meter=build_meter(cfg.meter), breaker=breaker, cpo=None, store=store, **kw)
    return rt, asyncio.create_task(rt.run())


async def until(cond: Callable[[], bool], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not cond():  # noqa: ASYNC110 (polls state owned by other tasks)
            await asyncio.sleep(0.05)


async def test_overload_escalates_to_a_trip_that_is_persisted_and_survives_restart(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    sim, port = sim_meter
    db = tmp_path / "gw.sqlite"
    cfg = fast_config(db, port)
    breaker = SimBreaker()
    rt, task = await start(cfg, breaker)
    await until(lambda: breaker.history == ["permit_close"])
    await until(lambda: rt.status.state in ("curtailing", "normal"))
    sim.set_power_kw(130.0)  # the site ignores its limit
    await until(lambda: rt.status.state == "emergency")
    await until(lambda: breaker.history[-1:] == ["trip"])
    assert rt.status.state == "tripped" and not breaker.closed
    rt.stop()
    assert await task == 0
    assert {"STARTED", "OVER_LIMIT", "EMERGENCY", "TRIP"} <= set(event_codes(db))

    # a new process on the same store: the trip is still latched, the breaker held open
    sim.set_power_kw(40.0)
    breaker2 = SimBreaker(closed=True)
    rt2, task2 = await start(fast_config(db, port), breaker2)
    await until(lambda: breaker2.history[:1] == ["trip"])
    await asyncio.sleep(0.5)
    assert rt2.status.state == "tripped" and "permit_close" not in breaker2.history
    rt2.submit_command(core.Command("reset", "alice", "r1"))
    await until(lambda: breaker2.history[-1:] == ["permit_close"])
    assert rt2.command_results[-1].accepted
    rt2.stop()
    assert await task2 == 0
    assert event_codes(db).count("TRIP_LATCHED") == 1
    assert "TRIP_RESET" in event_codes(db)


async def test_a_silent_meter_leads_to_fallback_without_blocking_the_tick(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    sim, port = sim_meter
    cfg = fast_config(tmp_path / "gw.sqlite", port)
    rt, task = await start(cfg, SimBreaker())
    await until(lambda: rt.status.constraint is not None)
    sim.faults.silent = True
    await until(lambda: rt.status.state == "fallback")
    ticks = rt.stats.ticks
    await asyncio.sleep(1.0)  # every read now waits for its timeout; the tick does not
    assert rt.stats.ticks - ticks >= 4
    assert rt.status.ev_limit_kw <= 20.0
    sim.faults.silent = False
    await until(lambda: rt.status.state != "fallback")
    rt.stop()
    assert await task == 0


async def test_store_failure_keeps_controlling_and_raises_an_alarm(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    _sim, port = sim_meter
    db = tmp_path / "gw.sqlite"
    rt, task = await start(fast_config(db, port), SimBreaker())
    await until(lambda: rt.stats.ticks > 3)
    conn = rt.store._conn
    assert conn is not None
    await rt.store._run(conn.execute, "PRAGMA query_only=ON")
    await until(lambda: "STORE_FAILED" in rt.status_dict()["alarms"])
    ticks = rt.stats.ticks
    await asyncio.sleep(0.6)
    assert rt.stats.ticks > ticks  # still controlling
    await rt.store._run(conn.execute, "PRAGMA query_only=OFF")
    await until(lambda: "STORE_FAILED" not in rt.status_dict()["alarms"])
    rt.stop()
    assert await task == 0
    codes = event_codes(db)
    assert "STORE_FAILED" in codes and "STORE_FAILED_CLEARED" in codes  # kept, then written


class BrokenMeter:
    """A driver with a bug: it raises something that is not a MeterError."""

    async def read(self) -> Reading:
        await asyncio.sleep(0.3)
        raise RuntimeError("driver bug")

    async def close(self) -> None:
        return None


async def test_a_dying_task_stops_the_controller_visibly(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    _sim, port = sim_meter
    db = tmp_path / "gw.sqlite"
    cfg = fast_config(db, port)
    store = Store(db)
    await store.start()
    rt = Runtime(cfg, meter=BrokenMeter(), breaker=SimBreaker(), cpo=None, store=store)
    code = await asyncio.wait_for(rt.run(), 10.0)
    assert code == 1
    assert "TASK_FAILED" in event_codes(db)


def test_status_reports_scheme_state_and_alarms(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path / "x.sqlite", 1502)
    store = Store(cfg.store.path)
    rt = Runtime(
        cfg,
        meter=build_meter(MeterSettings(transport="sim")),
        breaker=SimBreaker(),
        cpo=None,
        store=store,
    )
    rt.state = core.State(rt.settings, 0.0)
    rt.tick(0.5)  # within the meter timeout: still waiting for a first reading
    status = rt.status_dict()
    assert status["scheme"] == "CLM"
    assert status["state"] == "starting"
    assert status["ev_limit"]["sent_kw"] == 20.0
    assert status["constraint"]["limit"] == 100.0


async def test_a_lost_store_resyncs_sequence_numbers_with_the_cpo(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    """The CPO remembers sequence 1 000 000 from before this device's store was wiped: the
    controller continues above it instead of being refused for ever (real HTTP)."""
    from controller.cpo import build_cpo_link
    from hil.cpo_sim import CpoSimulator, SiteSettings

    _sim, port = sim_meter
    cpo_sim = CpoSimulator([SiteSettings("rt-test")], token="t")
    now = time.monotonic()  # the simulator's clock
    cpo_sim.site("rt-test").apply_limit(30.0, 1_000_000, "normal", now, now + 600.0)
    base_url = await cpo_sim.start(port=0)
    try:
        base = fast_config(tmp_path / "gw.sqlite", port)
        cfg = base.model_copy(update={"cpo": CpoConfig(base_url=base_url, token=SecretStr("t"))})
        assert cfg.cpo is not None and cfg.meter is not None
        store = Store(cfg.store.path)
        await store.start()
        link = build_cpo_link(cfg.cpo, "rt-test")
        rt = Runtime(cfg, meter=build_meter(cfg.meter), breaker=SimBreaker(), cpo=link, store=store)
        task = asyncio.create_task(rt.run())
        await until(lambda: (link.snapshot().acked_sequence or 0) > 1_000_000)
        accepted = cpo_sim.site("rt-test").limit
        assert accepted is not None and accepted.sequence > 1_000_000
        rt.stop()
        assert await task == 0
    finally:
        await cpo_sim.stop()
    assert "SEQUENCE_RESYNC" in event_codes(tmp_path / "gw.sqlite")


@pytest.mark.parametrize("damage", ["missing", "garbled", "foreign version"])
async def test_a_lost_state_on_a_commissioned_device_starts_tripped(
    tmp_path: Path, sim_meter: tuple[SimMeter, int], damage: str
) -> None:
    _sim, port = sim_meter
    db = tmp_path / "gw.sqlite"
    async with Store(db) as store:  # a device that has run before: the file exists
        if damage == "garbled":
            await store._run(store._put, "core_state", "{not json")
        elif damage == "foreign version":
            await store.save_state({"version": 99, "tripped": False})
    breaker = SimBreaker(closed=True)
    rt, task = await start(fast_config(db, port), breaker)
    await until(lambda: breaker.history[:1] == ["trip"])
    await asyncio.sleep(0.5)
    assert rt.status.state == "tripped" and "permit_close" not in breaker.history
    rt.stop()
    assert await task == 0
    assert "STORE_STATE_LOST" in event_codes(db)


async def test_a_new_device_starts_untripped(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    _sim, port = sim_meter
    breaker = SimBreaker()
    rt, task = await start(fast_config(tmp_path / "new.sqlite", port), breaker)
    await until(lambda: breaker.history[:1] == ["permit_close"])
    rt.stop()
    assert await task == 0


async def test_a_breaker_closed_by_hand_while_tripped_is_tripped_again(
    tmp_path: Path, sim_meter: tuple[SimMeter, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import controller.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "BREAKER_CHECK_S", 0.1)
    monkeypatch.setattr(runtime_module, "BREAKER_RETRY_S", 0.3)
    sim, port = sim_meter
    breaker = SimBreaker()
    rt, task = await start(fast_config(tmp_path / "gw.sqlite", port), breaker)
    await until(lambda: rt.status.state in ("curtailing", "normal"))
    sim.set_power_kw(130.0)
    await until(lambda: breaker.history[-1:] == ["trip"])
    breaker.fail_to_open = True  # welded: the next trip pulses will not open it
    breaker.closed = True  # someone closed it by hand while the trip is latched
    await until(lambda: "BREAKER_FAILED" in rt.status_dict()["alarms"])
    tries = breaker.history.count("trip")
    breaker.fail_to_open = False
    await until(lambda: not breaker.closed)  # ordered open again
    assert breaker.history.count("trip") > tries
    await until(lambda: "BREAKER_FAILED" not in rt.status_dict()["alarms"])
    rt.stop()
    assert await task == 0
