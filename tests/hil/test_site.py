"""The closed-loop site model drives the real core through a simulated day."""

from controller import core
from controller.core import model as m
from hil.site import SiteModel, daily_profile


def lmc_settings() -> core.CoreSettings:
    return core.CoreSettings(
        scheme=m.LMC,
        unit=m.KW,
        limit=core.Schedule.constant(200.0),
        margin=5.0,
        sensitivity=0.8,
        site_max_kw=150.0,
        min_limit_kw=6.0,
        fallback_limit_kw=30.0,
    )


def test_a_day_on_a_compliant_lmc_site_curtails_without_breaching_or_tripping() -> None:
    model = SiteModel(lmc_settings(), daily_profile(60.0, 180.0), lambda t: 120.0, noise=0.01)
    trace = model.run(86400.0, period_s=1.0)
    assert len(trace.t) == 86400
    assert trace.longest_over_s(1.0) == 0.0
    assert "trip" not in trace.breaker
    assert "curtailing" in trace.mode and "normal" in trace.mode
    # the evening peak leaves 180 kW of background under a 195 kW trim: EVs get ~19 kW
    peak = trace.t.index(18 * 3600.0)
    assert 10.0 < trace.ev_limit_kw[peak] < 25.0
    assert 0.0 < trace.unmet_energy_pct() < 50.0


def test_a_site_that_ignores_its_limit_is_tripped() -> None:
    model = SiteModel(lmc_settings(), lambda t: 150.0, lambda t: 150.0, compliant=False)
    trace = model.run(600.0)
    assert trace.breaker[-1] == "trip"
    first_emergency = trace.mode.index("emergency")
    tripped = trace.mode.index("tripped")
    assert tripped - first_emergency == 30  # the trip delay
    # with the breaker open the EVs draw nothing: the constraint is back under its limit
    assert trace.constraint[-1] == 150.0
