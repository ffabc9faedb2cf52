"""The breaker relay on gpiozero MockFactory pins (passed in, never installed globally)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from hal.breaker import (
    Breaker,
    BreakerSettings,
    BreakerStatus,
    GpioBreaker,
    build_breaker,
    drive_mock_pin,
    mock_pin_factory,
    mock_pin_state,
    wire_mock_aux,
)
from hal.errors import BreakerFailedToClose, BreakerFailedToOpen
from hal.sim.breaker import SimBreaker

OUT, AUX = 17, 27


def settings(**overrides: object) -> BreakerSettings:
    values: dict[str, object] = {"output_pin": OUT, "aux_pin": AUX, "confirm_timeout_s": 0.1}
    values.update(overrides)
    return BreakerSettings.model_validate(values)


async def test_hold_to_close_is_the_fail_safe_default() -> None:
    assert BreakerSettings().wiring == "hold-to-close"
    factory = mock_pin_factory()
    wire_mock_aux(factory, OUT, AUX)
    breaker = GpioBreaker(settings(), pin_factory=factory)
    try:
        assert isinstance(breaker, Breaker)
        # not permitted yet: the coil is not energised, so the breaker is open
        assert mock_pin_state(factory, OUT) is False
        assert breaker.status() is BreakerStatus.OPEN
        assert await breaker.permit_close() is BreakerStatus.CLOSED
        assert mock_pin_state(factory, OUT) is True
        assert await breaker.trip() is BreakerStatus.OPEN
        assert mock_pin_state(factory, OUT) is False
        await breaker.permit_close()
    finally:
        await breaker.close()
    # releasing the pins (controller gone) drops the hold: the breaker opens by itself
    assert mock_pin_state(factory, AUX) is False


async def test_active_low_relay_inverts_the_output() -> None:
    factory = mock_pin_factory()
    breaker = GpioBreaker(settings(aux_pin=None, active_high=False), pin_factory=factory)
    try:
        assert mock_pin_state(factory, OUT) is True  # idle = high = de-energised
        assert await breaker.permit_close() is BreakerStatus.UNKNOWN  # no aux to tell
        assert mock_pin_state(factory, OUT) is False
        await breaker.trip()
        assert mock_pin_state(factory, OUT) is True
    finally:
        await breaker.close()


async def test_shunt_trip_pulses_the_coil() -> None:
    factory = mock_pin_factory()
    breaker = GpioBreaker(
        settings(wiring="shunt-trip", pulse_s=0.05, confirm_timeout_s=0.3), pin_factory=factory
    )
    drive_mock_pin(factory, AUX, True)  # breaker closed by hand
    try:
        assert breaker.status() is BreakerStatus.CLOSED
        assert mock_pin_state(factory, OUT) is False  # a shunt coil is idle de-energised
        trip = asyncio.create_task(breaker.trip())
        await asyncio.sleep(0.02)
        assert mock_pin_state(factory, OUT) is True  # pulse in progress
        drive_mock_pin(factory, AUX, False)  # the breaker opens
        assert await trip is BreakerStatus.OPEN
        assert mock_pin_state(factory, OUT) is False  # pulse ended
        # permit-close does not energise anything on a shunt-trip breaker
        await breaker.permit_close()
        assert mock_pin_state(factory, OUT) is False
    finally:
        await breaker.close()


@pytest.mark.parametrize("wiring", ["hold-to-close", "shunt-trip"])
async def test_unconfirmed_trip_raises_breaker_failed_to_open(wiring: str) -> None:
    factory = mock_pin_factory()
    breaker = GpioBreaker(settings(wiring=wiring, pulse_s=0.02), pin_factory=factory)
    drive_mock_pin(factory, AUX, True)  # contacts welded: aux stays closed
    try:
        with pytest.raises(BreakerFailedToOpen, match="breaker failed to open"):
            await breaker.trip()
        assert breaker.status() is BreakerStatus.CLOSED
    finally:
        await breaker.close()


async def test_close_not_confirmed() -> None:
    factory = mock_pin_factory()  # aux not wired: stays low = open
    breaker = GpioBreaker(settings(), pin_factory=factory)
    try:
        with pytest.raises(BreakerFailedToClose):
            await breaker.permit_close()
    finally:
        await breaker.close()


async def test_aux_closed_when_low() -> None:
    factory = mock_pin_factory()
    breaker = GpioBreaker(settings(aux_closed_when_high=False), pin_factory=factory)
    try:
        drive_mock_pin(factory, AUX, False)
        assert breaker.status() is BreakerStatus.CLOSED
        drive_mock_pin(factory, AUX, True)
        assert breaker.status() is BreakerStatus.OPEN
    finally:
        await breaker.close()


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        BreakerSettings(output_pin=5, aux_pin=5)
    with pytest.raises(ValidationError):
        BreakerSettings.model_validate({"wiring": "magic"})
    with pytest.raises(ValidationError):
        BreakerSettings.model_validate({"relay": 1})


async def test_sim_breaker_state_is_visible() -> None:
    breaker = build_breaker(BreakerSettings(transport="sim", confirm_timeout_s=0.01))
    assert isinstance(breaker, SimBreaker) and isinstance(breaker, Breaker)
    assert await breaker.permit_close() is BreakerStatus.CLOSED
    assert await breaker.trip() is BreakerStatus.OPEN
    breaker.closed = True
    breaker.fail_to_open = True
    with pytest.raises(BreakerFailedToOpen):
        await breaker.trip()
    assert breaker.status() is BreakerStatus.CLOSED
    assert breaker.history == ["permit_close", "trip", "trip"]
