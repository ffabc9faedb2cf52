"""Fixtures shared by the controller's tests."""

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hal.sim.meter import SimMeter


@pytest.fixture
async def sim_meter() -> AsyncIterator[tuple[SimMeter, int]]:
    """A simulated SDM630 serving 40 kW (with jitter, so never 'frozen') over Modbus TCP on
    an ephemeral loopback port."""
    sim = SimMeter("sdm630", power_kw=40.0, jitter=True)
    port = await sim.start_tcp("127.0.0.1", 0)
    try:
        yield sim, port
    finally:
        await sim.stop()


def event_codes(db: Path) -> list[str]:
    """Event codes in the store at ``db``, oldest first."""
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT code FROM events ORDER BY id")]
