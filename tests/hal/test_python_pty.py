"""The socat-free serial cable (used by `gridwarden demo` on machines with only Python)
carries real Modbus RTU frames between the driver and the simulated meter."""

from pathlib import Path

import pytest

from hal.meter import MeterSettings, build_meter
from hal.sim.meter import SimMeter
from hal.sim.pty import PythonPtyPair


@pytest.mark.serial
async def test_python_pty_pair_carries_rtu_both_ways(tmp_path: Path) -> None:
    async with PythonPtyPair(tmp_path / "driver", tmp_path / "sim") as pair:
        assert pair.plugged and (tmp_path / "driver").exists()
        sim = SimMeter("sdm630", power_kw=-7.5)
        await sim.start_serial(tmp_path / "sim", baud=38400)
        meter = build_meter(
            MeterSettings(port=str(tmp_path / "driver"), baud=38400, inter_frame_gap_ms=0)
        )
        try:
            first = await meter.read()
            sim.set_power_kw(42.0)
            second = await meter.read()
        finally:
            await meter.close()
            await sim.stop()
    assert first.power_kw == pytest.approx(-7.5)
    assert second.power_kw == pytest.approx(42.0)
    assert not (tmp_path / "driver").exists()  # unplugged on exit
