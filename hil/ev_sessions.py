"""EV charging sessions drawn from the SDRC5 report's chargepoint statistics (section 3).

Pure: no I/O, no clocks; randomness only from the ``random.Random`` handed in; time is an
argument (seconds on any clock; ``day_offset_s`` says what time of day ``t = 0`` is).
The CPO simulator and the desktop study draw sessions from here.

What the report gives, and how it is modelled (the report publishes figures, not tables,
so the distributions below are read off its figures and bound by its stated findings):

- start times (3.2.1, 3.3): destination sites start mostly 08:00-17:00 and drop abruptly
  after 17:00; on-street residential sites tail into the evening. Hourly weights below.
- duration (3.2.2, 3.4): destination > 80 % under two hours; residential > 45 % over six.
- energy (3.2.3, 3.5): about 50 % of events under 20 kWh; residential has a marginally
  larger share above 60 kWh.
- utilisation (3.2.4, 3.6): connected time over operational time, typically 5-35 % per
  chargepoint. Arrivals at a free chargepoint form a Poisson process shaped by the start
  time weights; an EV arriving while the chargepoint is busy goes elsewhere. With the mean
  duration D, a mean arrival rate while free of u / ((1 - u) D) gives utilisation u.

The requested energy is what the EV would take; the simulator delivers at most what the
connection window and the power allow (the report notes the connection and charging
windows differ: an EV that is full stays plugged in, drawing nothing).
"""

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

DAY_S = 86400.0
DESTINATION = "destination"
RESIDENTIAL = "residential"

Bins = tuple[tuple[float, float, float], ...]
"""(low, high, probability) rows; a value is drawn uniformly within its row."""


@dataclass(frozen=True)
class SessionProfile:
    kind: str
    hourly_start_weights: tuple[float, ...]
    """24 relative weights of the hour in which a session starts (local time)."""
    duration_h: Bins
    energy_kwh: Bins
    ev_max_kw: tuple[tuple[float, float], ...]
    """(acceptance kW, probability) of the vehicles' on-board chargers."""

    def __post_init__(self) -> None:
        if len(self.hourly_start_weights) != 24 or min(self.hourly_start_weights) < 0:
            raise ValueError("hourly_start_weights: 24 non-negative weights")
        for name, bins in (("duration_h", self.duration_h), ("energy_kwh", self.energy_kwh)):
            if abs(sum(p for _, _, p in bins) - 1.0) > 1e-9 or any(
                lo < 0 or hi <= lo for lo, hi, _ in bins
            ):
                raise ValueError(f"{name}: rows must satisfy 0 <= low < high, sum(p) = 1")

    @property
    def mean_duration_s(self) -> float:
        return sum((lo + hi) / 2 * p for lo, hi, p in self.duration_h) * 3600.0

    def start_weight(self, time_of_day_s: float) -> float:
        """Relative arrival intensity at a time of day, normalised to a daily mean of 1."""
        w = self.hourly_start_weights
        return w[int(time_of_day_s % DAY_S // 3600)] * 24.0 / sum(w)

    def fraction_of_starts(self, from_h: float, to_h: float) -> float:
        """Share of session starts between two hours of the day (at a free chargepoint)."""
        w = self.hourly_start_weights
        return sum(w[h] for h in range(24) if from_h <= h < to_h) / sum(w)


DESTINATION_PROFILE = SessionProfile(
    kind=DESTINATION,
    hourly_start_weights=(
        0.3,
        0.2,
        0.1,
        0.1,
        0.1,
        0.2,
        0.6,
        2.0,
        5.0,
        7.0,
        8.0,
        8.0,
        8.0,
        8.0,
        7.5,
        7.0,
        6.0,
        3.5,
        2.0,
        1.5,
        1.2,
        0.8,
        0.5,
        0.4,
    ),
    duration_h=(
        (0.1, 0.5, 0.30),
        (0.5, 1.0, 0.27),
        (1.0, 2.0, 0.26),
        (2.0, 4.0, 0.10),
        (4.0, 6.0, 0.04),
        (6.0, 12.0, 0.03),
    ),
    energy_kwh=(
        (1.0, 5.0, 0.14),
        (5.0, 10.0, 0.14),
        (10.0, 20.0, 0.24),
        (20.0, 30.0, 0.16),
        (30.0, 40.0, 0.11),
        (40.0, 60.0, 0.13),
        (60.0, 80.0, 0.06),
        (80.0, 100.0, 0.02),
    ),
    ev_max_kw=((7.4, 0.35), (11.0, 0.45), (22.0, 0.20)),
)

RESIDENTIAL_PROFILE = SessionProfile(
    kind=RESIDENTIAL,
    hourly_start_weights=(
        0.6,
        0.4,
        0.3,
        0.2,
        0.2,
        0.4,
        1.0,
        2.0,
        3.0,
        3.5,
        4.0,
        4.0,
        4.0,
        4.0,
        4.0,
        4.5,
        5.0,
        6.0,
        6.5,
        6.0,
        5.0,
        4.0,
        2.5,
        1.2,
    ),
    duration_h=(
        (0.1, 0.5, 0.06),
        (0.5, 1.0, 0.08),
        (1.0, 2.0, 0.12),
        (2.0, 4.0, 0.12),
        (4.0, 6.0, 0.12),
        (6.0, 12.0, 0.30),
        (12.0, 24.0, 0.20),
    ),
    energy_kwh=(
        (1.0, 5.0, 0.12),
        (5.0, 10.0, 0.12),
        (10.0, 20.0, 0.24),
        (20.0, 30.0, 0.14),
        (30.0, 40.0, 0.10),
        (40.0, 60.0, 0.16),
        (60.0, 80.0, 0.09),
        (80.0, 100.0, 0.03),
    ),
    ev_max_kw=((7.4, 0.35), (11.0, 0.45), (22.0, 0.20)),
)

PROFILES = {DESTINATION: DESTINATION_PROFILE, RESIDENTIAL: RESIDENTIAL_PROFILE}


@dataclass(frozen=True)
class EvSession:
    chargepoint: int
    """Index of the chargepoint (0-based) the EV plugs into."""
    arrival_s: float
    departure_s: float
    energy_kwh: float
    """Energy the EV would take if nothing limited it."""
    ev_max_kw: float

    @property
    def duration_s(self) -> float:
        return self.departure_s - self.arrival_s


def _draw_bin(rng: random.Random, bins: Bins) -> float:
    x, acc = rng.random(), 0.0
    for lo, hi, p in bins:
        acc += p
        if x < acc:
            return rng.uniform(lo, hi)
    lo, hi, _ = bins[-1]
    return rng.uniform(lo, hi)


def _draw_choice(rng: random.Random, rows: Sequence[tuple[float, float]]) -> float:
    x, acc = rng.random(), 0.0
    for value, p in rows:
        acc += p
        if x < acc:
            return value
    return rows[-1][0]


class SessionStream:
    """The endless sequence of sessions at one chargepoint, from ``start_s`` on.

    Sessions never overlap: the next EV can only arrive after the previous one left.
    """

    def __init__(
        self,
        profile: SessionProfile,
        utilisation: float,
        rng: random.Random,
        *,
        chargepoint: int = 0,
        start_s: float = 0.0,
        day_offset_s: float = 0.0,
    ) -> None:
        if not 0.0 < utilisation < 1.0:
            raise ValueError("utilisation must lie in (0, 1); the report saw 5-35 %")
        self.profile = profile
        self.utilisation = utilisation
        self.rng = rng
        self.chargepoint = chargepoint
        self.day_offset_s = day_offset_s
        self._t = start_s
        self._rate_per_s = utilisation / ((1.0 - utilisation) * profile.mean_duration_s)
        self._peak = max(profile.hourly_start_weights) * 24.0 / sum(profile.hourly_start_weights)

    def __iter__(self) -> Iterator[EvSession]:
        return self

    def __next__(self) -> EvSession:
        rng, prof = self.rng, self.profile
        lam_max = self._rate_per_s * self._peak
        t = self._t
        while True:  # thinning of a non-homogeneous Poisson process
            t += rng.expovariate(lam_max)
            accept = prof.start_weight(t + self.day_offset_s) / self._peak
            if rng.random() < accept:
                break
        duration_s = _draw_bin(rng, prof.duration_h) * 3600.0
        session = EvSession(
            chargepoint=self.chargepoint,
            arrival_s=t,
            departure_s=t + duration_s,
            energy_kwh=_draw_bin(rng, prof.energy_kwh),
            ev_max_kw=_draw_choice(rng, prof.ev_max_kw),
        )
        self._t = session.departure_s
        return session


def chargepoint_rng(seed: int, chargepoint: int) -> random.Random:
    """A per-chargepoint generator: adding a chargepoint does not change the others."""
    return random.Random(f"gridwarden-ev-sessions:{seed}:{chargepoint}")


def generate_sessions(
    profile: SessionProfile | str,
    *,
    chargepoints: int,
    start_s: float,
    end_s: float,
    utilisation: float,
    seed: int,
    day_offset_s: float = 0.0,
) -> list[EvSession]:
    """All sessions arriving in [start_s, end_s) on ``chargepoints`` chargepoints, by arrival."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    out: list[EvSession] = []
    for cp in range(chargepoints):
        stream = SessionStream(
            prof,
            utilisation,
            chargepoint_rng(seed, cp),
            chargepoint=cp,
            start_s=start_s,
            day_offset_s=day_offset_s,
        )
        for session in stream:
            if session.arrival_s >= end_s:
                break
            out.append(session)
    out.sort(key=lambda s: (s.arrival_s, s.chargepoint))
    return out


def utilisation_of(
    sessions: Sequence[EvSession], chargepoints: int, start_s: float, end_s: float
) -> float:
    """Connected time over available time in [start_s, end_s), averaged over chargepoints."""
    span = end_s - start_s
    if span <= 0 or chargepoints <= 0:
        return math.nan
    busy = sum(max(0.0, min(s.departure_s, end_s) - max(s.arrival_s, start_s)) for s in sessions)
    return busy / (span * chargepoints)
