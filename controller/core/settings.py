"""The core's plain settings: numbers only, already validated by ``controller.config``.

No pydantic here (MicroPython): the shell builds these from the TOML config once at
start-up. Every limit is a weekly schedule; a fixed limit is a schedule of one entry.
Units are in the names; constraint quantities (limit, margin) are in ``unit``.
"""

from controller.core.model import AMPS, CLM, KVA, KW

WEEK_S = 7 * 24 * 3600


class Schedule:
    """A weekly step schedule: ``entries`` are ``(start_s_of_week, value)`` pairs; each value
    holds from its start until the next entry's start, wrapping around the week. While the
    wall clock is not known to be synchronised the most restrictive (smallest) value
    applies, because a Pi without RTC may boot believing it is any time at all."""

    __slots__ = ("_starts", "_values", "most_restrictive")

    def __init__(self, entries: "list[tuple[float, float]]") -> None:
        if not entries:
            raise ValueError("a schedule needs at least one entry")
        ordered = sorted(entries)
        for start, _value in ordered:
            if start < 0 or start >= WEEK_S:
                raise ValueError("schedule start %r s is outside the week" % start)
        self._starts = [float(s) for s, _v in ordered]
        self._values = [float(v) for _s, v in ordered]
        self.most_restrictive = min(self._values)

    @classmethod
    def constant(cls, value: float) -> "Schedule":
        return cls([(0.0, value)])

    def value_at(self, time_of_week_s: float, clock_synced: bool = True) -> float:
        if not clock_synced:
            return self.most_restrictive
        t = time_of_week_s % WEEK_S
        starts = self._starts
        # entries are few (a handful per day): a linear scan from the end is fastest
        i = len(starts) - 1
        while i >= 0 and starts[i] > t:
            i -= 1
        return self._values[i]  # i == -1 wraps to the last entry of the previous week

    def is_constant(self) -> bool:
        return len(self._values) == 1


class G100Settings:
    """Excursion supervision in the style of ENA EREC G100 Issue 2 (CLM/TCC export/import
    limitation schemes). Defaults are the values commonly implemented."""

    __slots__ = (
        "day_max_stage2",
        "day_window_s",
        "enabled",
        "failsafe_limit_kw",
        "lockout_s",
        "single_excursion_lockout_s",
        "stage2_s",
        "window_max_stage2",
        "window_s",
    )

    def __init__(
        self,
        enabled: bool = False,
        stage2_s: float = 15.0,
        single_excursion_lockout_s: float = 60.0,
        window_s: float = 600.0,
        window_max_stage2: int = 2,
        day_window_s: float = 86400.0,
        day_max_stage2: int = 3,
        lockout_s: float = 4 * 3600.0,
        failsafe_limit_kw: float = 0.0,
    ) -> None:
        self.enabled = enabled
        self.stage2_s = stage2_s
        self.single_excursion_lockout_s = single_excursion_lockout_s
        self.window_s = window_s
        self.window_max_stage2 = window_max_stage2  # lockout when this many in window_s
        self.day_window_s = day_window_s
        self.day_max_stage2 = day_max_stage2  # lockout when MORE than this many in a day
        self.lockout_s = lockout_s
        self.failsafe_limit_kw = failsafe_limit_kw


class CoreSettings:
    """All the numbers the control law and the escalation need.

    Constraint side (in ``unit``): ``limit`` (a Schedule; None in CMC without a local
    backstop), ``margin`` (trim = limit - margin is what the law aims for), ``trip_ratio``
    (trip level = limit x ratio). EV side in kW: ``min_limit_kw``..``site_max_kw``.
    """

    __slots__ = (
        "compliance_deadline_s",
        "compliance_deadline_unreachable_s",
        "compliance_tolerance_kw",
        "cut_confirm_s",
        "deadband_kw",
        "demand_stale_s",
        "emergency_release_s",
        "ev_phases",
        "ev_power_factor",
        "fallback_limit_kw",
        "g100",
        "limit",
        "limit_validity_s",
        "maintenance_max_s",
        "margin",
        "meter_timeout_s",
        "meter_trip_timeout_s",
        "min_limit_kw",
        "nominal_voltage_v",
        "ramp_kw_per_s",
        "refresh_s",
        "release_hold_s",
        "scheme",
        "sensitivity",
        "site_max_kw",
        "trip_delay_s",
        "trip_ratio",
        "unit",
    )

    def __init__(
        self,
        scheme: str = CLM,
        unit: str = KW,
        limit: "Schedule | None" = None,
        margin: float = 0.0,
        trip_ratio: float = 1.0,
        sensitivity: float = 1.0,
        site_max_kw: float = 100.0,
        min_limit_kw: float = 0.0,
        fallback_limit_kw: float = 0.0,
        ramp_kw_per_s: float = 1.0,
        release_hold_s: float = 60.0,
        deadband_kw: float = 0.5,
        cut_confirm_s: float = 5.0,
        limit_validity_s: float = 300.0,
        refresh_s: float = 60.0,
        demand_stale_s: float = 30.0,
        compliance_deadline_s: float = 60.0,
        compliance_deadline_unreachable_s: float = 20.0,
        compliance_tolerance_kw: float = 1.0,
        trip_delay_s: float = 30.0,
        emergency_release_s: float = 60.0,
        meter_timeout_s: float = 10.0,
        meter_trip_timeout_s: "float | None" = 300.0,
        maintenance_max_s: float = 4 * 3600.0,
        ev_phases: int = 3,
        nominal_voltage_v: float = 230.0,
        ev_power_factor: float = 1.0,
        g100: "G100Settings | None" = None,
    ) -> None:
        self.scheme = scheme
        self.unit = unit
        self.limit = limit
        self.margin = margin
        self.trip_ratio = trip_ratio
        self.sensitivity = sensitivity
        self.site_max_kw = site_max_kw
        self.min_limit_kw = min_limit_kw
        self.fallback_limit_kw = fallback_limit_kw
        self.ramp_kw_per_s = ramp_kw_per_s
        self.release_hold_s = release_hold_s
        self.deadband_kw = deadband_kw
        self.cut_confirm_s = cut_confirm_s
        self.limit_validity_s = limit_validity_s
        self.refresh_s = refresh_s
        self.demand_stale_s = demand_stale_s
        self.compliance_deadline_s = compliance_deadline_s
        self.compliance_deadline_unreachable_s = compliance_deadline_unreachable_s
        self.compliance_tolerance_kw = compliance_tolerance_kw
        self.trip_delay_s = trip_delay_s
        self.emergency_release_s = emergency_release_s
        self.meter_timeout_s = meter_timeout_s
        self.meter_trip_timeout_s = meter_trip_timeout_s
        self.maintenance_max_s = maintenance_max_s
        self.ev_phases = ev_phases
        self.nominal_voltage_v = nominal_voltage_v
        self.ev_power_factor = ev_power_factor
        self.g100 = g100 if g100 is not None else G100Settings()
        self.check()

    def check(self) -> None:
        """Reject settings the law cannot work with (config.py gives friendlier messages;
        this guards hand-built settings in tools and tests)."""
        if self.unit not in (KW, KVA, AMPS):
            raise ValueError("unknown limit unit %r" % self.unit)
        if self.limit is None and self.scheme != "CMC":
            raise ValueError("scheme %s needs a limit" % self.scheme)
        if not self.sensitivity > 0:
            raise ValueError("sensitivity must be > 0")
        if not 0 <= self.min_limit_kw <= self.site_max_kw:
            raise ValueError("need 0 <= min_limit_kw <= site_max_kw")
        if not self.min_limit_kw <= self.fallback_limit_kw <= self.site_max_kw:
            raise ValueError("need min_limit_kw <= fallback_limit_kw <= site_max_kw")
        if self.refresh_s >= self.limit_validity_s:
            raise ValueError("refresh_s must be shorter than limit_validity_s")
        if self.trip_ratio < 1.0:
            raise ValueError("trip_ratio must be >= 1")
        if self.ev_phases not in (1, 3):
            raise ValueError("ev_phases must be 1 or 3")
