"""The systemd unit: notify + watchdog + restart, hardened, and accepted by systemd."""

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "gridwarden.service"
OPERATIONS = ROOT / "docs" / "operations.md"


def service_lines() -> list[tuple[str, str]]:
    """(key, value) of every assignment in [Service], in order (keys may repeat)."""
    section, out = "", []
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def values(key: str) -> list[str]:
    return [v for k, v in service_lines() if k == key]


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


def test_devices_are_only_the_serial_adapters_and_the_gpio_chips() -> None:
    assert values("DevicePolicy") == ["closed"]
    allowed = {v.split()[0] for v in values("DeviceAllow")}
    assert allowed == {"char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-gpiochip"}
    assert values("PrivateDevices") in ([], ["no"])  # it would hide them
    # device access is by group: a private user namespace would leave the groups unmapped
    assert set(values("SupplementaryGroups")[0].split()) == {"dialout", "gpio"}
    assert values("PrivateUsers") in ([], ["no"])
    assert values("CapabilityBoundingSet") == [""]
    # the state directory is the only writable place and matches the installer's mode
    assert values("StateDirectory") == ["gridwarden"]
    assert values("StateDirectoryMode") == ["0750"]
    assert values("ReadWritePaths") == []


def test_the_clock_state_stays_readable() -> None:
    """clock.py asks adjtimex(2) whether NTP synchronised the clock; ProtectClock=yes and a
    filter denying @clock make that call fail (EPERM) and schedules would never follow the
    clock. Setting the clock stays impossible without CAP_SYS_TIME."""
    assert values("ProtectClock") in ([], ["no"])
    filters = values("SystemCallFilter")
    assert filters[0] == "@system-service"
    denied = next(i for i, f in enumerate(filters) if f.startswith("~"))
    assert "@privileged" in filters[denied]  # @privileged contains @clock ...
    assert "adjtimex" in filters[denied + 1 :]  # ... so adjtimex is allowed again after it
    assert values("SystemCallErrorNumber") == ["EPERM"]  # an error, never a SIGSYS kill


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


def recorded_exposure() -> float:
    found = re.search(r"Recorded exposure[^*\n]*\*\*(\d+\.\d+)", OPERATIONS.read_text())
    assert found, "docs/operations.md records the unit's exposure as 'Recorded exposure ... **X.Y'"
    return float(found.group(1))


def test_exposure_is_no_worse_than_recorded_in_the_docs() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
    )
    out = proc.stdout + proc.stderr
    if "--offline" in out and "nrecognized option" in out:  # systemd < 250
        pytest.skip("this systemd-analyze has no offline security analysis")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert found, out
    assert recorded_exposure() <= 2.0
    assert float(found.group(1)) <= recorded_exposure(), out


def test_documentation_names_pages_that_the_installer_copies() -> None:
    docs = re.findall(r"file:///opt/gridwarden/docs/(\S+)", UNIT.read_text())
    assert "operations.md" in docs
    for page in docs:
        assert (ROOT / "docs" / page).is_file(), page  # scripts/install-pi copies docs/*.md
