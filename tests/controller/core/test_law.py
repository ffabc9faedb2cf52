"""The setpoint law: headroom, cut at once, hold and ramp, deadband, clamps, refresh,
stale demand, units. Portable: runs under CPython (pytest) and MicroPython."""

from tests.controller.core.helpers import Rig, settings


def approx(a, b, tol=1e-6):
    return abs(a - b) <= tol


def test_starts_at_fallback_then_climbs_after_hold_at_ramp_rate():
    rig = Rig(settings())
    rig.tick(power_kw=30.0, demand_kw=0.0)
    assert rig.orders[0].limit_kw == 20.0  # fallback until the law has watched the site
    assert rig.mode == "curtailing"
    limits = []
    for _ in range(20):
        rig.tick(power_kw=30.0, demand_kw=0.0)
        limits.append(rig.limit)
    # hold 10 s of wanting to raise, then 2 kW per 1 s period
    assert limits[8] == 20.0
    assert limits[9] == 22.0 or limits[10] == 22.0
    rises = [limits[i + 1] - limits[i] for i in range(len(limits) - 1)]
    rises = [r for r in rises if r > 0]
    assert rises and max(rises) <= 2.0 + 1e-9


def test_headroom_is_trim_minus_background():
    s = settings(release_hold_s=0.0, ramp_kw_per_s=1000.0)
    rig = Rig(s)
    # EVs draw 20 kW, constraint 70 kW: background 50, trim 95 -> 45 kW
    for _ in range(3):
        rig.tick(power_kw=70.0, demand_kw=20.0)
    assert approx(rig.limit, 45.0)
    assert rig.orders[-1].reason == "curtail"


def test_cut_at_once_when_background_steps_up():
    s = settings(release_hold_s=0.0, ramp_kw_per_s=1000.0)
    rig = Rig(s)
    rig.follow(5, background_kw=40.0)
    assert approx(rig.limit, 55.0)
    ev = rig.limit
    rig.tick(power_kw=75.0 + ev, demand_kw=ev)  # background jumps to 75
    assert approx(rig.limit, 20.0)
    assert rig.orders[-1].limit_kw == rig.limit


def test_never_above_site_max_nor_below_min():
    s = settings(release_hold_s=0.0, ramp_kw_per_s=1000.0)
    rig = Rig(s)
    rig.follow(5, background_kw=0.0)
    assert rig.limit == 80.0
    assert rig.mode == "normal"
    assert rig.orders[-1].reason == "normal"
    rig.follow(2, background_kw=99.0)
    assert rig.limit == 2.0


def test_deadband_suppresses_small_changes_but_not_a_real_overload():
    s = settings(
        release_hold_s=0.0, ramp_kw_per_s=1000.0, refresh_s=1000.0, limit_validity_s=2000.0
    )
    rig = Rig(s)
    rig.follow(3, background_kw=50.0)
    n = len(rig.orders)
    ev = rig.limit
    rig.tick(power_kw=50.3 + ev, demand_kw=ev)  # raw falls 0.3 kW < deadband, below trim
    assert rig.limit == ev and len(rig.orders) == n
    rig.tick(power_kw=100.2, demand_kw=ev)  # above the hard limit: any cut counts
    assert rig.limit < ev


def test_refresh_resends_the_same_limit_with_a_new_sequence():
    rig = Rig(settings(refresh_s=30.0))
    rig.follow(100, background_kw=90.0)
    same = [o for o in rig.orders if o.limit_kw == rig.limit]
    assert len(same) >= 2
    seqs = [o.sequence for o in rig.orders]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(o.valid_for_s == 300.0 for o in rig.orders)


def test_lmc_sensitivity_scales_the_headroom():
    s = settings(scheme="LMC", sensitivity=0.5, release_hold_s=0.0, ramp_kw_per_s=1000.0)
    rig = Rig(s)
    # EVs 20 kW at sf 0.5 -> 10 kW at the constraint; constraint 80 -> background 70
    for _ in range(3):
        rig.tick(power_kw=80.0, demand_kw=20.0)
    assert approx(rig.limit, (95.0 - 70.0) / 0.5)


def test_stale_demand_never_releases_capacity_that_may_be_used():
    s = settings(release_hold_s=0.0, ramp_kw_per_s=1000.0, demand_stale_s=5.0)
    rig = Rig(s)
    rig.follow(5, background_kw=40.0)
    assert approx(rig.limit, 55.0)
    # the EVs stop drawing, but the CPO stops reporting: constraint shows only 40 kW
    for _ in range(10):
        rig.tick(power_kw=40.0, demand_kw=55.0, demand_age_s=60.0)
    # with fresh demand the law would stay at 55; with none it may release only what is
    # free if all 40 kW were background: 95 - 40 = 55 -> no more than that
    assert rig.limit <= 55.0 + 1e-9
    assert "DEMAND_STALE" in rig.codes()
    # the constraint goes over the trim: whatever the EVs draw (at most their 55 kW limit),
    # the background is now at least 110 - 55: cut to 95 - 55 = 40 at once
    rig.tick(power_kw=110.0, demand_kw=55.0, demand_age_s=60.0)
    assert approx(rig.limit, 40.0)


def test_missing_demand_holds_and_only_raises_to_the_all_background_bound():
    s = settings(release_hold_s=0.0, ramp_kw_per_s=1000.0)
    rig = Rig(s)
    rig.run(5, power_kw=60.0)  # no demand at all: 60 kW might all be background
    assert approx(rig.limit, 35.0)  # 95 - 60


def test_amps_per_phase_compares_the_worst_phase():
    from controller.core import Schedule

    s = settings(
        scheme="LMC",
        unit="A",
        limit=Schedule.constant(400.0),
        margin=10.0,
        sensitivity=1.0,
        release_hold_s=0.0,
        ramp_kw_per_s=1000.0,
        site_max_kw=150.0,
        fallback_limit_kw=150.0,
    )
    rig = Rig(s)
    # 412 A > 400 A: cut at once, in this very period
    rig.tick(currents=(300.0, 412.0, 350.0), voltages=(230.0, 230.0, 230.0), demand_kw=50.0)
    st = rig.state.status
    assert st.phase == 2 and st.constraint == 412.0
    assert "412.0 A > trim 390.0 A on L2" in st.reason
    # 22 A over the trim on a 3-phase EV site at 230 V: 22 * 3 * 230 / 1000 kW less
    assert approx(rig.limit, 50.0 - 22.0 * 3 * 230.0 / 1000.0, 1e-6)


def test_kva_is_derived_from_volts_and_amps_when_the_meter_has_no_apparent_power():
    from controller.core import Schedule

    s = settings(
        unit="kVA", limit=Schedule.constant(100.0), release_hold_s=0.0, ramp_kw_per_s=1000.0
    )
    rig = Rig(s)
    for _ in range(3):
        rig.tick(currents=(100.0, 100.0, 100.0), voltages=(240.0, 240.0, 240.0), demand_kw=30.0)
    assert approx(rig.state.status.constraint, 72.0)
    assert approx(rig.limit, 30.0 + 95.0 - 72.0)


def test_invalid_or_nan_inputs_never_make_a_nan_limit():
    rig = Rig(settings(release_hold_s=0.0))
    rig.tick(power_kw=float("nan"), demand_kw=float("nan"))
    rig.tick(power_kw=50.0, demand_kw=float("inf"))
    rig.tick(power_kw=float("inf"), demand_kw=10.0)
    for o in rig.orders:
        assert o.limit_kw == o.limit_kw and 2.0 <= o.limit_kw <= 80.0


def test_a_cut_within_the_margin_waits_for_confirmation_an_overload_does_not():
    s = settings(release_hold_s=0.0, ramp_kw_per_s=1000.0, cut_confirm_s=5.0)
    rig = Rig(s)
    rig.follow(5, background_kw=30.0)
    assert approx(rig.limit, 65.0)
    # background +10 kW: constraint 105 > limit 100 -> cut in this very period
    rig.tick(power_kw=105.0, demand_kw=65.0)
    assert approx(rig.limit, 55.0)
    rig.follow(5, background_kw=40.0)
    # the EVs draw only 20 kW when the background rises by 10: the constraint (75) stays
    # under its limit, but the limit no longer fits the headroom: cut after 5 s, not at once
    for i in range(6):
        rig.tick(power_kw=70.0, demand_kw=20.0)
        if i < 4:
            assert approx(rig.limit, 55.0)
    assert approx(rig.limit, 45.0)


def test_a_raise_goes_no_higher_than_the_headroom_that_lasted_through_the_hold():
    s = settings(release_hold_s=10.0, ramp_kw_per_s=1000.0)
    rig = Rig(s)
    rig.run(3, power_kw=60.0, demand_kw=20.0)  # headroom 55, but the hold must pass first
    assert rig.limit == 20.0
    rig.run(4, power_kw=65.0, demand_kw=20.0)  # one dip in the window: 50 kW headroom
    rig.run(10, power_kw=60.0, demand_kw=20.0)
    assert approx(rig.limit, 50.0)


def test_no_raise_while_the_constraint_is_above_its_trim():
    s = settings(release_hold_s=0.0, ramp_kw_per_s=1000.0)
    rig = Rig(s)
    # the EVs report 60 kW (more than their 20 kW limit) and the constraint sits at 97 kW,
    # inside the margin: the estimate says 58 kW would fit, but the margin is being used
    rig.run(10, power_kw=97.0, demand_kw=60.0)
    assert rig.limit == 20.0


def test_a_wild_demand_report_cannot_stop_the_cut():
    rig = Rig(settings(release_hold_s=0.0, ramp_kw_per_s=1000.0, fallback_limit_kw=80.0))
    rig.tick(power_kw=60.0, demand_kw=0.0)
    assert rig.limit == 80.0
    rig.tick(power_kw=120.0, demand_kw=60000.0)  # watts sent as kW
    assert rig.limit < 80.0 - 20.0
    assert rig.state.status.state == "curtailing"


def test_negative_or_unknown_phase_currents_are_not_ignored():
    from controller.core import Schedule

    s = settings(unit="A", limit=Schedule.constant(400.0), margin=10.0)
    rig = Rig(s)
    rig.tick(currents=(100.0, -500.0, 90.0), voltages=(230.0, 230.0, 230.0), demand_kw=0.0)
    assert rig.state.status.constraint == 500.0 and rig.state.status.phase == 2
    rig.tick(currents=(100.0, float("nan"), 90.0), voltages=(230.0, 230.0, 230.0), demand_kw=0.0)
    assert rig.state.status.constraint is None  # not a valid measurement


def test_an_overload_cut_does_not_wind_down_while_the_report_lags():
    rig = Rig(settings(release_hold_s=0.0, ramp_kw_per_s=1000.0, fallback_limit_kw=80.0))
    rig.run(3, power_kw=60.0, demand_kw=50.0)
    assert rig.limit == 80.0
    # the background jumps: 110 kW over a 100 kW limit; the CPO's report (50 kW, measured
    # before the cut) lags for a few seconds while the chargepoints follow
    rig.tick(power_kw=110.0, demand_kw=50.0, demand_age_s=0.5)
    cut = rig.limit
    assert approx(cut, 50.0 - 15.0)
    for _ in range(3):
        rig.tick(power_kw=110.0, demand_kw=50.0, demand_age_s=4.0)
    assert approx(rig.limit, cut)  # one cut, sized once: no integration to the minimum
