"""Scenario sweeps: utilisation ranges x headroom ratio -> unmet-energy ranges.

Reproduces the shape of report Tables 23-26: for a site type and each scheme, the range
of energy unmet over the sample points of each (utilisation range, headroom ratio range)
cell. The headroom ratio (Table 22) is installed EV capacity / the firm headroom at the
constraint (the EV headroom in the worst interval of the year).

For one network loading profile and one site (chargepoints x rating) the sweep sets, per
ratio r, the firm headroom H = site_max / r and then:

- LMC: DNO threshold = peak loading + margin + sf x H (time-varying headroom, sf < 1);
- CLM: agreed capacity = H + margin at the site's own connection point (fixed);

and runs both against synthetic demand at each utilisation (the same sessions for every
ratio and scheme, seeded). Unmet energy grows with utilisation and ratio; LMC leaves less
unmet than CLM because it uses the headroom when it is there (report 4.3.2.1).
"""

from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from controller import core
from controller.core import model as m
from tools.study.errors import StudyError
from tools.study.metrics import SiteSummary
from tools.study.profiles import Profile, time_of_week
from tools.study.simulate import simulate_site, study_settings
from tools.study.synthetic import DEFAULT_RATING_KW, ev_demand

UTILISATION_RANGES = ((0.05, 0.15), (0.15, 0.30), (0.30, 0.40))
RATIO_RANGES = ((1.0, 2.0), (2.0, 3.0), (3.0, 5.0))
RANGE_LABELS_U = ("5-15%", "15-30%", "30%+")
RANGE_LABELS_R = ("1-2", "2-3", "3+")


def points(lo: float, hi: float, k: int) -> list[float]:
    if k <= 1:
        return [round((lo + hi) / 2, 6)]
    return [round(v, 6) for v in np.linspace(lo, hi, k).tolist()]


class SweepResult:
    """Every run (``runs``: dict rows) and the per-cell ranges (``ranges``: dict rows)."""

    def __init__(self) -> None:
        self.runs: list[dict[str, object]] = []
        self.ranges: list[dict[str, object]] = []
        self.utilisations: list[float] = []
        self.ratios: list[float] = []
        self.grid: dict[str, list[list[float]]] = {}


def sweep(
    loading: Profile,
    site_type: str,
    chargepoints: int = 6,
    rating_kw: float | None = None,
    sensitivity: float = 0.85,
    margin_kw: float = 5.0,
    schemes: Sequence[str] = (m.CLM, m.LMC),
    points_per_range: int = 3,
    seed: int = 0,
    base: core.CoreSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> SweepResult:
    """Run the grid; ``loading`` is the constraint's background (one column, kW)."""
    for sch in schemes:
        if sch not in (m.CLM, m.LMC):
            raise StudyError(f"sweeps cover CLM and LMC, not {sch}")
    rating = DEFAULT_RATING_KW[site_type] if rating_kw is None else rating_kw
    site_max = chargepoints * rating
    bg = loading.column()
    if np.isnan(bg).any():
        raise StudyError(f"{loading.source}: a sweep needs a loading profile without gaps")
    peak = float(bg.max())
    tow = time_of_week(loading)
    days = max(1, round(len(loading) * loading.step_s / 86400.0))
    start: datetime = loading.start
    utils = sorted({u for lo, hi in UTILISATION_RANGES for u in points(lo, hi, points_per_range)})
    ratios = sorted({r for lo, hi in RATIO_RANGES for r in points(lo, hi, points_per_range)})
    res = SweepResult()
    res.utilisations, res.ratios = utils, ratios
    res.grid = {sch: [[0.0] * len(ratios) for _ in utils] for sch in schemes}
    proto = base if base is not None else core.CoreSettings(limit=core.Schedule.constant(1.0))
    done = 0
    for iu, u in enumerate(utils):
        demand = ev_demand(
            site_type, u, chargepoints, rating, start, loading.step_s, days, seed=seed + iu
        ).column()[: len(bg)]
        if len(demand) < len(bg):
            demand = np.concatenate((demand, np.zeros(len(bg) - len(demand))))
        for ir, r in enumerate(ratios):
            firm = site_max / r
            for sch in schemes:
                if sch == m.LMC:
                    limit, sf, background = peak + margin_kw + sensitivity * firm, sensitivity, bg
                else:
                    limit, sf, background = firm + margin_kw, 1.0, np.zeros_like(bg)
                dev = core.CoreSettings(
                    scheme=sch,
                    unit=m.KW,
                    limit=core.Schedule.constant(limit),
                    margin=margin_kw,
                    sensitivity=sf,
                    site_max_kw=site_max,
                    min_limit_kw=proto.min_limit_kw if proto.min_limit_kw <= site_max else 0.0,
                    fallback_limit_kw=min(proto.fallback_limit_kw, site_max),
                    deadband_kw=proto.deadband_kw,
                )
                run = simulate_site(
                    study_settings(dev, loading.step_s),
                    background,
                    demand,
                    loading.step_s,
                    tow,
                    name=f"{sch} u={u:g} r={r:g}",
                )
                summ = SiteSummary(run, site_max)
                res.grid[sch][iu][ir] = summ.unmet_pct
                res.runs.append(
                    {
                        "site_type": site_type,
                        "scheme": sch,
                        "utilisation_pct": round(u * 100, 3),
                        "headroom_ratio": r,
                        "firm_headroom_kw": round(firm, 3),
                        "limit_kw": round(limit, 3),
                        "unmet_pct": round(summ.unmet_pct, 4),
                        "pre_utilisation_pct": round(summ.pre_utilisation_pct, 4),
                        "post_utilisation_pct": round(summ.post_utilisation_pct, 4),
                        "curtailment_events": len(summ.events),
                        "curtailed_hours": round(summ.curtailed_hours, 3),
                    }
                )
                done += 1
                if progress is not None:
                    progress(done)
    for sch in schemes:
        for (ulo, uhi), ulab in zip(UTILISATION_RANGES, RANGE_LABELS_U, strict=True):
            for (rlo, rhi), rlab in zip(RATIO_RANGES, RANGE_LABELS_R, strict=True):
                vals = [
                    res.grid[sch][iu][ir]
                    for iu, u in enumerate(utils)
                    if ulo <= u <= uhi
                    for ir, r in enumerate(ratios)
                    if rlo <= r <= rhi
                ]
                res.ranges.append(
                    {
                        "site_type": site_type,
                        "solution": sch,
                        "utilisation_range": ulab,
                        "headroom_ratio_range": rlab,
                        "unmet_min_pct": round(min(vals), 2),
                        "unmet_max_pct": round(max(vals), 2),
                        "energy_unmet_range": f"{min(vals):.1f}-{max(vals):.1f}%",
                    }
                )
    return res


def sweep_size(points_per_range: int, schemes: int) -> int:
    u = {x for lo, hi in UTILISATION_RANGES for x in points(lo, hi, points_per_range)}
    r = {x for lo, hi in RATIO_RANGES for x in points(lo, hi, points_per_range)}
    return len(u) * len(r) * schemes
