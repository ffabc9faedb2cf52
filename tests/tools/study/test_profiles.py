"""Profile CSVs: units, grids, and errors that name the file and line."""

from datetime import datetime

import numpy as np
import pytest

from tools.study.errors import StudyError
from tools.study.profiles import align, read_profile_csv, time_of_week, write_profile_csv


def _write(tmp_path, text, name="p.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_mw_is_read_as_kw_and_empty_cells_are_gaps(tmp_path):
    p = _write(tmp_path, "timestamp,a,b\n2025-01-06T00:00,0.25,1\n2025-01-06T00:30,,2\n")
    prof = read_profile_csv(p, "MW")
    assert prof.step_s == 1800.0
    assert prof.columns["a"][0] == 250.0 and np.isnan(prof.columns["a"][1])
    assert prof.columns["b"].tolist() == [1000.0, 2000.0]
    assert time_of_week(prof).tolist() == [0.0, 1800.0]  # 2025-01-06 is a Monday


def test_round_trip(tmp_path):
    p = _write(tmp_path, "t,x\n2025-03-01T10:00,1.5\n2025-03-01T10:01,2.5\n2025-03-01T10:02,\n")
    prof = read_profile_csv(p)
    write_profile_csv(tmp_path / "o.csv", prof)
    again = read_profile_csv(tmp_path / "o.csv")
    assert again.start == datetime(2025, 3, 1, 10, 0) and again.step_s == 60.0
    np.testing.assert_array_equal(again.columns["x"], prof.columns["x"])


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("t,x\n2025-01-01T00:00,1\n2025-01-01T00:30,abc\n", 3, "not a number"),
        ("t,x\n2025-01-01T00:00,1\nyesterday,2\n", 3, "bad timestamp"),
        ("t,x\n2025-01-01T00:00,1\n2025-01-01T00:30,2\n2025-01-01T01:30,3\n", 4, "irregular"),
        ("t,x\n2025-01-01T00:00,1\n2025-01-01T00:30,-2\n", 3, ">= 0"),
        ("t,x\n2025-01-01T00:00,1\n2025-01-01T00:30,2,3\n", 3, "fields"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, text, line, what):
    p = _write(tmp_path, text)
    with pytest.raises(StudyError) as err:
        read_profile_csv(p)
    assert f"{p}:{line}:" in str(err.value)
    assert what in str(err.value)


def test_coarser_demand_is_repeated_onto_the_loading_grid(tmp_path):
    load = read_profile_csv(
        _write(
            tmp_path,
            "t,l\n" + "".join(f"2025-01-01T00:{m:02d},1\n" for m in range(0, 60, 15)),
            "l.csv",
        )
    )
    dem = read_profile_csv(
        _write(tmp_path, "t,d\n2025-01-01T00:00,4\n2025-01-01T00:30,8\n", "d.csv")
    )
    assert align(dem, load).columns["d"].tolist() == [4.0, 4.0, 8.0, 8.0]
    with pytest.raises(StudyError, match="whole multiple"):
        align(load, dem)
