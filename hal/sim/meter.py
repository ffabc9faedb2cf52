"""A simulated meter that is a real Modbus RTU/TCP server serving a profile's register map.

The simulator encodes its values with the same profile code the driver decodes with, serves
them through pymodbus on a serial port (one end of a socat pty pair) or TCP, and exposes
fault controls: stop answering, corrupt the CRC, answer with a Modbus exception, delay
replies, freeze values. It is a first-class implementation used by ``gridwarden sim meter``,
the demo and the HIL bench, driven in-process through this module's async API.

It must never import ``controller`` nor pymodbus (``hal.modbus`` adapts it), and never
block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from hal.errors import (
    MeterFramingError,
    MeterModbusException,
    MeterTimeout,
    ProfileError,
)
from hal.meter import Meter, MeterSettings, ModbusMeter
from hal.modbus import RegisterServer, SerialLine
from hal.profile import FIELD_UNITS, Profile, encode_values, load_profile

__all__ = [
    "SimFaults",
    "SimMeter",
    "ValueSource",
    "balanced_values",
    "constant_source",
    "csv_source",
]

_log = logging.getLogger(__name__)

Function = Literal["input", "holding"]

#: seconds since the simulator started -> canonical values (keys of hal.profile.FIELD_UNITS)
ValueSource = Callable[[float], Mapping[str, float]]


def balanced_values(
    power_kw: float,
    *,
    voltage_v: float = 230.0,
    frequency_hz: float = 50.0,
    import_kwh: float = 1000.0,
    power_factor: float = 1.0,
) -> dict[str, float]:
    """A consistent three-phase picture of a balanced load of ``power_kw`` (import +)."""
    phase_kw = power_kw / 3
    current_a = abs(phase_kw) * 1000 / (voltage_v * power_factor) if voltage_v else 0.0
    values = {
        "power_kw": power_kw,
        "frequency_hz": frequency_hz,
        "import_kwh": import_kwh,
        "power_factor": power_factor,
        "apparent_kva": abs(power_kw) / power_factor if power_factor else 0.0,
    }
    for phase in ("l1", "l2", "l3"):
        values[f"phase_power_kw_{phase}"] = phase_kw
        values[f"current_a_{phase}"] = current_a
        values[f"voltage_v_{phase}"] = voltage_v
    return values


def constant_source(values: Mapping[str, float]) -> ValueSource:
    """The same values forever."""
    frozen = dict(values)
    return lambda _t: frozen


def csv_source(path: str | Path, *, loop: bool = True) -> ValueSource:
    """Values from a CSV file: a ``time_s`` column plus canonical field columns.

    Each row holds until the next row's time. A file with only ``power_kw`` is expanded
    with ``balanced_values``. With ``loop`` the profile repeats after its last row.
    """
    rows: list[tuple[float, dict[str, float]]] = []
    with Path(path).open(newline="") as fh:
        for line in csv.DictReader(fh):
            t = float(line.pop("time_s"))
            fields = {k: float(v) for k, v in line.items() if v not in (None, "")}
            unknown = set(fields) - set(FIELD_UNITS)
            if unknown:
                raise ProfileError(f"{path}: unknown columns {', '.join(sorted(unknown))}")
            if set(fields) == {"power_kw"}:
                fields = balanced_values(fields["power_kw"])
            rows.append((t, fields))
    if not rows:
        raise ProfileError(f"{path}: no rows")
    rows.sort(key=lambda r: r[0])
    period = rows[-1][0] if rows[-1][0] > 0 else 1.0

    def source(elapsed: float) -> Mapping[str, float]:
        t = elapsed % period if loop else elapsed
        current = rows[0][1]
        for start, fields in rows:
            if start > t:
                break
            current = fields
        return current

    return source


@dataclass
class SimFaults:
    """Fault controls; change the attributes at any time, they apply to the next request."""

    #: do not answer at all (the driver sees a timeout)
    silent: bool = False
    #: answer with a frame whose CRC is wrong (the driver sees a framing error)
    corrupt_crc: bool = False
    #: answer with this Modbus exception code instead of data (e.g. 4 = device failure)
    exception_code: int | None = None
    #: hold every reply this long
    delay_s: float = 0.0
    #: keep serving the last values, bit for bit (a hung meter firmware)
    frozen: bool = False


class SimMeter:
    """A simulated meter serving ``profile`` as Modbus unit ``unit_id``."""

    def __init__(
        self,
        profile: Profile | str,
        *,
        unit_id: int = 1,
        source: ValueSource | None = None,
        power_kw: float = 0.0,
        jitter: bool = False,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.unit_id = unit_id
        self.faults = SimFaults()
        #: requests answered with data so far
        self.requests_served = 0
        self._source: ValueSource = source or constant_source(balanced_values(power_kw))
        self._jitter = jitter
        self._rng = random.Random(seed)
        self._clock = clock
        self._t0 = clock()
        self._values: dict[str, float] = {}
        self._images: dict[Function, tuple[int, list[int]]] = {}
        for function in ("input", "holding"):
            specs = [s for s in self.profile.fields.values() if s.function == function]
            if specs:
                start = min(s.address for s in specs)
                end = max(s.address + s.count for s in specs)
                self._images[function] = (start, [0] * (end - start))
        self._server: RegisterServer | None = None
        self._line: SerialLine | None = None
        self._watch: asyncio.Task[None] | None = None
        self._refresh()

    # ---- values -------------------------------------------------------------------------

    @property
    def values(self) -> dict[str, float]:
        """The canonical values last encoded into the registers."""
        return dict(self._values)

    def set_source(self, source: ValueSource) -> None:
        """Serve values from ``source`` (a site model, a CSV profile...) from now on."""
        self._source = source
        self._refresh()

    def set_values(self, values: Mapping[str, float]) -> None:
        """Serve these constant values (canonical field names, import-positive power)."""
        unknown = set(values) - set(FIELD_UNITS)
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        self.set_source(constant_source(values))

    def set_power_kw(self, power_kw: float, **kwargs: float) -> None:
        """Serve a balanced three-phase load of ``power_kw`` (negative = export)."""
        self.set_values(balanced_values(power_kw, **kwargs))

    def clear_faults(self) -> None:
        """Back to a healthy meter."""
        self.faults = SimFaults()

    def _refresh(self) -> None:
        if self.faults.frozen and self._values:
            return
        values = dict(self._source(self._clock() - self._t0))
        if self._jitter:
            # a live grid: voltage and frequency wander a little, so registers change
            for name in ("voltage_v_l1", "voltage_v_l2", "voltage_v_l3"):
                if name in values:
                    values[name] += self._rng.uniform(-0.5, 0.5)
            if "frequency_hz" in values:
                values["frequency_hz"] += self._rng.uniform(-0.02, 0.02)
        self._values = values
        for spec in self.profile.fields.values():
            if spec.name not in values:
                continue
            start, image = self._images[spec.function]
            offset = spec.address - start
            image[offset : offset + spec.count] = encode_values(spec, values[spec.name])

    def registers(self, function: Function, address: int, count: int) -> list[int] | None:
        """Current register image slice, or None when outside the served map."""
        if function not in self._images:
            return None
        start, image = self._images[function]
        if address < start or address + count > start + len(image):
            return None
        return image[address - start : address - start + count]

    # ---- the wire -----------------------------------------------------------------------

    async def _on_read(self, function: Function, start: int, registers: list[int]) -> int | None:
        if self.faults.delay_s > 0:
            await asyncio.sleep(self.faults.delay_s)
        if self.faults.exception_code:
            return self.faults.exception_code
        self._refresh()
        if function in self._images:
            image_start, image = self._images[function]
            offset = image_start - start
            registers[offset : offset + len(image)] = image
        self.requests_served += 1
        return None

    def _mangle(self, frame: bytes) -> bytes:
        if self.faults.silent:
            return b""
        if self.faults.corrupt_crc and frame:
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame

    def _new_server(self) -> RegisterServer:
        spans: dict[Function, tuple[int, int] | None] = {"input": None, "holding": None}
        for function, (start, image) in self._images.items():
            spans[function] = (start, len(image))
        return RegisterServer(
            unit_id=self.unit_id,
            input_span=spans["input"],
            holding_span=spans["holding"],
            on_read=self._on_read,
            mangle_reply=self._mangle,
        )

    async def start_serial(
        self,
        port: str | Path,
        *,
        baud: int = 9600,
        parity: Literal["N", "E", "O"] = "N",
        stopbits: int = 1,
    ) -> None:
        """Serve Modbus RTU on ``port``; re-open it by itself if it disappears and returns."""
        self._line = SerialLine(str(port), baud, parity, stopbits)
        self._server = self._new_server()
        await self._server.start_serial(self._line)
        self._watch = asyncio.create_task(self._watch_port(), name="sim meter port watch")

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0, *, rtu: bool = False) -> int:
        """Serve Modbus TCP (``rtu=True``: RTU frames over TCP); returns the bound port."""
        self._server = self._new_server()
        return await self._server.start_tcp(host, port, rtu=rtu)

    async def _watch_port(self) -> None:
        # pymodbus keeps a dead serial handle when a pty vanishes: like a real meter that is
        # power-cycled, re-open the port when its path comes back.
        assert self._line is not None
        path = self._line.port
        identity = _port_identity(path)
        while True:
            await asyncio.sleep(0.05)
            now = _port_identity(path)
            if now == identity:
                continue
            identity = now
            if self._server is not None:
                await self._server.stop()
                self._server = None
            if now is None:
                _log.info("sim meter: port %s gone", path)
                continue
            server = self._new_server()
            try:
                await server.start_serial(self._line)
            except OSError as exc:  # MeterPortError is an OSError: port not ready yet
                _log.info("sim meter: cannot reopen %s yet: %s", path, exc)
                identity = None
                continue
            self._server = server
            _log.info("sim meter: port %s reopened", path)

    async def stop(self) -> None:
        """Stop serving and release the port."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> SimMeter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- without a wire -----------------------------------------------------------------

    def direct_meter(self, settings: MeterSettings | None = None) -> Meter:
        """A Meter reading this simulator in-process (same decoding and checks, no wire)."""
        settings = settings or MeterSettings(transport="sim", unit_id=self.unit_id)
        return ModbusMeter(settings, profile=self.profile, link=_InProcessLink(self))


def _port_identity(path: str) -> tuple[int, int, int] | None:
    # the link's own inode changes when socat re-creates it, the device when the tty differs
    try:
        link = os.lstat(path)
        target = os.stat(path)
    except OSError:
        return None
    return (link.st_ino, target.st_ino, target.st_rdev)


class _InProcessLink:
    """A RegisterLink that asks the simulator directly: the same faults, no bytes."""

    def __init__(self, sim: SimMeter) -> None:
        self._sim = sim

    @property
    def endpoint(self) -> str:
        return f"sim:{self._sim.profile.name}"

    async def read_registers(
        self, function: Function, address: int, count: int, unit_id: int
    ) -> list[int]:
        sim = self._sim
        faults = sim.faults
        if faults.delay_s > 0:
            await asyncio.sleep(faults.delay_s)
        if unit_id != sim.unit_id or faults.silent:
            raise MeterTimeout(f"{self.endpoint}: unit {unit_id}: no reply")
        if faults.corrupt_crc:
            raise MeterFramingError(f"{self.endpoint}: invalid reply (bad CRC)")
        if faults.exception_code:
            raise MeterModbusException(
                f"{self.endpoint}: Modbus exception {faults.exception_code}",
                exception_code=faults.exception_code,
            )
        sim._refresh()
        registers = sim.registers(function, address, count)
        if registers is None:
            raise MeterModbusException(f"{self.endpoint}: illegal address", exception_code=2)
        sim.requests_served += 1
        return registers

    def close(self) -> None:
        return None
