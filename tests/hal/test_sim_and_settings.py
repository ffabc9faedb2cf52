"""Simulator value sources, the in-process meter, and MeterSettings validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hal.errors import MeterFramingError, MeterModbusException, MeterTimeout
from hal.meter import Meter, MeterSettings, build_meter
from hal.sim.meter import SimMeter, csv_source


def test_settings_defaults_and_ranges() -> None:
    s = MeterSettings()
    assert (s.transport, s.baud, s.unit_id, s.inter_frame_gap_ms) == ("rtu", 9600, 1, 25.0)
    for bad in (
        {"baud": 12345},
        {"unit_id": 0},
        {"unit_id": 248},
        {"timeout_s": 0},
        {"transport": "tcp"},
        {"profile": "nope"},
        {"colour": "red"},
    ):
        with pytest.raises(ValidationError):
            MeterSettings.model_validate(bad)
    with pytest.raises(ValidationError):
        s.baud = 19200  # settings are frozen once parsed


def test_settings_from_a_config_table() -> None:
    s = MeterSettings.model_validate(
        {"transport": "rtu-over-tcp", "host": "gw.local", "profile": "em24", "ct_rating_a": 200}
    )
    assert s.tcp_port == 502 and s.ct_rating_a == 200


async def test_sim_transport_gives_an_in_process_meter() -> None:
    meter = build_meter(MeterSettings(transport="sim", profile="iem3000"))
    assert isinstance(meter, Meter)
    reading = await meter.read()
    assert reading.power_kw == 0.0


async def test_direct_meter_honours_faults() -> None:
    sim = SimMeter("sdm630", power_kw=4.0)
    meter = sim.direct_meter()
    assert (await meter.read()).power_kw == pytest.approx(4.0)
    for fault, value, error in (
        ("silent", True, MeterTimeout),
        ("corrupt_crc", True, MeterFramingError),
        ("exception_code", 6, MeterModbusException),
    ):
        setattr(sim.faults, fault, value)
        with pytest.raises(error):
            await meter.read()
        sim.clear_faults()


async def test_csv_profile_source(tmp_path: Path) -> None:
    path = tmp_path / "site.csv"
    path.write_text("time_s,power_kw\n0,10\n5,20\n10,30\n")
    source = csv_source(path)
    assert source(0.0)["power_kw"] == 10
    assert source(6.0)["power_kw"] == 20
    assert source(11.0)["power_kw"] == 10  # loops after the last row's time
    clock = [100.0]
    sim = SimMeter("em24", source=source, clock=lambda: clock[0])
    meter = sim.direct_meter()
    assert (await meter.read()).power_kw == pytest.approx(10.0)
    clock[0] += 6
    assert (await meter.read()).power_kw == pytest.approx(20.0)


async def test_callable_site_model_source() -> None:
    sim = SimMeter("dtsu666")
    sim.set_source(
        lambda t: {"power_kw": 3.0, "current_a_l1": 1.0, "current_a_l2": 2.0, "current_a_l3": 3.0}
    )
    reading = await sim.direct_meter().read()
    assert reading.currents_a == pytest.approx((1.0, 2.0, 3.0))
    # fields the model does not provide keep their last served value (230 V initially)
    assert reading.voltages_v == (230.0, 230.0, 230.0)
