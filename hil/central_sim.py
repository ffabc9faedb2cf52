"""The central platform simulator (CMC): several constraints, several EV sites, over MQTT.

- ``CentralModel`` (pure, time injected): each constraint has a measured background
  (a profile of wall time) and a threshold; sites load it through sensitivity factors;
  limits are shared out per constraint, pro rata or last-in-first-out, by the same
  allocator the desktop study uses (``tools.study.central.allocate``).
- ``CentralSim``: the platform on a broker. Each period it allocates and publishes a limit
  to every site (``cmd/limit``, QoS 1, a fresh sequence, a lease), and records the acks
  (with command->ack latency), telemetry and retained state of every site. A site that
  comes (back) online gets its limit at once. Test controls: ``send_limit``,
  ``send_breaker``, ``send_raw`` (replays, malformed payloads), ``wait_ack``.
- ``SimulatedSites``: N in-process controllers' links (the firmware's own
  ``controller.central`` link) answering with synthetic status, for scale tests and
  ``tools/bench_central.py``.
- ``register_sim_central``: ``gridwarden sim central --broker HOST:PORT --sites N``.

Like the firmware's link, this module is the simulator's one adapter of aiomqtt.
"""

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from controller import core
from controller.central import CentralLink, Topics, build_central_link
from controller.config import CentralConfig
from tools.study.central import LIFO, POLICIES, PRO_RATA, allocate

__all__ = [
    "LIFO",
    "POLICIES",
    "PRO_RATA",
    "AckRecord",
    "CentralModel",
    "CentralSim",
    "ConstraintSpec",
    "SimulatedSites",
    "SiteSpec",
    "daily_profile",
    "demo_model",
    "register_sim_central",
]


def daily_profile(
    base_kw: float, peak_kw: float, peak_hour: float = 18.0
) -> Callable[[float], float]:
    """A smooth daily background: ``base_kw`` at night, ``peak_kw`` at ``peak_hour`` UTC."""

    def background(wall_s: float) -> float:
        hour = (wall_s / 3600.0) % 24.0
        phase = math.cos(2.0 * math.pi * (hour - peak_hour) / 24.0)
        return base_kw + (peak_kw - base_kw) * (0.5 + 0.5 * phase)

    return background


@dataclass
class ConstraintSpec:
    """A network constraint: ``background(wall_s)`` is what the platform measures without
    the EV sites (kW), ``threshold_kw`` what it may carry, ``sensitivity[site]`` the share
    of each site's power seen there."""

    name: str
    threshold_kw: float
    background: Callable[[float], float]
    sensitivity: dict[str, float]
    margin_kw: float = 0.0

    def headroom_kw(self, wall_s: float) -> float:
        return self.threshold_kw - self.margin_kw - self.background(wall_s)


@dataclass
class SiteSpec:
    """An EV site in connection order (LIFO curtails the last first)."""

    site_id: str
    max_kw: float


class CentralModel:
    """Pure: who gets how much at a given wall time, from the latest reported demands."""

    def __init__(
        self, sites: list[SiteSpec], constraints: list[ConstraintSpec], policy: str = PRO_RATA
    ) -> None:
        if policy not in POLICIES:
            raise ValueError("unknown policy %r (one of %s)" % (policy, ", ".join(POLICIES)))
        self.sites = sites
        self.constraints = constraints
        self.policy = policy
        self.demand_kw: dict[str, float | None] = {s.site_id: None for s in sites}

    def allocate(self, wall_s: float) -> dict[str, float]:
        """Each site's limit. An unknown demand counts as the site's maximum (the safe
        assumption for everyone else)."""
        ids = [s.site_id for s in self.sites]
        requests = [
            s.max_kw if (d := self.demand_kw.get(s.site_id)) is None else d for s in self.sites
        ]
        limits = allocate(
            [c.headroom_kw(wall_s) for c in self.constraints],
            [[c.sensitivity.get(sid, 0.0) for sid in ids] for c in self.constraints],
            requests,
            [s.max_kw for s in self.sites],
            self.policy,
        )
        return {sid: round(lim, 3) for sid, lim in zip(ids, limits, strict=True)}


def demo_model(n_sites: int, policy: str = PRO_RATA, seed: int = 1) -> CentralModel:
    """N sites of 44 kW under one primary constraint (all sites) and one secondary per ten
    sites, sized so the evening peak binds."""
    rng = random.Random(seed)
    sites = [SiteSpec("site-%03d" % (k + 1), 44.0) for k in range(n_sites)]
    primary = ConstraintSpec(
        "primary",
        threshold_kw=max(100.0, 30.0 * n_sites),
        background=daily_profile(10.0 * n_sites, 25.0 * n_sites),
        sensitivity={s.site_id: round(rng.uniform(0.8, 1.0), 3) for s in sites},
        margin_kw=5.0,
    )
    constraints = [primary]
    for g in range(0, n_sites, 10):
        group = sites[g : g + 10]
        constraints.append(
            ConstraintSpec(
                "secondary-%d" % (g // 10 + 1),
                threshold_kw=250.0,
                background=daily_profile(60.0, 180.0, 19.0),
                sensitivity={s.site_id: 1.0 for s in group},
                margin_kw=2.0,
            )
        )
    return CentralModel(sites, constraints, policy)


@dataclass
class AckRecord:
    """An ack received, and how long after the command it came (None: not sent by us)."""

    ack: dict[str, Any]
    site_id: str
    latency_s: float | None


@dataclass
class _SiteRecord:
    sequence: int
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] | None = None
    last_limit_kw: float | None = None


class CentralSim:
    """The central platform on a broker. Start with ``run()`` as a task (or ``async with``)."""

    def __init__(
        self,
        model: CentralModel,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "gridwarden",
        period_s: float = 10.0,
        lease_s: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        identifier: str = "gridwarden-central",
        auto_limits: bool = True,
        wall_clock: Callable[[], float] = time.time,
        telemetry_keep: int = 1000,
    ) -> None:
        self.model = model
        self.host, self.port, self.prefix = host, port, prefix
        self.period_s, self.lease_s = period_s, lease_s
        self.tls_context = tls_context
        self.username, self.password = username, password
        self.identifier = identifier
        self.auto_limits = auto_limits
        self.wall_clock = wall_clock
        self.telemetry_keep = telemetry_keep
        seq0 = int(wall_clock() * 1000)  # monotonic across simulator restarts
        self.sites = {s.site_id: _SiteRecord(seq0) for s in model.sites}
        self.acks: dict[str, AckRecord] = {}
        self.ack_log: list[AckRecord] = []
        self.sent = 0
        self._sent_at: dict[str, float] = {}
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._ack_arrived = asyncio.Condition()
        self._wanted: set[str] = set()
        self._wake = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        async with aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self.tls_context,
            max_inflight_messages=1000,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            max_queued_outgoing_messages=100_000,
            timeout=30.0,
        ) as client:
            for leaf in ("telemetry", "ack", "state"):
                await client.subscribe(f"{self.prefix}/+/{leaf}", qos=1)
            client.pending_calls_threshold = 100_000  # a round to many sites is one burst
            self._client = client
            self._ready.set()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._receive(client), name="central-sim-rx")
                    if self.auto_limits:
                        tg.create_task(self._allocate_loop(), name="central-sim-alloc")
            finally:
                self._client = None
                self._ready.clear()

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    # --- commands ------------------------------------------------------------------------------
    def topics(self, site_id: str) -> Topics:
        return Topics.of(self.prefix, site_id)

    def next_sequence(self, site_id: str) -> int:
        rec = self.sites[site_id]
        rec.sequence += 1
        return rec.sequence

    async def send_limit(
        self,
        site_id: str,
        limit_kw: float,
        *,
        valid_for_s: float | None = None,
        sequence: int | None = None,
        issued_at: float | None = None,
    ) -> str:
        """Publish one limit command; returns its command_id."""
        seq = self.next_sequence(site_id) if sequence is None else sequence
        cid = "%s-L%d-%d" % (site_id, seq, self.sent)
        body = {
            "limit_kw": limit_kw,
            "valid_for_s": self.lease_s if valid_for_s is None else valid_for_s,
            "issued_at": self.wall_clock() if issued_at is None else issued_at,
            "sequence": seq,
            "command_id": cid,
        }
        self.sites[site_id].last_limit_kw = limit_kw
        await self._publish(self.topics(site_id).cmd_limit, json.dumps(body).encode(), cid)
        return cid

    async def send_breaker(
        self,
        site_id: str,
        action: str,
        *,
        sequence: int | None = None,
        issued_at: float | None = None,
        valid_for_s: float = 60.0,
    ) -> str:
        seq = self.next_sequence(site_id) if sequence is None else sequence
        cid = "%s-B%d-%d" % (site_id, seq, self.sent)
        body = {
            "action": action,
            "command_id": cid,
            "sequence": seq,
            "issued_at": self.wall_clock() if issued_at is None else issued_at,
            "valid_for_s": valid_for_s,
        }
        await self._publish(self.topics(site_id).cmd_breaker, json.dumps(body).encode(), cid)
        return cid

    async def send_raw(self, topic: str, payload: bytes, command_id: str = "") -> None:
        """Publish anything (a malformed command, a replay) as the platform."""
        await self._publish(topic, payload, command_id)

    async def _publish(self, topic: str, payload: bytes, cid: str) -> None:
        client = self._client
        if client is None:
            raise RuntimeError("central simulator is not connected")
        self.sent += 1
        if cid:
            self._sent_at[cid] = time.perf_counter()
        await client.publish(topic, payload, qos=1)

    async def send_limits(self) -> dict[str, str]:
        """Allocate now and send every site its limit; returns site_id -> command_id."""
        limits = self.model.allocate(self.wall_clock())
        cids = await asyncio.gather(*(self.send_limit(s, kw) for s, kw in limits.items()))
        return dict(zip(limits, cids, strict=True))

    async def wait_ack(self, command_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
        async with self._ack_arrived:
            await asyncio.wait_for(
                self._ack_arrived.wait_for(lambda: command_id in self.acks), timeout_s
            )
        return self.acks[command_id].ack

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Wait until ``predicate()`` holds after some message arrived (tests)."""
        async with self._ack_arrived:
            await asyncio.wait_for(self._ack_arrived.wait_for(predicate), timeout_s)

    def latencies_s(self) -> list[float]:
        return [r.latency_s for r in self.ack_log if r.latency_s is not None]

    # --- loops --------------------------------------------------------------------------------
    async def _allocate_loop(self) -> None:
        next_at = time.monotonic()
        while True:
            await self.send_limits()
            next_at += self.period_s
            while True:
                delay = next_at - time.monotonic()
                if delay <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                wanted, self._wanted = self._wanted, set()
                if wanted:  # sites (back) online get their limit now, not next period
                    limits = self.model.allocate(self.wall_clock())
                    await asyncio.gather(*(self.send_limit(s, limits[s]) for s in wanted))

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parts = message.topic.value.split("/")
            if len(parts) < 3 or parts[-2] not in self.sites:
                continue
            site_id, leaf = parts[-2], parts[-1]
            raw = message.payload
            try:
                data = json.loads(raw if isinstance(raw, str | bytes | bytearray) else b"")
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            rec = self.sites[site_id]
            if leaf == "ack":
                cid = str(data.get("command_id", ""))
                sent = self._sent_at.pop(cid, None)
                latency = None if sent is None else time.perf_counter() - sent
                record = AckRecord(data, site_id, latency)
                self.ack_log.append(record)
                if cid:
                    self.acks[cid] = record
            elif leaf == "telemetry":
                rec.telemetry.append(data)
                del rec.telemetry[: -self.telemetry_keep]
                demand = data.get("demand_kw")
                if isinstance(demand, int | float):
                    self.model.demand_kw[site_id] = float(demand)
            elif leaf == "state":
                was_online = rec.state is not None and rec.state.get("link") == "online"
                rec.state = data
                if data.get("link") == "online" and not was_online and self.auto_limits:
                    self._wanted.add(site_id)
                    self._wake.set()
            async with self._ack_arrived:
                self._ack_arrived.notify_all()


class SimulatedSites:
    """N firmware links (``controller.central``) on one event loop, each answering every
    ``period_s`` with a synthetic status: the EVs draw ``demand_kw`` capped by the lease,
    or the fallback when there is none. Breaker commands are accepted at once."""

    def __init__(
        self,
        site_ids: list[str],
        config: CentralConfig,
        *,
        period_s: float = 1.0,
        demand_kw: float = 40.0,
        fallback_kw: float = 11.0,
    ) -> None:
        self.period_s = period_s
        self.demand_kw = demand_kw
        self.fallback_kw = fallback_kw
        self.links: dict[str, CentralLink] = {
            sid: build_central_link(config, sid, reconnect_min_s=0.2, reconnect_max_s=2.0)
            for sid in site_ids
        }

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for sid, link in self.links.items():
                tg.create_task(link.run(), name="link-" + sid)
                tg.create_task(self._tick(link), name="tick-" + sid)

    def all_connected(self) -> bool:
        return all(link.connected for link in self.links.values())

    async def _tick(self, link: CentralLink) -> None:
        while True:
            lease = link.lease()
            live = lease is not None and lease.expires_at > time.monotonic() and link.connected
            limit = lease.limit_kw if live and lease is not None else self.fallback_kw
            results = [
                core.CommandResult(c.command_id, c.kind, True, "ok") for c in link.take_commands()
            ]
            link.take_events()
            status: dict[str, Any] = {
                "state": "curtailing" if live else "fallback",
                "reason": "",
                "ev_limit": {"limit_kw": limit, "sent_kw": limit},
                "cpo": {"demand_kw": min(self.demand_kw, limit)},
                "alarms": [],
            }
            link.on_period(status, results)
            await asyncio.sleep(self.period_s)

    async def aclose(self) -> None:
        for link in self.links.values():
            await link.aclose()


def _online(state: dict[str, Any] | None) -> bool:
    return state is not None and state.get("link") == "online"


# --- CLI -------------------------------------------------------------------------------------
def register_sim_central(sim_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``central`` under ``gridwarden sim``: run the central platform until interrupted."""
    p: argparse.ArgumentParser = sim_subparsers.add_parser(
        "central",
        help="central platform (CMC): allocate limits to N sites over MQTT",
        description="Run the CMC central-platform simulator against an MQTT broker.",
    )
    p.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT")
    p.add_argument("--sites", type=int, default=3, metavar="N", help="sites site-001..site-N")
    p.add_argument("--policy", choices=POLICIES, default=PRO_RATA)
    p.add_argument("--prefix", default="gridwarden")
    p.add_argument("--period", type=float, default=10.0, metavar="S", help="allocation period")
    p.add_argument("--lease", type=float, default=30.0, metavar="S", help="limit validity")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S")
    p.add_argument("--simulate-sites", action="store_true", help="also run the N sites' links")
    p.add_argument("--ca", default=None, help="CA file: connect with TLS")
    p.add_argument("--cert", default=None, help="client certificate (mutual TLS)")
    p.add_argument("--key", default=None, help="client key")
    p.add_argument("--username", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=_sim_central)
    return p


def _sim_central(args: argparse.Namespace) -> int:
    host, _, port_s = args.broker.rpartition(":")
    try:
        port = int(port_s)
        if not host or args.sites < 1:
            raise ValueError
    except ValueError:
        print("sim central: --broker HOST:PORT and --sites >= 1 expected", file=sys.stderr)
        return 2
    try:
        ctx = None
        if args.ca:
            ctx = ssl.create_default_context(cafile=args.ca)
            if args.cert:
                ctx.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as exc:
        print(f"sim central: TLS files: {exc}", file=sys.stderr)
        return 2
    model = demo_model(args.sites, args.policy, args.seed)
    sim = CentralSim(
        model, host=host, port=port, prefix=args.prefix, period_s=args.period,
        lease_s=args.lease, tls_context=ctx, username=args.username, password=args.password,
    )  # fmt: skip
    sites = None
    if args.simulate_sites:
        cfg = CentralConfig(
            host=host, port=port, prefix=args.prefix, tls=ctx is not None,
            ca_file=Path(args.ca) if args.ca else None, telemetry_s=args.period,
        )  # fmt: skip
        sites = SimulatedSites([s.site_id for s in model.sites], cfg, period_s=args.period)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        tasks = [asyncio.create_task(sim.run(), name="central-sim")]
        if sites is not None:
            tasks.append(asyncio.create_task(sites.run(), name="sim-sites"))
        print(
            f"sim central: {args.sites} sites, {len(model.constraints)} constraints,"
            f" {args.policy}, every {args.period:g} s on {host}:{port} ({args.prefix}/...)",
            file=sys.stderr,
            flush=True,
        )
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        online = sorted(s for s, r in sim.sites.items() if _online(r.state))
        if sites is not None:
            await sites.aclose()
        for t in [waiter, *tasks]:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                raise r
        lat = sorted(sim.latencies_s())
        p99 = lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)] * 1000 if lat else None
        refused = sum(1 for r in sim.ack_log if not r.ack.get("accepted"))
        print(
            json.dumps(
                {
                    "commands_sent": sim.sent,
                    "acks": len(sim.ack_log),
                    "refused": refused,
                    "ack_p99_ms": None if p99 is None else round(p99, 2),
                    "online": online,
                }
            ),
            flush=True,
        )

    try:
        asyncio.run(main())
    except (aiomqtt.MqttError, OSError) as exc:
        print(f"sim central: broker {args.broker}: {exc}", file=sys.stderr)
        return 1
    return 0
