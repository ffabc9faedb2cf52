"""Command-line entry points of the HAL: ``probe-meter`` and ``sim meter``.

``register_probe_meter`` and ``register_sim_meter`` add the subcommands to the
``gridwarden`` argparse tree (the controller's CLI wires them in); ``python -m hal.commands``
runs them standalone. Handlers run their own ``asyncio.run``, print one clear line to stderr
and return non-zero on failure: never a traceback for a meter that does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from pydantic import ValidationError

from hal.errors import HalError
from hal.meter import STANDARD_BAUDS, MeterSettings, ModbusMeter
from hal.profile import load_profile, shipped_profiles
from hal.sim.meter import SimMeter, balanced_values, constant_source, csv_source

__all__ = ["main", "register_probe_meter", "register_sim_meter"]


def _add_line_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baud", type=int, default=9600, choices=STANDARD_BAUDS)
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    parser.add_argument("--unit", type=int, default=1, help="Modbus unit id (1..247)")
    parser.add_argument(
        "--profile",
        default="sdm630",
        help=f"shipped profile: {', '.join(shipped_profiles())}",
    )
    parser.add_argument("--profile-file", default=None, help="custom profile TOML file")


def register_probe_meter(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``probe-meter``: read the meter once and print what it says (commissioning)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "probe-meter",
        help="read the constraint meter once (commissioning)",
        description="Read the meter once through its profile and print the measurement.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port of the RS485 adapter (Modbus RTU)")
    where.add_argument("--host", help="Modbus TCP meter or gateway")
    parser.add_argument("--tcp-port", type=int, default=502)
    parser.add_argument(
        "--rtu-over-tcp", action="store_true", help="the TCP gateway passes RTU frames"
    )
    _add_line_args(parser)
    parser.add_argument("--timeout", type=float, default=1.0, help="reply timeout, seconds")
    parser.add_argument("--ct-rating", type=float, default=100.0, help="CT primary rating, A")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_probe_meter)
    return parser


def _probe_meter(args: argparse.Namespace) -> int:
    try:
        settings = MeterSettings(
            transport=("rtu" if args.port else ("rtu-over-tcp" if args.rtu_over_tcp else "tcp")),
            port=args.port or "/dev/ttyUSB0",
            host=args.host or "",
            tcp_port=args.tcp_port,
            baud=args.baud,
            parity=args.parity,
            stopbits=args.stopbits,
            unit_id=args.unit,
            profile=args.profile,
            profile_file=args.profile_file,
            timeout_s=args.timeout,
            ct_rating_a=args.ct_rating,
        )
    except (ValidationError, HalError) as exc:
        print(f"probe-meter: invalid settings: {_one_line(exc)}", file=sys.stderr)
        return 2

    async def probe() -> dict[str, object]:
        meter = ModbusMeter(settings)
        try:
            return (await meter.read()).as_dict()
        finally:
            await meter.close()

    try:
        reading = asyncio.run(probe())
    except HalError as exc:
        print(f"probe-meter: no valid reading: {_one_line(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reading))
    else:
        for key, value in reading.items():
            print(f"{key:>14}: {value}")
    return 0


def register_sim_meter(sim_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``meter`` under ``gridwarden sim``: serve a simulated meter until interrupted."""
    parser: argparse.ArgumentParser = sim_subparsers.add_parser(
        "meter",
        help="run a simulated Modbus RTU meter on a serial port or pty",
        description="Serve a profile's register map as a Modbus RTU server (Ctrl-C stops).",
    )
    parser.add_argument("--port", required=True, help="serial port or pty path to serve on")
    _add_line_args(parser)
    parser.add_argument("--power-kw", type=float, default=0.0, help="total power, import +")
    parser.add_argument("--voltage", type=float, default=230.0, help="phase voltage, V")
    parser.add_argument("--frequency", type=float, default=50.0, help="frequency, Hz")
    parser.add_argument("--csv", default=None, help="CSV value profile (time_s, power_kw...)")
    parser.add_argument(
        "--jitter", action="store_true", help="let voltage/frequency wander like a live grid"
    )
    parser.set_defaults(func=_sim_meter)
    return parser


def _sim_meter(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile, args.profile_file)
        source = (
            csv_source(args.csv)
            if args.csv
            else constant_source(
                balanced_values(args.power_kw, voltage_v=args.voltage, frequency_hz=args.frequency)
            )
        )
    except (HalError, OSError, ValueError) as exc:
        print(f"sim meter: {_one_line(exc)}", file=sys.stderr)
        return 2

    async def serve() -> None:
        sim = SimMeter(profile, unit_id=args.unit, source=source, jitter=args.jitter)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with sim:
            await sim.start_serial(
                args.port, baud=args.baud, parity=args.parity, stopbits=args.stopbits
            )
            print(
                f"sim meter: {profile.name} unit {args.unit} on {args.port} at {args.baud} baud",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()

    try:
        asyncio.run(serve())
    except HalError as exc:
        print(f"sim meter: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(argv: list[str] | None = None) -> int:
    """``python -m hal.commands probe-meter ...`` / ``python -m hal.commands sim meter ...``."""
    parser = argparse.ArgumentParser(prog="hal")
    sub = parser.add_subparsers(dest="command", required=True)
    register_probe_meter(sub)
    sim = sub.add_parser("sim", help="simulators")
    register_sim_meter(sim.add_subparsers(dest="sim_command", required=True))
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return int(args.func(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
