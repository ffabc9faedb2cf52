"""The work behind ``gridwarden study``: inputs -> runs -> outputs (files and a table).

Separate from ``cli`` so that registering the subcommand imports neither numpy nor
matplotlib: the device's ``gridwarden`` command must start without the study's extras.
"""

import argparse
import csv
from datetime import datetime
from pathlib import Path
from typing import Any

from controller import core
from controller.core import model as m
from tools.study import output, synthetic
from tools.study.errors import StudyError
from tools.study.metrics import SiteSummary, event_rows
from tools.study.profiles import Profile, align, read_profile_csv, time_of_week, write_profile_csv
from tools.study.progress import Progress
from tools.study.simulate import SiteRun
from tools.study.study import clm_equivalent, firm_headroom_kw, run_cmc, run_site
from tools.study.sweep import sweep, sweep_size

EXAMPLE_START = datetime(2025, 1, 1)


# --- inputs ---------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> tuple[core.CoreSettings, str]:
    if args.config:
        from controller.config import load_config  # noqa: PLC0415

        cfg = load_config(args.config)
        return cfg.core_settings(), cfg.site.id
    if not args.scheme:
        raise StudyError("give --config TOML or --scheme (and its settings), or --example")
    if args.site_max_kw is None:
        raise StudyError("--scheme needs --site-max-kw (the EV site's maximum import)")
    if args.scheme != m.CMC and args.limit is None:
        raise StudyError(f"--scheme {args.scheme} needs --limit (kW)")
    fallback = args.min_kw if args.fallback_kw is None else args.fallback_kw
    try:
        s = core.CoreSettings(
            scheme=args.scheme,
            unit=m.KW,
            limit=None if args.scheme == m.CMC else core.Schedule.constant(args.limit),
            margin=args.margin,
            sensitivity=args.sensitivity,
            site_max_kw=args.site_max_kw,
            min_limit_kw=args.min_kw,
            fallback_limit_kw=fallback,
        )
    except ValueError as exc:
        raise StudyError(f"settings: {exc}") from exc
    if args.scheme == m.CLM and args.sensitivity != 1.0:
        raise StudyError("CLM measures the site's own connection point: --sensitivity must be 1")
    return s, "ev_site"


def _demand(args: argparse.Namespace, loading: Profile, site: str) -> tuple[Profile, float | None]:
    """The demand profile on the loading grid, and the site's charging capacity if known."""
    if args.demand and args.synthetic:
        raise StudyError("give --demand or --synthetic, not both")
    if args.demand:
        return align(read_profile_csv(args.demand, args.demand_unit), loading), None
    if not args.synthetic:
        raise StudyError("give --demand CSV or --synthetic destination|residential")
    rating = args.chargepoint_kw or synthetic.DEFAULT_RATING_KW[args.synthetic]
    days = max(1, round(len(loading) * loading.step_s / 86400.0))
    cols = {}
    names = [site] if args.sites == 1 else [f"site{k + 1}" for k in range(args.sites)]
    for k, name in enumerate(names):
        prof = synthetic.ev_demand(
            args.synthetic,
            args.utilisation / 100.0,
            args.chargepoints,
            rating,
            loading.start,
            loading.step_s,
            days,
            seed=args.seed + k,
            name=name,
        )
        cols[name] = prof.columns[name]
    dem = Profile(loading.start, loading.step_s, cols, "<synthetic>")
    return align(dem, loading), args.chargepoints * rating


def _read_sensitivities(path: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    try:
        fh = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        raise StudyError(f"{path}: cannot read: {exc.strerror}") from exc
    with fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise StudyError(f"{path}: need a header 'constraint,<site>,...' and a row per constraint")
    sites = [h.strip() for h in rows[0][1:]]
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(sites) + 1:
            raise StudyError(f"{path}:{line}: expected {len(sites) + 1} fields, got {len(row)}")
        try:
            out[row[0].strip()] = {s: float(v) for s, v in zip(sites, row[1:], strict=True)}
        except ValueError:
            raise StudyError(f"{path}:{line}: sensitivities must be numbers") from None
    return out


def _parse_limits(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise StudyError(f"--cmc-limits: expected NAME=KW,..., got {part!r}") from None
    return out


# --- the run --------------------------------------------------------------------------------
def study(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.example:
        results, start = _example(args, out)
    else:
        device, site = _settings(args)
        if not args.loading:
            raise StudyError("give --loading CSV (the constraint's loading profile)")
        loading = read_profile_csv(args.loading, args.loading_unit)
        if args.sweep and not args.demand and not args.synthetic:
            return _sweep(args, out, loading.column(args.loading_column), loading)
        demand, capacity = _demand(args, loading, site)
        start = loading.start
        bar = Progress(len(loading), "study", True if args.progress else None)
        if device.scheme == m.CMC:
            if not args.cmc_limits or not args.sensitivities:
                raise StudyError("scheme CMC needs --cmc-limits and --sensitivities")
            results = run_cmc(
                device,
                loading,
                _parse_limits(args.cmc_limits),
                device.margin,
                _read_sensitivities(args.sensitivities),
                demand,
                args.cmc_policy,
                capacity,
                bar.advance_to,
            )
        else:
            name = args.demand_column or (demand.names[0] if len(demand.names) == 1 else site)
            results = [
                run_site(
                    device,
                    loading,
                    args.loading_column,
                    demand,
                    args.demand_column,
                    name,
                    capacity,
                    bar.advance_to,
                )
            ]
            if args.compare_clm:
                results.append(
                    _clm_twin(
                        device,
                        loading,
                        args.loading_column,
                        demand,
                        args.demand_column,
                        name,
                        capacity,
                    )
                )
        bar.close()
    _write_results(args, out, results, start)
    if args.sweep and args.example:
        ex_loading = read_profile_csv(out / "loading.csv")
        return _sweep(args, out, ex_loading.column(), ex_loading)
    return 0


def _clm_twin(
    device: core.CoreSettings,
    loading: Profile,
    column: str | None,
    demand: Profile,
    demand_column: str | None,
    name: str,
    capacity: float | None,
) -> tuple[SiteRun, SiteSummary]:
    firm = firm_headroom_kw(device, loading.column(column), time_of_week(loading))
    clm = clm_equivalent(device, firm)
    zero = Profile(loading.start, loading.step_s, {"zero": loading.column(column) * 0.0})
    return run_site(clm, zero, None, demand, demand_column, name + " (CLM equivalent)", capacity)


def _example(
    args: argparse.Namespace, out: Path
) -> tuple[list[tuple[SiteRun, SiteSummary]], datetime]:
    """An LMC destination site behind a residential feeder, and its CLM equivalent.

    The settings are those of config/lmc.toml expressed in kW (threshold 250 kW at the
    substation's LV board, sf 0.85, 6 x 22 kW chargepoints): headroom ratio about 2.
    """
    device = core.CoreSettings(
        scheme=m.LMC,
        unit=m.KW,
        limit=core.Schedule.constant(250.0),
        margin=5.0,
        trip_ratio=1.05,
        sensitivity=0.85,
        site_max_kw=132.0,
        min_limit_kw=6.0,
        fallback_limit_kw=30.0,
    )
    loading = synthetic.network_loading(
        215.0, synthetic.RESIDENTIAL, EXAMPLE_START, seed=args.seed, name="substation_lv"
    )
    demand = synthetic.ev_demand(
        synthetic.DESTINATION, 0.12, 6, 22.0, EXAMPLE_START, seed=args.seed, name="car_park"
    )
    write_profile_csv(out / "loading.csv", loading)
    write_profile_csv(out / "demand.csv", demand)
    bar = Progress(len(loading), "example", True if args.progress else None)
    results = [run_site(device, loading, None, demand, None, "car_park", 132.0, bar.advance_to)]
    bar.close()
    results.append(_clm_twin(device, loading, None, demand, None, "car_park", 132.0))
    return results, loading.start


def _write_results(
    args: argparse.Namespace,
    out: Path,
    results: list[tuple[SiteRun, SiteSummary]],
    start: datetime,
) -> None:
    rows = [summ.row() for _run, summ in results]
    output.write_rows_csv(out / "summary.csv", rows)
    events: list[dict[str, object]] = []
    for run, summ in results:
        events.extend(event_rows(run, summ.events, start))
    output.write_rows_csv(out / "events.csv", events or [{"site": "", "start": "", "end": ""}])
    for run, summ in results:
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in run.name).strip("_")
        if not args.no_timeseries:
            output.write_timeseries_csv(out / f"timeseries_{slug}.csv", run, start)
        if not args.no_plots:
            output.plot_site(out / f"{slug}.png", run, summ, start)
    print(output.format_table(rows, output.SUMMARY_COLUMNS))
    print(f"(outputs in {out}/)")


def _sweep(args: argparse.Namespace, out: Path, background: Any, loading: Profile) -> int:
    prof = Profile(loading.start, loading.step_s, {"loading": background}, loading.source)
    total = sweep_size(args.sweep_points, 2)
    bar = Progress(total, "sweep", True if args.progress else None)
    res = sweep(
        prof,
        args.site_type,
        chargepoints=args.chargepoints,
        rating_kw=args.chargepoint_kw,
        points_per_range=args.sweep_points,
        seed=args.seed,
        progress=bar.advance_to,
    )
    bar.close()
    output.write_rows_csv(out / "sweep_runs.csv", res.runs)
    output.write_rows_csv(out / "sweep_ranges.csv", res.ranges)
    if not args.no_plots:
        output.plot_sweep(
            out / "sweep.png",
            f"{args.site_type} site, {loading.source}",
            res.utilisations,
            res.ratios,
            res.grid,
        )
    cols = (
        ("site_type", "site type", "s"),
        ("solution", "solution", "s"),
        ("utilisation_range", "utilisation", "s"),
        ("headroom_ratio_range", "headroom ratio", "s"),
        ("energy_unmet_range", "energy unmet", "s"),
    )
    print(output.format_table(res.ranges, cols))
    return 0
