"""G100 excursion counting and lockout, and what survives a restart (latched trip, G100
counters, sequence numbers). Portable: runs under CPython (pytest) and MicroPython."""

import json

from controller.core import State
from tests.controller.core.helpers import Rig, cmd, settings

G100 = {"enabled": True, "failsafe_limit_kw": 10.0}


def excursion(rig, seconds, power_kw=104.0):
    """Over the 100 kW agreed capacity (below the trip level) while reporting demand."""
    rig.run(seconds, power_kw=power_kw, demand_kw=5.0)


def calm(rig, seconds):
    rig.run(seconds, power_kw=50.0, demand_kw=5.0)


def g100_rig(**kw):
    # long compliance deadline so G100 acts alone in these tests
    g100 = kw.pop("g100", G100)
    return Rig(
        settings(
            g100=g100,
            compliance_deadline_s=10000.0,
            compliance_deadline_unreachable_s=10000.0,
            **kw,
        )
    )


def test_stage2_after_15_s_and_lockout_on_the_second_within_10_min():
    rig = g100_rig()
    excursion(rig, 14)
    assert "G100_STAGE2" not in rig.codes()
    excursion(rig, 1)
    assert rig.codes().count("G100_STAGE2") == 1
    calm(rig, 100)
    assert rig.mode != "lockout"
    excursion(rig, 15)
    assert rig.codes().count("G100_STAGE2") == 2
    assert "G100_LOCKOUT" in rig.codes() and rig.mode == "lockout"
    assert rig.limit <= 10.0 and rig.orders[-1].reason == "fallback"
    calm(rig, 100)  # the law would release capacity; the lockout holds the fail-safe
    assert rig.limit == 10.0


def test_one_long_excursion_locks_out_after_60_s():
    rig = g100_rig()
    excursion(rig, 59)
    assert rig.mode != "lockout"
    excursion(rig, 1)
    assert rig.mode == "lockout"


def test_more_than_three_stage2_in_a_day_lock_out():
    rig = g100_rig()
    for _ in range(3):
        excursion(rig, 15)
        calm(rig, 700)  # outside the 10 min window
    assert rig.mode != "lockout"
    excursion(rig, 15)
    assert rig.mode == "lockout"


def test_lockout_ends_after_its_time_or_by_reset():
    rig = g100_rig()
    excursion(rig, 60)
    assert rig.mode == "lockout"
    calm(rig, 4 * 3600 - 1)
    assert rig.mode == "lockout"
    calm(rig, 2)
    assert rig.mode != "lockout" and "G100_LOCKOUT_END" in rig.codes()
    excursion(rig, 60)
    assert rig.mode == "lockout"
    rig.tick(power_kw=50.0, demand_kw=5.0, commands=cmd("reset", "installer"))
    assert rig.results[-1].accepted and rig.mode != "lockout"


def restart(rig, gap_s=5.0):
    """Persist through JSON (as the store does), build a new state, keep driving."""
    blob = json.loads(json.dumps(rig.persisted))
    t = rig.t + gap_s
    new = Rig(rig.s, t0=t, state=State.load(rig.s, blob, t))
    return new


def test_g100_counters_and_lockout_survive_a_restart():
    rig = g100_rig()
    excursion(rig, 15)
    calm(rig, 60)
    rig = restart(rig)
    excursion(rig, 15)  # the second stage-2 within 10 min, counted across the restart
    assert rig.mode == "lockout"
    rig = restart(rig)
    calm(rig, 5)
    assert rig.mode == "lockout" and rig.limit <= 10.0


def test_latched_trip_survives_a_restart_and_the_breaker_is_ordered_open_again():
    rig = Rig(settings())
    rig.run(90, power_kw=115.0, demand_kw=60.0)
    assert rig.mode == "tripped"
    rig = restart(rig)
    rig.tick(power_kw=40.0, demand_kw=0.0)
    assert rig.mode == "tripped"
    assert rig.breaker == ["trip"]
    assert "TRIP_LATCHED" in rig.codes()
    rig.tick(power_kw=40.0, demand_kw=0.0, commands=cmd("reset"))
    assert rig.results[-1].accepted and rig.breaker[-1] == "permit_close"


def test_sequence_numbers_keep_rising_across_restarts():
    rig = Rig(settings(refresh_s=5.0))
    rig.follow(50, background_kw=30.0)
    last = rig.orders[-1].sequence
    rig = restart(rig)
    rig.tick(power_kw=40.0, demand_kw=10.0)
    assert rig.orders[0].sequence > last


def test_restart_begins_no_higher_than_the_fallback_limit():
    rig = Rig(settings(release_hold_s=0.0, ramp_kw_per_s=100.0))
    rig.follow(10, background_kw=0.0)
    assert rig.limit == 80.0
    rig = restart(rig)
    rig.tick(power_kw=10.0, demand_kw=0.0)
    assert rig.orders[0].limit_kw == 20.0


def test_persist_is_emitted_only_when_something_durable_changes():
    rig = Rig(settings())
    first = rig.tick(power_kw=40.0, demand_kw=0.0)
    assert first.persist is not None
    second = rig.tick(power_kw=40.0, demand_kw=0.0)
    assert second.persist is None


def test_a_persisted_state_of_another_version_is_refused():
    s = settings()
    try:
        State.load(s, {"version": 99, "tripped": False}, 0.0)
    except ValueError as exc:
        assert "version" in str(exc)
    else:
        raise AssertionError("a foreign version must not load")


def test_resync_continues_above_the_cpo_sequence_and_resends():
    rig = Rig(settings())
    rig.run(3, power_kw=40.0, demand_kw=10.0)
    before = len(rig.orders)
    assert rig.state.resync_sequence(5000) is True
    rig.tick(power_kw=40.0, demand_kw=10.0)
    assert len(rig.orders) == before + 1 and rig.orders[-1].sequence == 5001
    assert rig.persisted["sequence"] > 5001  # the new reservation is persisted
    assert rig.state.resync_sequence(10) is False


def test_escalation_clocks_survive_a_crash_loop():
    rig = Rig(settings())
    for _ in range(3):  # over the limit, restarting every 25 s: the deadline is 60 s
        rig.run(25, power_kw=115.0, demand_kw=60.0)
        rig = restart(rig, gap_s=1.0)
    rig.run(5, power_kw=115.0, demand_kw=60.0)
    assert rig.mode in ("emergency", "tripped")


def test_a_lockout_runs_out_across_restarts():
    rig = g100_rig(g100={"enabled": True, "failsafe_limit_kw": 10.0, "lockout_s": 600.0})
    excursion(rig, 60)
    assert rig.mode == "lockout"
    for _ in range(4):  # 4 x 200 s of calm, restarting in between
        calm(rig, 200)
        rig = restart(rig, gap_s=1.0)
    calm(rig, 5)
    assert rig.mode != "lockout"
    assert "G100_LOCKOUT" not in rig.state.alarms
