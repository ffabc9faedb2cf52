"""The site breaker: settings, protocol and the gpiozero relay driver.

Two wirings. **hold-to-close** (undervoltage release, the default): the relay output must
stay energised for the breaker to stay closed, so a crashed controller, a lost supply or a
watchdog reset trips the site by itself: fail-safe. **shunt-trip**: a pulse energises the
trip coil; losing the controller leaves the breaker closed, so choose it only where the
site's protection design demands it. An optional auxiliary contact is read back to confirm
a trip; an unconfirmed trip raises ``BreakerFailedToOpen`` (the "breaker failed to open"
alarm).

This is the only module that imports gpiozero. Pin factories are always passed in
(``pin_factory=``), never installed globally. It must never import ``controller``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import Any, Literal, Protocol, runtime_checkable

from gpiozero import DigitalInputDevice, DigitalOutputDevice, GPIOZeroError
from gpiozero.pins.mock import MockConnectedPin, MockFactory
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hal.errors import BreakerError, BreakerFailedToClose, BreakerFailedToOpen

__all__ = [
    "Breaker",
    "BreakerSettings",
    "BreakerStatus",
    "GpioBreaker",
    "build_breaker",
    "drive_mock_pin",
    "mock_pin_factory",
    "mock_pin_state",
    "wire_mock_aux",
]

_log = logging.getLogger(__name__)


class BreakerStatus(enum.StrEnum):
    """What the breaker is known to be doing."""

    CLOSED = "closed"
    OPEN = "open"
    #: no auxiliary contact to tell (the commanded state is not proof)
    UNKNOWN = "unknown"


class BreakerSettings(BaseModel):
    """The ``[breaker]`` section: how the trip relay and the aux contact are wired."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["gpio", "sim"] = Field(
        default="gpio", description="gpio: a relay on a GPIO pin; sim: the simulated breaker."
    )
    wiring: Literal["hold-to-close", "shunt-trip"] = Field(
        default="hold-to-close",
        description="hold-to-close: output energised keeps the breaker closed (fail-safe, "
        "default); shunt-trip: a pulse energises the trip coil.",
    )
    output_pin: int = Field(
        default=17, ge=0, le=63, description="BCM GPIO number driving the relay."
    )
    active_high: bool = Field(
        default=True, description="True when a high output energises the relay (most relay HATs)."
    )
    pulse_s: float = Field(
        default=0.5, gt=0, le=10, description="Shunt-trip: how long the trip coil is energised."
    )
    aux_pin: int | None = Field(
        default=None, ge=0, le=63, description="BCM GPIO reading the breaker's auxiliary contact."
    )
    aux_closed_when_high: bool = Field(
        default=True, description="True when the aux input reads high while the breaker is closed."
    )
    aux_pull_up: bool = Field(
        default=False,
        description="Enable the internal pull-up on the aux input (contact to ground).",
    )
    confirm_timeout_s: float = Field(
        default=1.0, gt=0, le=30, description="Time allowed for the aux contact to confirm a trip."
    )

    @model_validator(mode="after")
    def _check(self) -> BreakerSettings:
        if self.aux_pin is not None and self.aux_pin == self.output_pin:
            raise ValueError("aux_pin: must differ from output_pin")
        return self


@runtime_checkable
class Breaker(Protocol):
    """What the controller needs from the breaker."""

    async def trip(self) -> BreakerStatus:
        """Open the breaker; raise BreakerFailedToOpen if the aux contact does not confirm."""
        ...

    async def permit_close(self) -> BreakerStatus:
        """Allow the breaker to close (hold-to-close: energise; shunt-trip: nothing to do)."""
        ...

    def status(self) -> BreakerStatus:
        """Closed/open from the aux contact, or unknown without one."""
        ...

    async def close(self) -> None:
        """Release the pins (hold-to-close: this trips the breaker, by design)."""
        ...


def mock_pin_factory() -> Any:
    """A gpiozero MockFactory for tests and the demo, to pass as ``pin_factory=``."""
    return MockFactory()


def wire_mock_aux(factory: Any, output_pin: int, aux_pin: int) -> None:
    """On a MockFactory, wire the relay output to the aux input (a breaker that obeys).

    Must be called before the breaker is built: the aux then reads high exactly while the
    output pin is high (hold-to-close, active-high, aux closed when high).
    """
    aux = factory.pin(aux_pin)
    factory.pin(output_pin, pin_class=MockConnectedPin, input_pin=aux)


def drive_mock_pin(factory: Any, pin: int, high: bool) -> None:
    """Drive a MockFactory input pin (e.g. an aux contact of a breaker that is welded shut)."""
    mock = factory.pin(pin)
    if high:
        mock.drive_high()
    else:
        mock.drive_low()


def mock_pin_state(factory: Any, pin: int) -> bool:
    """Electrical state of a MockFactory pin (True = high)."""
    return bool(factory.pin(pin).state)


class GpioBreaker:
    """A Breaker driven by a relay on a GPIO pin, with an optional aux-contact read-back."""

    def __init__(self, settings: BreakerSettings, *, pin_factory: Any = None) -> None:
        self.settings = settings
        hold = settings.wiring == "hold-to-close"
        try:
            # hold-to-close starts de-energised (= tripped) until the controller permits it
            self._out = DigitalOutputDevice(
                settings.output_pin,
                active_high=settings.active_high,
                initial_value=False,
                pin_factory=pin_factory,
            )
            self._aux = (
                DigitalInputDevice(
                    settings.aux_pin,
                    pull_up=settings.aux_pull_up,
                    pin_factory=pin_factory,
                )
                if settings.aux_pin is not None
                else None
            )
        except GPIOZeroError as exc:
            raise BreakerError(f"cannot set up breaker pins: {exc}") from exc
        self._hold = hold
        self._lock = asyncio.Lock()

    @property
    def output_energised(self) -> bool:
        """Whether the relay coil is energised now."""
        return bool(self._out.value)

    def status(self) -> BreakerStatus:
        if self._aux is None:
            return BreakerStatus.UNKNOWN
        high = bool(self._aux.value) if not self.settings.aux_pull_up else not self._aux.value
        closed = high if self.settings.aux_closed_when_high else not high
        return BreakerStatus.CLOSED if closed else BreakerStatus.OPEN

    async def trip(self) -> BreakerStatus:
        async with self._lock:
            _log.warning("breaker: trip (%s)", self.settings.wiring)
            if self._hold:
                self._out.off()
            else:
                self._out.on()
                try:
                    await asyncio.sleep(self.settings.pulse_s)
                finally:
                    self._out.off()
            return await self._confirm(BreakerStatus.OPEN)

    async def permit_close(self) -> BreakerStatus:
        async with self._lock:
            if self._hold:
                self._out.on()
                return await self._confirm(BreakerStatus.CLOSED)
            # a shunt-trip breaker is closed by hand; make sure the coil is not energised
            self._out.off()
            return self.status()

    async def _confirm(self, wanted: BreakerStatus) -> BreakerStatus:
        if self._aux is None:
            return BreakerStatus.UNKNOWN
        deadline = time.monotonic() + self.settings.confirm_timeout_s
        while (seen := self.status()) != wanted:
            if time.monotonic() >= deadline:
                if wanted is BreakerStatus.OPEN:
                    _log.error(
                        "breaker failed to open: aux still closed after %.1f s",
                        self.settings.confirm_timeout_s,
                    )
                    raise BreakerFailedToOpen(
                        f"breaker failed to open: aux contact still {seen} after "
                        f"{self.settings.confirm_timeout_s} s"
                    )
                raise BreakerFailedToClose(
                    f"breaker did not close: aux contact still {seen} after "
                    f"{self.settings.confirm_timeout_s} s"
                )
            await asyncio.sleep(0.01)
        return seen

    async def close(self) -> None:
        self._out.close()
        if self._aux is not None:
            self._aux.close()


def build_breaker(settings: BreakerSettings, *, pin_factory: Any = None) -> Breaker:
    """The Breaker the ``[breaker]`` section describes (``sim``: a SimBreaker)."""
    if settings.transport == "sim":
        from hal.sim.breaker import SimBreaker  # noqa: PLC0415 (hal.sim imports this module)

        return SimBreaker(confirm_timeout_s=settings.confirm_timeout_s)
    return GpioBreaker(settings, pin_factory=pin_factory)
