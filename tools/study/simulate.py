"""Run the device's control core over a year of profiles, one core step per interval.

The study drives ``controller.core.step`` — the same law the device runs — at the
profile's resolution (half-hourly or finer) rather than at the device's 1 s period.
``study_settings`` maps the device settings to that coarse step (docs/study.md explains
each change and why the estimate still follows the device's law); ``simulate_site`` runs
one site against one constraint; ``simulate_cmc`` plays the central platform for several
sites sharing constraints (allocation in ``tools.study.central``).

What one interval means: the interval's average background and EV demand hold for all of
it; the device settles within seconds, so the EV site draws ``min(wanted, limit)`` where
``limit`` is the core's EV limit for that interval. The core is shown the constraint with
the EV site idle and a fresh 0 kW demand report: its background estimate
``measured - sf * demand`` is then exactly the profile's background, and (the CPO being
assumed compliant) no step-boundary artefact can look like an overload.

Never: reimplement the law. The only arithmetic on limits here is the *quiet-interval*
screen of ``simulate_site``, which skips core steps whose outcome is known (the headroom
exceeds the EV site's maximum and the core is at rest at that maximum); a test checks the
skipping run against the unskipped one interval by interval.
"""

import math
from collections.abc import Callable, Sequence

import numpy as np

from controller import core
from controller.core import model as m
from tools.study.central import POLICIES, PRO_RATA, allocate
from tools.study.errors import StudyError
from tools.study.profiles import FloatArray

ProgressFn = Callable[[int], None]
SETTLE_S = 1.0  # the extra device period after a raise (see _settle in simulate_site)
_CHUNK = 4096  # progress is reported per chunk, never per step


def study_settings(device: core.CoreSettings, step_s: float) -> core.CoreSettings:
    """The device's settings adapted to a study step of ``step_s`` seconds.

    Kept as the device has them: the scheme, unit, limit (schedule), margin, sensitivity,
    EV site maximum/minimum/fallback, deadband, G100, meter timeout, voltages, power
    factor. Changed, because the study step is far longer than the device's settling time:
    release hold and cut confirmation -> 0 and ramp -> effectively instant (the device
    reaches the headroom within a minute or two); compliance deadlines and trip delay ->
    never (the CPO is assumed to comply; a latched trip needs a person and would end the
    year); meter trip -> never (a gap in the data is not a dead meter).
    """
    if step_s <= 0:
        raise StudyError("study step must be positive")
    return core.CoreSettings(
        scheme=device.scheme,
        unit=device.unit,
        limit=None if device.scheme == m.CMC else device.limit,
        margin=device.margin,
        trip_ratio=device.trip_ratio,
        sensitivity=device.sensitivity,
        site_max_kw=device.site_max_kw,
        min_limit_kw=device.min_limit_kw,
        fallback_limit_kw=device.fallback_limit_kw,
        ramp_kw_per_s=1e12,
        release_hold_s=0.0,
        deadband_kw=device.deadband_kw,
        cut_confirm_s=0.0,
        limit_validity_s=math.inf,
        refresh_s=1e300,
        demand_stale_s=max(device.demand_stale_s, 2 * SETTLE_S),
        compliance_deadline_s=math.inf,
        compliance_deadline_unreachable_s=math.inf,
        compliance_tolerance_kw=device.compliance_tolerance_kw,
        trip_delay_s=math.inf,
        emergency_release_s=0.0,
        meter_timeout_s=max(device.meter_timeout_s, 2 * SETTLE_S),
        meter_trip_timeout_s=None,
        maintenance_max_s=device.maintenance_max_s,
        ev_phases=device.ev_phases,
        nominal_voltage_v=device.nominal_voltage_v,
        ev_power_factor=device.ev_power_factor,
        g100=device.g100,
    )


class SiteRun:
    """Interval-by-interval result of one EV site (arrays of equal length, kW unless said).

    ``constraint`` and ``limit`` are in the scheme's unit (nan where unknown);
    ``fallback`` marks intervals the core spent in fallback; ``core_steps`` counts calls
    to the core (skipped quiet intervals excluded, settle periods included).
    """

    __slots__ = (
        "background_kw",
        "constraint",
        "core_steps",
        "draw_kw",
        "ev_limit_kw",
        "fallback",
        "limit",
        "name",
        "scheme",
        "sensitivity",
        "step_s",
        "unit",
        "wanted_kw",
    )

    def __init__(self, name: str, scheme: str, unit: str, step_s: float, n: int) -> None:
        self.name = name
        self.scheme = scheme
        self.unit = unit
        self.step_s = step_s
        self.sensitivity = 1.0
        self.background_kw: FloatArray = np.zeros(n)
        self.wanted_kw: FloatArray = np.zeros(n)
        self.ev_limit_kw: FloatArray = np.zeros(n)
        self.draw_kw: FloatArray = np.zeros(n)
        self.constraint: FloatArray = np.full(n, np.nan)
        self.limit: FloatArray = np.full(n, np.nan)
        self.fallback = np.zeros(n, dtype=bool)
        self.core_steps = 0


def unit_gains(s: core.CoreSettings) -> tuple[float, float]:
    """(constraint units per kW of balanced background, per kW of EV site power)."""
    if s.unit == m.AMPS:
        return 1000.0 / (3 * s.nominal_voltage_v), 1000.0 / (s.ev_phases * s.nominal_voltage_v)
    if s.unit == m.KVA:
        return 1.0, 1.0 / s.ev_power_factor
    return 1.0, 1.0


def limit_series(s: core.CoreSettings, tow: FloatArray) -> FloatArray:
    """The scheme's limit (in its unit) at each interval's time of week."""
    if s.limit is None:
        return np.full(len(tow), np.nan)
    if s.limit.is_constant():
        return np.full(len(tow), s.limit.value_at(0.0))
    # a schedule changes a few times a day: evaluate once per distinct time of week
    uniq, inv = np.unique(tow, return_inverse=True)
    vals = np.array([s.limit.value_at(float(t)) for t in uniq])
    return np.asarray(vals[inv], dtype=np.float64)


def simulate_site(
    s: core.CoreSettings,
    background_kw: FloatArray,
    wanted_kw: FloatArray,
    step_s: float,
    tow: FloatArray,
    name: str = "site",
    skip_quiet: bool = True,
    progress: ProgressFn | None = None,
) -> SiteRun:
    """Run one site (CLM, TCC or LMC) through the core; ``s`` are *study* settings.

    ``background_kw``: the constraint's loading without this EV site (nan = data gap);
    ``wanted_kw``: the EV site's pre-constraint demand; ``tow``: time of week of each
    interval (s). Returns the limits the core set and what the EV site drew.
    """
    if s.scheme == m.CMC or s.limit is None:
        raise StudyError("simulate_site runs CLM, TCC and LMC; CMC needs simulate_cmc")
    n = len(background_kw)
    if len(wanted_kw) != n or len(tow) != n:
        raise StudyError("background, demand and time arrays differ in length")
    run = SiteRun(name, s.scheme, s.unit, step_s, n)
    run.sensitivity = s.sensitivity
    run.background_kw = np.asarray(background_kw, dtype=np.float64)
    run.wanted_kw = np.maximum(np.asarray(wanted_kw, dtype=np.float64), 0.0)
    bg_gain, ev_gain = unit_gains(s)
    qty = run.background_kw * bg_gain  # the constraint with the EV site idle, in the unit
    lim = limit_series(s, tow)
    run.limit = lim
    valid = ~np.isnan(qty)
    site_max = s.site_max_kw
    # quiet: the meter answers, the constraint is within its limit and the headroom is at
    # least the EV site's maximum, so an undisturbed core sits at site_max, emits nothing
    with np.errstate(invalid="ignore"):
        headroom = (lim - s.margin - qty) / (s.sensitivity * ev_gain)
        quiet = valid & (qty <= lim) & (headroom >= site_max)
    # skip an interval only if the next one is quiet too, so that the core's previous
    # period is always the previous interval when anything happens
    skippable = quiet.copy()
    skippable[:-1] &= quiet[1:]
    if not skip_quiet:
        skippable[:] = False

    st = core.State(s, 0.0)
    meas = core.Measurement(
        0.0, 0.0, None, (s.nominal_voltage_v,) * 3 if s.unit == m.AMPS else None
    )
    dem = core.Demand(0.0, 0.0)
    inp = core.Inputs(meas, dem)
    step = core.step
    volts = (s.nominal_voltage_v,) * 3
    amps = s.unit == m.AMPS
    kva = s.unit == m.KVA
    qty_l = qty.tolist()
    valid_l = valid.tolist()
    skip_l = skippable.tolist()
    # the first interval at or after i that may not be skipped (n if none)
    busy = np.flatnonzero(~skippable)
    busy = np.append(busy, n)
    next_busy_l = busy[np.searchsorted(busy, np.arange(n))].tolist()
    tow_l = tow.tolist()
    limits = [site_max] * n  # what a skipped interval gets
    fallback = [False] * n
    normal = m.NORMAL
    fb = m.FALLBACK
    steps = 0
    if n:
        # the device was switched on a moment before the study begins: it starts at its
        # fallback limit and has met the first readings before the first interval counts
        _fill(meas, qty_l[0], valid_l[0], step_s - 2 * SETTLE_S, s.unit, bg_gain, volts)
        dem.measured_at = step_s - 2 * SETTLE_S
        inp.time_of_week_s = tow_l[0]
        step(s, st, inp, step_s - 2 * SETTLE_S)
        steps += 1
    report_at = _CHUNK
    i = 0
    while i < n:
        if (
            skip_l[i]
            and st.mode == normal
            and st.ev_limit_kw == site_max
            and st.law_limit_kw == site_max
            and st.raise_since is None
            and st.over_since is None
            and st.emergency_since is None
            and not st.alarms
            and st.g100.excursion_since is None
            and not st.tripped
        ):
            # at rest at site_max through a quiet run: the core would say site_max each time
            i = next_busy_l[i]
        else:
            t = (i + 1) * step_s
            if st.raise_since is not None:
                # settle: the core raised last period and now watches a new release window;
                # on the device that window passes within the interval. One more period a
                # second later, with the same readings, closes it.
                step(s, st, inp, st.last_step + SETTLE_S)  # type: ignore[operator]
                steps += 1
            q = qty_l[i]
            meas.taken_at = t
            meas.valid = valid_l[i]
            if amps:
                meas.currents_a = (q, q, q)
                meas.power_kw = q / bg_gain
            elif kva:
                meas.apparent_kva = q
                meas.power_kw = q
            else:
                meas.power_kw = q
            dem.measured_at = t
            inp.time_of_week_s = tow_l[i]
            step(s, st, inp, t)
            steps += 1
            limits[i] = st.ev_limit_kw
            fallback[i] = st.mode == fb
            i += 1
        if progress is not None and i >= report_at:
            progress(i)
            report_at = (i // _CHUNK + 1) * _CHUNK
    run.core_steps = steps
    run.ev_limit_kw = np.asarray(limits, dtype=np.float64)
    run.fallback = np.asarray(fallback, dtype=bool)
    run.draw_kw = np.minimum(run.wanted_kw, run.ev_limit_kw)
    run.constraint = run.background_kw * bg_gain + s.sensitivity * ev_gain * run.draw_kw
    return run


def _fill(
    meas: core.Measurement,
    q: float,
    valid: bool,
    taken_at: float,
    unit: str,
    bg_gain: float,
    volts: tuple[float, ...],
) -> None:
    """Set a reading of ``q`` (in the scheme's unit) as the meter would give it."""
    meas.taken_at = taken_at
    meas.valid = valid
    meas.power_kw = q / bg_gain
    if unit == m.AMPS:
        meas.currents_a = (q, q, q)
        meas.voltages_v = volts
    elif unit == m.KVA:
        meas.apparent_kva = q


class Constraint:
    """A network constraint of a CMC study: its limit and margin in kW at the constraint."""

    __slots__ = ("limit_kw", "margin_kw", "name")

    def __init__(self, name: str, limit_kw: float, margin_kw: float = 0.0) -> None:
        self.name = name
        self.limit_kw = limit_kw
        self.margin_kw = margin_kw


def simulate_cmc(
    sites: Sequence[tuple[str, core.CoreSettings]],
    constraints: Sequence[Constraint],
    background_kw: Sequence[FloatArray],
    sensitivity: Sequence[Sequence[float]],
    wanted_kw: Sequence[FloatArray],
    step_s: float,
    tow: FloatArray,
    policy: str = PRO_RATA,
    progress: ProgressFn | None = None,
) -> list[SiteRun]:
    """Several EV sites under CMC sharing constraints; the study plays the central platform.

    ``sites``: (name, study settings of scheme CMC) in connection order (LIFO curtails the
    last first). ``background_kw[j]``: loading of constraint j without the studied sites;
    ``sensitivity[j][k]``: share of site k's power seen at constraint j. Each interval the
    allocator shares each constraint's headroom, and each site's core gets a ``Lease``
    valid for half an interval: a data gap at a constraint means no lease, so the core of
    every site behind it falls back, as the device does when the central link is lost.
    """
    if policy not in POLICIES:
        raise StudyError(f"unknown CMC policy {policy!r} (use {', '.join(POLICIES)})")
    n_sites, n_con = len(sites), len(constraints)
    if len(wanted_kw) != n_sites or len(background_kw) != n_con or len(sensitivity) != n_con:
        raise StudyError("CMC inputs: one demand per site, one loading per constraint")
    for row in sensitivity:
        if len(row) != n_sites:
            raise StudyError("CMC sensitivity matrix: one row per constraint, one value per site")
    for _name, s in sites:
        if s.scheme != m.CMC:
            raise StudyError("simulate_cmc needs CMC settings for every site")
    n = len(tow)
    runs = []
    states = []
    for k, (name, s) in enumerate(sites):
        run = SiteRun(name, m.CMC, "kW", step_s, n)
        run.wanted_kw = np.maximum(np.asarray(wanted_kw[k], dtype=np.float64), 0.0)
        runs.append(run)
        states.append(core.State(s, 0.0))
    bg = [np.asarray(b, dtype=np.float64).tolist() for b in background_kw]
    wanted = [r.wanted_kw.tolist() for r in runs]
    sf = [list(map(float, row)) for row in sensitivity]
    relevant = [[j for j in range(n_con) if sf[j][k] > 0] for k in range(n_sites)]
    limits = [[0.0] * n for _ in range(n_sites)]
    fallback = [[False] * n for _ in range(n_sites)]
    step = core.step
    inputs = [core.Inputs(None, core.Demand(0.0, 0.0)) for _ in range(n_sites)]
    site_max = [s.site_max_kw for _n, s in sites]
    fb = m.FALLBACK
    steps = 0
    for c0 in range(0, n, _CHUNK):
        for i in range(c0, min(n, c0 + _CHUNK)):
            t = (i + 1) * step_s
            headroom = [
                constraints[j].limit_kw - constraints[j].margin_kw - bg[j][i] for j in range(n_con)
            ]
            requests = [wanted[k][i] for k in range(n_sites)]
            alloc = allocate(headroom, sf, requests, site_max, policy)
            for k in range(n_sites):
                s = sites[k][1]
                inp = inputs[k]
                gap = any(math.isnan(headroom[j]) for j in relevant[k])
                if not gap:
                    inp.lease = core.Lease(alloc[k], t + 0.5 * step_s, i)
                inp.demand.measured_at = t  # type: ignore[union-attr]
                inp.time_of_week_s = float(tow[i])
                st = states[k]
                step(s, st, inp, t)
                limits[k][i] = st.ev_limit_kw
                fallback[k][i] = st.mode == fb
            steps += n_sites
        if progress is not None:
            progress(min(n, c0 + _CHUNK))
    for k, run in enumerate(runs):
        run.core_steps = steps // n_sites
        run.ev_limit_kw = np.asarray(limits[k], dtype=np.float64)
        run.fallback = np.asarray(fallback[k], dtype=bool)
        run.draw_kw = np.minimum(run.wanted_kw, run.ev_limit_kw)
    for k, run in enumerate(runs):
        # report the constraint that sees most of this site (its largest sensitivity)
        if relevant[k]:
            j = max(relevant[k], key=lambda jj: sf[jj][k])
            load = np.asarray(bg[j]) + sum(
                (sf[j][kk] * runs[kk].draw_kw for kk in range(n_sites) if sf[j][kk] > 0),
                np.zeros(n),
            )
            run.background_kw = np.asarray(bg[j])
            run.constraint = load
            run.limit = np.full(n, constraints[j].limit_kw)
            run.sensitivity = sf[j][k]
    return runs
