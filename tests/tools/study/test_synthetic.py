"""The synthetic demand generator follows report section 3 and is reproducible."""

import random
from datetime import datetime

import numpy as np
import pytest

from tools.study import synthetic
from tools.study.errors import StudyError


@pytest.mark.parametrize("kind", synthetic.SITE_TYPES)
def test_same_seed_same_profile_other_seed_other_profile(kind):
    a = synthetic.ev_demand(kind, 0.1, 4, days=60, seed=7).column()
    b = synthetic.ev_demand(kind, 0.1, 4, days=60, seed=7).column()
    c = synthetic.ev_demand(kind, 0.1, 4, days=60, seed=8).column()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", synthetic.SITE_TYPES)
@pytest.mark.parametrize("target", [0.05, 0.15])
def test_utilisation_hits_the_target(kind, target):
    cps, rating = 6, synthetic.DEFAULT_RATING_KW[kind]
    kw = synthetic.ev_demand(kind, target, cps, days=365, seed=1).column()
    assert kw.mean() / (cps * rating) == pytest.approx(target, rel=0.03)
    assert kw.max() <= cps * rating + 1e-9


def test_session_statistics_follow_section_3():
    rng = random.Random(5)
    dest = synthetic.sessions(synthetic.DESTINATION, 20, 22.0, 200, 1.0, rng)
    res = synthetic.sessions(synthetic.RESIDENTIAL, 20, 7.0, 200, 0.5, random.Random(5))
    assert np.mean([s.plugged_h < 2 for s in dest]) > 0.8  # 3.4: > 80 % under two hours
    assert np.mean([s.plugged_h > 6 for s in res]) > 0.45  # 3.4: > 45 % over six hours
    energy = [s.energy_kwh for s in dest + res]
    assert 0.45 < np.mean([e < 20 for e in energy]) < 0.65  # 3.5: about half under 20 kWh
    assert np.mean([s.energy_kwh > 60 for s in res]) > np.mean([s.energy_kwh > 60 for s in dest])
    hours_d = np.array([(s.start_s % 86400) / 3600 for s in dest])
    hours_r = np.array([(s.start_s % 86400) / 3600 for s in res])
    assert np.mean((hours_d >= 8) & (hours_d < 17)) > 0.7  # 3.3: daytime starts
    assert np.mean(hours_r >= 17) > 2 * np.mean(hours_d >= 17)  # residential tails on


def test_profile_from_sessions_conserves_energy():
    sess = [synthetic.Session(900.0, 3.0, 11.0, 22.0), synthetic.Session(5000.0, 1.0, 2.0, 7.0)]
    prof = synthetic.profile_from_sessions(sess, datetime(2025, 1, 1), 1800.0, 10)
    assert prof.column().sum() * 0.5 == pytest.approx(13.0)
    assert prof.column()[0] == pytest.approx(11.0)  # 22 kW for the second half of 0:00-0:30


def test_bad_arguments_are_refused():
    with pytest.raises(StudyError):
        synthetic.ev_demand("motorway", 0.1, 4)
    with pytest.raises(StudyError):
        synthetic.ev_demand(synthetic.DESTINATION, 1.5, 4)
