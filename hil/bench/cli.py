"""``gridwarden hil run SCENARIO... --report DIR [--jobs N]`` (also ``python -m hil.bench``).

Loads every scenario first (a broken file stops the bench before anything runs), runs them
``--jobs`` at a time, prints a pass/fail table, writes ``DIR/report.md`` (plots beside it)
and ``DIR/summary.json``. Exit code: 0 when every scenario that ran passed, 1 when any
failed or the bench could not run it, 2 for bad scenario files or arguments. Scenarios
marked ``pending`` are shown as PENDING and not run (``--include-pending`` runs them).
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from hil.bench.judge import ERROR, FAIL, PENDING, Verdict, judge
from hil.bench.record import Recording
from hil.bench.report import table_rows, write_report
from hil.bench.runner import Wiring, run_scenario
from hil.bench.scenario import Scenario, ScenarioError, load_scenario, merge, parse_override


def add_run_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run HIL scenarios against the real daemon process and judge them",
        description="Run bench scenarios (TOML files, see docs/hil.md) against the real"
        " controller process with simulated meter, CPO and central platform.",
    )
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO", type=Path)
    p.add_argument("--report", required=True, type=Path, metavar="DIR", help="report folder")
    p.add_argument("--jobs", type=int, default=1, help="scenarios run at once (default 1)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key in every scenario, e.g."
        " controller.escalation.compliance_deadline_s=600 (a TOML value)",
    )
    p.add_argument(
        "--include-pending", action="store_true", help="also run scenarios marked pending"
    )
    p.add_argument(
        "--serial",
        nargs=2,
        metavar=("DAEMON_PORT", "SIM_PORT"),
        help="Pi bench: real serial ports (two USB-RS485 adapters wired together) instead"
        " of the pty pair; runs one scenario at a time",
    )
    p.add_argument(
        "--breaker",
        choices=("sim", "gpio"),
        default="sim",
        help="Pi bench: gpio drives a real relay (pins from the scenario's"
        " [controller.breaker]) and reads the aux contact back",
    )
    p.set_defaults(func=_run)
    return p


def register_hil(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``hil`` (with ``run``) to the ``gridwarden`` command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "hil", help="the hardware-in-the-loop bench (docs/hil.md)"
    )
    add_run_parser(p.add_subparsers(dest="hil_command", required=True))
    return p


def _say(text: str) -> None:
    print(f"hil: {text}", file=sys.stderr, flush=True)


async def run_all(
    scenarios: list[tuple[Scenario, str]],
    report: Path,
    jobs: int,
    include_pending: bool,
    wiring: Wiring | None = None,
) -> tuple[list[Verdict], dict[str, Recording], float]:
    started = time.monotonic()
    gate = asyncio.Semaphore(max(1, jobs))
    recordings: dict[str, Recording] = {}

    async def one(scenario: Scenario, source: str) -> Verdict:
        if scenario.pending is not None and not include_pending:
            return Verdict(scenario.name, source, PENDING, 0.0, [], None, scenario.pending)
        async with gate:
            _say(f"{scenario.name}: running ({scenario.duration_s:g} s)")
            rec = await run_scenario(scenario, source, report / scenario.name, wiring)
        recordings[scenario.name] = rec
        verdict = judge(scenario, rec)
        if scenario.pending is not None:
            verdict.note = f"pending ({scenario.pending}); ran anyway: {verdict.result}"
            verdict.result = PENDING
        _say(f"{scenario.name}: {verdict.result} in {rec.wall_s:.0f} s")
        return verdict

    verdicts = await asyncio.gather(*(one(s, src) for s, src in scenarios))
    return list(verdicts), recordings, time.monotonic() - started


def print_table(verdicts: list[Verdict]) -> None:
    rows = [("scenario", "result", "wall s", "why not"), *table_rows(verdicts)]
    w0 = max(len(r[0]) for r in rows)
    for name, result, wall, why in rows:
        print(f"{name:<{w0}}  {result:<7}  {wall:>6}  {why}")


def _run(args: argparse.Namespace) -> int:
    try:
        overrides: dict[str, Any] = {}
        for text in args.set:
            overrides = merge(overrides, parse_override(text))
        scenarios = [(load_scenario(p, overrides), str(p)) for p in args.scenarios]
    except ScenarioError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    names = [s.name for s, _ in scenarios]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        print(f"hil: two scenarios named {', '.join(dupes)}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("hil: --jobs must be at least 1", file=sys.stderr)
        return 2
    wiring = Wiring(tuple(args.serial) if args.serial else None, args.breaker)
    jobs = 1 if args.serial or args.breaker == "gpio" else args.jobs  # one set of hardware
    verdicts, recordings, total = asyncio.run(
        run_all(scenarios, args.report, jobs, args.include_pending, wiring)
    )
    units = {s.name: s.unit for s, _ in scenarios}
    path = write_report(args.report, verdicts, recordings, units, total)
    print_table(verdicts)
    print(
        f"{sum(v.result == 'PASS' for v in verdicts)}/{len(verdicts)} passed in {total:.0f} s;"
        f" report: {path}"
    )
    return 1 if any(v.result in (FAIL, ERROR) for v in verdicts) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m hil.bench run SCENARIO... --report DIR``"""
    parser = argparse.ArgumentParser(prog="python -m hil.bench")
    add_run_parser(parser.add_subparsers(dest="hil_command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))
