"""Password hashes, sessions, lock-out and the hash-password command (no server)."""

import argparse
import io
import sys

import pytest

from controller.hmi import auth
from controller.hmi.cli import register_hash_password
from controller.hmi.status import HIDDEN, breaker_confirmation, hide_secrets


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_hash_is_salted_self_describing_and_verifies_only_the_right_secret() -> None:
    a, b = auth.hash_password("2468", n=2**10), auth.hash_password("2468", n=2**10)
    assert a != b  # random salt
    assert a.startswith("scrypt$1024$8$1$") and a.count("$") == 5
    assert auth.verify_password("2468", a) and auth.verify_password("2468", b)
    assert not auth.verify_password("2469", a)
    assert not auth.verify_password("", a)


def test_unknown_accounts_and_malformed_hashes_never_verify() -> None:
    assert not auth.verify_password("x", None)
    assert not auth.verify_password("x", "plain-text-password")
    assert not auth.verify_password("x", "scrypt$1000$8$1$AAAA$AAAA")  # n not a power of 2
    assert auth.check_users({"ok": auth.hash_password("abcd", n=2**10), "bad": "nope"}) == [
        "hmi.users.bad: expected scrypt$n$r$p$salt_b64$hash_b64"
    ]
    with pytest.raises(ValueError, match="empty"):
        auth.hash_password("")


def test_sessions_expire_when_idle_and_at_their_absolute_age() -> None:
    clock = Clock()
    sessions = auth.Sessions(idle_s=60.0, max_s=300.0, clock=clock)
    s = sessions.create("alice")
    assert s.csrf != s.token and len(s.token) >= 32
    clock.t += 59.0
    assert sessions.get(s.token) is s  # touched: idle time restarts
    clock.t += 59.0
    assert sessions.get(s.token) is s
    clock.t += 61.0
    assert sessions.get(s.token) is None
    s2 = sessions.create("bob")
    for _ in range(6):
        clock.t += 55.0
        last = sessions.get(s2.token)
    assert last is None  # 330 s > max_s although never idle for 60 s
    assert sessions.get("forged") is None and sessions.get(None) is None


def test_lockout_per_account_and_per_address_then_released() -> None:
    clock = Clock()
    lock = auth.LockOut(max_failures=3, window_s=60.0, lockout_s=120.0, clock=clock)
    assert not lock.failure("account:a", "addr:1")
    assert not lock.failure("account:b", "addr:1")
    assert lock.locked_for_s("account:a") == 0.0
    assert lock.failure("account:c", "addr:1")  # third failure from the same address
    assert lock.locked_for_s("account:z", "addr:1") == pytest.approx(120.0)
    assert lock.locked_for_s("account:a", "addr:2") == 0.0
    clock.t += 121.0
    assert lock.locked_for_s("addr:1") == 0.0


def test_lockout_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    lock = auth.LockOut(max_failures=3, window_s=60.0, lockout_s=120.0, clock=clock)
    for _ in range(5):
        assert not lock.failure("account:a")
        clock.t += 31.0  # never three within 60 s
    lock.failure("account:a")
    lock.success("account:a")
    assert not lock.failure("account:a")


def run_cli(argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch) -> int:
    parser = argparse.ArgumentParser(prog="gridwarden")
    register_hash_password(parser.add_subparsers(dest="command", required=True))
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_hash_password_command_prints_a_line_for_the_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["hash-password", "alice"], "s3cret-pin\n", monkeypatch) == 0
    out = capsys.readouterr().out.strip()
    account, _, quoted = out.partition(" = ")
    assert account == "alice" and quoted.startswith('"scrypt$')
    assert auth.verify_password("s3cret-pin", quoted.strip('"'))
    assert run_cli(["hash-password"], "1234\n", monkeypatch) == 0
    assert auth.verify_password("1234", capsys.readouterr().out.strip())
    assert run_cli(["hash-password"], "12\n", monkeypatch) == 2  # too short
    assert run_cli(["hash-password", "bad name"], "1234\n", monkeypatch) == 2


def test_effective_config_hides_secrets_but_keeps_the_rest() -> None:
    cfg = {
        "cpo": {"base_url": "http://x", "token": "**********", "token_file": "/etc/t"},
        "central": {"password": "**********", "tls": {"key_file": "/k"}},
        "hmi": {"users": {"alice": "scrypt$..."}, "port": 8080},
    }
    out = hide_secrets(cfg)
    assert out["cpo"] == {"base_url": "http://x", "token": HIDDEN, "token_file": HIDDEN}
    assert out["central"] == {"password": HIDDEN, "tls": {"key_file": HIDDEN}}
    assert out["hmi"] == {"users": {"alice": HIDDEN}, "port": 8080}


def test_breaker_confirmation_from_the_aux_contact() -> None:
    assert breaker_confirmation("trip", "open") == "confirmed"
    assert breaker_confirmation("trip", "closed") == "mismatch"
    assert breaker_confirmation("permit_close", "unknown") == "no aux contact"
    assert breaker_confirmation(None, "closed") == "no order yet"
