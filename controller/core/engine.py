"""The control law and the escalation: ``step(settings, state, inputs, now)``.

Pure and deterministic: no I/O, no clocks, no asyncio, no pydantic; ``now`` is the
caller's monotonic time in seconds. Runs unchanged under MicroPython. The shell gathers
inputs, calls ``step`` once per control period, then performs the returned actions.

The law (docs/architecture.md has the full story):
    trim       = limit - margin                         (in the limit's unit)
    background = constraint - sf * k * ev_demand       (k converts EV kW to the unit)
    raw        = (trim - background) / (sf * k)        (kW for the EV site)
The EV limit follows ``raw`` clamped to [min_limit_kw, site_max_kw]: at once when it must
fall, upwards only after ``release_hold_s`` of wanting to and at ``ramp_kw_per_s``.
"""

import math

from controller.core import model as m
from controller.core.g100 import G100Tracker
from controller.core.settings import CoreSettings

PERSIST_VERSION = 1
# Sequence numbers are persisted as a reservation SEQUENCE_BLOCK ahead, so that the store
# is written once per block of orders, not once per order, and a restart resumes above
# every number already sent.
SEQUENCE_BLOCK = 1000
# While escalation or G100 clocks run, their ages are re-persisted this often, so that a
# restart (even a crash loop) resumes them instead of starting them over.
PERSIST_TIMERS_EVERY_S = 10.0
_MAX_RAMP_DT_S = 5.0  # a stalled tick must not turn into one big step up

# alarm codes (active while the condition lasts; raised and cleared once per episode)
A_METER_LOST = "METER_LOST"
A_DEMAND_STALE = "DEMAND_STALE"
A_CPO_UNREACHABLE = "CPO_UNREACHABLE"
A_OVER_LIMIT = "OVER_LIMIT"
A_EMERGENCY = "EMERGENCY"
A_TRIPPED = "TRIPPED"
A_G100_LOCKOUT = "G100_LOCKOUT"
A_CENTRAL_FALLBACK = "CENTRAL_FALLBACK"
A_CLOCK_UNSYNCED = "CLOCK_UNSYNCED"
A_MAINTENANCE = "MAINTENANCE"

LOCKOUT = "lockout"  # an extra state beyond model.STATES: G100 lockout holds the fail-safe


class State:
    """Everything the controller remembers between periods. Owned by the caller, updated
    in place by ``step``. ``to_dict``/``load`` carry the part that must survive a restart:
    the latched trip, the G100 counters and lockout, the last limit and sequence."""

    __slots__ = (
        "alarms",
        "bg_estimate",
        "central_lapsed",
        "central_sequence",
        "cut_since",
        "emergency_ok_since",
        "emergency_since",
        "ev_limit_kw",
        "g100",
        "history",
        "last_meter_ok_at",
        "last_persist_at",
        "last_persist_key",
        "last_raise_at",
        "last_sent_at",
        "last_sent_kw",
        "last_sent_reason",
        "last_step",
        "last_trip_over",
        "law_limit_kw",
        "limit_history",
        "maintenance_by",
        "maintenance_since",
        "mode",
        "over_since",
        "raise_floor",
        "raise_since",
        "sequence",
        "sequence_reserved",
        "started_at",
        "status",
        "trip_reason",
        "trip_source",
        "tripped",
    )

    def __init__(self, settings: CoreSettings, now: float) -> None:
        self.mode = m.STARTING
        self.started_at = now
        self.last_step: float | None = None
        self.ev_limit_kw = settings.fallback_limit_kw
        self.law_limit_kw = settings.fallback_limit_kw
        self.raise_since: float | None = None
        self.raise_floor = 0.0
        self.cut_since: float | None = None
        self.bg_estimate: float | None = None
        self.history: list[tuple[float, float]] = []  # (taken_at, constraint) pairs
        self.sequence = 0
        self.sequence_reserved = 0
        self.last_sent_at: float | None = None
        self.last_sent_kw: float | None = None
        self.last_sent_reason = ""
        self.last_meter_ok_at: float | None = None
        self.over_since: float | None = None
        self.emergency_since: float | None = None
        self.emergency_ok_since: float | None = None
        self.tripped = False
        self.trip_reason = ""
        self.trip_source = ""
        self.maintenance_since: float | None = None
        self.maintenance_by = ""
        self.central_sequence = -1  # highest lease sequence seen
        self.central_lapsed = False  # the lease with that sequence has lapsed: never again
        self.g100 = G100Tracker(settings.g100)
        self.alarms: dict[str, str] = {}  # code -> severity
        self.status = m.Status()
        self.status.unit = settings.unit
        self.last_persist_key: tuple[object, ...] | None = None
        self.last_persist_at = now
        self.last_trip_over = False  # the last compliance view said: above the trip level
        self.last_raise_at: float | None = None
        self.limit_history: list[tuple[float, float]] = []  # (time, law limit) changes

    # --- persistence ----------------------------------------------------------------------
    def to_dict(self, now: float) -> "dict[str, object]":
        return {
            "version": PERSIST_VERSION,
            "tripped": self.tripped,
            "trip_reason": self.trip_reason,
            "trip_source": self.trip_source,
            "sequence": self.sequence_reserved,
            "ev_limit_kw": round(self.ev_limit_kw, 3),
            "central_sequence": self.central_sequence,
            "over_age_s": _age(now, self.over_since),
            "emergency_age_s": _age(now, self.emergency_since),
            "g100": self.g100.to_dict(now),
        }

    @classmethod
    def load(cls, settings: CoreSettings, d: "dict[str, object]", now: float) -> "State":
        """Rebuild the state after a restart. Unknown or damaged fields fall back to the
        safe side: a missing ``tripped`` is treated as not tripped only if the dict has the
        current version, otherwise the caller should treat the whole store as lost."""
        if d.get("version") != PERSIST_VERSION:
            raise ValueError(
                "persisted state has version %r, expected %d" % (d.get("version"), PERSIST_VERSION)
            )
        st = cls(settings, now)
        st.tripped = bool(d.get("tripped", False))
        st.trip_reason = str(d.get("trip_reason") or "")
        st.trip_source = str(d.get("trip_source") or "")
        st.sequence = int(d.get("sequence") or 0)  # type: ignore[call-overload]
        st.sequence_reserved = st.sequence
        st.central_sequence = int(d.get("central_sequence", -1))  # type: ignore[call-overload]
        st.central_lapsed = True  # no lease survives a restart: only a newer command counts
        last = d.get("ev_limit_kw")
        if isinstance(last, (int, float)):
            # restart low: never above the fallback limit until the law has seen the site
            st.ev_limit_kw = min(float(last), settings.fallback_limit_kw)
            st.law_limit_kw = st.ev_limit_kw
        g = d.get("g100")
        if isinstance(g, dict):
            st.g100.load(g, now)
        # a restart must not reset the escalation clocks: a controller that crash-loops
        # faster than the compliance deadline would otherwise never escalate
        st.over_since = _since(now, d.get("over_age_s"))
        st.emergency_since = _since(now, d.get("emergency_age_s"))
        return st

    def timers_running(self) -> bool:
        """Escalation or G100 clocks are running: their ages must be re-persisted."""
        return self.over_since is not None or self.emergency_since is not None or self.g100.active()

    def latch_trip(self, reason: str, source: str) -> None:
        """Start tripped and latched (the shell lost the persisted state and cannot know
        whether a trip was forgotten); the first step orders the breaker open."""
        self.tripped = True
        self.trip_reason = reason
        self.trip_source = source

    def resync_sequence(self, floor: int) -> bool:
        """The CPO holds a sequence at least ``floor`` (e.g. after this device's store was
        lost): continue above it and resend the limit at the next period. Returns whether
        anything changed."""
        if floor < self.sequence:
            return False
        self.sequence = floor
        if self.sequence >= self.sequence_reserved:
            self.sequence_reserved = self.sequence + SEQUENCE_BLOCK
        self.last_sent_kw = None  # forces an order with a fresh number
        return True

    def persist_key(self) -> "tuple[object, ...]":
        return (
            self.tripped,
            self.over_since is not None,
            self.emergency_since is not None,
            self.trip_reason,
            self.sequence_reserved,
            self.central_sequence,
            self.g100.key(),
        )


def _age(now: float, since: "float | None") -> "float | None":
    return None if since is None else round(now - since, 3)


def _since(now: float, age: object) -> "float | None":
    if isinstance(age, (int, float)) and _finite(float(age)) and age >= 0:
        return now - float(age)
    return None


def _fmt(x: float) -> str:
    return "%.1f" % x


class _Constraint:
    """The constraint as seen this period, in the limit's unit."""

    __slots__ = ("k", "limit", "phase", "quantity", "trim", "trip_level")

    def __init__(self) -> None:
        self.quantity = 0.0
        self.phase = 0
        self.limit = 0.0
        self.trim = 0.0
        self.trip_level = 0.0
        self.k = 1.0  # units of the constraint per kW of EV site power


def _measure(s: CoreSettings, meas: "m.Measurement", limit: float, c: _Constraint) -> bool:
    """Fill ``c`` from a measurement; False if the measurement lacks what the unit needs."""
    c.limit = limit
    c.trim = limit - s.margin
    c.trip_level = limit * s.trip_ratio
    c.phase = 0
    if s.unit == m.KW:
        c.quantity = meas.power_kw
        c.k = 1.0
        return _finite(c.quantity)
    if s.unit == m.KVA:
        kva = meas.apparent_kva
        if kva is None:
            if meas.currents_a is None or meas.voltages_v is None:
                return False
            kva = 0.0
            for i in range(min(len(meas.currents_a), len(meas.voltages_v))):
                kva += abs(meas.currents_a[i] * meas.voltages_v[i]) / 1000.0
        c.quantity = kva
        c.k = 1.0 / s.ev_power_factor
        return _finite(kva)
    # amps per phase: the worst phase counts
    currents = meas.currents_a
    if not currents:
        return False
    worst = 0
    for i in range(len(currents)):
        # every phase must be known (a NaN phase could hide the worst one); a CT fitted the
        # wrong way round reads negative: the magnitude is what heats the cable
        if not _finite(currents[i]):
            return False
        if abs(currents[i]) > abs(currents[worst]):
            worst = i
    c.quantity = abs(currents[worst])
    c.phase = worst + 1
    volts = s.nominal_voltage_v
    if meas.voltages_v is not None and worst < len(meas.voltages_v):
        v = meas.voltages_v[worst]
        if _finite(v) and 0.5 * s.nominal_voltage_v < v < 1.5 * s.nominal_voltage_v:
            volts = v
    c.k = 1000.0 / (s.ev_phases * volts)
    return _finite(c.quantity)


def _finite(x: float) -> bool:
    return math.isfinite(x)


def _clamp(s: CoreSettings, kw: float) -> float:
    if math.isnan(kw):  # the safe end
        return s.min_limit_kw
    if kw < s.min_limit_kw:
        return s.min_limit_kw
    if kw > s.site_max_kw:
        return s.site_max_kw
    return kw


class _Period:
    """Scratch values of one period (kept off State so they cannot leak between ticks)."""

    __slots__ = ("actions", "c", "demand_fresh", "demand_kw", "meter_ok", "now")

    def __init__(self, actions: "m.Actions", now: float) -> None:
        self.actions = actions
        self.now = now
        self.c = _Constraint()
        self.meter_ok = False
        self.demand_fresh = False
        self.demand_kw = 0.0  # the fresh report, clamped to [0, site_max_kw]


def _event(
    p: _Period, code: str, severity: str, message: str, values: "dict[str, object] | None" = None
) -> None:
    p.actions.events.append(m.Event(code, severity, message, values))


def _alarm(
    st: State, p: _Period, code: str, active: bool, severity: str, on_msg: str, off_msg: str
) -> None:
    """Raise or clear an alarm once per episode, with an event each way."""
    if active and code not in st.alarms:
        st.alarms[code] = severity
        _event(p, code, severity, on_msg)
    elif not active and code in st.alarms:
        del st.alarms[code]
        _event(p, code + "_CLEARED", m.INFO, off_msg)


def _trip(st: State, p: _Period, reason: str, source: str) -> None:
    if st.tripped:
        return
    st.tripped = True
    st.trip_reason = reason
    st.trip_source = source
    p.actions.breaker = m.TRIP
    st.alarms[A_TRIPPED] = m.CRITICAL
    _event(p, "TRIP", m.CRITICAL, "breaker trip: " + reason, {"source": source})


def _within_limits(s: CoreSettings, st: State, p: _Period) -> "str | None":
    """Why a reset/permit-close must be refused now, or None if local conditions allow."""
    if s.limit is not None:
        if not p.meter_ok:
            return "no valid constraint measurement"
        if p.c.quantity > p.c.limit:
            return "constraint %s %s above limit %s %s" % (
                _fmt(p.c.quantity),
                s.unit,
                _fmt(p.c.limit),
                s.unit,
            )
    return None


def _commands(s: CoreSettings, st: State, inp: "m.Inputs", p: _Period) -> None:
    for cmd in inp.commands:
        refused: str | None = None
        note = "ok"
        if cmd.kind in m.LOCAL_ONLY_COMMANDS and cmd.source in m.REMOTE_SOURCES:
            refused = "%s is a local command: it needs someone at the site" % cmd.kind
        elif cmd.kind == m.CMD_TRIP:
            _trip(st, p, "commanded by " + cmd.source, cmd.source)
        elif cmd.kind == m.CMD_RESET:
            if not st.tripped and not st.g100.locked_out(p.now):
                refused = "nothing to reset"
            else:
                refused = _within_limits(s, st, p)
            if refused is None:
                _reset(s, st, p, cmd.source)
        elif cmd.kind == m.CMD_PERMIT_CLOSE:
            if not st.tripped:
                note = "not tripped: nothing to do"
            else:
                if st.trip_source != cmd.source:
                    refused = "trip was by %s (%s): needs a local reset" % (
                        st.trip_source,
                        st.trip_reason,
                    )
                else:
                    refused = _within_limits(s, st, p)
                if refused is None:
                    _reset(s, st, p, cmd.source)
        elif cmd.kind == m.CMD_MAINTENANCE_ON:
            if st.maintenance_since is None:
                st.maintenance_since = p.now
                st.maintenance_by = cmd.source
                _event(
                    p,
                    "MAINTENANCE_ON",
                    m.WARNING,
                    "maintenance mode on by %s: automatic trips suspended" % cmd.source,
                )
        elif cmd.kind == m.CMD_MAINTENANCE_OFF:
            if st.maintenance_since is None:
                refused = "not in maintenance"
            else:
                _leave_maintenance(st, p, "by " + cmd.source)
        else:
            refused = "unknown command %r" % cmd.kind
        result = m.CommandResult(cmd.command_id, cmd.kind, refused is None, refused or note)
        p.actions.command_results.append(result)
        if refused is not None:
            _event(
                p,
                "COMMAND_REFUSED",
                m.WARNING,
                "%s from %s refused: %s" % (cmd.kind, cmd.source, refused),
            )


def _reset(s: CoreSettings, st: State, p: _Period, source: str) -> None:
    if st.tripped:
        st.tripped = False
        st.alarms.pop(A_TRIPPED, None)
        p.actions.breaker = m.PERMIT_CLOSE
        _event(
            p,
            "TRIP_RESET",
            m.INFO,
            "trip reset by %s (was: %s)" % (source, st.trip_reason),
            {"source": source},
        )
        st.trip_reason = ""
        st.trip_source = ""
        st.emergency_since = None
        st.over_since = None
        st.alarms.pop(A_EMERGENCY, None)
    if st.g100.reset():
        st.alarms.pop(A_G100_LOCKOUT, None)
        _event(p, "G100_LOCKOUT_RESET", m.INFO, "G100 lockout reset by " + source)
    # restart low and climb after the hold, as after any forced limit
    st.ev_limit_kw = s.min_limit_kw
    st.law_limit_kw = s.min_limit_kw
    st.raise_since = None


def _leave_maintenance(st: State, p: _Period, why: str) -> None:
    st.maintenance_since = None
    st.maintenance_by = ""
    st.raise_since = None
    _event(p, "MAINTENANCE_OFF", m.INFO, "maintenance mode off " + why)


def _smooth(s: CoreSettings, st: State, raw: float, c: _Constraint, dt: float, now: float) -> None:
    """Move the law's limit toward ``raw``. With the constraint above its limit a cut is
    immediate; otherwise (the margin still holds) a cut must persist for
    ``cut_confirm_s``, so that measurement noise cannot ratchet the limit down; a raise
    waits ``release_hold_s``, goes no higher than the lowest headroom seen in that time,
    and climbs at ``ramp_kw_per_s``."""
    cur = st.law_limit_kw
    if raw < cur:
        st.raise_since = None
        if c.quantity > c.limit:
            st.law_limit_kw = raw
            st.cut_since = None
        elif cur - raw >= s.deadband_kw:
            if st.cut_since is None:
                st.cut_since = now
            if now - st.cut_since >= s.cut_confirm_s:
                st.law_limit_kw = raw
                st.cut_since = None
        else:
            st.cut_since = None
        return
    st.cut_since = None
    if raw - cur < s.deadband_kw or c.quantity > c.trim:
        # never raise while the constraint eats into its margin, whatever the estimate says
        st.raise_since = None
        return
    # the headroom that stayed available all through the hold is the lowest seen in it
    if st.raise_since is None:
        st.raise_since = now
        st.raise_floor = raw
    elif raw < st.raise_floor:
        st.raise_floor = raw
    if now - st.raise_since >= s.release_hold_s:
        if st.raise_floor - cur < s.deadband_kw:
            st.raise_since = None  # climbed to what the window allowed: watch a new window
            return
        step_kw = s.ramp_kw_per_s * min(dt, _MAX_RAMP_DT_S)
        st.law_limit_kw = cur + min(st.raise_floor - cur, step_kw)
        st.last_raise_at = now


def _force(s: CoreSettings, st: State, kw: float) -> None:
    """Impose a limit from outside the law (emergency, fallback, lockout, maintenance); the
    law restarts from it and climbs again only after the release hold."""
    st.law_limit_kw = _clamp(s, kw)
    st.ev_limit_kw = st.law_limit_kw
    st.raise_since = None
    st.cut_since = None


def _law_raw(s: CoreSettings, st: State, inp: "m.Inputs", p: _Period) -> float:
    """The EV limit the constraint allows now, before smoothing (kW, unclamped).

    With a fresh demand report the background is the constraint minus the EVs' reported
    share. The report is seconds older than the meter: after a raise of ours, the EV draw
    is still climbing and would look like a rise of the background, so the report is
    paired with the constraint reading taken when it was measured (for ``demand_stale_s``
    after our last raise). Otherwise the current reading counts, so a rise of the
    background shows at once.
    """
    c = p.c
    gain = s.sensitivity * c.k
    dem = inp.demand
    if p.demand_fresh and dem is not None:
        bg_now = c.quantity - gain * p.demand_kw
        q_then = _quantity_at(st, dem.measured_at)
        bg_then = bg_now if q_then is None else q_then - gain * p.demand_kw
        if st.last_raise_at is not None and st.last_raise_at > dem.measured_at - s.demand_stale_s:
            # our own raise may still be filling in: pair the report with its own reading
            background = bg_then
        else:
            # nothing of ours is moving: the newest reading counts, a rise shows at once
            background = bg_now
        st.bg_estimate = background
        raw = (c.trim - background) / gain
        if c.quantity > c.limit:
            # over the limit now: cut on this period's meter reading. Size the cut from the
            # reported draw; but a report above the limit that was in force when it was
            # measured is either wrong (W sent as kW) or a CPO not complying: then cut from
            # the limit itself, every period. (A report that is merely older than our last
            # cut is neither: cutting from the limit then would wind the limit down to the
            # minimum while the chargepoints are still following the first cut.)
            excess = (c.quantity - c.trim) / gain
            base = p.demand_kw
            then = _value_at(st.limit_history, dem.measured_at)
            if base > (st.law_limit_kw if then is None else then) + s.compliance_tolerance_kw:
                base = st.law_limit_kw
            raw = min(raw, base - excess)
        return raw
    # Demand stale or missing: the EV site may be drawing anything up to its limit.
    # Cut as if the background is at least what we last knew and at least what the
    # measurement implies with the EVs at their limit; release only capacity that is
    # free even if all the measured load were background.
    background = c.quantity - gain * st.law_limit_kw
    if st.bg_estimate is not None and st.bg_estimate > background:
        background = st.bg_estimate
    cut = (c.trim - background) / gain
    release = (c.trim - c.quantity) / gain
    return max(min(st.law_limit_kw, cut), release)


def _remember_quantity(s: CoreSettings, st: State, taken_at: float, quantity: float) -> None:
    """Keep the constraint's recent history (as long as a demand report may be old)."""
    hist = st.history
    if hist and taken_at <= hist[-1][0]:
        return
    hist.append((taken_at, quantity))
    horizon = taken_at - s.demand_stale_s - 1.0
    while len(hist) > 1 and hist[0][0] < horizon:
        hist.pop(0)


def _quantity_at(st: State, t: float) -> "float | None":
    """The constraint as measured at ``t`` (the newest reading not after it), if known."""
    return _value_at(st.history, t)


def _value_at(hist: "list[tuple[float, float]]", t: float) -> "float | None":
    """In a time-ordered ``(time, value)`` history, the newest value not after ``t``."""
    i = len(hist) - 1
    while i >= 0 and hist[i][0] > t + 1e-6:
        i -= 1
    return hist[i][1] if i >= 0 else None


def _remember_limit(s: CoreSettings, st: State, now: float) -> None:
    """Keep the law's limit over the last ``demand_stale_s`` (to judge demand reports)."""
    hist = st.limit_history
    if hist and hist[-1][1] == st.law_limit_kw:
        return
    hist.append((now, st.law_limit_kw))
    horizon = now - s.demand_stale_s - 1.0
    while len(hist) > 1 and hist[1][0] < horizon:
        hist.pop(0)


def step(s: CoreSettings, st: State, inp: "m.Inputs", now: float) -> "tuple[State, m.Actions]":
    """One control period. Updates ``st`` in place and returns it with the actions."""
    actions = m.Actions(st.status)
    p = _Period(actions, now)
    prev = st.last_step
    first = prev is None
    dt = 0.0 if prev is None else max(0.0, now - prev)
    # a condition first seen now may have begun just after the previous period: timers
    # count from there (on the safe side by at most one period)
    since0 = prev if prev is not None else st.started_at
    st.last_step = now
    if first:
        _event(p, "STARTED", m.INFO, "controller started (%s, limit in %s)" % (s.scheme, s.unit))
        if st.tripped:
            actions.breaker = m.TRIP
            st.alarms[A_TRIPPED] = m.CRITICAL
            _event(
                p,
                "TRIP_LATCHED",
                m.CRITICAL,
                "trip latched before restart, still open: " + st.trip_reason,
            )
        else:
            actions.breaker = m.PERMIT_CLOSE

    # --- senses ---------------------------------------------------------------------------
    limit_now: float | None = None
    if s.limit is not None:
        limit_now = s.limit.value_at(inp.time_of_week_s, inp.clock_synced)
        if not s.limit.is_constant():
            _alarm(
                st,
                p,
                A_CLOCK_UNSYNCED,
                not inp.clock_synced,
                m.WARNING,
                "wall clock not synchronised: schedule holds its most restrictive value %s %s"
                % (_fmt(s.limit.most_restrictive), s.unit),
                "wall clock synchronised: schedule follows the time of week",
            )
    meas = inp.measurement
    if (
        limit_now is not None
        and meas is not None
        and meas.valid
        and now - meas.taken_at <= s.meter_timeout_s
        and _measure(s, meas, limit_now, p.c)
    ):
        p.meter_ok = True
        if st.last_meter_ok_at is None or meas.taken_at > st.last_meter_ok_at:
            st.last_meter_ok_at = meas.taken_at
        _remember_quantity(s, st, meas.taken_at, p.c.quantity)
    uses_meter = limit_now is not None
    meter_silent_s = 0.0
    if uses_meter and not p.meter_ok:
        since = st.last_meter_ok_at if st.last_meter_ok_at is not None else st.started_at
        meter_silent_s = now - since
    meter_lost = uses_meter and not p.meter_ok and meter_silent_s >= s.meter_timeout_s
    _alarm(
        st,
        p,
        A_METER_LOST,
        meter_lost,
        m.ALARM,
        "no valid constraint measurement for %d s: fallback limit" % meter_silent_s,
        "constraint measurement restored",
    )

    dem = inp.demand
    p.demand_fresh = (
        dem is not None and _finite(dem.demand_kw) and (now - dem.measured_at <= s.demand_stale_s)
    )
    if p.demand_fresh and dem is not None:
        # the EV site cannot draw more than its supply: a wild report (W sent as kW) must
        # not make the background look small and the headroom huge
        p.demand_kw = min(max(dem.demand_kw, 0.0), s.site_max_kw)
    # the stale-demand alarm waits for the link to have had a chance to report
    _alarm(
        st,
        p,
        A_DEMAND_STALE,
        not p.demand_fresh and now - st.started_at > s.demand_stale_s,
        m.WARNING,
        "CPO-reported EV demand stale or missing: law assumes the worst",
        "CPO-reported EV demand fresh again",
    )

    _commands(s, st, inp, p)

    # --- maintenance expiry ---------------------------------------------------------------
    if st.maintenance_since is not None and now - st.maintenance_since >= s.maintenance_max_s:
        _leave_maintenance(st, p, "after %d s (automatic)" % s.maintenance_max_s)
    in_maintenance = st.maintenance_since is not None
    _alarm(
        st,
        p,
        A_MAINTENANCE,
        in_maintenance,
        m.WARNING,
        "maintenance mode",
        "maintenance mode ended",
    )

    # --- compliance and escalation ----------------------------------------------------------
    c = p.c
    over = False
    trip_over = False
    # a compliance view: the meter, or (CMC without a local meter) the CPO's own report
    view = p.meter_ok or (not uses_meter and p.demand_fresh)
    if p.meter_ok:
        over = c.quantity > c.limit
        trip_over = c.quantity > c.trip_level
    elif view:
        over = p.demand_kw > st.ev_limit_kw + s.compliance_tolerance_kw
        trip_over = p.demand_kw > s.min_limit_kw + s.compliance_tolerance_kw
    if view:
        st.last_trip_over = trip_over
    else:
        # blind (meter invalid or over its range, report stale): judge on the last view,
        # and never let blindness clear an overload or count towards leaving emergency
        trip_over = st.last_trip_over
    if over:
        if st.over_since is None:
            st.over_since = since0
    elif view:
        st.over_since = None
    if uses_meter:
        _alarm(
            st,
            p,
            A_OVER_LIMIT,
            over,
            m.WARNING,
            "constraint %s %s above limit %s %s%s"
            % (
                _fmt(c.quantity),
                s.unit,
                _fmt(c.limit),
                s.unit,
                " on L%d" % c.phase if c.phase else "",
            ),
            "constraint back within its limit",
        )
    _alarm(
        st,
        p,
        A_CPO_UNREACHABLE,
        not inp.cpo_reachable,
        m.ALARM if st.over_since is not None else m.WARNING,
        "CPO back office unreachable",
        "CPO back office reachable again",
    )

    if s.g100.enabled:
        g100_events = st.g100.expire(now)
        if p.meter_ok:
            g100_events += st.g100.update(c.quantity > c.limit, now, since0)
        for code, msg in g100_events:
            sev = (
                m.ALARM
                if code == "G100_LOCKOUT"
                else (m.WARNING if code == "G100_STAGE2" else m.INFO)
            )
            _event(p, code, sev, msg, {"stage2_count_24h": len(st.g100.stage2_times)})
            if code == "G100_LOCKOUT":
                st.alarms[A_G100_LOCKOUT] = m.ALARM
            elif code == "G100_LOCKOUT_END":
                st.alarms.pop(A_G100_LOCKOUT, None)
    locked_out = st.g100.locked_out(now)

    if not st.tripped and not in_maintenance:
        deadline = (
            s.compliance_deadline_s if inp.cpo_reachable else s.compliance_deadline_unreachable_s
        )
        if st.emergency_since is None:
            if st.over_since is not None and now - st.over_since >= deadline:
                st.emergency_since = now
                st.emergency_ok_since = None
                st.alarms[A_EMERGENCY] = m.ALARM
                _event(
                    p,
                    "EMERGENCY",
                    m.ALARM,
                    "over the limit for %d s and the site did not comply: minimum limit"
                    % (now - st.over_since),
                    {"constraint": c.quantity, "limit": c.limit},
                )
        elif now - st.emergency_since >= s.trip_delay_s and trip_over:
            _trip(
                st,
                p,
                "still above the trip level %d s after the emergency limit"
                % (now - st.emergency_since),
                "controller",
            )
        elif not over and view:
            if st.emergency_ok_since is None:
                st.emergency_ok_since = since0
            if now - st.emergency_ok_since >= s.emergency_release_s:
                st.emergency_since = None
                st.alarms.pop(A_EMERGENCY, None)
                _event(
                    p,
                    "EMERGENCY_END",
                    m.INFO,
                    "within the limit for %d s: leaving emergency" % s.emergency_release_s,
                )
        else:
            st.emergency_ok_since = None
        if (
            meter_lost
            and s.meter_trip_timeout_s is not None
            and meter_silent_s >= s.meter_trip_timeout_s
        ):
            _trip(st, p, "no valid constraint measurement for %d s" % meter_silent_s, "controller")
    if st.tripped or in_maintenance:
        st.emergency_since = None
        st.alarms.pop(A_EMERGENCY, None)

    # --- the EV limit ---------------------------------------------------------------------
    central_ok = False
    lease = inp.lease
    if s.scheme == m.CMC:
        newer = lease is not None and lease.sequence > st.central_sequence
        current = lease is not None and lease.sequence == st.central_sequence
        if lease is not None and (newer or (current and not st.central_lapsed)):
            if newer:
                st.central_sequence = lease.sequence
                st.central_lapsed = False
            if inp.central_connected and now < lease.expires_at and _finite(lease.limit_kw):
                central_ok = True
            else:
                # a lapsed lease never comes back: only a newer command restores central control
                st.central_lapsed = True
        why = "central link down" if not inp.central_connected else "no valid central limit lease"
        _alarm(
            st,
            p,
            A_CENTRAL_FALLBACK,
            not central_ok,
            m.WARNING,
            why + ": fallback limit",
            "central limit lease in force",
        )

    reason = m.REASON_NORMAL
    if st.tripped or st.emergency_since is not None:
        _force(s, st, s.min_limit_kw)
        reason = m.REASON_EMERGENCY
    elif uses_meter and not p.meter_ok:
        # starting, or the meter is not answering: hold; once lost, never above the fallback
        _force(s, st, min(st.ev_limit_kw, s.fallback_limit_kw) if meter_lost else st.ev_limit_kw)
        reason = (
            m.REASON_FALLBACK if meter_lost or not st.last_sent_reason else (st.last_sent_reason)
        )
    else:
        if uses_meter:
            _smooth(s, st, _clamp(s, _law_raw(s, st, inp, p)), c, dt, now)
        else:
            st.law_limit_kw = s.site_max_kw
        # caps that hold the law down and make it climb again from them afterwards
        cap = s.site_max_kw
        if locked_out:
            cap = min(cap, s.g100.failsafe_limit_kw)
        if in_maintenance:
            cap = min(cap, s.fallback_limit_kw)
        if cap < st.law_limit_kw:
            _force(s, st, cap)
        if locked_out or in_maintenance:
            reason = m.REASON_FALLBACK
        ev = st.law_limit_kw
        if s.scheme == m.CMC:
            # the central platform owns the dynamics of its limit: applied as it comes
            if central_ok and lease is not None:
                ev = min(ev, lease.limit_kw)
            else:
                ev = min(ev, s.fallback_limit_kw)
                reason = m.REASON_FALLBACK
        st.ev_limit_kw = _clamp(s, ev)
        if reason == m.REASON_NORMAL and st.ev_limit_kw < s.site_max_kw:
            reason = m.REASON_CURTAIL
    ev = st.ev_limit_kw
    _remember_limit(s, st, now)

    # --- the state and its reason ---------------------------------------------------------
    mode, why = _mode(s, st, p, inp, locked_out, meter_lost, central_ok, meter_silent_s)
    if mode != st.mode:
        if mode == m.CURTAILING and st.mode == m.NORMAL:
            _event(p, "CURTAIL_START", m.INFO, why)
        elif mode == m.NORMAL and st.mode == m.CURTAILING:
            _event(p, "CURTAIL_END", m.INFO, "curtailment ended")
        st.mode = mode

    # --- the order to the CPO -------------------------------------------------------------
    if (
        st.last_sent_kw is None
        or st.last_sent_at is None
        or ev != st.last_sent_kw
        or reason != st.last_sent_reason
        or now - st.last_sent_at >= s.refresh_s
    ):
        st.sequence += 1
        if st.sequence > st.sequence_reserved:
            st.sequence_reserved = st.sequence + SEQUENCE_BLOCK
        actions.limit = m.LimitOrder(ev, st.sequence, s.limit_validity_s, reason)
        st.last_sent_kw = ev
        st.last_sent_at = now
        st.last_sent_reason = reason

    status = st.status
    status.state = mode
    status.reason = why
    status.ev_limit_kw = ev
    status.constraint = c.quantity if p.meter_ok else None
    status.limit = limit_now
    status.trim = None if limit_now is None else limit_now - s.margin
    status.phase = c.phase if p.meter_ok else 0
    status.alarms = sorted(st.alarms)

    key = st.persist_key()
    if key != st.last_persist_key or (
        st.timers_running() and now - st.last_persist_at >= PERSIST_TIMERS_EVERY_S
    ):
        st.last_persist_key = key
        st.last_persist_at = now
        actions.persist = st.to_dict(now)
    return st, actions


def _mode(
    s: CoreSettings,
    st: State,
    p: _Period,
    inp: "m.Inputs",
    locked_out: bool,
    meter_lost: bool,
    central_ok: bool,
    meter_silent_s: float,
) -> "tuple[str, str]":
    c = p.c
    u = s.unit
    on_phase = " on L%d" % c.phase if c.phase else ""
    if st.tripped:
        return m.TRIPPED, "tripped: %s; local reset needed once within limits" % st.trip_reason
    if st.maintenance_since is not None:
        return m.MAINTENANCE, "maintenance by %s: automatic trips suspended, fallback %s kW" % (
            st.maintenance_by,
            _fmt(s.fallback_limit_kw),
        )
    if st.emergency_since is not None:
        if p.meter_ok:
            return (
                m.EMERGENCY,
                "emergency: constraint %s %s > limit %s %s%s, EV limit at minimum"
                % (_fmt(c.quantity), u, _fmt(c.limit), u, on_phase),
            )
        return m.EMERGENCY, "emergency: site did not comply, EV limit at minimum"
    if locked_out:
        return LOCKOUT, "G100 lockout: %s; EV limit held at %s kW" % (
            st.g100.lockout_reason,
            _fmt(st.ev_limit_kw),
        )
    if meter_lost:
        return m.FALLBACK, "fallback: no valid constraint measurement for %d s" % meter_silent_s
    if s.scheme == m.CMC and not central_ok:
        return m.FALLBACK, "fallback: %s, EV limit %s kW" % (
            "central link down" if not inp.central_connected else "no valid central lease",
            _fmt(st.ev_limit_kw),
        )
    if s.limit is not None and not p.meter_ok:
        return m.STARTING, "starting: waiting for a valid constraint measurement"
    if st.ev_limit_kw < s.site_max_kw:
        if p.meter_ok and c.quantity > c.trim:
            return m.CURTAILING, "curtailing: constraint %s %s > trim %s %s%s" % (
                _fmt(c.quantity),
                u,
                _fmt(c.trim),
                u,
                on_phase,
            )
        if s.scheme == m.CMC and central_ok:
            return m.CURTAILING, "curtailing: central limit %s kW" % _fmt(st.ev_limit_kw)
        return (
            m.CURTAILING,
            "curtailing: EV limit %s kW holds constraint at %s %s (trim %s %s)%s"
            % (_fmt(st.ev_limit_kw), _fmt(c.quantity), u, _fmt(c.trim), u, on_phase),
        )
    if p.meter_ok:
        return m.NORMAL, "normal: constraint %s %s within trim %s %s%s" % (
            _fmt(c.quantity),
            u,
            _fmt(c.trim),
            u,
            on_phase,
        )
    return m.NORMAL, "normal: EV limit at site maximum %s kW" % _fmt(s.site_max_kw)
