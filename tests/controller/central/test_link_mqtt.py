"""The CMC link against a real mosquitto on an ephemeral port, with the central-platform
simulator as the peer and the real core behind the link."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from controller.central import build_central_link
from controller.config import CentralConfig
from hil.central_sim import CentralModel, CentralSim, SiteSpec
from tests.controller.central.helpers import FALLBACK_KW, MiniRuntime, cmc_settings, wait_until
from tests.mqtt_broker import Mosquitto

SITE = "site-a"
PERIOD_S = 0.2
ROOT = Path(__file__).resolve().parents[3]


def config(port: int, **kw) -> CentralConfig:
    values = {"host": "127.0.0.1", "port": port, "prefix": "gw", "tls": False}
    values.update(kw)
    return CentralConfig(**values)  # type: ignore[arg-type]


def central(port: int) -> CentralSim:
    model = CentralModel([SiteSpec(SITE, 44.0)], [])
    return CentralSim(model, port=port, prefix="gw", auto_limits=False, identifier="central")


class Tasks:
    """Tasks started by a test, all cancelled at the end whatever happens."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, coro, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.append(task)
        return task

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            # bounded: a task that does not end on cancel fails the test, never hangs the run
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, 10.0)
        stuck = [t.get_name() for t in self.tasks if not t.done()]
        assert not stuck, f"tasks did not stop when cancelled: {stuck}"


@pytest.fixture
async def tasks() -> AsyncIterator[Tasks]:
    t = Tasks()
    try:
        yield t
    finally:
        await t.close()


async def start_central(tasks: Tasks, port: int) -> CentralSim:
    sim = central(port)
    tasks.start(sim.run(), "central")
    await sim.wait_ready()
    return sim


async def test_limits_are_applied_and_bad_commands_rejected_with_a_reason(mosquitto_broker, tasks):
    port = mosquitto_broker.port
    sim = await start_central(tasks, port)
    link = build_central_link(config(port), SITE)
    tasks.start(link.run(), "link")
    await wait_until(lambda: link.connected, what="link up")
    limit_topic = sim.topics(SITE).cmd_limit

    ok = await sim.send_limit(SITE, 37.5, sequence=10)
    assert (await sim.wait_ack(ok))["accepted"] is True
    lease = link.lease()
    assert lease is not None and (lease.limit_kw, lease.sequence) == (37.5, 10)

    replay = await sim.send_limit(SITE, 44.0, sequence=10)
    older = await sim.send_limit(SITE, 44.0, sequence=9)
    expired = await sim.send_limit(SITE, 44.0, sequence=11, issued_at=time.time() - 120.0)
    await sim.send_raw(limit_topic, b"{not json")
    inf = b'{"command_id": "bad-1", "limit_kw": 1e999, "valid_for_s": 60, "issued_at": %d, '
    await sim.send_raw(limit_topic, inf % time.time() + b'"sequence": 12}', "bad-1")
    await sim.send_raw(
        limit_topic,
        json.dumps({"command_id": "bad-2", "limit_kw": 5, "sequence": 12}).encode(),
        "bad-2",
    )
    reasons = {cid: await sim.wait_ack(cid) for cid in (replay, older, expired, "bad-1", "bad-2")}
    assert all(a["accepted"] is False for a in reasons.values())
    assert "stale sequence 10" in reasons[replay]["reason"]
    assert "stale sequence 9" in reasons[older]["reason"]
    assert reasons[expired]["reason"].startswith("expired")
    assert reasons["bad-1"]["reason"].startswith("malformed")
    assert reasons["bad-2"]["reason"].startswith("malformed")
    [anonymous] = [r.ack for r in sim.ack_log if r.ack["command_id"] == ""]
    assert anonymous["accepted"] is False and anonymous["reason"].startswith("malformed")
    lease = link.lease()
    assert lease is not None and (lease.limit_kw, lease.sequence) == (37.5, 10)  # unchanged
    codes = [e.code for e in link.take_events()]
    assert codes.count("CENTRAL_COMMAND_REJECTED") == 6


async def test_breaker_commands_reach_the_core_and_its_verdict_is_acked(mosquitto_broker, tasks):
    port = mosquitto_broker.port
    sim = await start_central(tasks, port)
    link = build_central_link(config(port), SITE)
    rt = MiniRuntime(link, cmc_settings(), PERIOD_S)
    tasks.start(link.run(), "link")
    tasks.start(rt.run(), "tick")
    await wait_until(lambda: link.connected, what="link up")

    trip = await sim.send_breaker(SITE, "trip")
    assert (await sim.wait_ack(trip))["accepted"] is True
    assert rt.state.tripped and rt.state.trip_source == "central"
    permit = await sim.send_breaker(SITE, "permit_close")
    assert (await sim.wait_ack(permit))["accepted"] is True
    assert not rt.state.tripped

    # a trip the central platform did not order needs a local reset: permit-close refused
    from controller import core

    rt.local_commands.append(core.Command("trip", "hmi:alice", "h1"))
    await rt.until(lambda r: r.state.tripped)
    refused = await sim.send_breaker(SITE, "permit_close")
    ack = await sim.wait_ack(refused)
    assert ack["accepted"] is False and "local reset" in ack["reason"]
    assert rt.state.tripped


async def test_state_is_retained_and_the_will_says_offline_when_the_controller_dies(
    mosquitto_broker, tasks, tmp_path
):
    port = mosquitto_broker.port
    sim = await start_central(tasks, port)
    script = (
        "import asyncio, sys\n"
        "from controller.central import build_central_link\n"
        "from controller.config import CentralConfig\n"
        "async def main():\n"
        "    cfg = CentralConfig(host='127.0.0.1', port=%d, prefix='gw', tls=False)\n"
        "    link = build_central_link(cfg, %r)\n"
        "    task = asyncio.create_task(link.run())\n"
        "    while True:\n"
        "        link.on_period({'state': 'curtailing'}, [])\n"
        "        await asyncio.sleep(0.05)\n"
        "asyncio.run(main())\n"
    ) % (port, SITE)
    proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the test kills it)
        [sys.executable, "-c", script], cwd=ROOT, env={**os.environ}
    )
    try:
        await sim.wait_for(lambda: (sim.sites[SITE].state or {}).get("state") == "curtailing", 10.0)
        assert (sim.sites[SITE].state or {}).get("link") == "online"
        assert await retained_state(port) == {"link": "online", "state": "curtailing"}
        proc.send_signal(signal.SIGKILL)  # the controller dies: no DISCONNECT is sent
        proc.wait(5.0)
        await sim.wait_for(lambda: sim.sites[SITE].state == {"link": "offline"}, 5.0)
        assert await retained_state(port) == {"link": "offline"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5.0)


async def retained_state(port: int) -> dict[str, Any]:
    """What a newcomer reads on the retained state topic (without the timestamp)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="newcomer") as client:
        await client.subscribe(f"gw/{SITE}/state", qos=1)
        async with asyncio.timeout(5.0):
            async for message in client.messages:
                assert message.retain
                data = json.loads(message.payload)  # type: ignore[arg-type,unused-ignore]
                return {k: v for k, v in data.items() if k in ("link", "state")}
    raise AssertionError("no retained state")


async def test_broker_loss_falls_back_within_a_period_buffers_and_needs_a_fresh_command(
    tmp_path, tasks
):
    broker = Mosquitto(tmp_path).start()
    try:
        port = broker.port
        sim = await start_central(tasks, port)
        cfg = config(port, telemetry_s=PERIOD_S / 2, offline_buffer=5)
        link = build_central_link(cfg, SITE, reconnect_min_s=1.0, reconnect_max_s=4.0)
        rt = MiniRuntime(link, cmc_settings(), PERIOD_S)
        tasks.start(link.run(), "link")
        tasks.start(rt.run(), "tick")
        await wait_until(lambda: link.connected, what="link up")
        cid = await sim.send_limit(SITE, 55.0, valid_for_s=600.0)
        await sim.wait_ack(cid)
        await rt.until(lambda r: r.mode == "curtailing" and r.limit_kw == 55.0)
        await sim.wait_for(lambda: len(sim.sites[SITE].telemetry) >= 2)

        broker.stop()
        stopped = time.monotonic()
        fell_back = await rt.until(lambda r: r.mode == "fallback", 2.0)
        assert fell_back - stopped <= PERIOD_S + 0.1
        assert rt.limit_kw == FALLBACK_KW
        last_before = sim.sites[SITE].telemetry[-1]["seq"]

        # stay down past the first retry, so the peer is back before the link returns
        await wait_until(lambda: link.attempts >= 1, 5.0, "a failed retry")  # type: ignore[attr-defined]
        await asyncio.sleep(0.6)
        broker.start()
        sim = await start_central(tasks, port)
        await wait_until(lambda: link.connected, 10.0, "reconnection")
        await sim.wait_for(lambda: len(sim.sites[SITE].telemetry) >= 5, 5.0)
        flushed = sim.sites[SITE].telemetry[:5]
        seqs = [t["seq"] for t in flushed]
        assert seqs == list(range(seqs[0], seqs[0] + 5))  # the buffer, oldest first
        await rt.until(lambda r: any(e.code == "CENTRAL_TELEMETRY_DROPPED" for e in r.events))
        [event] = [e for e in rt.events if e.code == "CENTRAL_TELEMETRY_DROPPED"]
        dropped = event.values["dropped"]
        assert dropped > 0 and seqs[0] - last_before - 1 == dropped  # the count is the hole
        assert flushed[-1]["dropped"] == dropped  # and the telemetry says so too

        # back on the link, the old lease does not return: only a fresh command does
        await asyncio.sleep(3 * PERIOD_S)
        assert rt.mode == "fallback" and rt.limit_kw == FALLBACK_KW
        cid = await sim.send_limit(SITE, 42.0, valid_for_s=600.0)
        assert (await sim.wait_ack(cid))["accepted"] is True
        await rt.until(lambda r: r.mode == "curtailing" and r.limit_kw == 42.0, 2.0)
    finally:
        broker.stop()


async def test_an_expired_lease_falls_back_and_the_same_sequence_cannot_revive_it(
    mosquitto_broker, tasks
):
    port = mosquitto_broker.port
    sim = await start_central(tasks, port)
    link = build_central_link(config(port), SITE)
    rt = MiniRuntime(link, cmc_settings(), PERIOD_S)
    tasks.start(link.run(), "link")
    tasks.start(rt.run(), "tick")
    await wait_until(lambda: link.connected, what="link up")
    cid = await sim.send_limit(SITE, 30.0, valid_for_s=0.5, sequence=100)
    await sim.wait_ack(cid)
    await rt.until(lambda r: r.limit_kw == 30.0)
    await rt.until(lambda r: r.mode == "fallback", 0.5 + 2 * PERIOD_S)
    again = await sim.send_limit(SITE, 30.0, valid_for_s=60.0, sequence=100)
    assert (await sim.wait_ack(again))["accepted"] is False
    await asyncio.sleep(2 * PERIOD_S)
    assert rt.mode == "fallback"
