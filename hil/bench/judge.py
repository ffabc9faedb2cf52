"""Judge a recording against its scenario's criteria: each criterion is a pass/fail with
what was measured, so a report says *why* a run failed.

"Over the limit" is judged on the bench's own site model (the true constraint, without
meter noise) against the limit the daemon reports: the daemon's view could be wrong, which
is what the bench is for. The limit holds its last reported value while no daemon answers.
"""

import itertools
import math
from dataclasses import dataclass

from hil.bench.record import Recording, Sample
from hil.bench.scenario import Criteria, Scenario, Window

PASS, FAIL, PENDING, ERROR = "PASS", "FAIL", "PENDING", "ERROR"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Metrics:
    first_trip_s: float | None
    longest_over_s: float
    excess_unit_s: float
    unmet_ev_pct: float
    ideal_unmet_ev_pct: float | None
    """What an ideal controller leaves unmet (EVs get all the headroom below the trim)."""
    limit_changes: int
    reversals: int
    states: list[str]


@dataclass
class Verdict:
    name: str
    source: str
    result: str
    wall_s: float
    checks: list[Check]
    metrics: Metrics | None
    note: str = ""

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def first_trip_s(samples: list[Sample]) -> float | None:
    for s in samples:
        if s.state == "tripped" or s.breaker_wanted == "trip":
            return s.t
    return None


def over_limit(samples: list[Sample]) -> tuple[float, float]:
    """(longest continuous time above the limit, integral of the excess) over the run."""
    longest = run = excess = 0.0
    limit: float | None = None
    prev_t: float | None = None
    for s in samples:
        if s.limit is not None:
            limit = s.limit
        dt = 0.0 if prev_t is None else s.t - prev_t
        prev_t = s.t
        if limit is not None and s.true_constraint > limit:
            run += dt
            excess += (s.true_constraint - limit) * dt
            longest = max(longest, run)
        else:
            run = 0.0
    return longest, excess


def unmet_pct(samples: list[Sample]) -> float:
    wanted = sum(s.ev_wanted_kw for s in samples)
    got = sum(min(s.ev_kw, s.ev_wanted_kw) for s in samples)
    return 0.0 if wanted <= 0 else 100.0 * (wanted - got) / wanted


def ideal_unmet_pct(samples: list[Sample], sensitivity: float, max_kw: float) -> float | None:
    """Unmet EV energy if the EVs always got exactly the headroom below the trim (kW);
    None without a local limit (CMC without a backstop)."""
    wanted = got = 0.0
    trim: float | None = None
    for s in samples:
        trim = s.trim if s.trim is not None else trim
        if trim is None:
            continue
        headroom = min(max_kw, max(0.0, (trim - s.background_kw) / sensitivity))
        wanted += s.ev_wanted_kw
        got += min(s.ev_wanted_kw, headroom)
    if trim is None:
        return None
    return 0.0 if wanted <= 0 else 100.0 * (wanted - got) / wanted


def limit_changes(values: list[float], tol: float = 1e-6) -> tuple[int, int]:
    """(changes of value, changes of direction) of a series of limits."""
    changes = reversals = 0
    last_dir = 0
    for a, b in itertools.pairwise(values):
        if abs(b - a) <= tol:
            continue
        changes += 1
        d = 1 if b > a else -1
        if last_dir and d != last_dir:
            reversals += 1
        last_dir = d
    return changes, reversals


def metrics(rec: Recording, scenario: Scenario) -> Metrics:
    longest, excess = over_limit(rec.samples)
    ideal = None
    if scenario.unit == "kW":
        max_kw = float(scenario.controller.get("ev_site", {}).get("max_kw", math.inf))
        value = ideal_unmet_pct(rec.samples, scenario.sensitivity, max_kw)
        ideal = None if value is None else round(value, 2)
    changes, reversals = limit_changes([lim.limit_kw for lim in rec.limits])
    seen: list[str] = []
    for s in rec.samples:
        if s.state not in seen:
            seen.append(s.state)
    return Metrics(
        first_trip_s=first_trip_s(rec.samples),
        longest_over_s=round(longest, 2),
        excess_unit_s=round(excess, 2),
        unmet_ev_pct=round(unmet_pct(rec.samples), 2),
        ideal_unmet_ev_pct=ideal,
        limit_changes=changes,
        reversals=reversals,
        states=seen,
    )


def _window_checks(rec: Recording, w: Window) -> Check:
    base = 0.0
    if w.relative_to == "boundary":
        if rec.boundary_t is None:
            return Check(f"window {w.from_s:g}..{w.to_s:g} s", False, "no boundary recorded")
        base = rec.boundary_t
    lo, hi = base + w.from_s, base + w.to_s
    name = f"window {w.from_s:g}..{w.to_s:g} s" + (
        " after the boundary" if w.relative_to == "boundary" else ""
    )
    inside = [s for s in rec.samples if lo <= s.t <= hi]
    if not inside:
        return Check(name, False, "no samples in the window")
    bad: list[str] = []
    for s in inside:
        if w.states and s.state not in w.states:
            bad.append(f"t={s.t:.1f} state {s.state}")
        if w.ev_limit_max_kw is not None and (
            s.ev_limit_kw is None or s.ev_limit_kw > w.ev_limit_max_kw + 1e-6
        ):
            bad.append(f"t={s.t:.1f} EV limit {s.ev_limit_kw}")
        if w.ev_limit_min_kw is not None and (
            s.ev_limit_kw is None or s.ev_limit_kw < w.ev_limit_min_kw - 1e-6
        ):
            bad.append(f"t={s.t:.1f} EV limit {s.ev_limit_kw}")
        if w.limit is not None and (s.limit is None or abs(s.limit - w.limit) > 1e-6):
            bad.append(f"t={s.t:.1f} limit {s.limit}")
    wants = []
    if w.states:
        wants.append("state in " + "/".join(w.states))
    if w.ev_limit_max_kw is not None:
        wants.append(f"EV limit <= {w.ev_limit_max_kw:g} kW")
    if w.ev_limit_min_kw is not None:
        wants.append(f"EV limit >= {w.ev_limit_min_kw:g} kW")
    if w.limit is not None:
        wants.append(f"limit = {w.limit:g}")
    want = ", ".join(wants)
    if bad:
        return Check(name, False, f"want {want}; {len(bad)} samples not: {bad[0]}")
    return Check(name, True, f"{want} in all {len(inside)} samples")


def _never_reclosed(samples: list[Sample], confirm_s: float = 2.0) -> Check:
    """After the trip order the breaker opens (within ``confirm_s``: the latch is written
    first), then it is never closed again nor permitted to close."""
    name = "never re-closed after the trip"
    trip = first_trip_s(samples)
    if trip is None:
        return Check(name, False, "no trip")
    after = [s for s in samples if s.t >= trip]
    permit = [s for s in after if s.breaker_wanted == "permit_close"]
    if permit:
        return Check(name, False, f"t={permit[0].t:.1f}: close permitted")
    opened = next((s.t for s in after if s.breaker_status == "open"), None)
    if opened is None or opened > trip + confirm_s:
        return Check(name, False, f"breaker not open within {confirm_s:g} s of the trip")
    closed = [s for s in after if s.t > opened and s.breaker_status == "closed"]
    if closed:
        return Check(name, False, f"t={closed[0].t:.1f}: breaker closed again")
    return Check(name, True, f"open {opened - trip:.1f} s after the trip, and after")


def _restart_checks(rec: Recording, c: Criteria) -> list[Check]:
    out: list[Check] = []
    within = c.tripped_after_restart_within_s
    if within is not None:
        restarts = rec.daemon_starts[1:]
        if not restarts:
            out.append(Check("tripped after restart", False, "the daemon was never restarted"))
        for at in restarts:
            first = [s for s in rec.samples if s.t >= at and s.run > 1]
            tripped = [s for s in first if s.state == "tripped" and s.t <= at + within]
            early = [s for s in first if s.t <= at + within and s.state != "tripped"]
            if tripped:
                out.append(
                    Check(
                        f"tripped within {within:g} s of the restart at {at:.1f} s",
                        True,
                        f"tripped at {tripped[0].t - at:.1f} s after the restart"
                        + (f" ({len(early)} samples before in {early[0].state})" if early else ""),
                    )
                )
            else:
                seen = first[0].state if first else "no sample"
                out.append(
                    Check(
                        f"tripped within {within:g} s of the restart at {at:.1f} s",
                        False,
                        f"first state after the restart: {seen}",
                    )
                )
    if c.never_reclosed_after_trip:
        out.append(_never_reclosed(rec.samples))
    return out


def judge(scenario: Scenario, rec: Recording) -> Verdict:
    if rec.error is not None:
        return Verdict(rec.name, rec.source, ERROR, rec.wall_s, [], None, rec.error)
    c = scenario.criteria
    m = metrics(rec, scenario)
    checks: list[Check] = []
    trip = m.first_trip_s
    trip_text = "no trip" if trip is None else f"tripped at {trip:.1f} s"
    if c.trip == "forbidden":
        checks.append(Check("no trip", trip is None, trip_text))
    elif c.trip == "expected":
        lo = c.trip_after_s if c.trip_after_s is not None else 0.0
        hi = c.trip_before_s if c.trip_before_s is not None else float("inf")
        ok = trip is not None and lo <= trip <= hi
        window = f" within {lo:g}..{hi:g} s" if c.trip_before_s is not None or lo else ""
        checks.append(Check(f"trip{window}", ok, trip_text))
    if c.max_over_limit_s is not None:
        checks.append(
            Check(
                f"over the limit <= {c.max_over_limit_s:g} s at a time",
                m.longest_over_s <= c.max_over_limit_s,
                f"longest {m.longest_over_s:.1f} s",
            )
        )
    if c.max_excess_unit_s is not None:
        checks.append(
            Check(
                f"excess above the limit <= {c.max_excess_unit_s:g} {scenario.unit}*s",
                m.excess_unit_s <= c.max_excess_unit_s,
                f"{m.excess_unit_s:.1f} {scenario.unit}*s",
            )
        )
    if c.max_unmet_ev_pct is not None:
        checks.append(
            Check(
                f"unmet EV energy <= {c.max_unmet_ev_pct:g} %",
                m.unmet_ev_pct <= c.max_unmet_ev_pct,
                f"{m.unmet_ev_pct:.1f} %",
            )
        )
    if c.max_extra_unmet_ev_pct is not None:
        if m.ideal_unmet_ev_pct is None:
            checks.append(Check("unmet EV energy vs. ideal", False, "needs a local limit in kW"))
        else:
            extra = m.unmet_ev_pct - m.ideal_unmet_ev_pct
            checks.append(
                Check(
                    f"unmet EV energy <= ideal + {c.max_extra_unmet_ev_pct:g} points",
                    extra <= c.max_extra_unmet_ev_pct,
                    f"{m.unmet_ev_pct:.1f} % vs. ideal {m.ideal_unmet_ev_pct:.1f} %",
                )
            )
    if c.max_limit_changes is not None:
        checks.append(
            Check(
                f"limit changes <= {c.max_limit_changes}",
                m.limit_changes <= c.max_limit_changes,
                f"{m.limit_changes} changes",
            )
        )
    if c.min_limit_changes is not None:
        checks.append(
            Check(
                f"limit changes >= {c.min_limit_changes}",
                m.limit_changes >= c.min_limit_changes,
                f"{m.limit_changes} changes",
            )
        )
    if c.max_reversals is not None:
        checks.append(
            Check(
                f"limit reversals <= {c.max_reversals}",
                m.reversals <= c.max_reversals,
                f"{m.reversals} reversals",
            )
        )
    codes = {e.code for e in rec.events}
    for code in c.events_expected:
        when = [e.t for e in rec.events if e.code == code]
        checks.append(
            Check(f"event {code}", bool(when), f"at {when[0]:.1f} s" if when else "not logged")
        )
    for code in c.events_forbidden:
        logged = code in codes
        checks.append(Check(f"no event {code}", not logged, "logged" if logged else "none"))
    for state in c.states_expected:
        when = [s.t for s in rec.samples if s.state == state]
        checks.append(
            Check(f"state {state}", bool(when), f"from {when[0]:.1f} s" if when else "never")
        )
    for state in c.states_forbidden:
        when = [s.t for s in rec.samples if s.state == state]
        checks.append(Check(f"never {state}", not when, f"at {when[0]:.1f} s" if when else "never"))
    for alarm in c.alarms_expected:
        when = [s.t for s in rec.samples if alarm in s.alarms]
        checks.append(
            Check(f"alarm {alarm}", bool(when), f"from {when[0]:.1f} s" if when else "never")
        )
    if c.final_state is not None:
        last = next((s.state for s in reversed(rec.samples)), "no sample")
        checks.append(Check(f"ends {c.final_state}", last == c.final_state, f"ends {last}"))
    checks += _restart_checks(rec, c)
    checks += [_window_checks(rec, w) for w in c.windows]
    if not rec.samples:
        checks.append(Check("recorded", False, "no status sample"))
    result = PASS if all(ch.ok for ch in checks) else FAIL
    return Verdict(rec.name, rec.source, result, rec.wall_s, checks, m)
