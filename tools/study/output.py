"""The study's outputs: CSV files, a terminal table and PNG plots.

matplotlib is imported only when a plot is drawn (Agg backend, no display needed), so a
run with ``--no-plots`` works without it.
"""

import csv
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tools.study.errors import StudyError
from tools.study.metrics import DURATION_LABELS, SiteSummary, monthly_unmet_kwh
from tools.study.simulate import SiteRun


def write_rows_csv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    """One CSV with the union of the rows' keys as header, in first-seen order."""
    header: list[str] = []
    for r in rows:
        header.extend(k for k in r if k not in header)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)


def write_timeseries_csv(path: Path, run: SiteRun, start: datetime) -> None:
    step = timedelta(seconds=run.step_s)
    cols = (
        run.background_kw,
        run.wanted_kw,
        run.ev_limit_kw,
        run.draw_kw,
        run.constraint,
        run.limit,
    )
    lists = [c.tolist() for c in cols]
    fb = run.fallback.tolist()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(
            "timestamp,background_kw,wanted_kw,ev_limit_kw,drawn_kw,"
            f"constraint_{run.unit},limit_{run.unit},fallback\n"
        )
        t = start
        for i in range(len(fb)):
            cells = ["" if math.isnan(c[i]) else f"{c[i]:.3f}" for c in lists]
            fh.write(f"{t.isoformat(timespec='minutes')},{','.join(cells)},{int(fb[i])}\n")
            t += step


SUMMARY_COLUMNS = (
    ("site", "site", "s"),
    ("scheme", "scheme", "s"),
    ("unmet_pct", "unmet %", ".2f"),
    ("pre_utilisation_pct", "pre util %", ".2f"),
    ("post_utilisation_pct", "post util %", ".2f"),
    ("unmet_mwh", "unmet MWh", ".2f"),
    ("curtailment_events", "events", "d"),
    ("curtailed_hours", "curtailed h", ".1f"),
    ("longest_event_h", "longest h", ".1f"),
)


def format_table(rows: Sequence[dict[str, object]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A plain aligned text table (right-aligned numbers)."""
    head = [c[1] for c in columns]
    body = []
    for r in rows:
        line = []
        for key, _title, fmt in columns:
            v = r.get(key, "")
            line.append(format(v, fmt) if isinstance(v, (int, float)) and fmt != "s" else str(v))
        body.append(line)
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    out = [
        "  ".join(
            h.ljust(w) if i < 2 else h.rjust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    ]
    out.append("  ".join("-" * w for w in widths))
    for b in body:
        out.append(
            "  ".join(
                v.ljust(w) if i < 2 else v.rjust(w)
                for i, (v, w) in enumerate(zip(b, widths, strict=True))
            )
        )
    return "\n".join(out)


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise StudyError(
            "plots need matplotlib: pip install 'gridwarden[study]' (or run with --no-plots)"
        ) from exc
    return plt


def plot_site(path: Path, run: SiteRun, summary: SiteSummary, start: datetime) -> None:
    """One PNG per site: the worst week, unmet energy per month, event durations."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(10, 10), layout="constrained")
    h = run.step_s / 3600.0
    per_week = max(1, round(7 * 24 / h))
    unmet = run.wanted_kw - run.draw_kw
    n = len(unmet)
    if n > per_week:
        sums = np.convolve(unmet, np.ones(per_week), mode="valid")
        a = int(np.argmax(sums))
    else:
        a = 0
    b = min(n, a + per_week)
    x = [start + timedelta(seconds=run.step_s * i) for i in range(a, b)]
    ax = axes[0]
    ax.step(x, run.wanted_kw[a:b], where="post", label="EV demand wanted (kW)", color="0.6")
    ax.step(x, run.draw_kw[a:b], where="post", label="EV drawn (kW)", color="tab:blue")
    ax.step(x, run.ev_limit_kw[a:b], where="post", label="EV limit (kW)", color="tab:red", lw=0.8)
    ax.set_title(f"{run.name} ({run.scheme}): the week with the most unmet energy")
    ax.set_ylabel("kW")
    ax.legend(loc="upper right", fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(x, run.constraint[a:b], color="tab:green", lw=0.8, label=f"constraint ({run.unit})")
    ax2.plot(x, run.limit[a:b], color="tab:green", ls="--", lw=0.8, label="limit")
    ax2.set_ylabel(run.unit)
    ax2.legend(loc="upper left", fontsize=8)
    months = monthly_unmet_kwh(run, start) / 1000.0
    axes[1].bar(range(1, 13), months, color="tab:red")
    axes[1].set_xticks(range(1, 13))
    axes[1].set_title(f"unmet energy per month (MWh); year: {summary.unmet_pct:.2f} % unmet")
    axes[2].bar(DURATION_LABELS, summary.duration_counts, color="tab:purple")
    axes[2].set_title(f"curtailment events by duration ({len(summary.events)} events)")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_sweep(
    path: Path,
    title: str,
    utilisations: Sequence[float],
    ratios: Sequence[float],
    unmet: dict[str, list[list[float]]],
) -> None:
    """Unmet energy (%) vs utilisation and headroom ratio, one panel per scheme."""
    plt = _pyplot()
    schemes = list(unmet)
    fig, axes = plt.subplots(
        1, len(schemes), figsize=(5 * len(schemes), 4), squeeze=False, layout="constrained"
    )
    for ax, sch in zip(axes[0], schemes, strict=True):
        grid = np.array(unmet[sch])
        im = ax.imshow(grid, origin="lower", aspect="auto", vmin=0, vmax=100, cmap="viridis")
        ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
        ax.set_yticks(range(len(utilisations)), [f"{u * 100:g}%" for u in utilisations])
        ax.set_xlabel("headroom ratio (installed / firm headroom)")
        ax.set_ylabel("utilisation")
        ax.set_title(f"{sch}: energy unmet %")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="w", fontsize=7)
        fig.colorbar(im, ax=ax)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
