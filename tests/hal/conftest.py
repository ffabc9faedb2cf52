"""Shared fixtures of the HAL tests: a socat pty pair and a simulated meter on it.

Every socat and simulator started here is stopped in the fixture's finally, paths live
in tmp_path, and the fast baud rate keeps the pty tests quick.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hal.meter import MeterSettings
from hal.sim.meter import SimMeter
from hal.sim.pty import PtyPair

FAST_BAUD = 115200

needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")


@pytest.fixture
async def pty_pair(tmp_path: Path) -> AsyncIterator[PtyPair]:
    """A plugged-in serial cable: ``master_path`` for the driver, ``slave_path`` for the sim."""
    if shutil.which("socat") is None:
        pytest.skip("socat not installed")
    pair = PtyPair(tmp_path / "ttyDRIVER", tmp_path / "ttyMETER")
    try:
        await pair.start()
        yield pair
    finally:
        await pair.stop()


SimFactory = Callable[..., Awaitable[SimMeter]]


@pytest.fixture
async def sim_on_pty(pty_pair: PtyPair) -> AsyncIterator[SimFactory]:
    """Start simulated meters serving RTU on the pair's meter end; stopped afterwards."""
    started: list[SimMeter] = []

    async def start(
        profile: str = "sdm630", *, baud: int = FAST_BAUD, **kwargs: object
    ) -> SimMeter:
        sim = SimMeter(profile, **kwargs)  # type: ignore[arg-type]
        started.append(sim)
        await sim.start_serial(pty_pair.slave_path, baud=baud)
        return sim

    try:
        yield start
    finally:
        for sim in started:
            await sim.stop()


def rtu_settings(pair: PtyPair, profile: str = "sdm630", **overrides: object) -> MeterSettings:
    """Meter settings reaching the simulator through ``pair``."""
    values: dict[str, object] = {
        "transport": "rtu",
        "port": pair.master_path,
        "baud": FAST_BAUD,
        "profile": profile,
        "timeout_s": 0.2,
        "inter_frame_gap_ms": 2.0,
    }
    values.update(overrides)
    return MeterSettings.model_validate(values)
