"""Modbus TCP and RTU-over-TCP against the simulator on an ephemeral loopback port."""

from __future__ import annotations

import pytest

from hal.errors import MeterPortError, MeterTimeout
from hal.meter import MeterSettings, ModbusMeter
from hal.sim.meter import SimMeter


@pytest.mark.parametrize(("transport", "rtu"), [("tcp", False), ("rtu-over-tcp", True)])
async def test_tcp_transports_round_trip(transport: str, rtu: bool) -> None:
    sim = SimMeter("em24", power_kw=-6.0)
    try:
        port = await sim.start_tcp("127.0.0.1", 0, rtu=rtu)
        assert port > 0
        meter = ModbusMeter(
            MeterSettings.model_validate(
                {
                    "transport": transport,
                    "host": "127.0.0.1",
                    "tcp_port": port,
                    "profile": "em24",
                    "timeout_s": 0.5,
                }
            )
        )
        try:
            reading = await meter.read()
            sim.faults.silent = True
            with pytest.raises(MeterTimeout):
                await meter.read()
        finally:
            await meter.close()
    finally:
        await sim.stop()
    assert reading.power_kw == pytest.approx(-6.0)


async def test_nobody_listening_is_a_port_error() -> None:
    sim = SimMeter("sdm630")
    port = await sim.start_tcp("127.0.0.1", 0)
    await sim.stop()  # the port is free again: a connection is refused
    meter = ModbusMeter(
        MeterSettings(transport="tcp", host="127.0.0.1", tcp_port=port, timeout_s=0.3)
    )
    try:
        with pytest.raises(MeterPortError):
            await meter.read()
    finally:
        await meter.close()
