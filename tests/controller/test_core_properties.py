"""Properties of the control core, checked with hypothesis over generated sites and input
sequences (CPython only: the portable example tests are in tests/controller/core)."""

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller import core
from controller.core import model as m
from hil.site import SiteModel

SLOW = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])

# --- arbitrary input sequences -------------------------------------------------------------

wild_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-50, max_value=500),
)


@st.composite
def inputs_seq(draw: Any) -> list[tuple[float, core.Inputs]]:
    n = draw(st.integers(min_value=1, max_value=120))
    t = 0.0
    seq = []
    for _ in range(n):
        t += draw(st.sampled_from([0.2, 1.0, 1.0, 1.0, 3.0, 30.0]))
        meas = None
        if draw(st.booleans()):
            currents = tuple(draw(st.lists(wild_float, min_size=3, max_size=3)))
            meas = core.Measurement(
                draw(wild_float),
                t - draw(st.floats(min_value=0, max_value=40)),
                currents,
                (230.0, draw(wild_float), 230.0),
                draw(st.one_of(st.none(), wild_float)),
                draw(st.booleans()),
            )
        demand = None
        if draw(st.booleans()):
            demand = core.Demand(draw(wild_float), t - draw(st.floats(0, 100)))
        lease = None
        if draw(st.booleans()):
            lease = core.Lease(
                draw(wild_float), t + draw(st.floats(-10, 60)), draw(st.integers(0, 9))
            )
        commands = [
            core.Command(k, draw(st.sampled_from(["alice", "central"])))
            for k in draw(st.lists(st.sampled_from([*m.COMMANDS, "bogus"]), max_size=2))
        ]
        seq.append(
            (
                t,
                core.Inputs(
                    meas,
                    demand,
                    draw(st.booleans()),
                    lease,
                    draw(st.booleans()),
                    draw(st.floats(0, core.WEEK_S - 1)),
                    draw(st.booleans()),
                    commands,
                ),
            )
        )
    return seq


def make_settings(scheme: str, unit: str) -> core.CoreSettings:
    limit = core.Schedule([(0.0, 100.0), (3600.0 * 30, 60.0)])
    return core.CoreSettings(
        scheme=scheme,
        unit=unit,
        limit=None if scheme == m.CMC and unit == m.KW else limit,
        margin=5.0,
        sensitivity=0.7 if scheme == m.LMC else 1.0,
        site_max_kw=80.0,
        min_limit_kw=3.0,
        fallback_limit_kw=20.0,
        g100=core.G100Settings(enabled=scheme in (m.CLM, m.TCC)),
    )


schemes = st.sampled_from([m.CLM, m.TCC, m.LMC, m.CMC])
units = st.sampled_from([m.KW, m.KVA, m.AMPS])


def run_all(s: core.CoreSettings, seq: list[tuple[float, core.Inputs]]) -> list[Any]:
    state = core.State(s, 0.0)
    out = []
    for t, inp in seq:
        state, a = core.step(s, state, inp, t)
        out.append(
            (
                None if a.limit is None else (a.limit.limit_kw, a.limit.sequence, a.limit.reason),
                a.breaker,
                [(e.code, e.message) for e in a.events],
                a.persist,
                a.status.state,
                a.status.reason,
                state.ev_limit_kw,
            )
        )
    return out


@SLOW
@given(schemes, units, inputs_seq())
def test_limit_is_always_finite_and_within_bounds(
    scheme: str, unit: str, seq: list[tuple[float, core.Inputs]]
) -> None:
    s = make_settings(scheme, unit)
    for limit, _breaker, _events, _persist, state, _reason, ev in run_all(s, seq):
        assert math.isfinite(ev) and s.min_limit_kw <= ev <= s.site_max_kw
        if limit is not None:
            assert math.isfinite(limit[0]) and s.min_limit_kw <= limit[0] <= s.site_max_kw
        assert state in (*m.STATES, core.LOCKOUT)


@SLOW
@given(schemes, units, inputs_seq())
def test_same_inputs_give_the_same_outputs(
    scheme: str, unit: str, seq: list[tuple[float, core.Inputs]]
) -> None:
    s = make_settings(scheme, unit)
    assert run_all(s, seq) == run_all(s, seq)


# --- closed loop with a compliant site ---------------------------------------------------------


@st.composite
def step_profile(draw: Any, high: float) -> Any:
    """A background of random steps (a load switching on and off) every 1-10 minutes."""
    times = sorted(draw(st.lists(st.floats(0, 1800), min_size=1, max_size=8)))
    levels = draw(st.lists(st.floats(0, high), min_size=len(times) + 1, max_size=len(times) + 1))

    def background(t: float) -> float:
        i = 0
        while i < len(times) and times[i] <= t:
            i += 1
        return float(levels[i])

    return background


@st.composite
def compliant_site(draw: Any) -> tuple[SiteModel, float]:
    sf = draw(st.sampled_from([0.3, 0.6, 1.0]))
    s = core.CoreSettings(
        scheme=m.LMC,
        unit=draw(st.sampled_from([m.KW, m.AMPS])),
        limit=core.Schedule.constant(200.0),
        margin=5.0,
        sensitivity=sf,
        site_max_kw=150.0,
        min_limit_kw=6.0,
        fallback_limit_kw=30.0,
        release_hold_s=draw(st.sampled_from([10.0, 30.0, 60.0])),
        ramp_kw_per_s=draw(st.sampled_from([0.5, 2.0, 10.0])),
    )
    if s.unit == m.AMPS:  # the same site, its limit in amps per phase at 230 V
        s.limit = core.Schedule.constant(200.0 * 1000 / (3 * 230.0))
        s.margin = 5.0 * 1000 / (3 * 230.0)
    response = draw(st.sampled_from([0.0, 2.0, 5.0, 10.0]))
    report = draw(st.sampled_from([0.0, 1.0, 3.0]))
    # feasible: with the EVs at their minimum the background alone fits under the trim
    background = draw(step_profile(195.0 - sf * 6.0 - 1.0))
    wanted_levels = draw(st.lists(st.floats(0, 160), min_size=3, max_size=3))

    def wanted(t: float) -> float:
        return float(wanted_levels[int(t // 700) % 3])

    model = SiteModel(s, background, wanted, response_s=response, report_delay_s=report)
    return model, response + report


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(compliant_site())
def test_compliant_site_is_never_over_its_limit_longer_than_period_plus_response(
    site: tuple[SiteModel, float],
) -> None:
    model, response_s = site
    trace = model.run(1800.0, period_s=1.0)
    # one period to see it, the site's response (CPO reaction + report age), one period
    # of discretisation
    assert trace.longest_over_s(1.0) <= 1.0 + response_s + 1.0
    assert "trip" not in trace.breaker


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.floats(50, 150),
    st.sampled_from([0.3, 0.6, 1.0]),
    st.sampled_from([1.0, 5.0, 10.0]),
    st.sampled_from([30.0, 60.0, 120.0]),
    st.integers(0, 2**16),
)
def test_two_percent_noise_on_a_binding_constraint_does_not_make_the_limit_oscillate(
    background_kw: float, sf: float, response_s: float, hold_s: float, seed: int
) -> None:
    s = core.CoreSettings(
        scheme=m.LMC,
        unit=m.KW,
        limit=core.Schedule.constant(200.0),
        margin=5.0,
        sensitivity=sf,
        site_max_kw=400.0,
        min_limit_kw=6.0,
        fallback_limit_kw=30.0,
        release_hold_s=hold_s,
    )
    # the EVs want more than the headroom: the constraint binds all hour
    model = SiteModel(
        s, lambda t: background_kw, lambda t: 400.0, response_s=response_s, noise=0.02, seed=seed
    )
    trace = model.run(3600.0)
    # the limit settles: a handful of direction changes in an hour, not one per hold
    assert trace.reversals() <= 4
    assert "trip" not in trace.breaker
