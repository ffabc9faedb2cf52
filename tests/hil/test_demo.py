"""`gridwarden demo` end to end: the real daemon on the simulated site (meter over a
serial pty, CPO simulator over HTTP, breaker on mock pins) curtails, escalates and trips
on its own within about a minute, and stops cleanly on Ctrl-C."""

import asyncio
import json
import re
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.controller.conftest import event_codes

ROOT = Path(__file__).resolve().parents[2]


def get_status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as resp:
        data: dict[str, Any] = json.load(resp)
    return data


@pytest.mark.slow
async def test_demo_curtails_escalates_and_trips_then_stops_cleanly(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        "demo",
        "--port",
        "0",
        "--store-dir",
        str(tmp_path),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stderr.readline()).decode()
                assert line, "demo exited early"
                found = re.search(r"HMI on http://127\.0\.0\.1:(\d+)", line)
                if found:
                    port = int(found.group(1))
                    break

        async def drain() -> None:
            assert proc.stderr is not None
            while await proc.stderr.readline():
                pass

        drainer = asyncio.create_task(drain())
        async with asyncio.timeout(120):
            while not seen or seen[-1] != "tripped":
                state = (await asyncio.to_thread(get_status, port))["state"]
                if not seen or seen[-1] != state:
                    seen.append(state)
                await asyncio.sleep(0.5)
        status = await asyncio.to_thread(get_status, port)
        assert status["breaker"]["status"] == "open"  # the aux contact confirms it
        assert status["cpo"]["reachable"] is True
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        drainer.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "normal" in seen and "curtailing" in seen
    assert seen.index("emergency") < seen.index("tripped")
    codes = event_codes(tmp_path / "demo.sqlite")
    for code in ("CURTAIL_START", "OVER_LIMIT", "EMERGENCY", "TRIP"):
        assert code in codes
