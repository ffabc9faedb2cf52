"""The bench's report: ``report.md`` (a pass/fail table, then per scenario its checks and a
plot), one PNG per scenario and ``summary.json`` (verdicts, metrics, recordings).

Plots (matplotlib's object API, no pyplot global state; imported lazily so the device never
needs it): the constraint (true and metered) vs. its limit and trim; the EV limit vs. what
the CPO received, its reported demand and what the EVs drew and wanted; the daemon's state
over time, with the breaker.
"""

import json
from pathlib import Path
from typing import Any

from hil.bench.judge import Verdict
from hil.bench.record import Recording

STATE_ROWS = (
    "down",
    "starting",
    "normal",
    "curtailing",
    "fallback",
    "lockout",
    "maintenance",
    "emergency",
    "tripped",
)


def plot(rec: Recording, unit: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(10, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True, height_ratios=[3, 3, 2])
    s = rec.samples
    t = [x.t for x in s]

    def series(name: str) -> list[float]:
        return [float("nan") if getattr(x, name) is None else getattr(x, name) for x in s]

    ax1.plot(t, series("true_constraint"), label="constraint (site model)", color="C0")
    ax1.plot(t, series("constraint"), label="constraint (daemon's meter)", color="C0", alpha=0.4)
    ax1.step(t, series("limit"), where="post", label="limit", color="C3")
    ax1.step(t, series("trim"), where="post", label="trim", color="C3", ls=":")
    ax1.set_ylabel(unit)
    ax1.set_title(f"{rec.name}: constraint vs. limit")
    ax1.legend(loc="upper left", fontsize="small")

    ax2.step(t, series("ev_limit_kw"), where="post", label="EV limit (daemon)", color="C2")
    if rec.limits:
        lt, lv = [x.t for x in rec.limits], [x.limit_kw for x in rec.limits]
        ax2.plot(lt, lv, "o", ms=3, label="received by CPO", color="C2")
    ax2.plot(t, series("demand_kw"), label="EV demand (CPO report)", color="C1", alpha=0.7)
    ax2.plot(t, series("ev_kw"), label="EV draw", color="C4")
    ax2.plot(t, series("ev_wanted_kw"), label="EV wanted", color="C7", ls="--")
    ax2.set_ylabel("kW")
    ax2.set_title("EV limit vs. demand")
    ax2.legend(loc="upper left", fontsize="small")

    rows = {name: i for i, name in enumerate(STATE_ROWS)}
    ax3.step(t, [rows.get(x.state, 0) for x in s], where="post", color="C0", label="state")
    opened = [rows["tripped"] + 0.4 if x.breaker_status == "open" else float("nan") for x in s]
    ax3.plot(t, opened, "|", color="C3", label="breaker open")
    ax3.set_yticks(range(len(STATE_ROWS)), STATE_ROWS, fontsize="small")
    ax3.set_ylim(-0.5, len(STATE_ROWS) - 0.1)
    for at, what in rec.timeline:
        for ax in (ax1, ax2, ax3):
            ax.axvline(at, color="k", alpha=0.2, lw=0.8)
        ax3.annotate(what, (at, 0), rotation=90, fontsize="x-small", va="bottom", alpha=0.7)
    if rec.boundary_t is not None:
        for ax in (ax1, ax2, ax3):
            ax.axvline(rec.boundary_t, color="C3", alpha=0.5, ls="--")
    ax3.set_title("state timeline")
    ax3.set_xlabel("seconds since the daemon came up")
    ax3.legend(loc="upper left", fontsize="small")
    fig.savefig(path, dpi=80)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_rows(verdicts: list[Verdict]) -> list[tuple[str, str, str, str]]:
    rows = []
    for v in verdicts:
        why = v.note or "; ".join(f"{c.name}: {c.detail}" for c in v.failed)
        rows.append((v.name, v.result, f"{v.wall_s:.1f}", why))
    return rows


def write_report(
    out: Path,
    verdicts: list[Verdict],
    recordings: dict[str, Recording],
    units: dict[str, str],
    total_s: float,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    md = ["# gridwarden HIL bench report", ""]
    passed = sum(v.result == "PASS" for v in verdicts)
    md.append(f"{passed} of {len(verdicts)} scenarios passed; wall time {total_s:.0f} s.")
    md += ["", "| scenario | result | wall s | why not |", "|---|---|---|---|"]
    md += [f"| {a} | **{b}** | {c} | {_cell(d)} |" for a, b, c, d in table_rows(verdicts)]
    for v in verdicts:
        rec = recordings.get(v.name)
        md += ["", f"## {v.name}: {v.result}", ""]
        if rec is not None and rec.description:
            md += [rec.description.strip(), ""]
        md.append(f"Scenario file: `{v.source}`.")
        if v.note:
            md += ["", f"{v.result}: {v.note}"]
        if v.checks:
            md += ["", "| criterion | ok | measured |", "|---|---|---|"]
            md += [
                f"| {_cell(c.name)} | {'yes' if c.ok else '**NO**'} | {_cell(c.detail)} |"
                for c in v.checks
            ]
        if v.metrics is not None:
            m = v.metrics
            trip = "none" if m.first_trip_s is None else f"{m.first_trip_s:.1f} s"
            md += [
                "",
                f"Metrics: first trip {trip}; longest over the limit {m.longest_over_s:.1f} s;"
                f" excess {m.excess_unit_s:.1f} {units.get(v.name, '')}*s; unmet EV energy"
                f" {m.unmet_ev_pct:.1f} % (ideal {m.ideal_unmet_ev_pct} %);"
                f" {m.limit_changes} limit changes,"
                f" {m.reversals} reversals; states {', '.join(m.states)}.",
            ]
        if rec is not None and rec.timeline:
            md += ["", "Timeline: " + "; ".join(f"{t:.1f} s {w}" for t, w in rec.timeline) + "."]
        if rec is not None and rec.samples:
            png = out / f"{v.name}.png"
            plot(rec, units.get(v.name, ""), png)
            md += ["", f"![{v.name}]({png.name})"]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    summary: dict[str, Any] = {
        "passed": passed,
        "total": len(verdicts),
        "wall_s": round(total_s, 1),
        "scenarios": [
            {
                "name": v.name,
                "source": v.source,
                "result": v.result,
                "wall_s": v.wall_s,
                "note": v.note,
                "checks": [c.__dict__ for c in v.checks],
                "metrics": None if v.metrics is None else v.metrics.__dict__,
            }
            for v in verdicts
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, rec in recordings.items():
        (out / name / "recording.json").parent.mkdir(parents=True, exist_ok=True)
        (out / name / "recording.json").write_text(json.dumps(rec.as_dict()) + "\n")
    return path
