"""The one adapter of pymodbus: a register-reading client and a register-serving server.

Everything that touches pymodbus lives here, so a pymodbus upgrade (it renamed ``slave=``
to ``device_id=`` in 3.10 and is moving its datastore to ``SimDevice`` for v4) is a change
to this file only. The rest of ``hal`` sees plain lists of 16-bit registers and the errors
of ``hal.errors``.

It must never decode measurements (that is ``hal.profile``), never retry on its own (the
meter driver decides), and never let a pymodbus exception escape untranslated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hal.errors import (
    MeterFramingError,
    MeterModbusException,
    MeterPortError,
    MeterTimeout,
)

__all__ = [
    "ModbusLink",
    "RegisterLink",
    "RegisterServer",
    "SerialLine",
]

_log = logging.getLogger(__name__)

# pymodbus logs an error for every unanswered request; the meter driver tells that story
# once per episode instead, so keep pymodbus's own chatter out of the journal.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
logging.getLogger("pymodbus_internal").setLevel(logging.CRITICAL)

Function = Literal["input", "holding"]


@dataclass(frozen=True, slots=True)
class SerialLine:
    """Serial line parameters shared by the client and the server."""

    port: str
    baud: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    bytesize: int = 8


class RegisterLink(Protocol):
    """Anything that reads registers for the meter driver (the wire, or a simulator)."""

    @property
    def endpoint(self) -> str:
        """Where the registers come from, for messages."""
        ...

    async def read_registers(
        self, function: Function, address: int, count: int, unit_id: int
    ) -> list[int]:
        """``count`` registers from ``address``; raise a MeterError subclass on failure."""
        ...

    def close(self) -> None:
        """Release the port; the next read reopens it."""
        ...


class ModbusLink:
    """A Modbus master on RTU serial, Modbus TCP or RTU-over-TCP that reads registers.

    The link owns at most one pymodbus client. Any port failure closes it; the next
    ``read_registers`` opens a fresh one, which is how an unplugged USB-RS485 adapter that
    comes back under the same path is picked up without a restart.
    """

    def __init__(
        self,
        *,
        transport: Literal["rtu", "tcp", "rtu-over-tcp"],
        timeout_s: float,
        serial: SerialLine | None = None,
        host: str = "",
        tcp_port: int = 502,
    ) -> None:
        if transport == "rtu" and serial is None:
            raise ValueError("an RTU link needs serial line parameters")
        self._transport = transport
        self._timeout_s = timeout_s
        self._serial = serial
        self._host = host
        self._tcp_port = tcp_port
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
        # bytes seen on the wire since the last request: tells "no answer" from "bad answer"
        self._rx_bytes = 0

    @property
    def endpoint(self) -> str:
        """Human-readable address of the meter, for messages."""
        if self._transport == "rtu" and self._serial is not None:
            return self._serial.port
        return f"{self._host}:{self._tcp_port}"

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
        return data

    def _new_client(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        # reconnect_delay=0: pymodbus must not reconnect behind our back; we do it per poll
        if self._transport == "rtu":
            assert self._serial is not None
            return AsyncModbusSerialClient(
                self._serial.port,
                framer=FramerType.RTU,
                baudrate=self._serial.baud,
                parity=self._serial.parity,
                stopbits=self._serial.stopbits,
                bytesize=self._serial.bytesize,
                timeout=self._timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._trace_packet,
            )
        return AsyncModbusTcpClient(
            self._host,
            port=self._tcp_port,
            framer=FramerType.RTU if self._transport == "rtu-over-tcp" else FramerType.SOCKET,
            timeout=self._timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
        )

    async def open(self) -> None:
        """Open the port or connection; raises MeterPortError when it cannot."""
        if self._client is not None and self._client.connected:
            return
        self.close()
        client = self._new_client()
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            raise MeterPortError(f"{self.endpoint}: cannot open: {exc}") from exc
        if not ok:
            client.close()
            raise MeterPortError(f"{self.endpoint}: cannot open")
        self._client = client

    def close(self) -> None:
        """Close the port; safe to call at any time."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read_registers(
        self, function: Function, address: int, count: int, unit_id: int
    ) -> list[int]:
        """Read ``count`` registers; raise a MeterError subclass on any failure."""
        await self.open()
        client = self._client
        assert client is not None
        self._rx_bytes = 0
        try:
            if function == "input":
                response = await client.read_input_registers(
                    address, count=count, device_id=unit_id
                )
            else:
                response = await client.read_holding_registers(
                    address, count=count, device_id=unit_id
                )
        except ConnectionException as exc:
            self.close()
            raise MeterPortError(f"{self.endpoint}: connection lost: {exc}") from exc
        except ModbusIOException as exc:
            if self._client is not None and not self._client.connected:
                self.close()
                raise MeterPortError(f"{self.endpoint}: connection lost") from exc
            if self._rx_bytes:
                raise MeterFramingError(
                    f"{self.endpoint}: unit {unit_id}: invalid reply "
                    f"({self._rx_bytes} bytes, bad CRC or framing)"
                ) from exc
            raise MeterTimeout(
                f"{self.endpoint}: unit {unit_id}: no reply within {self._timeout_s} s"
            ) from exc
        except ModbusException as exc:
            raise MeterFramingError(f"{self.endpoint}: {exc}") from exc
        except OSError as exc:
            self.close()
            raise MeterPortError(f"{self.endpoint}: {exc}") from exc
        if isinstance(response, ExceptionResponse) or response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise MeterModbusException(
                f"{self.endpoint}: unit {unit_id}: Modbus exception {code} "
                f"reading {count} registers at {address}",
                exception_code=code,
            )
        registers = list(response.registers)
        if len(registers) < count:
            raise MeterFramingError(
                f"{self.endpoint}: asked {count} registers at {address}, got {len(registers)}"
            )
        return registers[:count]


#: called on each read with (function, first address of the image, image) before the reply;
#: may update the image in place and return a Modbus exception code to answer with instead
ReadHook = Callable[[Function, int, list[int]], Awaitable[int | None]]


class RegisterServer:
    """A Modbus server (slave) serving an input-register and a holding-register image.

    ``on_read`` is where a simulator refreshes values and injects exceptions and delays;
    ``mangle_reply`` sees each outgoing frame and may corrupt or drop it (return b"").
    """

    def __init__(
        self,
        *,
        unit_id: int,
        input_span: tuple[int, int] | None,
        holding_span: tuple[int, int] | None,
        on_read: ReadHook,
        mangle_reply: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._unit_id = unit_id
        self._on_read = on_read
        self._mangle = mangle_reply
        self._server: ModbusSerialServer | ModbusTcpServer | None = None
        self._rtu = False
        # (start, count) per register type; an absent type gets one dummy register
        self._spans = {
            "i": input_span or (0, 1),
            "h": holding_span or (0, 1),
        }

    def _device(self) -> SimDevice:
        async def action(
            function_code: int,
            start_address: int,
            _address: int,
            _count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            if set_values is not None:
                return ExcCodes.ILLEGAL_FUNCTION  # a meter is read-only
            function: Function = "input" if function_code == 4 else "holding"
            code = await self._on_read(function, start_address, registers)
            return ExcCodes(code) if code else None

        def block(span: tuple[int, int]) -> list[SimData]:
            start, count = span
            return [SimData(start, count=count, values=0, datatype=DataType.REGISTERS)]

        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return SimDevice(
            self._unit_id,
            simdata=(bits, list(bits), block(self._spans["h"]), block(self._spans["i"])),
            action=action,
        )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            return data
        if self._rtu and data and data[0] != self._unit_id:
            # on an RS485 bus a meter stays silent to other unit ids (pymodbus would answer
            # "device failure" for them)
            return b""
        return self._mangle(data) if self._mangle is not None else data

    async def start_serial(self, line: SerialLine, *, reopen_delay_s: float = 0.2) -> None:
        """Serve Modbus RTU on a serial port (e.g. one end of a pty pair)."""
        self._rtu = True
        self._server = ModbusSerialServer(
            self._device(),
            framer=FramerType.RTU,
            port=line.port,
            baudrate=line.baud,
            parity=line.parity,
            stopbits=line.stopbits,
            bytesize=line.bytesize,
            reconnect_delay=reopen_delay_s,
            trace_packet=self._trace_packet,
        )
        await self._listen()

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0, *, rtu: bool = False) -> int:
        """Serve Modbus TCP (or RTU framing over TCP); returns the bound port."""
        self._rtu = rtu
        self._server = ModbusTcpServer(
            self._device(),
            framer=FramerType.RTU if rtu else FramerType.SOCKET,
            address=(host, port),
            trace_packet=self._trace_packet,
        )
        await self._listen()
        sockets = getattr(self._server.transport, "sockets", None)
        if not sockets:
            return port
        return int(sockets[0].getsockname()[1])

    async def _listen(self) -> None:
        assert self._server is not None
        try:
            await self._server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            self._server = None
            raise MeterPortError(f"cannot listen: {exc}") from exc

    @property
    def listening(self) -> bool:
        """True while the server holds its port open."""
        return self._server is not None and self._server.transport is not None

    async def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0)
