"""A small rig that drives the core one period at a time (portable: runs under MicroPython).

Tests say what the site looks like each period (constraint power or currents, reported EV
demand, link state, commands) and read back the actions and the state.
"""

from controller.core import (
    Command,
    CoreSettings,
    Demand,
    G100Settings,
    Inputs,
    Lease,
    Measurement,
    Schedule,
    State,
    step,
)


def settings(**overrides):
    """A CLM site in kW: 100 kW agreed capacity, 5 kW margin, EV site 0..80 kW."""
    values: dict = {  # type: ignore[type-arg]
        "scheme": "CLM",
        "unit": "kW",
        "limit": Schedule.constant(100.0),
        "margin": 5.0,
        "trip_ratio": 1.1,
        "sensitivity": 1.0,
        "site_max_kw": 80.0,
        "min_limit_kw": 2.0,
        "fallback_limit_kw": 20.0,
        "ramp_kw_per_s": 2.0,
        "release_hold_s": 10.0,
        "deadband_kw": 0.5,
        "limit_validity_s": 300.0,
        "refresh_s": 60.0,
        "demand_stale_s": 30.0,
        "compliance_deadline_s": 60.0,
        "compliance_deadline_unreachable_s": 20.0,
        "trip_delay_s": 30.0,
        "emergency_release_s": 60.0,
        "meter_timeout_s": 10.0,
        "meter_trip_timeout_s": 120.0,
        "maintenance_max_s": 3600.0,
    }
    g100 = overrides.pop("g100", None)
    values.update(overrides)
    if g100 is not None:
        values["g100"] = G100Settings(**g100)
    return CoreSettings(**values)


class Rig:
    def __init__(self, s, t0=0.0, state=None):
        self.s = s
        self.t = t0
        self.state = state if state is not None else State(s, t0)
        self.events = []
        self.orders = []
        self.breaker = []
        self.results = []
        self.persisted: dict = {}  # type: ignore[type-arg]  # the last persist action
        self.actions = None

    def tick(
        self,
        power_kw=None,
        demand_kw=None,
        currents=None,
        voltages=None,
        dt=1.0,
        cpo_reachable=True,
        commands=None,
        lease=None,
        central_connected=True,
        valid=True,
        demand_age_s=0.0,
        tow=0.0,
        clock_synced=True,
        apparent_kva=None,
    ):
        """Advance by ``dt`` and run one period. ``power_kw`` None = no new measurement."""
        self.t += dt
        meas = None
        if power_kw is not None or currents is not None:
            meas = Measurement(
                power_kw if power_kw is not None else 0.0,
                self.t,
                currents,
                voltages,
                apparent_kva,
                valid,
            )
        demand = None if demand_kw is None else Demand(demand_kw, self.t - demand_age_s)
        inp = Inputs(
            measurement=meas,
            demand=demand,
            cpo_reachable=cpo_reachable,
            lease=lease,
            central_connected=central_connected,
            time_of_week_s=tow,
            clock_synced=clock_synced,
            commands=commands,
        )
        self.state, a = step(self.s, self.state, inp, self.t)
        self.actions = a
        self.events.extend(a.events)
        if a.limit is not None:
            self.orders.append(a.limit)
        if a.breaker is not None:
            self.breaker.append(a.breaker)
        self.results.extend(a.command_results)
        if a.persist is not None:
            self.persisted = a.persist
        return a

    def run(self, seconds, **kw):
        for _ in range(int(seconds)):
            self.tick(**kw)

    def follow(self, seconds, background_kw, sf=1.0, **kw):
        """A compliant site: the EVs draw exactly their limit, the constraint sees
        background + sf x EV, and the CPO reports the EV draw."""
        for _ in range(int(seconds)):
            ev = self.state.ev_limit_kw
            self.tick(power_kw=background_kw + sf * ev, demand_kw=ev, **kw)

    def codes(self):
        return [e.code for e in self.events]

    @property
    def limit(self):
        return self.state.ev_limit_kw

    @property
    def mode(self):
        return self.state.mode


def cmd(kind, source="alice", command_id=""):
    return [Command(kind, source, command_id)]


def lease(limit_kw, expires_at, sequence):
    return Lease(limit_kw, expires_at, sequence)
