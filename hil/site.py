"""A minimal closed-loop site model that drives ``controller.core`` at simulated time.

The site: a background load at the constraint (any function of time), an EV site whose
chargepoints want some power and obey the limit the controller sends after a response
delay, a constraint meter with optional noise, and a CPO that reports the EV draw with a
delay. No I/O and no clocks: a simulated day at 1 s periods runs in about a second, so
property tests, the desktop study and benchmarks can run many of them.

Run it: ``python -m hil.site`` prints a day's summary for an example LMC site.
"""

import math
import random
from collections import deque
from collections.abc import Callable

from controller.core import CoreSettings, Demand, Inputs, Measurement, Schedule, State, step
from controller.core.model import AMPS, KVA

LoadFn = Callable[[float], float]


class Trace:
    """Column-wise record of a run, one entry per control period."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.constraint: list[float] = []
        self.limit: list[float] = []
        self.ev_limit_kw: list[float] = []
        self.ev_draw_kw: list[float] = []
        self.ev_wanted_kw: list[float] = []
        self.mode: list[str] = []
        self.event_codes: list[str] = []
        self.breaker: list[str] = []

    def longest_over_s(self, period_s: float) -> float:
        """Longest continuous run of periods with the constraint above its limit."""
        best = run = 0
        for c, lim in zip(self.constraint, self.limit, strict=True):
            run = run + 1 if c > lim else 0
            best = max(best, run)
        return best * period_s

    def reversals(self) -> int:
        """How often the EV limit changed direction (up then down or down then up)."""
        count, last_dir = 0, 0
        prev = self.ev_limit_kw[0] if self.ev_limit_kw else 0.0
        for v in self.ev_limit_kw[1:]:
            d = (v > prev) - (v < prev)
            if d and last_dir and d != last_dir:
                count += 1
            if d:
                last_dir = d
            prev = v
        return count

    def unmet_energy_pct(self) -> float:
        wanted = sum(self.ev_wanted_kw)
        return 0.0 if wanted <= 0 else 100.0 * (wanted - sum(self.ev_draw_kw)) / wanted


class SiteModel:
    """Background + obedient EVs + meter + CPO, around one controller core.

    ``response_s``: how long after a limit is sent the EVs follow it (CPO + chargepoints).
    ``report_delay_s``: age of the EV draw the CPO reports. ``noise``: relative uniform
    noise on the metered constraint (0.02 = +/-2 %). ``ev_wanted``: what the EVs would draw
    unconstrained (kW, function of time). ``compliant=False`` makes the CPO ignore limits.
    """

    def __init__(
        self,
        settings: CoreSettings,
        background: LoadFn,
        ev_wanted: LoadFn,
        response_s: float = 5.0,
        report_delay_s: float = 2.0,
        noise: float = 0.0,
        seed: int = 0,
        compliant: bool = True,
        t0: float = 0.0,
    ) -> None:
        self.settings = settings
        self.background = background
        self.ev_wanted = ev_wanted
        self.response_s = response_s
        self.report_delay_s = report_delay_s
        self.noise = noise
        self.rng = random.Random(seed)
        self.compliant = compliant
        self.t = t0
        self.state = State(settings, t0)
        self._sent: deque[tuple[float, float]] = deque([(t0, settings.fallback_limit_kw)])
        self._draws: deque[tuple[float, float]] = deque()
        self.breaker_open = False

    def _limit_at_evs(self, t: float) -> float:
        """The limit the EVs obey at ``t``: the newest one sent at least response_s ago."""
        sent = self._sent
        while len(sent) > 1 and sent[1][0] <= t - self.response_s:
            sent.popleft()
        return sent[0][1]

    def _reported(self, t: float) -> "tuple[float, float] | None":
        draws = self._draws
        while len(draws) > 1 and draws[1][0] <= t - self.report_delay_s:
            draws.popleft()
        return draws[0] if draws and draws[0][0] <= t - self.report_delay_s + 1e-9 else None

    def _measure(self, t: float, kw: float) -> Measurement:
        if self.noise:
            kw *= 1.0 + self.rng.uniform(-self.noise, self.noise)
        unit = self.settings.unit
        if unit in (AMPS, KVA):
            volts = self.settings.nominal_voltage_v
            amps = kw * 1000.0 / (3 * volts)
            return Measurement(kw, t, (amps, amps, amps), (volts, volts, volts))
        return Measurement(kw, t)

    def run(self, duration_s: float, period_s: float = 1.0, trace: Trace | None = None) -> Trace:
        tr = trace if trace is not None else Trace()
        s = self.settings
        sf = s.sensitivity
        end = self.t + duration_s
        while self.t < end - 1e-9:
            t = self.t = self.t + period_s
            wanted = 0.0 if self.breaker_open else max(0.0, self.ev_wanted(t))
            draw = wanted if not self.compliant else min(wanted, self._limit_at_evs(t))
            self._draws.append((t, draw))
            true_kw = self.background(t) + sf * draw
            meas = self._measure(t, true_kw)
            rep = self._reported(t)
            demand = Demand(rep[1], rep[0]) if rep is not None else None
            self.state, actions = step(s, self.state, Inputs(meas, demand), t)
            if actions.limit is not None:
                self._sent.append((t, actions.limit.limit_kw))
            if actions.breaker is not None:
                self.breaker_open = actions.breaker == "trip"
                tr.breaker.append(actions.breaker)
            for ev in actions.events:
                tr.event_codes.append(ev.code)
            st = self.state.status
            tr.t.append(t)
            tr.constraint.append(_in_unit(s, true_kw))
            tr.limit.append(st.limit if st.limit is not None else float("inf"))
            tr.ev_limit_kw.append(self.state.ev_limit_kw)
            tr.ev_draw_kw.append(draw)
            tr.ev_wanted_kw.append(wanted)
            tr.mode.append(st.state)
        return tr


def _in_unit(s: CoreSettings, kw: float) -> float:
    if s.unit == AMPS:
        return kw * 1000.0 / (3 * s.nominal_voltage_v)
    return kw


def daily_profile(base_kw: float, peak_kw: float, peak_hour: float = 18.0) -> LoadFn:
    """A smooth daily load: base overnight rising to a peak at ``peak_hour``."""

    def load(t: float) -> float:
        h = (t / 3600.0) % 24.0
        x = math.cos((h - peak_hour) / 24.0 * 2 * math.pi)
        return base_kw + (peak_kw - base_kw) * max(0.0, x) ** 2

    return load


def main() -> None:
    s = CoreSettings(
        scheme="LMC",
        unit="kW",
        limit=Schedule.constant(200.0),
        margin=5.0,
        sensitivity=0.8,
        site_max_kw=150.0,
        min_limit_kw=6.0,
        fallback_limit_kw=30.0,
    )
    model = SiteModel(s, daily_profile(60.0, 180.0), lambda t: 120.0, noise=0.01, seed=1)
    tr = model.run(86400.0)
    print(f"LMC example day: unmet EV energy {tr.unmet_energy_pct():.1f} %,")
    print(f"  longest over the limit {tr.longest_over_s(1.0):.0f} s,")
    print(f"  EV limit reversals {tr.reversals()}, breaker {tr.breaker}")


if __name__ == "__main__":
    main()
