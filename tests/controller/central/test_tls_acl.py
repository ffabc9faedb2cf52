"""The link over TLS with client certificates, on a mosquitto whose ACL lets a site read
only its own command topics and write only its own telemetry/state/ack."""

import asyncio
import json
import ssl
from collections.abc import Iterator

import aiomqtt
import pytest

from controller.central import build_central_link
from controller.config import CentralConfig
from hil.central_sim import CentralModel, CentralSim, SiteSpec
from tests.controller.central.helpers import wait_until
from tests.mqtt_broker import Mosquitto, Pki, make_pki

ACL = """\
user central
topic readwrite gw/#

pattern read gw/%u/cmd/#
pattern write gw/%u/telemetry
pattern write gw/%u/state
pattern write gw/%u/ack
"""


@pytest.fixture
def secure_broker(tmp_path) -> Iterator[tuple[Mosquitto, Pki]]:
    pki = make_pki(tmp_path / "pki", ["site-a", "site-b", "central"])
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    broker = Mosquitto(
        tmp_path,
        extra=[
            f"cafile {pki.ca}",
            f"certfile {pki.server_cert}",
            f"keyfile {pki.server_key}",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
            f"acl_file {acl}",
        ],
    )
    try:
        yield broker.start(), pki
    finally:
        broker.stop()


def tls_for(pki: Pki, name: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if name is not None:
        ctx.load_cert_chain(str(pki.cert(name)), str(pki.key(name)))
    return ctx


async def test_a_site_over_mutual_tls_gets_its_limit_and_cannot_touch_another_site(
    secure_broker,
):
    broker, pki = secure_broker
    sites = [SiteSpec("site-a", 44.0), SiteSpec("site-b", 44.0)]
    sim = CentralSim(
        CentralModel(sites, []),
        port=broker.port,
        prefix="gw",
        tls_context=tls_for(pki, "central"),
        auto_limits=False,
    )
    cfg = CentralConfig(
        host="127.0.0.1",
        port=broker.port,
        prefix="gw",
        tls=True,
        ca_file=pki.ca,
        cert_file=pki.cert("site-a"),
        key_file=pki.key("site-a"),
    )
    link = build_central_link(cfg, "site-a")
    tasks = [asyncio.create_task(sim.run()), asyncio.create_task(link.run())]
    try:
        await sim.wait_ready()
        await wait_until(lambda: link.connected, 5.0, "TLS link up")
        cid = await sim.send_limit("site-a", 22.0)
        assert (await sim.wait_ack(cid))["accepted"] is True
        lease = link.lease()
        assert lease is not None and lease.limit_kw == 22.0

        # site-a, with its own certificate, tries to act as site-b
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            identifier="intruder",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls_for(pki, "site-a"),
        ) as intruder:
            await intruder.subscribe("gw/site-b/cmd/#", qos=1)
            await intruder.subscribe("gw/site-a/cmd/breaker", qos=1)
            forged = {"command_id": "site-b-forged", "kind": "limit", "sequence": 1,
                      "accepted": True, "reason": "ok", "at": 1.0}  # fmt: skip
            await intruder.publish("gw/site-b/ack", json.dumps(forged), qos=1)
            await intruder.publish("gw/site-b/state", '{"link":"offline"}', qos=1, retain=True)
            marker = {**forged, "command_id": "site-a-marker"}
            await intruder.publish("gw/site-a/ack", json.dumps(marker), qos=1)
            # messages of one client arrive in order: once the marker is in, the forgeries
            # would have been too
            await sim.wait_ack("site-a-marker")
            assert "site-b-forged" not in sim.acks
            assert sim.sites["site-b"].state is None

            # commands for site-b are not delivered to site-a's certificate
            await sim.send_breaker("site-b", "trip")
            mine = await sim.send_breaker("site-a", "trip")
            got = []
            async with asyncio.timeout(5.0):
                async for message in intruder.messages:
                    got.append(message.topic.value)
                    if json.loads(message.payload)["command_id"] == mine:  # type: ignore[arg-type,unused-ignore]
                        break
            assert got == ["gw/site-a/cmd/breaker"]
    finally:
        await link.aclose()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_client_without_a_certificate_is_refused(secure_broker):
    broker, pki = secure_broker
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="anon", tls_context=tls_for(pki, None), timeout=5
        ):
            pass


async def test_a_site_trusting_another_ca_does_not_connect(secure_broker, tmp_path):
    broker, _ = secure_broker
    other = make_pki(tmp_path / "other", ["site-a"])
    cfg = CentralConfig(
        host="127.0.0.1", port=broker.port, prefix="gw", tls=True, ca_file=other.ca,
        cert_file=other.cert("site-a"), key_file=other.key("site-a"),
    )  # fmt: skip
    link = build_central_link(cfg, "site-a", reconnect_min_s=0.1, reconnect_max_s=0.2)
    task = asyncio.create_task(link.run())
    try:
        await wait_until(lambda: link.attempts >= 3, 5.0, "retries")  # type: ignore[attr-defined]
        assert not link.connected
        assert task.done() is False  # run() keeps trying, never raises
        assert [e.code for e in link.take_events()] == []  # never up: nothing lost yet
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
