"""scripts/install-pi into a temporary root prefix: layout, owners, modes, a real venv with
the package, a site's config kept, and a second run that changes nothing.

The install is real: a venv under the prefix and ``pip install`` of this checkout with its
dependencies (from pip's cache once it is warm). The venv uses the interpreter this test
suite runs on, so the installed controller is known to work with it.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLER = ROOT / "scripts" / "install-pi"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the installer sets owners: needs root"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd (Debian passwd)"),
]

# a minimal root file system: Debian's dialout exists, Raspberry Pi OS's gpio does not
PASSWD = "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"
GROUP = "root:x:0:\ndialout:x:20:\nnogroup:x:65534:\n"
SHADOW = "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n"
GSHADOW = "root:*::\ndialout:*::\nnogroup:*::\n"


def make_root(prefix: Path) -> Path:
    etc = prefix / "etc"
    etc.mkdir(parents=True)
    for name, text, mode in (
        ("passwd", PASSWD, 0o644),
        ("group", GROUP, 0o644),
        ("shadow", SHADOW, 0o640),
        ("gshadow", GSHADOW, 0o640),
    ):
        (etc / name).write_text(text)
        (etc / name).chmod(mode)
    return prefix


def install(prefix: Path) -> subprocess.CompletedProcess[str]:
    python = getattr(sys, "_base_executable", sys.executable)
    return subprocess.run(
        ["bash", str(INSTALLER), "--prefix", str(prefix), "--python", python],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def entries(path: Path, name: str) -> list[list[str]]:
    return [line.split(":") for line in path.read_text().splitlines() if line.split(":")[0] == name]


@dataclass(frozen=True)
class Ids:
    uid: int
    gid: int


def ids(prefix: Path) -> Ids:
    (user,) = entries(prefix / "etc" / "passwd", "gridwarden")
    (group,) = entries(prefix / "etc" / "group", "gridwarden")
    return Ids(int(user[2]), int(group[2]))


def snapshot(prefix: Path) -> dict[str, tuple[object, ...]]:
    """Every path under the prefix with its type, mode, owner, mtime and content hash."""
    out: dict[str, tuple[object, ...]] = {}
    for path in [prefix, *sorted(prefix.rglob("*"))]:
        st = path.lstat()
        if path.is_symlink():
            content: object = os.readlink(path)
        elif path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = None
        out[str(path.relative_to(prefix))] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            content,
        )
    return out


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


HOST_FILES = [Path("/etc", name) for name in ("passwd", "group", "shadow", "gshadow")]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A prefix installed into twice: the outputs of both runs."""
    prefix = make_root(tmp_path_factory.mktemp("root"))
    host = [p.read_bytes() if p.exists() else None for p in HOST_FILES]
    had_build = (ROOT / "build").exists()
    first = install(prefix)
    assert first.returncode == 0, first.stdout + first.stderr
    before = snapshot(prefix)
    second = install(prefix)
    assert second.returncode == 0, second.stdout + second.stderr
    assert snapshot(prefix) == before, "the second run changed the installation"
    # the host's own user database is not touched, nor the checkout (pip builds a copy)
    assert [p.read_bytes() if p.exists() else None for p in HOST_FILES] == host
    assert (ROOT / "build").exists() == had_build
    return prefix, first.stdout, second.stdout


def test_service_user_is_created_once_in_the_prefix_with_its_groups(fresh) -> None:
    prefix, _, _ = fresh
    etc = prefix / "etc"
    (user,) = entries(etc / "passwd", "gridwarden")
    assert user[5:] == ["/var/lib/gridwarden", "/usr/sbin/nologin"]
    assert len(entries(etc / "shadow", "gridwarden")) == 1
    assert len(entries(etc / "gshadow", "gridwarden")) == 1
    for name in ("dialout", "gpio"):
        (group,) = entries(etc / "group", name)
        assert group[3].split(",") == ["gridwarden"]
        (gshadow,) = entries(etc / "gshadow", name)
        assert gshadow[3].split(",") == ["gridwarden"]
    assert entries(etc / "group", "dialout")[0][2] == "20"  # an existing group is kept


def test_layout_owners_and_modes(fresh) -> None:
    prefix, _, _ = fresh
    gw = ids(prefix)
    etc = prefix / "etc" / "gridwarden"
    assert owner_mode(etc) == (0, gw.gid, 0o750)
    assert owner_mode(etc / "site.toml") == (0, gw.gid, 0o640)
    assert (etc / "site.toml").read_bytes() == (ROOT / "config" / "lmc.toml").read_bytes()
    assert owner_mode(etc / "cpo.token") == (0, gw.gid, 0o640)
    assert (etc / "cpo.token").read_bytes() == b""
    assert owner_mode(prefix / "var" / "lib" / "gridwarden") == (gw.uid, gw.gid, 0o750)
    unit = prefix / "etc" / "systemd" / "system" / "gridwarden.service"
    assert unit.read_bytes() == (ROOT / "systemd" / "gridwarden.service").read_bytes()
    assert owner_mode(unit) == (0, 0, 0o644)
    rule = prefix / "etc" / "udev" / "rules.d" / "99-gridwarden-rs485.rules"
    assert rule.read_bytes() == (ROOT / "systemd" / "99-gridwarden-rs485.rules").read_bytes()
    opt = prefix / "opt" / "gridwarden"
    assert owner_mode(opt) == (0, 0, 0o755)
    # the unit's Documentation= pages are there
    for doc in ("operations.md", "architecture.md"):
        assert (opt / "docs" / doc).read_bytes() == (ROOT / "docs" / doc).read_bytes()
    # nothing under the prefix belongs to the service user but its state directory
    owned = {p for p in prefix.rglob("*") if p.lstat().st_uid == gw.uid}
    assert owned == {prefix / "var" / "lib" / "gridwarden"}


def test_installed_controller_runs_from_the_prefix_venv(fresh) -> None:
    prefix, _, _ = fresh
    venv = prefix / "opt" / "gridwarden" / ".venv"
    gridwarden = venv / "bin" / "gridwarden"
    proc = subprocess.run(
        [str(gridwarden), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "check-config" in proc.stdout
    # a real, non-editable install: the package lives in the venv, not in this checkout
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import controller; print(controller.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=prefix,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where


def test_reports_the_unedited_example_and_enables_nothing_under_a_prefix(fresh) -> None:
    prefix, first, second = fresh
    for out in (first, second):
        assert "check-config ok" in out
        assert "unedited example" in out
        assert "systemctl not run" in out
    assert "creating system user gridwarden" in first
    assert "creating" not in second and "installed " not in second
    assert not (prefix / "etc" / "systemd" / "system" / "multi-user.target.wants").exists()


def test_a_sites_config_and_token_are_never_overwritten(tmp_path: Path) -> None:
    prefix = make_root(tmp_path)
    # a group made by hand before: the user joins it instead of failing to create it
    with (prefix / "etc" / "group").open("a") as f:
        f.write("gridwarden:x:1234:\n")
    with (prefix / "etc" / "gshadow").open("a") as f:
        f.write("gridwarden:!::\n")
    etc = prefix / "etc" / "gridwarden"
    etc.mkdir()
    site = (ROOT / "config" / "clm.toml").read_bytes() + b"\n# edited on site\n"
    (etc / "site.toml").write_bytes(site)
    (etc / "site.toml").chmod(0o600)
    (etc / "cpo.token").write_bytes(b"secret-token\n")
    proc = install(prefix)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (etc / "site.toml").read_bytes() == site
    assert (etc / "site.toml").stat().st_mode & 0o777 == 0o600  # not even its mode
    assert (etc / "cpo.token").read_bytes() == b"secret-token\n"
    assert "check-config ok" in proc.stdout and "unedited example" not in proc.stdout
    assert "not readable by the group gridwarden" in proc.stdout  # 0600 root: reported
    assert (
        ids(prefix).gid == 1234 and entries(prefix / "etc" / "passwd", "gridwarden")[0][3] == "1234"
    )

    # an invalid config is reported (exit 2) but everything else is still installed
    broken = b"[site]\nid = 'x'\n"
    (etc / "site.toml").write_bytes(broken)
    proc = install(prefix)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "does not pass check-config" in proc.stdout
    assert (etc / "site.toml").read_bytes() == broken
    assert (prefix / "etc" / "systemd" / "system" / "gridwarden.service").is_file()


def test_refuses_a_prefix_that_is_not_a_root_file_system(tmp_path: Path) -> None:
    proc = install(tmp_path)
    assert proc.returncode == 1
    assert "etc/passwd" in proc.stderr
    assert list(tmp_path.iterdir()) == []
