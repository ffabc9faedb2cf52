"""Benchmark of the desktop study: site-years per second on one core.

Prints figures; asserts nothing. Target: >= 50 site-years/s for a half-hourly year.
Each case runs the core over a synthetic year (section 3 demand, a residential or
commercial feeder) at two headroom ratios, so that the share of quiet intervals the study
may skip (headroom above the EV site's maximum) is shown next to the speed.

    python -m tools.bench_study
"""

import time

from controller import core
from controller.core import model as m
from tools.study import synthetic
from tools.study.profiles import time_of_week
from tools.study.simulate import simulate_site, study_settings


def bench(step_s: float, ratio: float, feeder: str, repeat: int) -> None:
    loading = synthetic.network_loading(400.0, feeder, step_s=step_s, seed=1)
    demand = synthetic.ev_demand(synthetic.DESTINATION, 0.15, 6, 22.0, step_s=step_s, seed=1)
    bg, want, tow = loading.column(), demand.column(), time_of_week(loading)
    site_max = 132.0
    firm = site_max / ratio
    dev = core.CoreSettings(
        scheme=m.LMC,
        limit=core.Schedule.constant(float(bg.max()) + 5.0 + 0.85 * firm),
        margin=5.0,
        sensitivity=0.85,
        site_max_kw=site_max,
        min_limit_kw=6.0,
        fallback_limit_kw=30.0,
    )
    s = study_settings(dev, step_s)
    for skip in (True, False):
        best = float("inf")
        steps = 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            run = simulate_site(s, bg, want, step_s, tow, skip_quiet=skip)
            best = min(best, time.perf_counter() - t0)
            steps = run.core_steps
        label = "skip quiet" if skip else "every step"
        print(
            f"  {step_s / 60:>4.0f}-min year, {feeder:<11} ratio {ratio:g}, {label}:"
            f" {1 / best:7.1f} site-years/s ({best * 1e3:7.1f} ms,"
            f" {steps} core steps of {len(bg)} intervals)"
        )


def main() -> None:
    print("desktop study, one site, LMC (best of several runs):")
    for feeder in (synthetic.RESIDENTIAL, synthetic.COMMERCIAL):
        for ratio in (1.5, 4.0):
            bench(1800.0, ratio, feeder, repeat=5)
    for ratio in (1.5, 4.0):
        bench(60.0, ratio, synthetic.COMMERCIAL, repeat=1)


if __name__ == "__main__":
    main()
