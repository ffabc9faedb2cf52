"""Scheme-specific behaviour: TCC schedules (and the unsynchronised clock), CMC leases
and their fallback. Portable: runs under CPython (pytest) and MicroPython."""

from controller.core import Schedule
from tests.controller.core.helpers import Rig, lease, settings

MON_0700 = 7 * 3600.0
MON_1900 = 19 * 3600.0


def tcc(**kw):
    sched = Schedule([(MON_0700, 60.0), (MON_1900, 120.0)])
    return settings(scheme="TCC", limit=sched, release_hold_s=0.0, ramp_kw_per_s=1000.0, **kw)


def test_schedule_value_wraps_around_the_week():
    s = Schedule([(MON_0700, 60.0), (MON_1900, 120.0)])
    assert s.value_at(0.0) == 120.0  # Monday 00:00 is still Sunday evening's value
    assert s.value_at(MON_0700) == 60.0
    assert s.value_at(MON_1900 - 1) == 60.0
    assert s.value_at(6 * 86400.0 + 3600.0) == 120.0
    assert s.value_at(MON_0700 + 7 * 86400.0) == 60.0
    assert s.value_at(MON_1900, clock_synced=False) == 60.0


def test_tcc_limit_follows_the_schedule_and_cuts_at_the_boundary():
    rig = Rig(tcc())
    for i in range(5):
        rig.tick(power_kw=20.0, demand_kw=0.0, tow=MON_0700 - 10 + i)
    assert rig.state.status.limit == 120.0 and rig.limit == 80.0
    rig.tick(power_kw=20.0 + rig.limit, demand_kw=rig.limit, tow=MON_0700)
    assert rig.state.status.limit == 60.0
    assert rig.limit == 55.0 - 20.0  # cut at once at the boundary: trim 55, background 20


def test_tcc_unsynchronised_clock_applies_the_most_restrictive_value():
    rig = Rig(tcc())
    for _ in range(3):
        rig.tick(power_kw=20.0, demand_kw=0.0, tow=MON_1900 + 60, clock_synced=False)
    assert rig.state.status.limit == 60.0
    assert "CLOCK_UNSYNCED" in rig.state.alarms
    rig.tick(power_kw=20.0, demand_kw=0.0, tow=MON_1900 + 60, clock_synced=True)
    assert rig.state.status.limit == 120.0
    assert "CLOCK_UNSYNCED_CLEARED" in rig.codes()


def cmc(**kw):
    return settings(scheme="CMC", limit=None, **kw)


def test_cmc_applies_the_central_limit_and_falls_back_when_the_lease_lapses():
    rig = Rig(cmc())
    rig.tick(demand_kw=0.0)
    assert rig.limit == 20.0 and rig.mode == "fallback"  # no lease yet
    rig.tick(demand_kw=0.0, lease=lease(55.0, rig.t + 30.0, 7))
    assert rig.limit == 55.0 and rig.mode == "curtailing"
    assert rig.orders[-1].limit_kw == 55.0
    rig.run(29, demand_kw=50.0, lease=lease(55.0, 32.0, 7))
    assert rig.limit == 55.0
    rig.tick(demand_kw=50.0, lease=lease(55.0, 32.0, 7))  # expired now
    assert rig.limit == 20.0 and rig.orders[-1].reason == "fallback"
    assert "CENTRAL_FALLBACK" in rig.state.alarms


def test_cmc_link_loss_falls_back_within_one_period_and_needs_a_fresh_command():
    rig = Rig(cmc())
    live = lease(70.0, 1000.0, 3)
    rig.run(3, demand_kw=0.0, lease=live)
    assert rig.limit == 70.0
    rig.tick(demand_kw=0.0, lease=live, central_connected=False)
    assert rig.limit == 20.0
    rig.tick(demand_kw=0.0, lease=live, central_connected=True)  # the old lease: not enough
    assert rig.limit == 20.0
    rig.tick(demand_kw=0.0, lease=lease(65.0, 1000.0, 4), central_connected=True)
    assert rig.limit == 65.0


def test_cmc_local_backstop_takes_the_lower_of_central_and_local():
    s = settings(scheme="CMC", release_hold_s=0.0, ramp_kw_per_s=1000.0)
    rig = Rig(s)
    for _ in range(10):
        ev = rig.limit
        rig.tick(power_kw=80.0 + ev, demand_kw=ev, lease=lease(70.0, 1000.0, 1))
    assert rig.limit == 15.0  # local trim 95 - background 80


def test_cmc_without_meter_judges_compliance_from_the_cpo_report():
    rig = Rig(cmc())
    rig.run(70, demand_kw=60.0, lease=lease(30.0, 1000.0, 1))  # CPO draws 60 > 30
    assert rig.mode == "emergency"
    rig.run(30, demand_kw=60.0, lease=lease(30.0, 1000.0, 1))
    assert rig.mode == "tripped"


def test_cmc_no_lease_survives_a_restart():
    import json

    from controller.core import State

    rig = Rig(cmc())
    live = lease(70.0, 1000.0, 8)
    rig.run(3, demand_kw=0.0, lease=live)
    assert rig.limit == 70.0 and rig.persisted["central_sequence"] == 8
    blob = json.loads(json.dumps(rig.persisted))
    again = Rig(rig.s, t0=rig.t, state=State.load(rig.s, blob, rig.t))
    again.tick(demand_kw=0.0, lease=live)  # the same lease, replayed: not enough
    assert again.limit == 20.0
    again.tick(demand_kw=0.0, lease=lease(60.0, 1000.0, 9))
    assert again.limit == 60.0


def test_cmc_a_cpo_that_goes_quiet_while_over_is_still_escalated():
    rig = Rig(cmc())
    rig.run(30, demand_kw=60.0, lease=lease(20.0, 10000.0, 1))  # 60 kW against 20 kW
    # the CPO stops reporting: blindness must neither clear the overload nor end emergency
    rig.run(40, demand_kw=60.0, demand_age_s=100.0, lease=lease(20.0, 10000.0, 1))
    assert rig.mode in ("emergency", "tripped")
    rig.run(60, demand_kw=60.0, demand_age_s=100.0, lease=lease(20.0, 10000.0, 1))
    assert rig.mode == "tripped"
