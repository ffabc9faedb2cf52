"""The constraint meter: its settings, its reading, its protocol and the Modbus driver.

``Meter`` is what the controller depends on; ``ModbusMeter`` implements it over RTU, TCP
or RTU-over-TCP using a register-map profile; ``build_meter`` turns the ``[meter]`` config
section into one. A read returns one plausibility-checked ``Reading`` or raises a
``MeterError`` subclass; loss and recovery are logged once per episode, not every poll.

It must never import ``controller``, never import pymodbus (``hal.modbus`` does), never
retry or sleep beyond one poll (the control loop owns timing), and never return a reading
that failed a check.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hal.errors import MeterError, MeterImplausible, MeterPortError
from hal.modbus import ModbusLink, RegisterLink, SerialLine
from hal.profile import Block, Profile, decode_block, load_profile, plan_blocks

__all__ = [
    "STANDARD_BAUDS",
    "Meter",
    "MeterSettings",
    "ModbusMeter",
    "Reading",
    "build_meter",
]

_log = logging.getLogger(__name__)

STANDARD_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class MeterSettings(BaseModel):
    """The ``[meter]`` section: how to reach the constraint meter and how to judge it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["rtu", "tcp", "rtu-over-tcp", "sim"] = Field(
        default="rtu",
        description="rtu: serial RS485; tcp: Modbus TCP; rtu-over-tcp: RTU frames through a "
        "TCP gateway; sim: the in-process simulated meter (demo and bench only).",
    )
    port: str = Field(
        default="/dev/ttyUSB0",
        description="Serial port of the RS485 adapter (rtu); prefer a stable udev name.",
    )
    baud: int = Field(default=9600, description="Serial baud rate; one of the standard rates.")
    parity: Literal["N", "E", "O"] = Field(default="N", description="Serial parity: N, E or O.")
    stopbits: Literal[1, 2] = Field(default=1, description="Serial stop bits: 1 or 2.")
    unit_id: int = Field(default=1, ge=1, le=247, description="Modbus unit (slave) id, 1..247.")
    host: str = Field(
        default="", description="Meter or gateway host name/address (tcp transports)."
    )
    tcp_port: int = Field(default=502, ge=1, le=65535, description="TCP port (tcp transports).")
    profile: str = Field(
        default="sdm630", description="Shipped register-map profile name (see docs/hal.md)."
    )
    profile_file: Path | None = Field(
        default=None, description="Path of a custom profile TOML; overrides `profile` when set."
    )
    timeout_s: float = Field(
        default=0.5, gt=0, le=10, description="Time to wait for each reply before a timeout."
    )
    inter_frame_gap_ms: float = Field(
        default=25.0,
        ge=0,
        le=1000,
        description="Silence kept between two transactions on the bus (slow meters need it).",
    )
    max_block_registers: int = Field(
        default=125,
        ge=1,
        le=125,
        description="Largest read per transaction (the profile may be lower).",
    )
    poll_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the controller reads the meter."
    )
    ct_rating_a: float = Field(
        default=100.0,
        gt=0,
        description="Primary rating of the CTs; larger currents are implausible.",
    )
    overrange_factor: float = Field(
        default=1.2, ge=1, le=10, description="Accepted measurement above the CT rating (x rating)."
    )
    nominal_voltage_v: float = Field(
        default=230.0, gt=0, description="Phase-to-neutral nominal voltage, bounds plausible power."
    )
    frozen_after_s: float = Field(
        default=30.0,
        gt=0,
        description="All registers bit-identical for this long = the meter is frozen.",
    )

    @model_validator(mode="after")
    def _check(self) -> MeterSettings:
        if self.baud not in STANDARD_BAUDS:
            raise ValueError(f"baud: must be one of {', '.join(map(str, STANDARD_BAUDS))}")
        if self.transport in ("tcp", "rtu-over-tcp") and not self.host:
            raise ValueError(f"host: required when transport is {self.transport!r}")
        if self.profile_file is None:
            # fail at start-up, not at the first poll, on a misspelt profile name
            load_profile(self.profile)
        return self


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement. Power is import positive.

    Always present: ``power_kw`` and ``currents_a``. The other quantities are None when the
    meter's profile does not provide them (or the meter flags them invalid).
    """

    power_kw: float
    currents_a: tuple[float, float, float]
    phase_power_kw: tuple[float | None, float | None, float | None]
    voltages_v: tuple[float | None, float | None, float | None]
    frequency_hz: float | None
    import_kwh: float | None
    #: time.monotonic() when the last reply of the poll arrived: use for ages and deadlines
    taken_at_monotonic: float
    #: time.time() at the same instant: use for records only
    taken_at_wall: float
    apparent_kva: float | None = None
    power_factor: float | None = None
    #: quality flags; "frozen" = the registers have not changed for frozen_after_s
    quality: frozenset[str] = field(default_factory=frozenset)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view (used by probe-meter)."""
        return {
            "power_kw": self.power_kw,
            "phase_power_kw": list(self.phase_power_kw),
            "currents_a": list(self.currents_a),
            "voltages_v": list(self.voltages_v),
            "frequency_hz": self.frequency_hz,
            "import_kwh": self.import_kwh,
            "apparent_kva": self.apparent_kva,
            "power_factor": self.power_factor,
            "taken_at_wall": self.taken_at_wall,
            "quality": sorted(self.quality),
        }


@runtime_checkable
class Meter(Protocol):
    """What the controller needs from a meter."""

    async def read(self) -> Reading:
        """One measurement, or raise a ``hal.errors.MeterError`` subclass."""
        ...

    async def close(self) -> None:
        """Release the port or connection."""
        ...


class _Episodes:
    """Logs a condition once when it starts and once when it ends (not every poll)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._since: float | None = None
        self._count = 0

    def bad(self, detail: object, now: float) -> None:
        self._count += 1
        if self._since is None:
            self._since = now
            _log.warning("%s: lost: %s", self._what, detail)

    def good(self, now: float) -> None:
        if self._since is not None:
            _log.info(
                "%s: recovered after %.1f s (%d failed polls)",
                self._what,
                now - self._since,
                self._count,
            )
        self._since = None
        self._count = 0


class ModbusMeter:
    """A Meter read over Modbus with a register-map profile."""

    def __init__(
        self,
        settings: MeterSettings,
        *,
        profile: Profile | None = None,
        link: RegisterLink | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.profile = profile or load_profile(settings.profile, settings.profile_file)
        self._blocks: list[Block] = plan_blocks(self.profile, settings.max_block_registers)
        self._link = link or _link_for(settings)
        self._clock = clock
        self._wall = wall_clock
        self._last_io = -math.inf
        self._last_raw: tuple[tuple[int, ...], ...] | None = None
        self._raw_since = 0.0
        self._health = _Episodes(f"meter {self._link.endpoint} unit {settings.unit_id}")
        self._frozen = _Episodes(f"meter {self._link.endpoint} values frozen")
        self._lock = asyncio.Lock()

    @property
    def blocks(self) -> list[Block]:
        """The read transactions of one poll."""
        return list(self._blocks)

    async def read(self) -> Reading:
        """Poll every block of the profile once and return a checked Reading."""
        async with self._lock:
            try:
                reading = await self._poll()
            except MeterError as exc:
                self._health.bad(exc, self._clock())
                raise
            self._health.good(self._clock())
            return reading

    async def close(self) -> None:
        """Release the port (it is reopened by the next read)."""
        self._link.close()

    async def _poll(self) -> Reading:
        values: dict[str, float | None] = {}
        raw: list[tuple[int, ...]] = []
        gap_s = self.settings.inter_frame_gap_ms / 1000
        for block in self._blocks:
            wait = self._last_io + gap_s - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                registers = await self._link.read_registers(
                    block.function, block.address, block.count, self.settings.unit_id
                )
            finally:
                self._last_io = self._clock()
            raw.append(tuple(registers))
            values.update(decode_block(block, registers, self.profile.invalid_markers))
        now = self._clock()
        wall = self._wall()
        reading = self._build(values, now, wall)
        return self._judge_frozen(reading, tuple(raw), now)

    def _build(self, v: dict[str, float | None], now: float, wall: float) -> Reading:
        for name, value in v.items():
            if value is not None and not math.isfinite(value):
                raise MeterImplausible(f"meter reported {name} = {value}", field=name)
        power = v.get("power_kw")
        currents = (v.get("current_a_l1"), v.get("current_a_l2"), v.get("current_a_l3"))
        if power is None:
            raise MeterImplausible("meter flagged total power invalid", field="power_kw")
        if any(c is None for c in currents):
            raise MeterImplausible("meter flagged a phase current invalid", field="currents_a")
        checked = tuple(float(c) for c in currents if c is not None)
        limit_a = self.settings.ct_rating_a * self.settings.overrange_factor
        if any(abs(c) > limit_a for c in checked):
            raise MeterImplausible(
                f"current {max(checked, key=abs):.1f} A beyond {limit_a:.0f} A "
                f"(CT rating x overrange)",
                field="currents_a",
            )
        # generous bound: three phases at 1.5 x nominal voltage, full overrange current
        limit_kw = 3 * 1.5 * self.settings.nominal_voltage_v * limit_a / 1000
        if abs(power) > limit_kw:
            raise MeterImplausible(
                f"power {power:.1f} kW beyond {limit_kw:.0f} kW possible with the CTs",
                field="power_kw",
            )
        for name in ("voltage_v_l1", "voltage_v_l2", "voltage_v_l3"):
            volts = v.get(name)
            if volts is not None and not 0 <= volts <= 3 * self.settings.nominal_voltage_v:
                raise MeterImplausible(f"{name} = {volts:.1f} V", field="voltages_v")
        return Reading(
            power_kw=power,
            currents_a=(checked[0], checked[1], checked[2]),
            phase_power_kw=(
                v.get("phase_power_kw_l1"),
                v.get("phase_power_kw_l2"),
                v.get("phase_power_kw_l3"),
            ),
            voltages_v=(v.get("voltage_v_l1"), v.get("voltage_v_l2"), v.get("voltage_v_l3")),
            frequency_hz=v.get("frequency_hz"),
            import_kwh=v.get("import_kwh"),
            apparent_kva=v.get("apparent_kva"),
            power_factor=v.get("power_factor"),
            taken_at_monotonic=now,
            taken_at_wall=wall,
        )

    def _judge_frozen(
        self, reading: Reading, raw: tuple[tuple[int, ...], ...], now: float
    ) -> Reading:
        # A live meter's voltage and frequency registers never stay bit-identical for long;
        # a firmware or gateway that keeps answering a stale image does.
        if raw != self._last_raw:
            self._last_raw = raw
            self._raw_since = now
            self._frozen.good(now)
            return reading
        if now - self._raw_since < self.settings.frozen_after_s:
            return reading
        self._frozen.bad(f"unchanged for {now - self._raw_since:.0f} s", now)
        return Reading(
            **{
                **{name: getattr(reading, name) for name in Reading.__dataclass_fields__},
                "quality": reading.quality | {"frozen"},
            }
        )


def _link_for(settings: MeterSettings) -> ModbusLink:
    if settings.transport == "rtu":
        return ModbusLink(
            transport="rtu",
            timeout_s=settings.timeout_s,
            serial=SerialLine(settings.port, settings.baud, settings.parity, settings.stopbits),
        )
    if settings.transport in ("tcp", "rtu-over-tcp"):
        return ModbusLink(
            transport=settings.transport,
            timeout_s=settings.timeout_s,
            host=settings.host,
            tcp_port=settings.tcp_port,
        )
    raise MeterPortError(f"transport {settings.transport!r} has no Modbus link")


def build_meter(settings: MeterSettings) -> Meter:
    """The Meter the ``[meter]`` section describes.

    ``transport = "sim"`` gives an in-process simulated meter (no wire) serving the same
    profile; the demo and bench reach it through ``hal.sim.meter`` to drive its values.
    """
    if settings.transport == "sim":
        from hal.sim.meter import SimMeter  # noqa: PLC0415 (hal.sim imports this module)

        return SimMeter(
            load_profile(settings.profile, settings.profile_file), unit_id=settings.unit_id
        ).direct_meter(settings)
    return ModbusMeter(settings)
