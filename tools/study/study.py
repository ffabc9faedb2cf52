"""One study: device settings + profiles -> runs of the core -> Table 4 figures.

The glue between the CLI, the sweep and the simulation; no printing here.
"""

import math

import numpy as np

from controller import core
from controller.core import model as m
from tools.study.central import PRO_RATA
from tools.study.errors import StudyError
from tools.study.metrics import SiteSummary
from tools.study.profiles import FloatArray, Profile, time_of_week
from tools.study.simulate import (
    Constraint,
    ProgressFn,
    SiteRun,
    limit_series,
    simulate_cmc,
    simulate_site,
    study_settings,
    unit_gains,
)


def run_site(
    device: core.CoreSettings,
    loading: Profile,
    loading_column: str | None,
    demand: Profile,
    demand_column: str | None,
    name: str,
    capacity_kw: float | None = None,
    progress: ProgressFn | None = None,
) -> tuple[SiteRun, SiteSummary]:
    """One EV site under CLM, TCC or LMC. ``demand`` must be on ``loading``'s grid."""
    if device.scheme == m.CMC:
        raise StudyError("scheme CMC: give the constraints' limits and sensitivities (--cmc-*)")
    s = study_settings(device, loading.step_s)
    run = simulate_site(
        s,
        loading.column(loading_column),
        demand.column(demand_column),
        loading.step_s,
        time_of_week(loading),
        name=name,
        progress=progress,
    )
    return run, SiteSummary(run, capacity_kw or device.site_max_kw)


def run_cmc(
    device: core.CoreSettings,
    loading: Profile,
    limits_kw: dict[str, float],
    margin_kw: float,
    sensitivity: dict[str, dict[str, float]],
    demand: Profile,
    policy: str = PRO_RATA,
    capacity_kw: float | None = None,
    progress: ProgressFn | None = None,
) -> list[tuple[SiteRun, SiteSummary]]:
    """Several EV sites (the demand profile's columns) under CMC, sharing the constraints
    (the loading profile's columns). ``sensitivity[constraint][site]``; missing = 0."""
    cons = []
    for cname in loading.names:
        if cname not in limits_kw:
            raise StudyError(f"{loading.source}: no limit given for constraint {cname!r}")
        cons.append(Constraint(cname, limits_kw[cname], margin_kw))
    for cname in limits_kw:
        if cname not in loading.columns:
            raise StudyError(f"limit given for {cname!r}, which {loading.source} does not have")
    for cname, row in sensitivity.items():
        if cname not in loading.columns:
            raise StudyError(f"sensitivities: unknown constraint {cname!r}")
        for sname, v in row.items():
            if sname not in demand.columns:
                raise StudyError(f"sensitivities: unknown site {sname!r}")
            if not 0 <= v <= 1:
                raise StudyError(f"sensitivities: {cname}/{sname} = {v:g} is not within 0..1")
    if device.scheme != m.CMC:
        raise StudyError(
            f"a study of several sites sharing constraints needs scheme CMC, not {device.scheme}"
        )
    s = study_settings(device, loading.step_s)
    sites = [(name, s) for name in demand.names]
    matrix = [[sensitivity.get(c.name, {}).get(name, 0.0) for name in demand.names] for c in cons]
    runs = simulate_cmc(
        sites,
        cons,
        [loading.columns[c.name] for c in cons],
        matrix,
        [demand.columns[name] for name in demand.names],
        loading.step_s,
        time_of_week(loading),
        policy=policy,
        progress=progress,
    )
    return [(r, SiteSummary(r, capacity_kw or device.site_max_kw)) for r in runs]


def firm_headroom_kw(
    device: core.CoreSettings, background_kw: FloatArray, tow: FloatArray
) -> float:
    """The EV headroom left at the constraint's worst interval of the year (kW).

    What a DNO could offer as a fixed, firm capacity: the CLM equivalent of an LMC site,
    and the denominator of the report's headroom ratio (Table 22).
    """
    bg_gain, ev_gain = unit_gains(device)
    lim = limit_series(device, tow)
    with np.errstate(invalid="ignore"):
        h = (lim - device.margin - background_kw * bg_gain) / (device.sensitivity * ev_gain)
    worst = float(np.nanmin(h)) if np.isfinite(h).any() else math.nan
    return max(0.0, worst)


def clm_equivalent(device: core.CoreSettings, firm_kw: float) -> core.CoreSettings:
    """CLM settings for the same EV site: an agreed capacity of ``firm_kw`` (plus the
    device's margin when that is in kW) at the site's own connection point, with no other
    load behind it. The margin keeps the same meaning: capacity held back from the EVs."""
    margin_kw = device.margin if device.unit == m.KW else 0.0
    return core.CoreSettings(
        scheme=m.CLM,
        unit=m.KW,
        limit=core.Schedule.constant(firm_kw + margin_kw),
        margin=margin_kw,
        sensitivity=1.0,
        site_max_kw=device.site_max_kw,
        min_limit_kw=device.min_limit_kw,
        fallback_limit_kw=device.fallback_limit_kw,
        deadband_kw=device.deadband_kw,
    )
