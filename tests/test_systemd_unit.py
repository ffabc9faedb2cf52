"""The systemd unit: notify + watchdog + restart, hardened, and accepted by systemd."""

import configparser
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "gridwarden.service"


def test_unit_runs_the_daemon_under_a_watchdog_and_restarts_it() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    svc = unit["Service"]
    assert svc["Type"] == "notify"
    assert svc["Restart"] == "always"
    assert svc["WatchdogSec"].endswith("s")
    assert "gridwarden run --config" in svc["ExecStart"]
    assert "gridwarden check-config" in svc["ExecStartPre"]
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"


def test_systemd_accepts_the_unit() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of systemd on every Debian machine"
    proc = subprocess.run(
        [analyze, "verify", str(UNIT)], capture_output=True, text=True, check=False, timeout=60
    )
    # the executables exist only on a device: every other complaint is a defect of the unit
    complaints = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and "is not executable" not in line
    ]
    assert complaints == []
