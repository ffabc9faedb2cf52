"""Qualitative agreement with report section 4 on synthetic data."""

import numpy as np
import pytest

from controller.core import model as m
from tools.study import synthetic
from tools.study.sweep import RANGE_LABELS_R, RANGE_LABELS_U, sweep


@pytest.fixture(scope="module", params=[synthetic.DESTINATION, synthetic.RESIDENTIAL])
def result(request):
    kind = request.param
    feeder = synthetic.COMMERCIAL if kind == synthetic.DESTINATION else synthetic.RESIDENTIAL
    loading = synthetic.network_loading(400.0, feeder, seed=11)
    return sweep(loading, kind, chargepoints=6, points_per_range=1, seed=3)


def test_unmet_energy_grows_with_utilisation_and_headroom_ratio(result):
    for sch in (m.CLM, m.LMC):
        grid = np.array(result.grid[sch])  # rows: utilisation up; columns: ratio up
        assert (np.diff(grid, axis=0) >= 0).all(), (sch, grid)
        assert (np.diff(grid, axis=1) >= 0).all(), (sch, grid)
        assert grid[-1, -1] > grid[0, 0]  # and not trivially: it does grow
    assert result.grid[m.CLM][-1][-1] > result.grid[m.CLM][0][0] + 10.0


def test_lmc_leaves_less_unmet_than_clm_on_the_same_site(result):
    lmc = np.array(result.grid[m.LMC])
    clm = np.array(result.grid[m.CLM])
    assert (lmc <= clm).all()
    assert (lmc < clm).sum() >= lmc.size - 1  # strictly less wherever CLM curtails at all


def test_ranges_table_has_every_cell(result):
    cells = {
        (r["solution"], r["utilisation_range"], r["headroom_ratio_range"]) for r in result.ranges
    }
    assert cells == {
        (s, u, h) for s in (m.CLM, m.LMC) for u in RANGE_LABELS_U for h in RANGE_LABELS_R
    }
    for r in result.ranges:
        assert 0.0 <= r["unmet_min_pct"] <= r["unmet_max_pct"] <= 100.0
