"""Configuration: the shipped examples validate, mistakes are reported by file and key,
and `gridwarden check-config` behaves as an installer expects (exit codes, no traceback)."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from controller import core
from controller.config import load_config, parse_config
from controller.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config").glob("*.toml"))


def example(name: str) -> dict[str, Any]:
    with open(ROOT / "config" / f"{name}.toml", "rb") as fh:
        return tomllib.load(fh)


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "site.toml")
    return info.value.problems


def test_every_scheme_has_an_example() -> None:
    assert {p.stem for p in EXAMPLES} >= {"clm", "tcc", "lmc", "cmc", "demo"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_validate_and_build_core_settings(path: Path) -> None:
    cfg = load_config(path)
    settings = cfg.core_settings()
    assert settings.scheme == cfg.scheme.type
    assert settings.site_max_kw == cfg.ev_site.max_kw
    # a core can run on it
    state = core.State(settings, 0.0)
    _, actions = core.step(settings, state, core.Inputs(), 1.0)
    assert actions.limit is not None
    assert actions.limit.limit_kw == cfg.ev_site.fallback_kw


def test_unknown_key_names_file_path_and_suggests_the_right_one() -> None:
    data = example("lmc")
    data["scheme"]["sensitivty"] = data["scheme"].pop("sensitivity")
    assert problems(data) == [
        "site.toml: scheme.sensitivty: unknown key 'sensitivty' (did you mean 'sensitivity'?)"
    ]


def test_every_problem_is_reported_at_once() -> None:
    data = example("lmc")
    data["scheme"]["unit"] = "MW"
    data["ev_site"]["fallback_kw"] = 1000.0
    data["escalation"]["meter_timeout_s"] = -1
    data["meter"]["baud"] = 1234
    lines = problems(data)
    assert len(lines) == 4
    assert any(line.startswith("site.toml: scheme.unit: ") for line in lines)
    assert any("ev_site: need min_kw <= fallback_kw <= max_kw" in line for line in lines)
    assert any(line.startswith("site.toml: escalation.meter_timeout_s: ") for line in lines)
    assert any("meter: baud: must be one of" in line for line in lines)


def test_missing_required_sections_are_named() -> None:
    assert problems({"site": {"id": "x"}}) == [
        "site.toml: scheme: missing required key",
        "site.toml: ev_site: missing required key",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("central"), "scheme CMC needs a [central] section"),
        (lambda d: d["scheme"].update(schedule=[{"start": "07:00", "limit": 1}]), "not both"),
        (lambda d: d.update(g100={"enabled": True}), "CLM and TCC schemes only"),
        (lambda d: d["scheme"].update(type="CLM", sensitivity=0.5), "sensitivity must be 1"),
        (lambda d: d["cpo"].pop("token_file"), "give token or token_file"),
        (lambda d: d["escalation"].update(meter_trip_timeout_s=5.0), "meter_trip_timeout_s"),
        (lambda d: d["control"].update(refresh_s=600.0), "refresh_s must be shorter"),
        (lambda d: d["control"].update(limit_validity_s=float("inf")), "finite number"),
        (lambda d: d["escalation"].update(trip_delay_s=1e9), "less than or equal to 3600"),
        (lambda d: d["meter"].update(poll_interval_s=20.0), "poll_interval_s must be shorter"),
        (lambda d: d["cpo"].update(demand_poll_s=60.0), "demand_poll_s must be shorter"),
        (lambda d: d["scheme"].update(margin=300.0), "margin must be smaller"),
        (lambda d: d["meter"].update(ct_rating_a=100.0), "below the trip level"),
        (lambda d: d.update(hmi={"users": {"central": "x"}}), "reserved"),
    ],
)
def test_inconsistent_settings_are_refused(change: Any, expected: str) -> None:
    data = example("cmc")
    data.setdefault("control", {})
    data.setdefault("escalation", {})
    change(data)
    lines = problems(data)
    assert any(expected in line for line in lines), lines


def test_tcc_schedule_becomes_a_weekly_schedule_in_local_time() -> None:
    limit = load_config(ROOT / "config" / "tcc.toml").core_settings().limit
    assert limit is not None
    monday_1630 = 16 * 3600 + 30 * 60
    saturday_noon = 5 * 86400 + 12 * 3600
    assert limit.value_at(monday_1630) == 40.0
    assert limit.value_at(monday_1630 + 4 * 3600) == 100.0
    assert limit.value_at(saturday_noon) == 100.0
    assert limit.value_at(saturday_noon, clock_synced=False) == 40.0


def test_schedule_with_bad_day_or_time_is_refused() -> None:
    data = example("tcc")
    data["scheme"]["schedule"][0]["days"] = ["funday"]
    data["scheme"]["schedule"][1]["start"] = "25:00"
    lines = problems(data)
    assert any("scheme.schedule.0.days" in line and "funday" in line for line in lines)
    assert any("scheme.schedule.1.start" in line for line in lines)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )


def test_check_config_cli_ok_prints_the_effective_settings() -> None:
    proc = run_cli("check-config", "config/lmc.toml")
    assert proc.returncode == 0, proc.stderr
    assert "scheme LMC" in proc.stdout
    assert "limit: 400 A" in proc.stdout


def test_check_config_cli_json_hides_secrets() -> None:
    proc = run_cli("check-config", "--json", "config/demo.toml")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["scheme"]["type"] == "LMC"
    assert "demo-token" not in proc.stdout
    assert data["control"]["release_hold_s"] == 5.0  # overrides and defaults, filled in
    assert data["control"]["deadband_kw"] == 0.5


def test_check_config_cli_reports_errors_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "lmc.toml"
    bad.write_text((ROOT / "config" / "lmc.toml").read_text().replace("sensitivity", "sensitivty"))
    proc = run_cli("check-config", str(bad))
    assert proc.returncode == 1
    assert f"{bad}: scheme.sensitivty: unknown key 'sensitivty'" in proc.stderr
    assert "Traceback" not in proc.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[site\n")
    proc = run_cli("check-config", str(broken), str(tmp_path / "missing.toml"))
    assert proc.returncode == 1
    assert f"{broken}: not valid TOML" in proc.stderr
    assert "missing.toml: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_readme_configuration_reference_is_current() -> None:
    from tools.config_reference import README, readme_section, render

    assert readme_section(README.read_text()) == render(), (
        "README's configuration reference is stale: python -m tools.config_reference --write"
    )


def test_a_schedule_entry_without_days_applies_every_day() -> None:
    data = example("tcc")
    data["scheme"]["schedule"] = [
        {"start": "00:00", "limit": 80.0},
        {"start": "18:00", "limit": 40.0},
    ]
    limit = parse_config(data, "site.toml").core_settings().limit
    assert limit is not None
    assert limit.value_at(2 * 86400 + 19 * 3600) == 40.0  # Wednesday 19:00
    assert limit.value_at(6 * 86400 + 12 * 3600) == 80.0  # Sunday noon
