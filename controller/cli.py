"""The ``gridwarden`` command: one entry point, a subcommand per job.

Handlers return an exit code and print errors as one clear line each, never a traceback:
the people running these are installers and DNO engineers at a site, not developers.
"""

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from controller.config import Config, load_config
from controller.errors import ConfigError, GridwardenError
from controller.hmi.cli import register_hash_password
from hal import commands as hal_commands
from hil.bench.cli import register_hil
from hil.central_sim import register_sim_central
from hil.cpo_sim import register_sim_cpo
from tools.study.cli import register_study


def _cmd_check_config(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.paths:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            for line in exc.problems:
                print(line, file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps(effective_settings(cfg), indent=2))
        else:
            print(f"{path}: ok")
            for line in describe(cfg):
                print("  " + line)
    return 1 if failed else 0


def effective_settings(cfg: Config) -> dict[str, object]:
    """The whole configuration with defaults filled in and secrets hidden."""
    return cfg.model_dump(mode="json")


def describe(cfg: Config) -> list[str]:
    """A short human summary of what the controller will do with this config."""
    sch, ev, ctl, esc = cfg.scheme, cfg.ev_site, cfg.control, cfg.escalation
    u = sch.unit
    lines = [f"site {cfg.site.id} ({cfg.site.name or 'unnamed'}), scheme {sch.type}"]
    if sch.schedule:
        values = sorted({e.limit for e in sch.schedule})
        lines.append(
            f"limit: weekly schedule of {len(sch.schedule)} entries, {values[0]:g}..{values[-1]:g}"
            f" {u} (most restrictive {values[0]:g} {u} while the clock is not synchronised)"
        )
    elif sch.limit is not None:
        lines.append(
            f"limit: {sch.limit:g} {u}" + (" (local backstop)" if sch.type == "CMC" else "")
        )
    else:
        lines.append("limit: from the central platform only (no local backstop)")
    if sch.limit is not None or sch.schedule:
        lines.append(
            f"trim = limit - {sch.margin:g} {u}; trip level = limit x {sch.trip_ratio:g};"
            f" sensitivity {sch.sensitivity:g}"
        )
    lines.append(
        f"EV site: {ev.min_kw:g}..{ev.max_kw:g} kW, fallback {ev.fallback_kw:g} kW;"
        f" ramp {ctl.ramp_kw_per_s:g} kW/s after {ctl.release_hold_s:g} s hold;"
        f" period {ctl.period_s:g} s"
    )
    lines.append(
        f"escalation: emergency after {esc.compliance_deadline_s:g} s over"
        f" ({esc.compliance_deadline_unreachable_s:g} s if the CPO is unreachable),"
        f" trip {esc.trip_delay_s:g} s later; meter timeout {esc.meter_timeout_s:g} s,"
        " meter trip "
        + (f"{esc.meter_trip_timeout_s:g} s" if esc.meter_trip_timeout_s else "never")
    )
    if cfg.g100.enabled:
        g = cfg.g100
        lines.append(
            f"G100: stage-2 after {g.stage2_s:g} s;"
            f" lockout after {g.single_excursion_lockout_s:g} s,"
            f" {g.window_max_stage2} in {g.window_s:g} s or > {g.day_max_stage2} in"
            f" {g.day_window_s:g} s; lockout {g.lockout_s:g} s"
        )
    if cfg.meter is not None:
        mt = cfg.meter
        where = {"rtu": mt.port, "sim": "(simulated)"}.get(mt.transport, f"{mt.host}:{mt.tcp_port}")
        lines.append(
            f"meter: {mt.profile_file or mt.profile} via {mt.transport} {where} unit {mt.unit_id}"
        )
    if cfg.cpo is not None:
        lines.append(f"CPO: {cfg.cpo.base_url}")
    if cfg.central is not None:
        lines.append(f"central: {cfg.central.host}:{cfg.central.port} prefix {cfg.central.prefix}")
    lines.append(f"HMI: http://{cfg.hmi.bind}:{cfg.hmi.port}")
    return lines


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    from controller.runtime import run_daemon, setup_logging  # noqa: PLC0415

    setup_logging()
    try:
        return asyncio.run(run_daemon(cfg))
    except GridwardenError as exc:
        print(f"gridwarden run: {exc}", file=sys.stderr)
        return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from controller.runtime import setup_logging  # noqa: PLC0415
    from hil.demo import main_demo  # noqa: PLC0415 (the bench is only loaded for the demo)

    setup_logging()
    return main_demo(args.port, args.store_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridwarden", description="Local DERMS controller for EV charging sites."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "check-config", help="validate config files and print the effective settings"
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the full effective config as JSON")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("run", help="run the controller (the field entry point)")
    p.add_argument("--config", required=True, metavar="PATH")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("demo", help="run the controller on a simulated site")
    p.add_argument("--port", type=int, default=8080, help="HMI port (0: any free port)")
    p.add_argument(
        "--store-dir", type=Path, default=None, help="keep the demo's files here (default: temp)"
    )
    p.set_defaults(func=_cmd_demo)

    hal_commands.register_probe_meter(sub)
    register_study(sub)
    register_hash_password(sub)
    register_hil(sub)
    sim = sub.add_parser("sim", help="run a simulator standalone (for third-party peers)")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIMULATOR")
    hal_commands.register_sim_meter(sim_sub)
    register_sim_cpo(sim_sub)
    register_sim_central(sim_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
