"""Driver <-> simulator over a real pty pair: RTU framing on the wire, every profile.

Known values round-trip (negative power, word order, scaling), every fault control
produces its typed error, implausible values are refused, and an unplugged adapter that
returns is picked up again without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from hal.errors import (
    MeterError,
    MeterFramingError,
    MeterImplausible,
    MeterModbusException,
    MeterPortError,
    MeterTimeout,
)
from hal.meter import ModbusMeter
from hal.profile import shipped_profiles
from hal.sim.meter import balanced_values
from hal.sim.pty import PtyPair
from tests.hal.conftest import SimFactory, rtu_settings

pytestmark = pytest.mark.serial

SHIPPED = sorted({p.stem for p in shipped_profiles().values()})

KNOWN = {
    "power_kw": -12.5,
    "phase_power_kw_l1": -3.2,
    "phase_power_kw_l2": -4.1,
    "phase_power_kw_l3": -5.2,
    "current_a_l1": 14.25,
    "current_a_l2": 18.5,
    "current_a_l3": 22.75,
    "voltage_v_l1": 229.4,
    "voltage_v_l2": 231.2,
    "voltage_v_l3": 228.8,
    "frequency_hz": 49.9,
    "import_kwh": 12345.6,
    "apparent_kva": 12.9,
    "power_factor": 0.97,
}


@pytest.mark.parametrize("profile", SHIPPED)
async def test_known_values_round_trip(
    pty_pair: PtyPair, sim_on_pty: SimFactory, profile: str
) -> None:
    sim = await sim_on_pty(profile)
    sim.set_values(KNOWN)
    meter = ModbusMeter(rtu_settings(pty_pair, profile))
    try:
        reading = await meter.read()
    finally:
        await meter.close()
    fields = meter.profile.fields

    # fixed-point registers round to their step: compare within half a step
    def close(name: str, got: float | None) -> None:
        assert got is not None, name
        step = abs(fields[name].factor) if not fields[name].type.startswith("float") else 1e-4
        assert got == pytest.approx(KNOWN[name], abs=step / 2 + 1e-6, rel=1e-6), name

    close("power_kw", reading.power_kw)
    assert reading.power_kw < 0  # export stays negative through every sign convention
    for i, phase in enumerate(("l1", "l2", "l3")):
        close(f"current_a_{phase}", reading.currents_a[i])
        close(f"voltage_v_{phase}", reading.voltages_v[i])
        close(f"phase_power_kw_{phase}", reading.phase_power_kw[i])
    close("frequency_hz", reading.frequency_hz)
    close("import_kwh", reading.import_kwh)
    assert reading.quality == frozenset()
    assert len(meter.blocks) == sim.requests_served


async def test_one_poll_at_9600_baud(pty_pair: PtyPair, sim_on_pty: SimFactory) -> None:
    sim = await sim_on_pty("sdm630", baud=9600, power_kw=7.5)
    meter = ModbusMeter(rtu_settings(pty_pair, baud=9600, timeout_s=1.0))
    try:
        reading = await meter.read()
    finally:
        await meter.close()
    assert reading.power_kw == pytest.approx(7.5)
    assert sim.requests_served == 1


async def test_inter_frame_gap_is_kept_between_transactions(
    pty_pair: PtyPair, sim_on_pty: SimFactory
) -> None:
    await sim_on_pty("iem3000", power_kw=3.0)
    meter = ModbusMeter(rtu_settings(pty_pair, "iem3000", inter_frame_gap_ms=40.0))
    try:
        await meter.read()
        start = asyncio.get_running_loop().time()
        await meter.read()
        elapsed = asyncio.get_running_loop().time() - start
    finally:
        await meter.close()
    assert len(meter.blocks) == 3
    assert elapsed >= 3 * 0.040 * 0.95  # one gap before each of the three transactions


@pytest.mark.parametrize(
    ("fault", "value", "error"),
    [
        ("silent", True, MeterTimeout),
        ("corrupt_crc", True, MeterFramingError),
        ("exception_code", 4, MeterModbusException),
        ("delay_s", 0.4, MeterTimeout),
    ],
)
async def test_fault_controls_give_typed_errors(
    pty_pair: PtyPair, sim_on_pty: SimFactory, fault: str, value: object, error: type[MeterError]
) -> None:
    sim = await sim_on_pty("sdm630", power_kw=5.0)
    meter = ModbusMeter(rtu_settings(pty_pair))
    try:
        assert (await meter.read()).power_kw == pytest.approx(5.0)
        setattr(sim.faults, fault, value)
        with pytest.raises(error) as caught:
            await meter.read()
        if fault == "exception_code":
            assert isinstance(caught.value, MeterModbusException)
            assert caught.value.exception_code == 4
        sim.clear_faults()
        await asyncio.sleep(0.5)  # let a delayed reply drain before the next request
        assert (await meter.read()).power_kw == pytest.approx(5.0)
    finally:
        await meter.close()


async def test_short_delay_is_tolerated(pty_pair: PtyPair, sim_on_pty: SimFactory) -> None:
    sim = await sim_on_pty("sdm630", power_kw=5.0)
    sim.faults.delay_s = 0.05
    meter = ModbusMeter(rtu_settings(pty_pair))
    try:
        assert (await meter.read()).power_kw == pytest.approx(5.0)
    finally:
        await meter.close()


async def test_wrong_unit_id_is_silence(pty_pair: PtyPair, sim_on_pty: SimFactory) -> None:
    await sim_on_pty("sdm630", unit_id=3)
    meter = ModbusMeter(rtu_settings(pty_pair, unit_id=4))
    try:
        with pytest.raises(MeterTimeout):
            await meter.read()
    finally:
        await meter.close()


async def test_frozen_values_get_a_quality_flag_once_per_episode(
    pty_pair: PtyPair, sim_on_pty: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await sim_on_pty("sdm630", power_kw=5.0, jitter=True)
    meter = ModbusMeter(rtu_settings(pty_pair, frozen_after_s=0.1))
    caplog.set_level(logging.INFO, logger="hal.meter")
    try:
        for _ in range(3):
            await asyncio.sleep(0.06)
            assert "frozen" not in (await meter.read()).quality  # live values keep changing
        sim.faults.frozen = True
        qualities = []
        for _ in range(6):
            await asyncio.sleep(0.06)
            qualities.append("frozen" in (await meter.read()).quality)
        assert qualities[0] is False and qualities[-1] is True
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # logged when the episode starts, not every poll
        sim.faults.frozen = False
        await asyncio.sleep(0.06)
        assert "frozen" not in (await meter.read()).quality
    finally:
        await meter.close()


async def test_loss_is_logged_once_and_recovery_once(
    pty_pair: PtyPair, sim_on_pty: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await sim_on_pty("sdm630", power_kw=5.0)
    meter = ModbusMeter(rtu_settings(pty_pair, timeout_s=0.05))
    caplog.set_level(logging.INFO, logger="hal.meter")
    try:
        sim.faults.silent = True
        for _ in range(4):
            with pytest.raises(MeterTimeout):
                await meter.read()
        sim.faults.silent = False
        await meter.read()
        await meter.read()
    finally:
        await meter.close()
    levels = [r.levelno for r in caplog.records if r.name == "hal.meter"]
    assert levels == [logging.WARNING, logging.INFO]


async def test_nan_is_implausible(pty_pair: PtyPair, sim_on_pty: SimFactory) -> None:
    sim = await sim_on_pty("sdm630")
    sim.set_values({**balanced_values(5.0), "current_a_l2": math.nan})
    meter = ModbusMeter(rtu_settings(pty_pair))
    try:
        with pytest.raises(MeterImplausible) as caught:
            await meter.read()
    finally:
        await meter.close()
    assert caught.value.field == "current_a_l2"


async def test_current_beyond_ct_rating_is_implausible(
    pty_pair: PtyPair, sim_on_pty: SimFactory
) -> None:
    sim = await sim_on_pty("em24")
    meter = ModbusMeter(rtu_settings(pty_pair, "em24", ct_rating_a=60.0))
    try:
        sim.set_power_kw(40.0)  # 57.97 A per phase: within 60 A
        assert (await meter.read()).currents_a[0] == pytest.approx(40_000 / 3 / 230, abs=0.001)
        sim.set_power_kw(80.0)  # 116 A: beyond 60 A x 1.2
        with pytest.raises(MeterImplausible) as caught:
            await meter.read()
    finally:
        await meter.close()
    assert caught.value.field == "currents_a"


async def test_abb_invalid_marker_on_a_mandatory_field(
    pty_pair: PtyPair, sim_on_pty: SimFactory
) -> None:
    sim = await sim_on_pty("abb_b2x")
    # an integer register cannot hold inf: the simulator sends all ones, ABB's "no value"
    sim.set_values({**balanced_values(5.0), "current_a_l1": math.inf, "frequency_hz": math.inf})
    meter = ModbusMeter(rtu_settings(pty_pair, "abb_b2x"))
    try:
        with pytest.raises(MeterImplausible) as caught:
            await meter.read()
        assert caught.value.field == "currents_a"
        sim.set_values({**balanced_values(5.0), "frequency_hz": math.inf})
        reading = await meter.read()  # an optional quantity flagged invalid is just absent
    finally:
        await meter.close()
    assert reading.frequency_hz is None
    assert reading.power_kw == pytest.approx(5.0)


async def test_unplug_and_replug_recovers_without_restart(
    pty_pair: PtyPair, sim_on_pty: SimFactory
) -> None:
    sim = await sim_on_pty("sdm630", power_kw=9.0)
    meter = ModbusMeter(rtu_settings(pty_pair))
    try:
        assert (await meter.read()).power_kw == pytest.approx(9.0)
        await pty_pair.stop()  # the USB-RS485 adapter is pulled out
        await asyncio.sleep(0.2)
        with pytest.raises(MeterPortError):
            await meter.read()
        with pytest.raises(MeterPortError):
            await meter.read()
        sim.set_power_kw(-2.0)
        await pty_pair.start()  # ...and plugged back in, same path
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while True:
            try:
                reading = await meter.read()
                break
            except MeterError:
                assert loop.time() < deadline, "meter did not recover"
                await asyncio.sleep(0.05)
    finally:
        await meter.close()
    assert reading.power_kw == pytest.approx(-2.0)
