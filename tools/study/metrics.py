"""What a study reports per EV site (report Table 4), computed from a ``SiteRun``.

- percentage energy unmet: 100 x (wanted - drawn) / wanted over the study;
- pre-/post-constraint utilisation: energy-equivalent — average power wanted (drawn)
  over the site's charging capacity (chargepoints x rating, else the EV site maximum).
  When EVs charge at their rated power this equals the report's hours-of-charging ratio;
- curtailment events: runs of consecutive intervals where the limit held the site below
  what it wanted (count, hours, duration distribution, energy each).
"""

import math
from datetime import datetime, timedelta

import numpy as np

from tools.study.profiles import FloatArray
from tools.study.simulate import SiteRun

UNMET_TOLERANCE_KW = 1e-6  # below this an interval is not curtailed (float noise)
DURATION_BINS_H = (0.0, 1.0, 2.0, 4.0, 8.0, float("inf"))
DURATION_LABELS = ("<1h", "1-2h", "2-4h", "4-8h", ">=8h")


class Event:
    """One curtailment event: ``first``..``last`` interval indices (inclusive)."""

    __slots__ = ("first", "hours", "last", "peak_cut_kw", "unmet_kwh")

    def __init__(
        self, first: int, last: int, hours: float, unmet_kwh: float, peak_cut_kw: float
    ) -> None:
        self.first = first
        self.last = last
        self.hours = hours
        self.unmet_kwh = unmet_kwh
        self.peak_cut_kw = peak_cut_kw


def curtailment_events(run: SiteRun) -> list[Event]:
    cut = run.wanted_kw - run.draw_kw
    mask = cut > UNMET_TOLERANCE_KW
    if not mask.any():
        return []
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    h = run.step_s / 3600.0
    csum = np.concatenate(([0.0], np.cumsum(np.where(mask, cut, 0.0))))
    out = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        out.append(
            Event(a, b - 1, (b - a) * h, float(csum[b] - csum[a]) * h, float(cut[a:b].max()))
        )
    return out


class SiteSummary:
    """Table 4 figures for one site (plus what helps read them)."""

    __slots__ = (
        "capacity_kw",
        "curtailed_hours",
        "duration_counts",
        "events",
        "fallback_hours",
        "longest_event_h",
        "name",
        "over_limit_hours",
        "post_utilisation_pct",
        "pre_utilisation_pct",
        "scheme",
        "unmet_mwh",
        "unmet_pct",
        "wanted_mwh",
        "years",
    )

    def __init__(self, run: SiteRun, capacity_kw: float | None = None) -> None:
        h = run.step_s / 3600.0
        n = len(run.wanted_kw)
        self.name = run.name
        self.scheme = run.scheme
        self.years = n * h / 8760.0
        cap = capacity_kw if capacity_kw else float(np.max(run.ev_limit_kw, initial=0.0))
        self.capacity_kw = cap
        wanted = float(run.wanted_kw.sum())
        drawn = float(run.draw_kw.sum())
        self.wanted_mwh = wanted * h / 1000.0
        self.unmet_mwh = max(0.0, wanted - drawn) * h / 1000.0
        self.unmet_pct = 0.0 if wanted <= 0 else 100.0 * max(0.0, wanted - drawn) / wanted
        self.pre_utilisation_pct = 0.0 if cap <= 0 or n == 0 else 100.0 * wanted / (n * cap)
        self.post_utilisation_pct = 0.0 if cap <= 0 or n == 0 else 100.0 * drawn / (n * cap)
        self.events = curtailment_events(run)
        hours = np.array([e.hours for e in self.events])
        self.curtailed_hours = float(hours.sum())
        self.longest_event_h = float(hours.max(initial=0.0))
        counts, _ = np.histogram(hours, bins=np.array(DURATION_BINS_H))
        self.duration_counts = [int(c) for c in counts]
        with np.errstate(invalid="ignore"):
            over = run.constraint > run.limit * (1 + 1e-9)
        self.over_limit_hours = float(np.count_nonzero(over)) * h
        self.fallback_hours = float(np.count_nonzero(run.fallback)) * h

    def row(self) -> dict[str, object]:
        d: dict[str, object] = {
            "site": self.name,
            "scheme": self.scheme,
            "years": round(self.years, 4),
            "capacity_kw": round(self.capacity_kw, 3),
            "wanted_mwh": round(self.wanted_mwh, 4),
            "unmet_mwh": round(self.unmet_mwh, 4),
            "unmet_pct": round(self.unmet_pct, 4),
            "pre_utilisation_pct": round(self.pre_utilisation_pct, 4),
            "post_utilisation_pct": round(self.post_utilisation_pct, 4),
            "curtailment_events": len(self.events),
            "curtailed_hours": round(self.curtailed_hours, 3),
            "longest_event_h": round(self.longest_event_h, 3),
        }
        for label, c in zip(DURATION_LABELS, self.duration_counts, strict=True):
            d["events_" + label] = c
        d["over_limit_hours"] = round(self.over_limit_hours, 3)
        d["fallback_hours"] = round(self.fallback_hours, 3)
        return d


def event_rows(run: SiteRun, events: list[Event], start: datetime) -> list[dict[str, object]]:
    step = timedelta(seconds=run.step_s)
    return [
        {
            "site": run.name,
            "start": (start + e.first * step).isoformat(timespec="minutes"),
            "end": (start + (e.last + 1) * step).isoformat(timespec="minutes"),
            "hours": round(e.hours, 3),
            "unmet_kwh": round(e.unmet_kwh, 3),
            "peak_cut_kw": round(e.peak_cut_kw, 3),
        }
        for e in events
    ]


def monthly_unmet_kwh(run: SiteRun, start: datetime) -> FloatArray:
    """Unmet energy per calendar month of the study (kWh), January first."""
    h = run.step_s / 3600.0
    unmet = (run.wanted_kw - run.draw_kw) * h
    n = len(unmet)
    out = np.zeros(12)
    month = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while True:
        nxt = (
            month.replace(year=month.year + 1, month=1)
            if month.month == 12
            else (month.replace(month=month.month + 1))
        )
        a = max(0, math.ceil((month - start).total_seconds() / run.step_s))
        b = min(n, math.ceil((nxt - start).total_seconds() / run.step_s))
        if a >= n:
            return out
        out[month.month - 1] += float(unmet[a:b].sum())
        month = nxt
