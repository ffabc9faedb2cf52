"""Benchmark of the control core: the cost of one ``step`` and of a simulated day.

Prints figures; asserts nothing (speed targets live here, not in timed unit tests).
Targets: one step well under 100 us on a Pi-class CPU; a simulated day at 1 s periods
(the core plus the site model of hil/site.py) in under 2 s.

    python -m tools.bench_core
"""

import statistics
import time

from controller import core
from controller.core import model as m
from hil.site import SiteModel, daily_profile


def settings_for(scheme: str, unit: str) -> core.CoreSettings:
    return core.CoreSettings(
        scheme=scheme,
        unit=unit,
        limit=core.Schedule.constant(200.0 if unit != m.AMPS else 290.0),
        margin=5.0,
        sensitivity=0.8 if scheme == m.LMC else 1.0,
        site_max_kw=150.0,
        min_limit_kw=6.0,
        fallback_limit_kw=30.0,
        g100=core.G100Settings(enabled=scheme == m.CLM),
    )


def bench_step(scheme: str, unit: str, n: int = 50_000) -> list[float]:
    s = settings_for(scheme, unit)
    state = core.State(s, 0.0)
    inputs = []
    for i in range(n):
        t = float(i + 1)
        amps = 250.0 + (i % 100)
        meas = core.Measurement(150.0 + (i % 50), t, (amps, amps - 3, amps - 6), (230.0,) * 3)
        lease = core.Lease(80.0, t + 30.0, i // 10) if scheme == m.CMC else None
        inputs.append((t, core.Inputs(meas, core.Demand(60.0, t - 2.0), lease=lease)))
    runs = []
    for _ in range(5):
        state = core.State(s, 0.0)
        start = time.perf_counter()
        for t, inp in inputs:
            state, _ = core.step(s, state, inp, t)
        runs.append((time.perf_counter() - start) / n * 1e6)
    return runs


def bench_day() -> list[float]:
    runs = []
    for seed in range(3):
        model = SiteModel(
            settings_for(m.LMC, m.KW),
            daily_profile(60.0, 180.0),
            lambda t: 120.0,
            noise=0.01,
            seed=seed,
        )
        start = time.perf_counter()
        model.run(86400.0)
        runs.append(time.perf_counter() - start)
    return runs


def main() -> None:
    print("controller/core step cost (median of 5 runs of 50 000 steps):")
    for scheme, unit in ((m.CLM, m.KW), (m.LMC, m.AMPS), (m.LMC, m.KVA), (m.CMC, m.KW)):
        us = statistics.median(bench_step(scheme, unit))
        print(f"  {scheme} in {unit:<3}  {us:6.2f} us/step")
    day = bench_day()
    print(
        f"simulated day at 1 s periods (core + site model): median {statistics.median(day):.2f} s,"
        f" best {min(day):.2f} s (target < 2 s)"
    )


if __name__ == "__main__":
    main()
