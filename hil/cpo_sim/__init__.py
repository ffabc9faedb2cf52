"""The CPO simulator: a back office that hosts the CPO REST API v1 for simulated EV sites.

- ``hil.cpo_sim.model``: the pure site model (``SimSite``: EV sessions from the report's
  statistics, dynamic load balancing or round robin, limit, fallback), time injected.
- ``hil.cpo_sim.server``: ``CpoSimulator``, the aiohttp server around the sites, with
  fault injection (``Faults``).
- ``register_sim_cpo``: ``gridwarden sim cpo ...`` (also ``python -m hil.cpo_sim cpo ...``).
"""

import argparse
import asyncio
import os
import signal
import ssl
import sys
from typing import Any

from hil.cpo_sim.model import DLB, RR, STRATEGIES, LimitRefused, SimSite, SiteLimit, SiteSettings
from hil.cpo_sim.server import OPENAPI_PATH, CpoSimulator, Faults, RequestRecord
from hil.ev_sessions import PROFILES

__all__ = [
    "DLB",
    "OPENAPI_PATH",
    "RR",
    "STRATEGIES",
    "CpoSimulator",
    "Faults",
    "LimitRefused",
    "RequestRecord",
    "SimSite",
    "SiteLimit",
    "SiteSettings",
    "build_simulator",
    "register_sim_cpo",
]

TOKEN_ENV = "GRIDWARDEN_CPO_TOKEN"


def register_sim_cpo(sim_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``cpo`` under ``gridwarden sim``: serve the CPO simulator until interrupted."""
    p: argparse.ArgumentParser = sim_subparsers.add_parser(
        "cpo",
        help="run the CPO back-office simulator (the CPO REST API v1)",
        description=(
            "Serve the CPO REST API v1 (docs/api/cpo-openapi.yaml, also at /openapi.yaml) for"
            " simulated EV sites. Ctrl-C stops."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8081, help="TCP port (0: any free port)")
    p.add_argument(
        "--sites", nargs="+", default=["demo-site"], metavar="SITE_ID", help="site ids to host"
    )
    p.add_argument("--chargepoints", type=int, default=6, help="chargepoints per site")
    p.add_argument("--rated-kw", type=float, default=22.0, help="rating of each chargepoint")
    p.add_argument("--phases", type=int, choices=(1, 3), default=3)
    p.add_argument("--min-current-a", type=float, default=6.0, help="minimum charging current")
    p.add_argument("--strategy", choices=STRATEGIES, default=DLB, help="load management")
    p.add_argument("--slot-s", type=float, default=300.0, help="round robin time slot")
    p.add_argument("--fallback-kw", type=float, default=11.0, help="safe limit on lapse")
    p.add_argument("--response-delay-s", type=float, default=2.0, help="limit take-up delay")
    p.add_argument("--profile", choices=sorted(PROFILES), default="destination")
    p.add_argument("--utilisation", type=float, default=0.2, help="per chargepoint, 0..1")
    p.add_argument("--seed", type=int, default=1, help="seed of the EV sessions")
    p.add_argument(
        "--token",
        default=None,
        help=f"API token to accept (default: ${TOKEN_ENV}, else 'sim-token')",
    )
    p.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", default=None, help="private key of --tls-cert (PEM)")
    p.add_argument("--ignore-limits", action="store_true", help="a non-compliant CPO")
    p.set_defaults(func=_sim_cpo)
    return p


def build_simulator(args: argparse.Namespace) -> CpoSimulator:
    token = args.token or os.environ.get(TOKEN_ENV) or "sim-token"
    sites = [
        SiteSettings(
            site_id=sid,
            chargepoints=args.chargepoints,
            rated_kw=args.rated_kw,
            phases=args.phases,
            min_current_a=args.min_current_a,
            strategy=args.strategy,
            slot_s=args.slot_s,
            fallback_kw=args.fallback_kw,
            response_delay_s=args.response_delay_s,
            profile=args.profile,
            utilisation=args.utilisation,
            seed=args.seed + n,
            ignore_limits=args.ignore_limits,
        )
        for n, sid in enumerate(args.sites)
    ]
    return CpoSimulator(sites, token=token)


def _sim_cpo(args: argparse.Namespace) -> int:
    try:
        sim = build_simulator(args)
        ctx = None
        if args.tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
    except (ValueError, OSError) as exc:
        print(f"sim cpo: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            url = await sim.start(args.host, args.port, ssl_context=ctx)
            print(
                f"sim cpo: sites {', '.join(sim.site_ids)} ({args.strategy},"
                f" {args.chargepoints} x {args.rated_kw:g} kW) at"
                f" {url.replace('127.0.0.1', args.host)}; spec at /openapi.yaml",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
        finally:
            await sim.stop()

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"sim cpo: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m hil.cpo_sim cpo --port 8081 ...``"""
    parser = argparse.ArgumentParser(prog="hil.cpo_sim")
    register_sim_cpo(parser.add_subparsers(dest="sim_command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))
