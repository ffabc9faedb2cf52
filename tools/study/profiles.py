"""Time-series profiles of a study: read and write the CSV files a planner supplies.

A profile is regularly spaced: a naive local start time (the site's clock, as schedules
are), a step in seconds, and one or more named columns of average kW over each interval.
A row's timestamp is the *start* of its interval. An empty cell is a gap in the data
(``nan``): the study treats it as the meter being silent for that interval.

CSV layout (header required)::

    timestamp,feeder_a,feeder_b
    2025-01-01T00:00,312.5,120.0
    2025-01-01T00:30,305.1,

No pandas: the files are small and the errors must name the file and line.
"""

import csv
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tools.study.errors import StudyError

FloatArray = npt.NDArray[np.float64]
UNIT_FACTORS = {"kW": 1.0, "MW": 1000.0}
WEEK_S = 7 * 86400.0


class Profile:
    """Named columns of average kW per interval, on a regular grid from ``start``."""

    __slots__ = ("columns", "source", "start", "step_s")

    def __init__(
        self, start: datetime, step_s: float, columns: dict[str, FloatArray], source: str = ""
    ) -> None:
        if step_s <= 0:
            raise StudyError(f"{source or 'profile'}: step must be positive")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise StudyError(f"{source or 'profile'}: columns differ in length")
        self.start = start
        self.step_s = float(step_s)
        self.columns = columns
        self.source = source

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def column(self, name: str | None = None) -> FloatArray:
        """One column by name; with ``name`` None the profile must have exactly one."""
        if name is None:
            if len(self.columns) != 1:
                raise StudyError(f"{self.source}: has columns {', '.join(self.names)}: choose one")
            return next(iter(self.columns.values()))
        if name not in self.columns:
            raise StudyError(f"{self.source}: no column {name!r} (has {', '.join(self.names)})")
        return self.columns[name]

    def start_time_of_week_s(self) -> float:
        """Seconds since Monday 00:00 of the first interval's start (local time)."""
        st = self.start
        return st.weekday() * 86400.0 + st.hour * 3600.0 + st.minute * 60.0 + st.second

    def timestamps(self) -> list[datetime]:
        step = timedelta(seconds=self.step_s)
        return [self.start + i * step for i in range(len(self))]

    def years(self) -> float:
        return len(self) * self.step_s / (365.0 * 86400.0)


def _parse_time(text: str, where: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise StudyError(
            f"{where}: bad timestamp {text!r} (use ISO 8601, e.g. 2025-01-01T00:30)"
        ) from None
    # local naive time: a timestamp with an offset is taken at its own wall-clock time
    return t.replace(tzinfo=None)


def read_profile_csv(path: str | Path, unit: str = "kW") -> Profile:
    """Read a profile CSV; values in ``unit`` (kW or MW) are returned in kW.

    Raises ``StudyError`` naming the file and line for anything wrong: a missing header, a
    bad timestamp or number, an irregular step, a negative value.
    """
    source = str(path)
    if unit not in UNIT_FACTORS:
        raise StudyError(f"{source}: unknown unit {unit!r} (use kW or MW)")
    factor = UNIT_FACTORS[unit]
    try:
        fh = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        raise StudyError(f"{source}: cannot read: {exc.strerror}") from exc
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise StudyError(f"{source}: empty file (need a header row)") from None
        except csv.Error as exc:
            raise StudyError(f"{source}:1: not CSV: {exc}") from exc
        names = [h.strip() for h in header[1:]]
        if not names or any(not n for n in names):
            raise StudyError(f"{source}:1: header needs a timestamp column and named value columns")
        if len(set(names)) != len(names):
            raise StudyError(f"{source}:1: duplicate column names")
        values: list[list[float]] = [[] for _ in names]
        start: datetime | None = None
        prev: datetime | None = None
        step_s = 0.0
        line = 1
        try:
            for line, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                where = f"{source}:{line}"
                if len(row) != len(names) + 1:
                    raise StudyError(f"{where}: expected {len(names) + 1} fields, got {len(row)}")
                t = _parse_time(row[0], where)
                if prev is None:
                    start = t
                else:
                    gap = (t - prev).total_seconds()
                    if step_s == 0.0:
                        if gap <= 0:
                            raise StudyError(f"{where}: timestamps must increase")
                        step_s = gap
                    elif abs(gap - step_s) > 1e-6:
                        raise StudyError(
                            f"{where}: irregular step: {gap:g} s after the previous row,"
                            f" expected {step_s:g} s (leave cells empty for gaps instead)"
                        )
                prev = t
                for j, cell in enumerate(row[1:]):
                    text = cell.strip()
                    if not text:
                        values[j].append(math.nan)
                        continue
                    try:
                        v = float(text)
                    except ValueError:
                        raise StudyError(
                            f"{where}: column {names[j]!r}: not a number: {text!r}"
                        ) from None
                    if not math.isfinite(v) or v < 0:
                        raise StudyError(
                            f"{where}: column {names[j]!r}: need a finite value >= 0, got {text}"
                        )
                    values[j].append(v * factor)
        except csv.Error as exc:
            raise StudyError(f"{source}:{line}: not CSV: {exc}") from exc
    if start is None or len(values[0]) < 2:
        raise StudyError(f"{source}: need at least two rows of data")
    cols = {n: np.asarray(v, dtype=np.float64) for n, v in zip(names, values, strict=True)}
    return Profile(start, step_s, cols, source)


def write_profile_csv(path: str | Path, profile: Profile, fmt: str = "%.3f") -> None:
    """Write a profile in the layout ``read_profile_csv`` reads (kW)."""
    names = profile.names
    cols = [profile.columns[n] for n in names]
    step = timedelta(seconds=profile.step_s)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write("timestamp," + ",".join(names) + "\n")
        t = profile.start
        for i in range(len(profile)):
            cells = ["" if math.isnan(c[i]) else fmt % c[i] for c in cols]
            fh.write(t.isoformat(timespec="minutes") + "," + ",".join(cells) + "\n")
            t += step


def align(demand: Profile, loading: Profile) -> Profile:
    """Bring a demand profile onto the loading profile's grid.

    Same step: must cover the same intervals. A coarser demand step that is a whole
    multiple of the loading step is repeated (average power holds through the interval).
    """
    if demand.start != loading.start:
        raise StudyError(
            f"{demand.source}: starts at {demand.start.isoformat()} but {loading.source}"
            f" starts at {loading.start.isoformat()}"
        )
    ratio = demand.step_s / loading.step_s
    if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        raise StudyError(
            f"{demand.source}: step {demand.step_s:g} s is not a whole multiple of"
            f" {loading.source}'s {loading.step_s:g} s"
        )
    k = round(ratio)
    cols = {}
    for name, v in demand.columns.items():
        rep = np.repeat(v, k) if k > 1 else v
        if len(rep) < len(loading):
            raise StudyError(
                f"{demand.source}: covers {len(rep)} intervals of {loading.step_s:g} s,"
                f" {loading.source} has {len(loading)}"
            )
        cols[name] = rep[: len(loading)]
    if np.isnan(np.concatenate(list(cols.values()))).any():
        raise StudyError(f"{demand.source}: demand profiles may not have gaps (empty cells)")
    return Profile(loading.start, loading.step_s, cols, demand.source)


def time_of_week(profile: Profile) -> FloatArray:
    """Local time of week (s) at the start of each interval."""
    n = len(profile)
    tow = (profile.start_time_of_week_s() + np.arange(n) * profile.step_s) % WEEK_S
    return np.asarray(tow, dtype=np.float64)


def constant_profile(
    start: datetime, step_s: float, n: int, values: dict[str, float | Sequence[float]]
) -> Profile:
    """A profile from constants or sequences (tests and examples)."""
    cols = {}
    for name, v in values.items():
        arr = np.full(n, float(v)) if isinstance(v, (int, float)) else np.asarray(v, dtype=float)
        if len(arr) != n:
            raise StudyError(f"column {name!r}: {len(arr)} values, expected {n}")
        cols[name] = arr
    return Profile(start, step_s, cols, "<constant>")
