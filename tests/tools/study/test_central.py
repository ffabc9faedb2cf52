"""CMC: the pure allocator and the study playing the central platform."""

import math
from datetime import datetime

import numpy as np
import pytest

from controller import core
from controller.core import model as m
from tools.study.central import LIFO, PRO_RATA, allocate
from tools.study.profiles import constant_profile
from tools.study.study import run_cmc


def test_pro_rata_shares_one_constraint_in_proportion_to_requests():
    # 30 kW of headroom, both sites fully seen, asking 40 and 20: each gets half
    assert allocate([30.0], [[1.0, 1.0]], [40.0, 20.0], [50.0, 50.0], PRO_RATA) == [20.0, 10.0]


def test_pro_rata_weights_by_sensitivity_and_takes_the_tightest_constraint():
    # constraint A sees site 0 at 0.5 and site 1 at 1.0: load 0.5*40 + 20 = 40 > 20 -> x0.5
    # constraint B sees only site 0, room 100: no limit. Site 1 is not behind B.
    limits = allocate([20.0, 100.0], [[0.5, 1.0], [1.0, 0.0]], [40.0, 20.0], [50.0, 50.0])
    assert limits == pytest.approx([20.0, 10.0])


def test_pro_rata_without_constraint_pressure_leaves_site_maximum():
    assert allocate([500.0], [[1.0, 1.0]], [40.0, 20.0], [50.0, 60.0]) == [50.0, 60.0]


def test_pro_rata_no_headroom_gives_zero():
    assert allocate([-5.0], [[1.0, 0.2]], [40.0, 20.0], [50.0, 50.0]) == [0.0, 0.0]


def test_lifo_serves_in_connection_order():
    # 50 kW room: the first site takes its 40, the last connected gets the remaining 10
    assert allocate([50.0], [[1.0, 1.0]], [40.0, 30.0], [50.0, 50.0], LIFO) == [40.0, 10.0]
    # sensitivity: site 1 is seen at 0.5, so the 10 kW left carries 20 kW of it
    assert allocate([50.0], [[1.0, 0.5]], [40.0, 30.0], [50.0, 50.0], LIFO) == [40.0, 20.0]


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy"):
        allocate([1.0], [[1.0]], [1.0], [1.0], "random")


def _cmc_device():
    return core.CoreSettings(
        scheme=m.CMC, limit=None, site_max_kw=50.0, min_limit_kw=0.0, fallback_limit_kw=5.0
    )


def test_cmc_study_two_sites_one_constraint_exact():
    # constraint limit 100 kW, background 70: 30 kW for two sites wanting 40 and 20 ->
    # pro rata 20 and 10; unmet 20 and 10 kW for 48 half hours
    start = datetime(2025, 1, 6)
    loading = constant_profile(start, 1800.0, 48, {"feeder": 70.0})
    demand = constant_profile(start, 1800.0, 48, {"a": 40.0, "b": 20.0})
    res = run_cmc(
        _cmc_device(), loading, {"feeder": 100.0}, 0.0, {"feeder": {"a": 1.0, "b": 1.0}}, demand
    )
    (ra, sa), (rb, sb) = res
    assert ra.ev_limit_kw.tolist() == [20.0] * 48 and rb.ev_limit_kw.tolist() == [10.0] * 48
    assert sa.unmet_pct == pytest.approx(50.0) and sb.unmet_pct == pytest.approx(50.0)
    np.testing.assert_allclose(ra.constraint, 100.0)  # the feeder is filled exactly


def test_cmc_data_gap_lapses_the_lease_and_sites_fall_back():
    start = datetime(2025, 1, 6)
    feeder = [70.0] * 10 + [math.nan] * 2 + [70.0] * 10
    loading = constant_profile(start, 1800.0, 22, {"feeder": feeder})
    demand = constant_profile(start, 1800.0, 22, {"a": 40.0, "b": 20.0})
    (ra, _), (rb, _) = run_cmc(
        _cmc_device(),
        loading,
        {"feeder": 100.0},
        0.0,
        {"feeder": {"a": 1.0, "b": 1.0}},
        demand,
        LIFO,
    )
    assert ra.ev_limit_kw[:10].tolist() == [30.0] * 10  # LIFO: a first (30 of 40)
    assert rb.ev_limit_kw[:10].tolist() == [0.0] * 10
    assert ra.ev_limit_kw[10:12].tolist() == [5.0, 5.0]  # the fallback limit
    assert ra.fallback[10:12].all() and rb.fallback[10:12].all()
    assert ra.ev_limit_kw[12:].tolist() == [30.0] * 10  # a fresh lease restores control
