"""``gridwarden study``: estimate a year of EV energy unmet under an SCC scheme.

``register_study(subparsers)`` adds the subcommand to the ``gridwarden`` argparse tree;
``python -m tools.study`` runs it standalone. The handler returns an exit code and prints
bad input as one line naming the file (and line) — never a traceback.
"""

import argparse
import sys
from typing import Any

from controller.errors import ConfigError
from tools.study.central import POLICIES, PRO_RATA
from tools.study.errors import StudyError

SITE_TYPES = ("destination", "residential")  # tools.study.SITE_TYPES


def register_study(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``study`` to a ``gridwarden`` subparsers object; returns the new parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "study",
        help="desktop study: a year of EV energy unmet under an SCC scheme",
        description=(
            "Run the controller's own control core over a year of half-hourly (or finer)"
            " profiles and report the EV energy unmet, utilisation and curtailment events"
            " (report SDRC5 section 4). See docs/study.md."
        ),
    )
    p.add_argument(
        "--example",
        action="store_true",
        help="run a built-in example site (synthetic inputs, written to --out)",
    )
    p.add_argument("--out", default="study-out", metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of synthetic inputs (default 0)")
    p.add_argument("--progress", action="store_true", help="progress bar even if not a TTY")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-timeseries", action="store_true", help="skip per-interval CSVs")
    g = p.add_argument_group("scheme (a device config, or the flags below)")
    g.add_argument("--config", metavar="TOML", help="device config: its scheme settings are used")
    g.add_argument("--scheme", choices=("CLM", "LMC", "CMC"), help="scheme without a config")
    g.add_argument("--limit", type=float, metavar="KW", help="CLM capacity / LMC threshold, kW")
    g.add_argument("--margin", type=float, default=0.0, metavar="KW")
    g.add_argument("--sensitivity", type=float, default=1.0, metavar="SF")
    g.add_argument("--site-max-kw", type=float, metavar="KW", help="EV site maximum import")
    g.add_argument("--min-kw", type=float, default=0.0, metavar="KW")
    g.add_argument("--fallback-kw", type=float, metavar="KW", help="default: --min-kw")
    g.add_argument(
        "--compare-clm",
        action="store_true",
        help="also run the CLM equivalent (fixed firm headroom) of an LMC site",
    )
    g = p.add_argument_group("loading at the constraint(s)")
    g.add_argument("--loading", metavar="CSV", help="timestamp + one column per constraint")
    g.add_argument("--loading-unit", choices=("kW", "MW"), default="kW")
    g.add_argument("--loading-column", metavar="NAME", help="the column to use (single site)")
    g = p.add_argument_group("EV site demand (a CSV, or synthetic)")
    g.add_argument("--demand", metavar="CSV", help="timestamp + one column per EV site")
    g.add_argument("--demand-unit", choices=("kW", "MW"), default="kW")
    g.add_argument("--demand-column", metavar="NAME")
    g.add_argument(
        "--synthetic",
        choices=SITE_TYPES,
        metavar="TYPE",
        help="destination or residential: generate demand (report section 3)",
    )
    g.add_argument("--utilisation", type=float, default=10.0, metavar="PCT")
    g.add_argument("--chargepoints", type=int, default=6, metavar="N")
    g.add_argument("--chargepoint-kw", type=float, metavar="KW")
    g.add_argument("--sites", type=int, default=1, metavar="N", help="synthetic sites (CMC)")
    g = p.add_argument_group("CMC: several sites sharing constraints")
    g.add_argument("--cmc-limits", metavar="NAME=KW,...", help="each constraint's limit, kW")
    g.add_argument(
        "--sensitivities",
        metavar="CSV",
        help="matrix: header 'constraint,<site>...', one row per constraint",
    )
    g.add_argument("--cmc-policy", choices=POLICIES, default=PRO_RATA)
    g = p.add_argument_group("scenario sweep (report Tables 22-26)")
    g.add_argument(
        "--sweep",
        action="store_true",
        help="utilisation ranges x headroom ratio -> unmet-energy ranges",
    )
    g.add_argument("--site-type", choices=SITE_TYPES, default=SITE_TYPES[0])
    g.add_argument(
        "--sweep-points",
        type=int,
        default=3,
        metavar="K",
        help="sample points per range (default 3)",
    )
    p.set_defaults(func=cmd_study)
    return p


def cmd_study(args: argparse.Namespace) -> int:
    try:
        from tools.study import runner  # noqa: PLC0415
    except ImportError as exc:
        print(
            f"gridwarden study needs numpy and matplotlib ({exc.name} is missing):"
            " pip install 'gridwarden[study]'",
            file=sys.stderr,
        )
        return 2
    try:
        return runner.study(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except StudyError as exc:
        print(f"gridwarden study: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gridwarden study: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridwarden")
    sub = parser.add_subparsers(dest="command", required=True)
    register_study(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
