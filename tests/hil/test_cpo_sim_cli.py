"""``sim cpo``: the standalone simulator starts, serves the API, and stops on a signal."""

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from hil.cpo_sim import OPENAPI_PATH, build_simulator, register_sim_cpo

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gridwarden")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("sim")
    register_sim_cpo(sim.add_subparsers(dest="sim_command", required=True))
    return parser.parse_args(argv)


def test_the_command_line_of_the_issue_parses_into_sites() -> None:
    line = "sim cpo --port 8081 --sites demo-site other --chargepoints 6 --strategy rr --seed 1"
    args = parse(line.split(" "))
    sim = build_simulator(args)
    assert sim.site_ids == ["demo-site", "other"]
    site = sim.site("demo-site")
    assert site.settings.strategy == "rr" and len(site.points) == 6
    assert sim.site("other").settings.seed == 2  # each site gets its own sessions


async def test_standalone_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "GRIDWARDEN_CPO_TOKEN": "tok"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.cpo_sim", "cpo", "--port", "0", "--sites", "demo-site",
        "--strategy", "dlb", "--seed", "1",
        cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 10.0)).decode()
        url = line.split(" at ", 1)[1].split(";", 1)[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        async with aiohttp.ClientSession() as session:
            async with session.get(url.removesuffix("/v1") + "/openapi.yaml") as resp:
                assert await resp.read() == OPENAPI_PATH.read_bytes()
            headers = {"Authorization": "Token tok"}
            async with session.get(url + "/sites/demo-site/demand", headers=headers) as resp:
                assert resp.status == 200
                assert (await resp.json())["site_id"] == "demo-site"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10.0) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
