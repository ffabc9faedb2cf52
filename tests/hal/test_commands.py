"""probe-meter and sim meter as an installer runs them: subprocesses on a real pty, mbpoll."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys

import pytest

from hal.commands import register_probe_meter, register_sim_meter
from hal.sim.pty import PtyPair
from tests.hal.conftest import FAST_BAUD, SimFactory

pytestmark = pytest.mark.serial


async def run(*args: str, timeout_s: float = 20.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def probe_args(pair: PtyPair, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hal.commands",
        "probe-meter",
        "--port",
        pair.master_path,
        "--baud",
        str(FAST_BAUD),
        "--unit",
        "1",
        *extra,
    ]


def test_commands_register_into_an_argparse_tree() -> None:
    parser = argparse.ArgumentParser(prog="gridwarden")
    sub = parser.add_subparsers(dest="command", required=True)
    register_probe_meter(sub)
    sim = sub.add_parser("sim").add_subparsers(dest="sim_command", required=True)
    register_sim_meter(sim)
    args = parser.parse_args(["probe-meter", "--port", "/dev/ttyUSB0", "--json"])
    assert callable(args.func) and args.json
    args = parser.parse_args(["sim", "meter", "--port", "/tmp/x", "--power-kw", "12.5"])
    assert callable(args.func) and args.power_kw == 12.5


async def test_probe_meter_json(pty_pair: PtyPair, sim_on_pty: SimFactory) -> None:
    await sim_on_pty("sdm630", power_kw=12.5)
    code, out, _err = await run(*probe_args(pty_pair, "--profile", "sdm630", "--json"))
    assert code == 0
    data = json.loads(out)
    assert data["power_kw"] == pytest.approx(12.5)
    assert len(data["currents_a"]) == 3 and len(data["voltages_v"]) == 3
    assert data["frequency_hz"] == pytest.approx(50.0)
    assert data["import_kwh"] == pytest.approx(1000.0)


async def test_probe_meter_without_meter_fails_in_one_line(pty_pair: PtyPair) -> None:
    code, out, err = await run(*probe_args(pty_pair, "--timeout", "0.2", "--json"))
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


async def test_probe_meter_rejects_bad_settings(pty_pair: PtyPair) -> None:
    code, _out, err = await run(*probe_args(pty_pair, "--unit", "300"))
    assert code == 2
    assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll not installed")
async def test_mbpoll_reads_the_standalone_simulator(pty_pair: PtyPair) -> None:
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hal.commands",
        "sim",
        "meter",
        "--profile",
        "sdm630",
        "--port",
        pty_pair.slave_path,
        "--unit",
        "1",
        "--baud",
        "9600",
        "--power-kw",
        "12.5",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert sim.stderr is not None
        banner = await asyncio.wait_for(sim.stderr.readline(), 20)
        assert b"sim meter" in banner
        # an outside Modbus master: input register 0x0034 (reference 53), float32 big endian
        code, out, err = await run(
            "mbpoll",
            "-m",
            "rtu",
            "-a",
            "1",
            "-b",
            "9600",
            "-P",
            "none",
            "-t",
            "3:float",
            "-B",
            "-r",
            "53",
            "-c",
            "1",
            "-1",
            "-o",
            "1",
            pty_pair.master_path,
        )
        assert code == 0, err
        value = next(line for line in out.splitlines() if line.startswith("[53]:"))
        assert float(value.split(":")[1]) == pytest.approx(12500.0)  # the register holds W
    finally:
        if sim.returncode is None:
            sim.terminate()
            try:
                await asyncio.wait_for(sim.wait(), 5)
            except TimeoutError:
                sim.kill()
                await sim.wait()
    assert sim.returncode == 0  # SIGTERM is a clean stop
