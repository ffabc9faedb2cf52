"""The study's core loop: hand-computable cases give exact unmet energy."""

import math

import numpy as np
import pytest

from controller import core
from controller.config import load_config
from controller.core import model as m
from tools.study import synthetic
from tools.study.metrics import SiteSummary
from tools.study.simulate import simulate_site, study_settings

HALF_HOUR = 1800.0


def _device(scheme=m.CLM, limit=100.0, **kw):
    kw.setdefault("site_max_kw", 50.0)
    kw.setdefault("min_limit_kw", 0.0)
    kw.setdefault("fallback_limit_kw", 10.0)
    lim = limit if isinstance(limit, core.Schedule) else core.Schedule.constant(limit)
    return core.CoreSettings(scheme=scheme, limit=lim, **kw)


def _run(device, bg, wanted, step_s=HALF_HOUR, skip=True):
    n = len(bg)
    tow = (np.arange(n) * step_s) % core.WEEK_S
    s = study_settings(device, step_s)
    return simulate_site(
        s, np.asarray(bg, float), np.asarray(wanted, float), step_s, tow, skip_quiet=skip
    )


def test_constant_load_gives_exact_unmet_energy():
    # CLM 100 kW, other load 80 kW: the EVs get 20 kW of the 50 kW they want, all day
    run = _run(_device(), [80.0] * 48, [50.0] * 48)
    summ = SiteSummary(run, 50.0)
    assert run.draw_kw.tolist() == [20.0] * 48
    assert summ.unmet_pct == pytest.approx(60.0)
    assert summ.unmet_mwh == pytest.approx(30 * 24 / 1000)
    assert len(summ.events) == 1 and summ.events[0].hours == pytest.approx(24.0)
    assert summ.pre_utilisation_pct == pytest.approx(100.0)
    assert summ.post_utilisation_pct == pytest.approx(40.0)


def test_single_overload_window_lmc_exact():
    # LMC sf 0.5, threshold 100 kW: headroom (100-60)/0.5 = 80 kW except 4 half hours at
    # 95 kW where it is (100-95)/0.5 = 10 kW: 4 x (30-10) kW x 0.5 h = 40 kWh unmet
    bg = [60.0] * 48
    bg[20:24] = [95.0] * 4
    run = _run(_device(m.LMC, sensitivity=0.5), bg, [30.0] * 48)
    summ = SiteSummary(run, 50.0)
    assert summ.unmet_mwh * 1000 == pytest.approx(40.0)
    assert summ.unmet_pct == pytest.approx(100 * 40.0 / (48 * 30 * 0.5))
    assert [(e.first, e.last) for e in summ.events] == [(20, 23)]
    assert summ.events[0].hours == pytest.approx(2.0)
    assert run.ev_limit_kw[20:24].tolist() == [10.0] * 4
    assert run.ev_limit_kw[24] == 50.0  # released at once when the window ends
    assert summ.over_limit_hours == 0.0


def test_margin_and_minimum_limit_clamp():
    # trim = 100 - 5; background above the limit: headroom negative -> the minimum 6 kW
    bg = [70.0] * 10 + [120.0] * 2 + [70.0] * 10
    run = _run(_device(margin=5.0, min_limit_kw=6.0, fallback_limit_kw=6.0), bg, [40.0] * 22)
    assert run.ev_limit_kw[:10].tolist() == [25.0] * 10
    assert run.ev_limit_kw[10:12].tolist() == [6.0, 6.0]
    assert run.ev_limit_kw[12:].tolist() == [25.0] * 10
    summ = SiteSummary(run, 50.0)
    assert summ.over_limit_hours == pytest.approx(1.0)  # the scheme cannot fix those


def test_data_gap_falls_back_like_a_silent_meter():
    bg = [50.0] * 10 + [math.nan] * 3 + [50.0] * 10
    run = _run(_device(fallback_limit_kw=10.0), bg, [45.0] * 23)
    assert run.ev_limit_kw[10:13].tolist() == [10.0] * 3
    assert run.fallback[10:13].all() and not run.fallback[:10].any()
    assert run.ev_limit_kw[13:].tolist() == [50.0] * 10  # climbs back when data returns
    assert SiteSummary(run, 50.0).unmet_mwh * 1000 == pytest.approx(3 * 35 * 0.5)


def test_amps_limit_matches_its_kw_equivalent():
    # 400 A per phase at 230 V, balanced: 400 x 3 x 230 / 1000 = 276 kW
    rng = np.random.default_rng(3)
    bg = 150 + 120 * rng.random(480)
    want = 120 * rng.random(480)
    amps = _run(_device(m.LMC, 400.0, unit=m.AMPS, sensitivity=0.8, site_max_kw=120.0), bg, want)
    kw = _run(_device(m.LMC, 276.0, sensitivity=0.8, site_max_kw=120.0), bg, want)
    np.testing.assert_allclose(amps.draw_kw, kw.draw_kw, atol=1e-9)
    assert SiteSummary(amps).unmet_pct > 1.0  # the case does curtail


def test_tcc_schedule_follows_time_of_week():
    # 100 kW from midnight, 50 kW from noon, every day; no other load; EVs want 100 kW
    sched = core.Schedule(
        [(d * 86400.0 + h * 3600.0, v) for d in range(7) for h, v in ((0, 100.0), (12, 50.0))]
    )
    run = _run(_device(m.TCC, sched, site_max_kw=100.0), [0.0] * 96, [100.0] * 96)
    assert run.ev_limit_kw[:24].tolist() == [100.0] * 24
    assert run.ev_limit_kw[24:48].tolist() == [50.0] * 24
    assert SiteSummary(run).unmet_pct == pytest.approx(25.0)


def test_raises_on_consecutive_intervals_are_not_delayed():
    # falling background: the headroom grows every interval and the limit follows it
    bg = [95.0, 90.0, 85.0, 80.0, 75.0]
    run = _run(_device(), bg, [50.0] * 5)
    assert run.ev_limit_kw.tolist() == [5.0, 10.0, 15.0, 20.0, 25.0]


def test_skipping_quiet_intervals_changes_nothing():
    # CLM with G100 on, data gaps, overloads and quiet nights: skip vs no skip, bit equal
    load = synthetic.network_loading(120.0, synthetic.RESIDENTIAL, days=28, seed=4).column()
    load[500:503] = math.nan
    load[900] = 140.0
    want = synthetic.ev_demand(synthetic.DESTINATION, 0.2, 4, 22.0, days=28, seed=2).column()
    dev = _device(
        m.CLM,
        160.0,
        margin=3.0,
        site_max_kw=88.0,
        min_limit_kw=6.0,
        fallback_limit_kw=20.0,
        g100=core.G100Settings(enabled=True),
    )
    fast = _run(dev, load, want)
    slow = _run(dev, load, want, skip=False)
    assert fast.core_steps < slow.core_steps
    np.testing.assert_array_equal(fast.ev_limit_kw, slow.ev_limit_kw)
    np.testing.assert_array_equal(fast.fallback, slow.fallback)
    assert SiteSummary(fast).unmet_pct > 0


def test_device_config_maps_to_study_settings():
    dev = load_config("config/lmc.toml").core_settings()
    s = study_settings(dev, HALF_HOUR)
    for kept in (
        "scheme",
        "unit",
        "margin",
        "sensitivity",
        "site_max_kw",
        "min_limit_kw",
        "fallback_limit_kw",
        "deadband_kw",
        "nominal_voltage_v",
        "ev_phases",
    ):
        assert getattr(s, kept) == getattr(dev, kept), kept
    assert s.limit is dev.limit
    assert s.release_hold_s == 0.0 and s.cut_confirm_s == 0.0
    assert s.ramp_kw_per_s * 1.0 >= dev.site_max_kw  # a full climb within one settle period
    assert s.meter_trip_timeout_s is None and math.isinf(s.trip_delay_s)
    assert math.isinf(s.compliance_deadline_s)
