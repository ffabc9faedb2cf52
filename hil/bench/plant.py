"""The site the bench's meter measures: background + sensitivity x EV power.

The EV power is what the CPO simulator's site draws now, and zero while the breaker is
open (the bench reads the breaker from the daemon's status; with the daemon process gone,
a hold-to-close breaker is open). The background is a constant or a daily profile played
at ``day_s`` real seconds per day, plus any load step from the timeline. Pure apart from the
injected clock; no I/O.
"""

import math
import random
import time
from collections.abc import Callable, Mapping

from hal.sim.meter import balanced_values
from hil.bench.scenario import Scenario
from hil.cpo_sim.model import SimSite


class Plant:
    def __init__(
        self,
        scenario: Scenario,
        ev_site: SimSite,
        breaker_closed: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scenario = scenario
        self.site = scenario.site
        self.ev_site = ev_site
        self.breaker_closed = breaker_closed
        self.clock = clock
        self.t0 = clock()
        self.step_kw = 0.0
        self.noise = scenario.site.noise
        self.sensitivity = scenario.sensitivity
        self._rng = random.Random(scenario.site.seed)

    def elapsed(self) -> float:
        return max(0.0, self.clock() - self.t0)

    def background_kw(self, t: float) -> float:
        s = self.site
        base = s.background_kw
        if s.daily_peak_kw is not None:
            hour = (s.start_hour + t / s.day_s * 24.0) % 24.0
            x = math.cos((hour - s.peak_hour) / 24.0 * 2 * math.pi)
            base += (s.daily_peak_kw - s.background_kw) * max(0.0, x) ** 2
        return base + self.step_kw

    def ev_kw(self) -> float:
        """What the EVs draw now through the breaker."""
        power = self.ev_site.power_kw(self.clock())
        return power if self.breaker_closed() else 0.0

    def ev_wanted_kw(self) -> float:
        """What the EVs would draw with no limit (for the unmet energy)."""
        self.ev_site.step(self.clock())
        return sum(p.wants_kw() for p in self.ev_site.points)

    def true_kw(self) -> float:
        return self.background_kw(self.elapsed()) + self.sensitivity * self.ev_kw()

    def in_unit(self, kw: float) -> float:
        """kW at the constraint in the scheme's unit (balanced three-phase, unity pf)."""
        if self.scenario.unit == "A":
            return kw * 1000.0 / (3 * self.site.voltage_v)
        return kw

    def meter_values(self, _elapsed: float) -> Mapping[str, float]:
        """The SimMeter's source: the true power with the meter's noise."""
        kw = self.true_kw()
        if self.noise:
            kw *= 1.0 + self._rng.uniform(-self.noise, self.noise)
        return balanced_values(kw, voltage_v=self.site.voltage_v)
