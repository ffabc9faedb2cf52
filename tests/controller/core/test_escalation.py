"""Escalation: emergency, trip, latching, reset, meter loss, CPO loss, maintenance and
commands. Portable: runs under CPython (pytest) and MicroPython."""

from tests.controller.core.helpers import Rig, cmd, settings


def overloaded(rig, seconds, power_kw=115.0, **kw):
    """A site that ignores its limit: the constraint stays at ``power_kw``."""
    rig.run(seconds, power_kw=power_kw, demand_kw=60.0, **kw)


def test_non_compliance_leads_to_emergency_then_trip():
    rig = Rig(settings())
    rig.run(5, power_kw=50.0, demand_kw=10.0)
    overloaded(rig, 59)
    assert "EMERGENCY" not in rig.codes()  # 59 s over: still inside the deadline
    overloaded(rig, 1)
    assert "EMERGENCY" in rig.codes() and rig.mode == "emergency"
    assert rig.orders[-1].limit_kw == 2.0 and rig.orders[-1].reason == "emergency"
    overloaded(rig, 29)
    assert rig.breaker == ["permit_close"]  # only the start-up permit so far
    overloaded(rig, 1)
    assert rig.breaker[-1] == "trip" and rig.mode == "tripped"
    assert rig.persisted is not None and rig.persisted["tripped"] is True
    assert "TRIP" in rig.codes()


def test_over_the_limit_but_below_trip_level_after_delay_does_not_trip():
    rig = Rig(settings())  # trip level 110 kW
    overloaded(rig, 60, power_kw=105.0)
    assert rig.mode == "emergency"
    overloaded(rig, 100, power_kw=105.0)
    assert rig.mode == "emergency" and "trip" not in rig.breaker


def test_emergency_ends_after_release_time_within_limits():
    rig = Rig(settings())
    overloaded(rig, 60)
    assert rig.mode == "emergency"
    rig.run(59, power_kw=60.0, demand_kw=2.0)
    assert rig.mode == "emergency"
    rig.run(1, power_kw=60.0, demand_kw=2.0)
    assert "EMERGENCY_END" in rig.codes()
    assert rig.mode == "curtailing"
    assert rig.limit == 2.0  # climbs again only after the hold
    rig.run(15, power_kw=60.0, demand_kw=2.0)
    assert rig.limit > 2.0


def test_cpo_unreachable_while_over_escalates_sooner():
    rig = Rig(settings())
    overloaded(rig, 19, cpo_reachable=False)
    assert rig.mode != "emergency"
    overloaded(rig, 1, cpo_reachable=False)
    assert rig.mode == "emergency"
    assert "CPO_UNREACHABLE" in rig.codes()


def test_cpo_unreachable_within_limits_holds_and_alarms_without_escalating():
    rig = Rig(settings(release_hold_s=0.0, ramp_kw_per_s=100.0))
    rig.follow(5, background_kw=60.0)
    held = rig.limit
    rig.run(300, power_kw=60.0 + held, cpo_reachable=False)
    assert "CPO_UNREACHABLE" in rig.state.alarms
    assert rig.mode == "curtailing" and rig.limit == held
    assert "trip" not in rig.breaker
    rig.tick(power_kw=60.0 + held, demand_kw=held)
    assert "CPO_UNREACHABLE_CLEARED" in rig.codes()


def test_meter_silence_gives_fallback_then_trip():
    rig = Rig(settings(release_hold_s=0.0, ramp_kw_per_s=100.0))
    rig.follow(5, background_kw=10.0)
    assert rig.limit == 80.0
    rig.run(9, demand_kw=80.0)  # no measurement; the last one ages
    assert rig.limit == 80.0 and rig.mode != "fallback"  # holding
    rig.run(2, demand_kw=80.0)
    assert rig.mode == "fallback" and rig.limit == 20.0
    assert rig.orders[-1].reason == "fallback"
    assert "METER_LOST" in rig.codes()
    rig.run(120 - 11, demand_kw=20.0)
    assert rig.breaker[-1] == "trip"
    assert "no valid constraint measurement" in rig.state.trip_reason


def test_meter_silence_without_meter_trip_never_trips():
    rig = Rig(settings(meter_trip_timeout_s=None))
    rig.run(1000, demand_kw=20.0)
    assert rig.mode == "fallback" and "trip" not in rig.breaker


def test_implausible_reading_counts_as_silence_and_recovery_climbs_after_hold():
    rig = Rig(settings())
    rig.run(15, power_kw=50.0, demand_kw=10.0, valid=False)
    assert rig.mode == "fallback"
    rig.tick(power_kw=50.0, demand_kw=10.0)
    assert "METER_LOST_CLEARED" in rig.codes()
    assert rig.mode == "curtailing" and rig.limit == 20.0


def test_trip_is_latched_until_an_authorised_reset_within_limits():
    rig = Rig(settings())
    overloaded(rig, 90)
    assert rig.mode == "tripped"
    rig.run(100, power_kw=40.0, demand_kw=0.0)  # breaker open: only background now
    assert rig.mode == "tripped" and rig.limit == 2.0
    rig.tick(power_kw=120.0, commands=cmd("reset"))
    assert rig.results[-1].accepted is False
    assert "above limit" in rig.results[-1].reason
    assert rig.mode == "tripped"
    rig.tick(commands=cmd("reset"))  # no fresh measurement this period: refused
    assert rig.results[-1].accepted is False
    rig.tick(power_kw=40.0, demand_kw=0.0, commands=cmd("reset", "bob"))
    assert rig.results[-1].accepted is True
    assert rig.breaker[-1] == "permit_close" and rig.mode == "curtailing"
    reset = [e for e in rig.events if e.code == "TRIP_RESET"][-1]
    assert "bob" in reset.message
    assert rig.persisted["tripped"] is False


def test_reset_with_nothing_to_reset_is_refused_with_a_reason():
    rig = Rig(settings())
    rig.tick(power_kw=40.0, demand_kw=0.0, commands=cmd("reset"))
    assert rig.results[-1].accepted is False and rig.results[-1].reason == "nothing to reset"
    assert "COMMAND_REFUSED" in rig.codes()


def test_unknown_command_is_refused():
    rig = Rig(settings())
    rig.tick(power_kw=40.0, commands=cmd("open_sesame", "central", "c-17"))
    r = rig.results[-1]
    assert not r.accepted and r.command_id == "c-17" and "unknown" in r.reason


def test_maintenance_suspends_trips_caps_at_fallback_and_expires():
    rig = Rig(settings(maintenance_max_s=600.0))
    rig.tick(power_kw=50.0, demand_kw=10.0, commands=cmd("maintenance_on", "installer"))
    assert rig.mode == "maintenance"
    overloaded(rig, 300)
    assert "trip" not in rig.breaker and rig.mode == "maintenance"
    assert rig.limit <= 20.0
    rig.run(300, power_kw=50.0, demand_kw=10.0)
    assert "MAINTENANCE_OFF" in rig.codes() and rig.mode != "maintenance"


def test_trip_command_works_in_maintenance_and_leave_maintenance_by_command():
    rig = Rig(settings())
    rig.tick(power_kw=50.0, commands=cmd("maintenance_on"))
    rig.tick(power_kw=50.0, commands=cmd("trip", "alice"))
    assert rig.breaker[-1] == "trip" and rig.mode == "tripped"
    rig.tick(power_kw=50.0, commands=cmd("maintenance_off"))
    assert rig.results[-1].accepted
    rig.tick(power_kw=50.0, commands=cmd("maintenance_off"))
    assert not rig.results[-1].accepted


def test_central_permit_close_only_clears_its_own_trip():
    rig = Rig(settings())
    overloaded(rig, 90)
    assert rig.mode == "tripped"
    rig.tick(power_kw=40.0, commands=cmd("permit_close", "central"))
    assert not rig.results[-1].accepted and "local reset" in rig.results[-1].reason
    rig.tick(power_kw=40.0, commands=cmd("reset"))
    assert rig.results[-1].accepted
    rig.tick(power_kw=40.0, commands=cmd("trip", "central"))
    assert rig.mode == "tripped" and rig.state.trip_source == "central"
    rig.tick(power_kw=40.0, commands=cmd("permit_close", "central"))
    assert rig.results[-1].accepted and rig.mode != "tripped"


def test_events_are_raised_once_per_episode():
    rig = Rig(settings())
    rig.run(100, demand_kw=10.0)  # meter silent throughout
    assert rig.codes().count("METER_LOST") == 1


def test_a_blind_controller_keeps_escalating_on_its_last_view():
    rig = Rig(settings())
    overloaded(rig, 60)
    assert rig.mode == "emergency"
    # the meter now reads "implausible" (e.g. over its CT range): the last view was above
    # the trip level, so the trip comes after the trip delay, not after the meter timeout
    rig.run(30, power_kw=999.0, demand_kw=60.0, valid=False)
    assert rig.mode == "tripped"


def test_remote_sources_cannot_give_local_commands():
    rig = Rig(settings())
    overloaded(rig, 90)
    assert rig.mode == "tripped"
    rig.tick(power_kw=40.0, commands=cmd("reset", "central"))
    assert not rig.results[-1].accepted and "local command" in rig.results[-1].reason
    rig.tick(power_kw=40.0, commands=cmd("maintenance_on", "central"))
    assert not rig.results[-1].accepted and rig.mode == "tripped"


def test_permit_close_when_not_tripped_says_there_was_nothing_to_do():
    rig = Rig(settings())
    rig.tick(power_kw=40.0, commands=cmd("permit_close", "central"))
    assert rig.results[-1].accepted and "nothing to do" in rig.results[-1].reason
