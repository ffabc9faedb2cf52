"""The HIL bench: scenario files validate strictly, the judge can fail, and the whole
scenario set passes against the real daemon process (meter on a socat pty, CPO over HTTP,
breaker on the sim transport) while a deliberately broken setting makes a scenario fail."""

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from controller.config import Config
from hil.bench.cli import register_hil
from hil.bench.judge import FAIL, PASS, judge, limit_changes, over_limit
from hil.bench.record import Recording, Sample, StoredEvent
from hil.bench.runner import dump_toml
from hil.bench.scenario import (
    ScenarioError,
    daemon_config,
    load_scenario,
    parse_override,
    parse_scenario,
)

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "hil" / "scenarios").glob("*.toml"))

#: the issue's minimum set, by scenario name
REQUIRED = {
    "lmc-dlb-day",
    "lmc-rr-day",
    "clm-g100-lockout",
    "cpo-ignores-limits",
    "cpo-slow-within-deadline",
    "meter-silent-trip",
    "cpo-down-within-limits",
    "cmc-lease-lapse",
    "killed-during-trip",
    "noisy-meter",
    "tcc-schedule-boundary",
}

needs_tools = pytest.mark.skipif(
    shutil.which("socat") is None, reason="the bench needs socat for the meter's serial line"
)


def leftover_processes(tmp: Path) -> list[str]:
    """Processes whose command line mentions ``tmp`` (daemons, socat, mosquitto)."""
    out = subprocess.run(
        ["pgrep", "-af", str(tmp)], capture_output=True, text=True, check=False
    ).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def minimal(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "t",
        "duration_s": 10,
        "site": {"background_kw": 50.0},
        "controller": {
            "site": {"id": "s"},
            "scheme": {"type": "CLM", "limit": 100.0},
            "ev_site": {"max_kw": 60.0, "fallback_kw": 10.0},
            "meter": {"ct_rating_a": 400.0},
        },
    }
    data.update(extra)
    return data


# --- scenario files --------------------------------------------------------------------------


def test_every_scenario_file_validates_and_the_set_is_complete() -> None:
    names = [load_scenario(p).name for p in SCENARIOS]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED


def test_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        """
name = "bad"
duration_s = 10
[site]
background_kw = 50.0
[criteria]
trp = "expected"
[[events]]
at_s = 1
do = "explode"
[controller.site]
id = "s"
[controller.scheme]
type = "CLM"
limit = 100.0
[controller.ev_site]
max_kw = 60.0
fallback_kw = 10.0
"""
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    lines = err.value.problems
    assert any(
        line.startswith(f"{bad}: criteria.trp:") and "did you mean 'trip'" in line for line in lines
    )
    assert any(line.startswith(f"{bad}: events.0:") and "do = one of" in line for line in lines)


def test_the_controller_tables_are_checked_by_the_daemons_own_models() -> None:
    typo = minimal()
    typo["controller"]["scheme"]["limt"] = 3  # type: ignore[index]
    with pytest.raises(ScenarioError) as err:
        parse_scenario(typo, "x.toml")
    assert any(
        line.startswith("x.toml: controller.scheme.limt: unknown key")
        and "did you mean 'limit'" in line
        for line in err.value.problems
    )
    owned = minimal()
    owned["controller"]["meter"]["port"] = "/dev/ttyUSB9"  # type: ignore[index]
    with pytest.raises(ScenarioError) as err:
        parse_scenario(owned, "x.toml")
    assert err.value.problems == ["x.toml: controller.meter.port: set by the bench, leave it out"]


def test_cross_checks_and_triggers() -> None:
    with pytest.raises(ScenarioError, match="exactly one of at_s and after_state"):
        parse_scenario(minimal(events=[{"do": "background", "step_kw": 1.0}]))
    with pytest.raises(ScenarioError, match="central"):
        parse_scenario(minimal(central={"limit_kw": 10.0}))
    with pytest.raises(ScenarioError, match="trip = 'expected'"):
        parse_scenario(minimal(criteria={"trip_before_s": 3.0}))


def test_overrides_and_the_generated_daemon_config(tmp_path: Path) -> None:
    assert parse_override("controller.escalation.compliance_deadline_s=600") == {
        "controller": {"escalation": {"compliance_deadline_s": 600}}
    }
    with pytest.raises(ScenarioError):
        parse_override("no-equals-sign")
    scn = load_scenario(
        ROOT / "hil/scenarios/cpo_ignores_limits.toml",
        parse_override("controller.escalation.compliance_deadline_s=600"),
    )
    cfg = daemon_config(
        scn,
        meter_port=str(tmp_path / "tty"),
        meter_baud=38400,
        cpo_url="http://127.0.0.1:9/v1",
        cpo_token="t",
        store_path=tmp_path / "gw.sqlite",
        central_port=None,
    )
    text = dump_toml(cfg)
    parsed = Config.model_validate(tomllib.loads(text))
    assert parsed.escalation.compliance_deadline_s == 600
    assert parsed.breaker.transport == "sim"
    assert parsed.meter is not None and parsed.meter.transport == "rtu"
    assert parsed.hmi.port == 0


def test_register_hil_adds_the_run_command() -> None:
    parser = argparse.ArgumentParser(prog="gridwarden")
    register_hil(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["hil", "run", "a.toml", "b.toml", "--report", "out", "--jobs", "2"])
    assert args.scenarios == [Path("a.toml"), Path("b.toml")] and args.jobs == 2


# --- the judge ---------------------------------------------------------------------------------


def sample(t: float, true: float, state: str = "curtailing", **kw: object) -> Sample:
    values: dict[str, object] = {
        "t": t,
        "run": 1,
        "state": state,
        "constraint": true,
        "limit": 100.0,
        "trim": 95.0,
        "ev_limit_kw": 10.0,
        "sent_kw": 10.0,
        "demand_kw": 10.0,
        "breaker_status": "closed",
        "breaker_wanted": "permit_close",
        "alarms": [],
        "true_constraint": true,
        "background_kw": 50.0,
        "ev_kw": 10.0,
        "ev_wanted_kw": 10.0,
    }
    values.update(kw)
    return Sample(**values)  # type: ignore[arg-type]


def test_over_limit_and_reversals_are_measured() -> None:
    s = [sample(0.2 * i, 120.0 if 5 <= i < 15 else 90.0) for i in range(30)]
    longest, excess = over_limit(s)
    assert longest == pytest.approx(2.0) and excess == pytest.approx(40.0)
    assert limit_changes([10, 20, 20, 15, 30, 30]) == (3, 2)


def test_the_judge_fails_what_it_should() -> None:
    scn = parse_scenario(
        minimal(
            criteria={
                "trip": "expected",
                "trip_before_s": 3.0,
                "never_reclosed_after_trip": True,
                "max_over_limit_s": 1.0,
                "events_expected": ["TRIP"],
            }
        )
    )
    rec = Recording("t", "t.toml", "", 0.2)
    rec.samples = [sample(0.2 * i, 120.0) for i in range(10)]
    rec.samples += [
        sample(2.0 + 0.2 * i, 90.0, "tripped", breaker_status="open", breaker_wanted="trip")
        for i in range(5)
    ]
    rec.events = [StoredEvent(2.0, "TRIP", "critical", "trip")]
    ok = judge(scn, rec)
    assert [c.name for c in ok.failed] == ["over the limit <= 1 s at a time"]
    rec.samples.append(sample(3.2, 90.0, "tripped", breaker_status="closed"))
    again = judge(scn, rec)
    assert again.result == FAIL
    assert "never re-closed after the trip" in [c.name for c in again.failed]


# --- the real thing ----------------------------------------------------------------------------


async def run_bench(tmp: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hil.bench",
        "run",
        *args,
        "--report",
        str(tmp / "out"),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        code = await asyncio.wait_for(proc.wait(), 600)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    summary: dict[str, Any] = json.loads((tmp / "out" / "summary.json").read_text())
    return code, summary


@pytest.mark.slow
@pytest.mark.bench
@needs_tools
async def test_the_scenario_set_passes_against_the_real_daemon(tmp_path: Path) -> None:
    try:
        code, summary = await run_bench(tmp_path, *map(str, SCENARIOS), "--jobs", "2")
    finally:
        assert leftover_processes(tmp_path) == []
    results = {s["name"]: s for s in summary["scenarios"]}
    pending = {load_scenario(p).name for p in SCENARIOS if load_scenario(p).pending}
    failed = {n: s for n, s in results.items() if s["result"] != PASS and n not in pending}
    assert failed == {}
    assert code == 0
    assert summary["wall_s"] < 600
    out = tmp_path / "out"
    report = (out / "report.md").read_text()
    for name, s in results.items():
        assert f"## {name}: {s['result']}" in report
        if name not in pending:
            png = out / f"{name}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({name}.png)" in report


@pytest.mark.slow
@pytest.mark.bench
@needs_tools
async def test_a_long_compliance_deadline_makes_cpo_ignores_limits_fail(tmp_path: Path) -> None:
    """The criteria can fail: with a 600 s compliance deadline the controller never gets to
    emergency, so no trip is seen within the scenario's window."""
    try:
        code, summary = await run_bench(
            tmp_path,
            str(ROOT / "hil/scenarios/cpo_ignores_limits.toml"),
            "--set",
            "controller.escalation.compliance_deadline_s=600",
        )
    finally:
        assert leftover_processes(tmp_path) == []
    assert code == 1
    (result,) = summary["scenarios"]
    assert result["result"] == FAIL
    failed = {c["name"]: c["detail"] for c in result["checks"] if not c["ok"]}
    assert failed["trip within 12..22 s"] == "no trip"
    assert result["metrics"]["first_trip_s"] is None
