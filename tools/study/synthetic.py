"""Synthetic inputs for sites without data, from the statistics of report section 3.

``ev_demand`` draws charging sessions for a site of identical chargepoints and returns its
pre-constraint demand profile (average kW per interval). Seeded and deterministic: the same
arguments give the same profile on any machine (``random.Random``, no global state).

The section 3 findings it follows (the report gives shapes, not fitted parameters; the
numbers below are chosen to reproduce the stated shares, docs/study.md lists them):

- start times (3.3): destination sessions start mostly 08:00-17:00 and drop off sharply
  after 17:00; on-street residential sessions tail on into the evening;
- durations (3.4): over 80 % of destination sessions last under two hours; over 45 % of
  on-street residential sessions last over six hours;
- energy (3.5): about half of all sessions take under 20 kWh (here ~60 %: with the
  durations above at 22/7 kW AC the time plugged in caps the energy); residential
  sessions take over 60 kWh a little more often;
- utilisation (3.6, Table 2): chargepoints average 4-13 %; the target is an input.

An EV charges at the chargepoint's rating from plug-in until it has its energy or leaves
(connection window vs charging window, 3.2.2). Utilisation here is energy-equivalent
(energy / (chargepoints x rating x hours)): the report's charging-hours ratio when EVs
charge at the rated power. Calibration: sessions arrive as a Poisson process shaped by
the start-time distribution; an arrival finding every chargepoint busy goes away; the
arrival rate is scaled over a few passes until the utilisation is within 2 % of target.

``network_loading`` makes a plausible constraint loading profile (daily shape, weekday/
weekend, season, noise) for examples and sweeps; real studies should use measured data.
"""

import math
import random
from datetime import datetime

import numpy as np

from tools.study.errors import StudyError
from tools.study.profiles import Profile

DESTINATION = "destination"
RESIDENTIAL = "residential"
SITE_TYPES = (DESTINATION, RESIDENTIAL)
COMMERCIAL = "commercial"  # a network loading shape (network_loading)
DEFAULT_RATING_KW = {DESTINATION: 22.0, RESIDENTIAL: 7.0}


def _start_weights(kind: str) -> list[float]:
    """Relative arrival rate per half hour of the day (48 bins)."""
    w = []
    for b in range(48):
        h = (b + 0.5) / 2.0
        if kind == DESTINATION:
            day = math.exp(-0.5 * ((h - 12.5) / 2.6) ** 2) if 7.5 <= h <= 17.5 else 0.0
            late = 0.35 * math.exp(-0.5 * ((h - 17.5) / 0.7) ** 2) if h > 17.5 else 0.0
            w.append(0.85 * day + late + (0.03 if 6.0 <= h <= 22.0 else 0.003))
        else:
            day = math.exp(-0.5 * ((h - 12.0) / 3.0) ** 2)
            evening = math.exp(-0.5 * ((h - 18.5) / 2.0) ** 2)
            w.append(0.45 * day + 0.40 * evening + (0.04 if 6.0 <= h <= 23.5 else 0.01))
    return w


def _duration_h(kind: str, rng: random.Random) -> float:
    if kind == DESTINATION:
        # lognormal, median 1 h: P(< 2 h) = 0.82
        return min(12.0, max(1 / 6, rng.lognormvariate(0.0, 0.757)))
    if rng.random() < 0.45:  # overnight plug-ins: 6-16 h
        return min(16.0, max(6.0, rng.gauss(11.0, 3.0)))
    return min(16.0, max(1 / 6, rng.lognormvariate(math.log(2.0), 0.8)))


def _energy_kwh(kind: str, rng: random.Random) -> float:
    # the energy the driver would like; what is delivered is capped by the time plugged in
    # x rating, which brings ~60 % of sessions under 20 kWh (section 3.5: "about half")
    # and leaves residential sessions over 60 kWh more often than destination ones
    if kind == DESTINATION:
        return min(100.0, max(1.0, rng.lognormvariate(math.log(30.0), 0.8)))
    return min(100.0, max(1.0, rng.lognormvariate(math.log(26.0), 0.9)))


class Session:
    """One charging session: plug-in time (s from the profile start), hours plugged in,
    energy delivered (kWh) at ``rating_kw``."""

    __slots__ = ("energy_kwh", "plugged_h", "rating_kw", "start_s")

    def __init__(self, start_s: float, plugged_h: float, energy_kwh: float, rating_kw: float):
        self.start_s = start_s
        self.plugged_h = plugged_h
        self.energy_kwh = energy_kwh
        self.rating_kw = rating_kw

    @property
    def charging_s(self) -> float:
        return self.energy_kwh / self.rating_kw * 3600.0


def sessions(
    kind: str,
    chargepoints: int,
    rating_kw: float,
    days: int,
    rate_per_cp_day: float,
    rng: random.Random,
) -> list[Session]:
    """Sessions over ``days`` with ``rate_per_cp_day`` arrivals per chargepoint and day."""
    weights = _start_weights(kind)
    total = sum(weights)
    lam = [rate_per_cp_day * chargepoints * w / total for w in weights]
    free_at = [0.0] * chargepoints
    out = []
    for d in range(days):
        for b in range(48):
            k = _poisson(lam[b], rng)
            if not k:
                continue
            for start in sorted(d * 86400.0 + (b + rng.random()) * 1800.0 for _ in range(k)):
                cp = min(range(chargepoints), key=free_at.__getitem__)
                if free_at[cp] > start:
                    continue  # every chargepoint busy: this driver goes elsewhere
                plugged = _duration_h(kind, rng)
                energy = min(_energy_kwh(kind, rng), plugged * rating_kw)
                free_at[cp] = start + plugged * 3600.0
                out.append(Session(start, plugged, energy, rating_kw))
    return out


def _poisson(lam: float, rng: random.Random) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation; never reached at realistic rates per half hour
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def profile_from_sessions(
    sess: list[Session], start: datetime, step_s: float, n: int, name: str = "ev_site"
) -> Profile:
    """Average kW per interval of ``step_s`` of the sessions' charging (exact overlaps)."""
    rate = np.zeros(n + 1)  # difference array of kW on whole intervals
    part = np.zeros(n + 1)  # energy (kW x fraction) of partly covered intervals
    horizon = n * step_s
    for s in sess:
        a = s.start_s
        b = min(horizon, a + s.charging_s)
        if b <= a:
            continue
        ia, ib = int(a // step_s), int(b // step_s)
        if ia == ib:
            part[ia] += s.rating_kw * (b - a) / step_s
            continue
        part[ia] += s.rating_kw * ((ia + 1) * step_s - a) / step_s
        if ib < n:
            part[ib] += s.rating_kw * (b - ib * step_s) / step_s
        rate[ia + 1] += s.rating_kw
        rate[ib] -= s.rating_kw
    kw = np.cumsum(rate)[:n] + part[:n]
    return Profile(start, step_s, {name: np.maximum(kw, 0.0)}, "<synthetic>")


def ev_demand(
    kind: str,
    utilisation: float,
    chargepoints: int,
    rating_kw: float | None = None,
    start: datetime = datetime(2025, 1, 1),
    step_s: float = 1800.0,
    days: int = 365,
    seed: int = 0,
    name: str = "ev_site",
) -> Profile:
    """A site's pre-constraint demand profile at ``utilisation`` (0..1, energy-equivalent)."""
    if kind not in SITE_TYPES:
        raise StudyError(f"unknown site type {kind!r} (use {' or '.join(SITE_TYPES)})")
    if not 0 < utilisation < 0.9:
        raise StudyError(f"utilisation {utilisation:g} must lie between 0 and 0.9")
    if chargepoints < 1:
        raise StudyError("need at least one chargepoint")
    rating = DEFAULT_RATING_KW[kind] if rating_kw is None else rating_kw
    if rating <= 0:
        raise StudyError("chargepoint rating must be positive")
    n = round(days * 86400.0 / step_s)
    capacity_kwh = chargepoints * rating * n * step_s / 3600.0
    # first guess from the mean energy a session delivers at this rating
    probe = random.Random(seed ^ 0x5EED)
    mean_kwh = (
        sum(min(_energy_kwh(kind, probe), _duration_h(kind, probe) * rating) for _ in range(2000))
        / 2000.0
    )
    rate = utilisation * 24.0 * rating / mean_kwh
    prof = None
    for _ in range(10):
        sess = sessions(kind, chargepoints, rating, days, rate, random.Random(seed))
        prof = profile_from_sessions(sess, start, step_s, n, name)
        got = float(prof.columns[name].sum()) * step_s / 3600.0 / capacity_kwh
        if got <= 0:
            break
        if abs(got / utilisation - 1.0) < 0.02:
            break
        rate *= utilisation / got
    assert prof is not None
    return prof


def network_loading(
    peak_kw: float,
    kind: str = RESIDENTIAL,
    start: datetime = datetime(2025, 1, 1),
    step_s: float = 1800.0,
    days: int = 365,
    seed: int = 0,
    name: str = "constraint",
) -> Profile:
    """A constraint's loading (kW) peaking near ``peak_kw`` on winter evenings.

    Shape: a residential feeder (night trough ~35 % of peak, morning bump, 17:00-19:00
    peak) or a commercial one (daytime plateau on weekdays, lower at weekends); season
    +/- 20 % (winter high); 3 % noise. For examples and sweeps only.
    """
    n = round(days * 86400.0 / step_s)
    rng = np.random.default_rng(seed)
    t_h = np.arange(n) * step_s / 3600.0 + start.hour + start.minute / 60.0
    hod = t_h % 24.0
    day_index = np.floor(t_h / 24.0).astype(np.int64)
    weekday = (start.weekday() + day_index) % 7
    doy = (start.timetuple().tm_yday - 1 + day_index) % 365
    season = 1.0 + 0.2 * np.cos(2 * np.pi * doy / 365.0)  # 1 Jan = winter peak
    if kind == RESIDENTIAL:
        shape = (
            0.35
            + 0.20 * np.exp(-0.5 * ((hod - 8.0) / 1.5) ** 2)
            + 0.45 * np.exp(-0.5 * ((hod - 18.0) / 2.2) ** 2)
        )
        shape = shape * np.where(weekday >= 5, 1.03, 1.0)
    else:
        work = np.exp(-0.5 * ((hod - 13.0) / 3.5) ** 4)
        shape = 0.3 + np.where(weekday >= 5, 0.25, 0.7) * work
    shape = shape * season * (1.0 + 0.03 * rng.standard_normal(n))
    kw = peak_kw * shape / float(shape.max())
    return Profile(start, step_s, {name: kw}, "<synthetic>")
