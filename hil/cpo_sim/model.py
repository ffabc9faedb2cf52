"""The CPO simulator's site model: chargepoints, EV sessions, the limit and load management.

Pure and time-injected: ``SimSite.step(now)`` advances the site to ``now`` (seconds on any
monotonic clock) in sub-steps of at most ``tick_s``; nothing here reads a clock, sleeps or
does I/O. The HTTP wrapper (``hil.cpo_sim.server``) turns wall-clock ``valid_until`` into
this clock before calling ``apply_limit``.

Load management (SDRC5 report, section 5.2.1):

- ``dlb`` (dynamic load balancing): every charging EV gets the same percentage of its
  chargepoint's rating (capped at what the EV takes, the spare shared among the others), so
  the site total equals the limit. A chargepoint that would fall below its minimum rate
  (the minimum charging current, 6 A by default) is paused instead (``suspended_evse``),
  the latest arrival first, and the others share its power.
- ``rr`` (round robin): chargepoints cannot modulate, each is on at its full rate or off.
  The queue of waiting chargepoints is filled first-fit up to the limit; at each time slot
  (``slot_s``) those that were on go to the back of the queue, so every EV gets its turn.
  The site total never exceeds the limit, so its average meets it too.

The limit: a new one takes effect ``response_delay_s`` after it is received (the CPO's
back office and the chargepoints' own reaction). When its ``valid_until`` passes without a
newer one, the site falls back to ``fallback_kw``, its configured safe limit.
``ignore_limits`` makes a non-compliant CPO: it accepts and reports limits but draws as if
there were none.
"""

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from hil.ev_sessions import (
    PROFILES,
    EvSession,
    SessionProfile,
    SessionStream,
    chargepoint_rng,
)

DLB = "dlb"
RR = "rr"
STRATEGIES = (DLB, RR)
EPS = 1e-9


class LimitRefused(ValueError):  # noqa: N818 (domain name)
    """A limit the site will not take; ``code`` is the API's error code."""

    def __init__(self, code: str, message: str, current_sequence: int) -> None:
        super().__init__(message)
        self.code = code
        self.current_sequence = current_sequence


@dataclass(frozen=True)
class ChargepointSpec:
    id: str
    max_kw: float
    min_kw: float


@dataclass(frozen=True)
class SiteLimit:
    """A limit as the site holds it; times on the model clock."""

    limit_kw: float
    sequence: int
    reason: str
    received_at: float
    effective_at: float
    expires_at: float
    fingerprint: tuple[object, ...]
    """What makes a replay identical (the request body minus nothing)."""


@dataclass
class _Point:
    spec: ChargepointSpec
    stream: Iterable[EvSession] | None
    upcoming: EvSession | None = None
    session: EvSession | None = None
    delivered_kwh: float = 0.0
    power_kw: float = 0.0
    paused: bool = False
    on_time_s: float = 0.0
    """Time this chargepoint drew power (all sessions), for fairness checks."""
    energy_total_kwh: float = 0.0

    def wants_kw(self) -> float:
        s = self.session
        if s is None or self.delivered_kwh >= s.energy_kwh - EPS:
            return 0.0
        return min(self.spec.max_kw, s.ev_max_kw)

    def status(self) -> str:
        if self.session is None:
            return "available"
        if self.power_kw > EPS:
            return "charging"
        return "suspended_evse" if self.paused else "suspended_ev"


@dataclass
class SiteSettings:
    site_id: str
    chargepoints: int = 6
    rated_kw: float = 22.0
    phases: int = 3
    voltage_v: float = 230.0
    min_current_a: float = 6.0
    strategy: str = DLB
    slot_s: float = 300.0
    fallback_kw: float = 11.0
    response_delay_s: float = 2.0
    ignore_limits: bool = False
    profile: str = "destination"
    utilisation: float = 0.2
    seed: int = 1
    day_offset_s: float = 8 * 3600.0
    """Time of day at model time 0 (default: 08:00, when destination sites get busy)."""
    tick_s: float = 1.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r}: use dlb or rr")
        if self.chargepoints < 1 or self.rated_kw <= 0 or self.fallback_kw < 0:
            raise ValueError("chargepoints >= 1, rated_kw > 0, fallback_kw >= 0")
        if self.phases not in (1, 3):
            raise ValueError("phases: 1 or 3")

    @property
    def min_kw(self) -> float:
        return self.phases * self.voltage_v * self.min_current_a / 1000.0


class SimSite:
    """One simulated EV site. ``sessions`` replaces the statistical arrivals (tests)."""

    def __init__(
        self,
        settings: SiteSettings,
        t0: float = 0.0,
        *,
        sessions: Iterable[EvSession] | None = None,
        profile: SessionProfile | None = None,
    ) -> None:
        self.settings = s = settings
        self.t = t0
        prof = profile if profile is not None else PROFILES[s.profile]
        given: dict[int, list[EvSession]] = {}
        if sessions is not None:
            for sess in sorted(sessions, key=lambda x: x.arrival_s):
                given.setdefault(sess.chargepoint, []).append(sess)
        self.points: list[_Point] = []
        for i in range(s.chargepoints):
            spec = ChargepointSpec(f"cp{i + 1}", s.rated_kw, min(s.min_kw, s.rated_kw))
            stream: Iterable[EvSession]
            if sessions is not None:
                stream = iter(given.get(i, []))
            else:
                stream = SessionStream(
                    prof,
                    s.utilisation,
                    chargepoint_rng(s.seed, i),
                    chargepoint=i,
                    start_s=t0,
                    day_offset_s=s.day_offset_s - t0,
                )
            point = _Point(spec, stream)
            point.upcoming = next(iter(stream), None)
            self.points.append(point)
        self.limit: SiteLimit | None = None  # the newest accepted
        self.in_force: SiteLimit | None = None  # the one applied now
        self.fallback_active = False
        self.last_sequence: int | None = None
        self.received: list[SiteLimit] = []
        """Every new limit accepted, in order (replays not repeated), for tests and logs."""
        self._queue: deque[int] = deque(range(s.chargepoints))  # rr rotation order
        self._slot_started = t0
        self._rr_on: set[int] = set()
        self._allocate(t0)

    # --- limits -------------------------------------------------------------------------------

    def apply_limit(
        self, limit_kw: float, sequence: int, reason: str, now: float, expires_at: float
    ) -> tuple[SiteLimit, bool]:
        """Accept a limit received at ``now``; returns it and whether it was a replay.

        Raises ``LimitRefused`` for a stale sequence or a reused one with another body.
        """
        self.step(now)
        fp = (float(limit_kw), int(sequence), reason, float(expires_at))
        last = self.limit
        if last is not None and sequence == last.sequence:
            if last.fingerprint[:3] == fp[:3]:
                return last, True
            raise LimitRefused(
                "sequence_conflict",
                f"sequence {sequence} was already accepted with another limit",
                last.sequence,
            )
        if last is not None and sequence < last.sequence:
            raise LimitRefused(
                "stale_sequence",
                f"sequence {sequence} is older than the accepted {last.sequence}",
                last.sequence,
            )
        lim = SiteLimit(
            limit_kw=float(limit_kw),
            sequence=sequence,
            reason=reason,
            received_at=now,
            effective_at=now + self.settings.response_delay_s,
            expires_at=expires_at,
            fingerprint=fp,
        )
        self.limit = lim
        self.last_sequence = sequence
        self.received.append(lim)
        return lim, False

    def applied_limit_kw(self) -> float | None:
        """The limit in force now as the CPO reports it (its safe limit after a lapse)."""
        if self.fallback_active:
            return self.settings.fallback_kw
        return self.in_force.limit_kw if self.in_force is not None else None

    def _update_limit(self, t: float) -> None:
        # the newest limit whose response delay has passed: a controller that sends a new
        # limit every period (a ramp, a cut) still gets each one applied after the delay
        for lim in reversed(self.received):
            if lim.effective_at <= t + EPS:
                if lim is not self.in_force and (
                    self.in_force is None or lim.sequence > self.in_force.sequence
                ):
                    self.in_force = lim
                    self.fallback_active = False
                break
        cur = self.in_force
        if cur is not None and t >= cur.expires_at and not self.fallback_active:
            self.fallback_active = True

    def _effective_limit(self) -> float:
        if self.settings.ignore_limits:
            return math.inf
        lim = self.applied_limit_kw()
        return math.inf if lim is None else lim

    # --- time ---------------------------------------------------------------------------------

    def step(self, now: float) -> None:
        """Advance the site to ``now`` (a time before the current one is ignored)."""
        tick = self.settings.tick_s
        while self.t < now - EPS:
            h = min(tick, now - self.t)
            for p in self.points:
                if p.session is not None and p.power_kw > 0:
                    kwh = min(p.power_kw * h / 3600.0, p.session.energy_kwh - p.delivered_kwh)
                    p.delivered_kwh += kwh
                    p.energy_total_kwh += kwh
                    p.on_time_s += h
            self.t += h
            self._allocate(self.t)

    def power_kw(self, now: float) -> float:
        """The site's total EV draw at ``now`` (steps the model to ``now`` first)."""
        self.step(now)
        return sum(p.power_kw for p in self.points)

    def chargepoint_states(self, now: float) -> list[tuple[str, str, float, float]]:
        """(id, status, power_kw, max_kw) per chargepoint at ``now``."""
        self.step(now)
        return [(p.spec.id, p.status(), p.power_kw, p.spec.max_kw) for p in self.points]

    # --- sessions and allocation ------------------------------------------------------------

    def _sessions(self, t: float) -> None:
        for p in self.points:
            if p.session is not None and p.session.departure_s <= t + EPS:
                p.session = None
                p.power_kw = 0.0
                p.paused = False
            if p.session is None and p.upcoming is not None and p.upcoming.arrival_s <= t + EPS:
                p.session, p.delivered_kwh = p.upcoming, 0.0
                p.upcoming = next(iter(p.stream), None) if p.stream is not None else None

    def _allocate(self, t: float) -> None:
        self._sessions(t)
        self._update_limit(t)
        limit = self._effective_limit()
        if self.settings.strategy == DLB:
            self._dlb(limit)
        else:
            self._rr(limit, t)

    def _dlb(self, limit: float) -> None:
        wanting = [i for i, p in enumerate(self.points) if p.wants_kw() > 0]
        for p in self.points:
            p.power_kw, p.paused = 0.0, False
        # latest arrival is paused first (deterministic: ties by chargepoint index)
        order = sorted(
            wanting,
            key=lambda i: (self.points[i].session.arrival_s, i),  # type: ignore[union-attr]
        )
        active = list(order)
        while active:
            alloc = _waterfill(
                [(self.points[i].wants_kw(), self.points[i].spec.max_kw) for i in active], limit
            )
            if all(
                a >= self.points[i].spec.min_kw - EPS for i, a in zip(active, alloc, strict=True)
            ):
                for i, a in zip(active, alloc, strict=True):
                    self.points[i].power_kw = a
                break
            active.pop()
        for i in wanting:
            if i not in active:
                self.points[i].paused = True

    def _rr(self, limit: float, t: float) -> None:
        pts = self.points
        wanting = {i for i, p in enumerate(pts) if p.wants_kw() > 0}
        for i, p in enumerate(pts):
            p.power_kw, p.paused = 0.0, False
            if i not in wanting:
                self._rr_on.discard(i)
        if sum(pts[i].wants_kw() for i in wanting) <= limit + EPS:
            on = set(wanting)
        else:
            on = set(self._rr_on)
            if t >= self._slot_started + self.settings.slot_s - EPS:
                for i in list(self._queue):  # this slot's chargepoints go to the back
                    if i in on:
                        self._queue.remove(i)
                        self._queue.append(i)
                on = set()
                self._slot_started = t
            used = sum(pts[i].wants_kw() for i in on)
            if used > limit + EPS:  # the limit fell: keep the front of the queue that fits
                on, used = set(), 0.0
            for i in self._queue:
                if i in wanting and i not in on and used + pts[i].wants_kw() <= limit + EPS:
                    on.add(i)
                    used += pts[i].wants_kw()
        self._rr_on = on
        for i in wanting:
            if i in on:
                pts[i].power_kw = pts[i].wants_kw()
            else:
                pts[i].paused = True


def _waterfill(items: list[tuple[float, float]], limit: float) -> list[float]:
    """Same fraction f of each rating, capped at each EV's want; sum = min(limit, wants)."""
    if sum(w for w, _ in items) <= limit + EPS:
        return [w for w, _ in items]
    order = sorted(range(len(items)), key=lambda k: items[k][0] / items[k][1])
    out = [0.0] * len(items)
    remaining, rest_max = limit, sum(m for _, m in items)
    for pos, k in enumerate(order):
        want, rated = items[k]
        if want / rated * rest_max <= remaining:
            out[k] = want
            remaining -= want
            rest_max -= rated
            continue
        f = remaining / rest_max
        for k2 in order[pos:]:
            out[k2] = f * items[k2][1]
        break
    return out
