"""The CPO simulator's site model: load management (5.2.1), limit take-up and fallback."""

import pytest

from hil.cpo_sim import DLB, RR, SimSite, SiteSettings
from hil.ev_sessions import EvSession

DAY = 86400.0


def plugged(n: int, ev_max_kw: float = 22.0, energy_kwh: float = 500.0) -> list[EvSession]:
    """n EVs that arrive one second apart at t=0..n-1 and stay all day, never full."""
    return [EvSession(i, float(i), DAY, energy_kwh, ev_max_kw) for i in range(n)]


def site(strategy: str = DLB, sessions: list[EvSession] | None = None, **kw: object) -> SimSite:
    settings = SiteSettings("s", strategy=strategy, response_delay_s=0.0, **kw)  # type: ignore[arg-type]
    return SimSite(settings, 0.0, sessions=sessions if sessions is not None else plugged(4))


def limit(s: SimSite, kw: float, seq: int, at: float, valid_s: float = 3600.0) -> None:
    s.apply_limit(kw, seq, "curtail", at, at + valid_s)


def powers(s: SimSite, now: float) -> list[float]:
    return [kw for _, _, kw, _ in s.chargepoint_states(now)]


def statuses(s: SimSite, now: float) -> list[str]:
    return [st for _, st, _, _ in s.chargepoint_states(now)]


def test_without_a_limit_every_ev_draws_what_it_can() -> None:
    s = site(chargepoints=4, rated_kw=22.0)
    assert s.power_kw(10.0) == pytest.approx(88.0)
    assert s.applied_limit_kw() is None


def test_dlb_cuts_every_chargepoint_by_the_same_percentage() -> None:
    s = site(chargepoints=4, rated_kw=22.0)
    limit(s, 40.0, 1, 10.0)
    assert powers(s, 11.0) == pytest.approx([10.0] * 4)
    assert s.power_kw(11.0) == pytest.approx(40.0)


def test_dlb_shares_what_a_slow_ev_cannot_take() -> None:
    sessions = plugged(4)
    sessions[0] = EvSession(0, 0.0, DAY, 500.0, 7.4)  # a 7.4 kW on-board charger
    s = site(sessions=sessions, chargepoints=4, rated_kw=22.0)
    limit(s, 40.0, 1, 10.0)
    p = powers(s, 11.0)
    assert p[0] == pytest.approx(7.4)
    assert p[1] == pytest.approx(p[2]) == pytest.approx(p[3]) == pytest.approx((40 - 7.4) / 3)


def test_dlb_pauses_the_latest_arrivals_rather_than_go_below_the_minimum_rate() -> None:
    s = site(chargepoints=4, rated_kw=22.0, phases=3, min_current_a=6.0)  # min 4.14 kW
    limit(s, 12.0, 1, 10.0)  # 3 kW each would be below the minimum; 6 kW for two is not
    assert powers(s, 11.0) == pytest.approx([6.0, 6.0, 0.0, 0.0])
    assert statuses(s, 11.0) == ["charging", "charging", "suspended_evse", "suspended_evse"]
    limit(s, 4.0, 2, 20.0)  # below one chargepoint's minimum: everyone waits
    assert s.power_kw(21.0) == 0.0
    assert set(statuses(s, 21.0)) == {"suspended_evse"}
    limit(s, 88.0, 3, 30.0)
    assert powers(s, 31.0) == pytest.approx([22.0] * 4)


def test_rr_switches_whole_chargepoints_and_rotates_them_fairly_on_its_slot() -> None:
    s = site(RR, plugged(6, ev_max_kw=7.4), chargepoints=6, rated_kw=7.4, slot_s=60.0)
    limit(s, 15.0, 1, 0.0)
    on_sets = []
    for t in range(1, 1801):
        p = powers(s, float(t))
        assert sum(p) <= 15.0 + 1e-9
        assert all(kw in (0.0, pytest.approx(7.4)) for kw in p)
        assert sum(1 for kw in p if kw > 0) == 2  # as many as fit, no more
        on_sets.append(frozenset(i for i, kw in enumerate(p) if kw > 0))
    # constant within a slot, different from one slot to the next
    for slot in range(30):
        within = set(on_sets[slot * 60 + 1 : slot * 60 + 59])
        assert len(within) == 1
    assert on_sets[30] != on_sets[90]
    on_time = [p.on_time_s for p in s.points]
    assert max(on_time) - min(on_time) <= 60.0 + 1e-6  # everyone had the same turns
    assert sum(on_time) == pytest.approx(2 * 1800.0, abs=1.0)


def test_rr_fills_with_a_smaller_chargepoint_when_a_big_one_does_not_fit() -> None:
    sessions = [
        EvSession(0, 0.0, DAY, 500.0, 11.0),
        EvSession(1, 0.0, DAY, 500.0, 11.0),
        EvSession(2, 0.0, DAY, 500.0, 3.6),
    ]
    s = site(RR, sessions, chargepoints=3, rated_kw=11.0, slot_s=60.0)
    limit(s, 15.0, 1, 0.0)
    assert powers(s, 1.0) == pytest.approx([11.0, 0.0, 3.6])


@pytest.mark.parametrize("strategy", [DLB, RR])
def test_the_site_average_meets_the_limit_under_statistical_arrivals(strategy: str) -> None:
    settings = SiteSettings(
        "s", chargepoints=8, rated_kw=22.0, strategy=strategy, utilisation=0.35,
        response_delay_s=0.0, slot_s=120.0, seed=5, tick_s=5.0,
    )  # fmt: skip
    s = SimSite(settings, 0.0)
    free = SimSite(settings, 0.0)  # the same EVs, no limit
    limit(s, 30.0, 1, 0.0, valid_s=2 * DAY)
    samples = [(s.power_kw(t), free.power_kw(t)) for t in range(60, int(DAY / 2), 60)]
    assert max(p for p, _ in samples) <= 30.0 + 1e-6
    assert max(f for _, f in samples) > 45.0  # the limit did bind
    if strategy == DLB:  # DLB uses the headroom fully whenever EVs want more
        busy = [p for p, f in samples if f > 40.0]
        assert busy and sum(busy) / len(busy) > 25.0


def test_a_limit_takes_effect_after_the_response_delay() -> None:
    s = SimSite(SiteSettings("s", chargepoints=4, response_delay_s=5.0), 0.0, sessions=plugged(4))
    s.apply_limit(20.0, 1, "curtail", 10.0, 1000.0)
    assert s.power_kw(14.9) == pytest.approx(88.0)
    assert s.applied_limit_kw() is None
    assert s.power_kw(15.5) == pytest.approx(20.0)
    assert s.applied_limit_kw() == 20.0


def test_limits_sent_every_second_each_take_effect_after_the_delay() -> None:
    """A controller ramping its limit sends one per period: each must apply in turn after
    the response delay, not wait for the newest to become old enough."""
    s = SimSite(SiteSettings("s", chargepoints=4, response_delay_s=5.0), 0.0, sessions=plugged(4))
    seen = []
    for i in range(10):  # 20, 22, 24, ... kW received at t = 10, 11, ... 19
        s.apply_limit(20.0 + 2 * i, i + 1, "curtail", 10.0 + i, 1000.0)
        seen.append(s.power_kw(10.5 + i))
    # nothing limits before 15 s; from then on each limit applies 5 s after it came
    assert seen[:5] == [pytest.approx(88.0)] * 5
    assert seen[5:] == [pytest.approx(20.0 + 2 * i) for i in range(5)]
    assert s.power_kw(30.0) == pytest.approx(38.0)


def test_the_safe_limit_applies_when_valid_until_passes() -> None:
    s = site(chargepoints=4, fallback_kw=11.0)
    s.apply_limit(40.0, 1, "normal", 10.0, 30.0)
    assert s.power_kw(29.0) == pytest.approx(40.0)
    assert s.power_kw(31.0) == pytest.approx(11.0)
    assert s.applied_limit_kw() == 11.0 and s.fallback_active
    s.apply_limit(60.0, 2, "normal", 40.0, 100.0)  # a refresh ends the fallback
    assert s.power_kw(41.0) == pytest.approx(60.0)
    assert not s.fallback_active


def test_a_cpo_that_ignores_limits_still_reports_them() -> None:
    s = site(chargepoints=4, ignore_limits=True)
    limit(s, 20.0, 1, 10.0)
    assert s.power_kw(11.0) == pytest.approx(88.0)
    assert s.applied_limit_kw() == 20.0


def test_a_full_ev_stays_plugged_in_without_drawing() -> None:
    s = site(sessions=[EvSession(0, 0.0, DAY, 1.0, 22.0)], chargepoints=2)
    assert statuses(s, 1.0) == ["charging", "available"]
    s.step(3600.0)
    assert statuses(s, 3600.0) == ["suspended_ev", "available"]
    assert s.points[0].energy_total_kwh == pytest.approx(1.0)


def test_sessions_come_from_the_statistics_and_the_seed() -> None:
    def trace(seed: int) -> list[float]:
        st = SiteSettings("s", chargepoints=6, utilisation=0.3, seed=seed, tick_s=10.0)
        sim = SimSite(st, 0.0)
        return [sim.power_kw(float(t)) for t in range(0, int(DAY), 600)]

    first = trace(1)
    assert first == trace(1)
    assert first != trace(2)
    assert max(first) > 0.0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        SiteSettings("s", strategy="fifo")
    with pytest.raises(ValueError):
        SiteSettings("s", chargepoints=0)
