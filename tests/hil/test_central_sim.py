"""The central-platform simulator: its allocation model (pure) and 50 sites on one broker."""

import argparse
import asyncio
import json
from collections.abc import Iterator

import pytest

from controller.config import CentralConfig
from hil.central_sim import (
    LIFO,
    PRO_RATA,
    CentralModel,
    CentralSim,
    ConstraintSpec,
    SimulatedSites,
    SiteSpec,
    demo_model,
    register_sim_central,
)
from tests.mqtt_broker import Mosquitto


@pytest.fixture
def broker(tmp_path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path)
    try:
        yield b.start()
    finally:
        b.stop()


def model(policy: str) -> CentralModel:
    sites = [SiteSpec("a", 50.0), SiteSpec("b", 50.0), SiteSpec("c", 50.0)]
    constraints = [
        # 100 kW of room at the primary, seen fully by every site
        ConstraintSpec("primary", 150.0, lambda t: 45.0, {"a": 1.0, "b": 1.0, "c": 1.0}, 5.0),
        # a feeder that only c loads, at half sensitivity, 10 kW of room
        ConstraintSpec("feeder-c", 30.0, lambda t: 20.0, {"c": 0.5}),
    ]
    m = CentralModel(sites, constraints, policy)
    m.demand_kw.update({"a": 40.0, "b": 40.0, "c": 40.0})
    return m


def test_pro_rata_shares_each_constraint_in_proportion_and_takes_the_tightest():
    limits = model(PRO_RATA).allocate(0.0)
    assert limits["a"] == pytest.approx(100.0 / 120.0 * 40.0, abs=1e-3)
    assert limits["b"] == limits["a"]
    assert limits["c"] == pytest.approx(20.0)  # the feeder: 10 kW / 0.5


def test_lifo_curtails_the_last_connected_first():
    limits = model(LIFO).allocate(0.0)
    assert limits == {"a": 40.0, "b": 40.0, "c": 20.0}


def test_an_unknown_demand_counts_as_the_site_maximum():
    m = model(LIFO)
    m.demand_kw["a"] = None
    assert m.allocate(0.0)["a"] == 50.0


def test_the_policy_is_checked():
    with pytest.raises(ValueError, match="policy"):
        CentralModel([], [], "random")


async def test_fifty_sites_on_one_broker_get_their_limits_and_ack_them(broker):
    port = broker.port
    m = demo_model(50, PRO_RATA)
    sim = CentralSim(m, port=port, period_s=60.0, lease_s=30.0, auto_limits=False)
    cfg = CentralConfig(host="127.0.0.1", port=port, tls=False, telemetry_s=0.5)
    sites = SimulatedSites([s.site_id for s in m.sites], cfg, period_s=0.5)
    tasks = [asyncio.create_task(sim.run()), asyncio.create_task(sites.run())]
    try:
        await sim.wait_ready()
        await asyncio.wait_for(_until(sites.all_connected), 20.0)
        for _ in range(3):
            sent = await sim.send_limits()
            acks = [await sim.wait_ack(cid, 10.0) for cid in sent.values()]
            assert all(a["accepted"] for a in acks)
        for sid, link in sites.links.items():
            lease = link.lease()
            assert lease is not None and lease.limit_kw == sim.sites[sid].last_limit_kw
        assert len(sim.latencies_s()) == 150
        await sim.wait_for(lambda: all(r.telemetry for r in sim.sites.values()), 10.0)
        online = [r.state for r in sim.sites.values() if r.state and r.state["link"] == "online"]
        assert len(online) == 50
    finally:
        await sites.aclose()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _until(predicate) -> None:
    while not predicate():  # noqa: ASYNC110 (a plain predicate, no event to wait on)
        await asyncio.sleep(0.02)


def test_the_cli_runs_the_platform_with_simulated_sites(broker, capsys):
    parser = argparse.ArgumentParser(prog="gridwarden")
    register_sim_central(parser.add_subparsers(dest="sim"))
    args = parser.parse_args(
        ["central", "--broker", f"127.0.0.1:{broker.port}", "--sites", "3",
         "--period", "0.3", "--duration", "1.5", "--simulate-sites", "--policy", "lifo"]
    )  # fmt: skip
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["online"] == ["site-001", "site-002", "site-003"]
    assert summary["acks"] >= 3 and summary["refused"] == 0


def test_the_cli_reports_an_unreachable_broker(capsys):
    from tests.mqtt_broker import free_port

    parser = argparse.ArgumentParser(prog="gridwarden")
    register_sim_central(parser.add_subparsers(dest="sim"))
    args = parser.parse_args(["central", "--broker", f"127.0.0.1:{free_port()}"])
    assert args.func(args) == 1
    assert "sim central: broker" in capsys.readouterr().err
