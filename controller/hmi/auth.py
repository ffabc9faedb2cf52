"""Operator authentication for the HMI: salted password hashes, sessions, lock-out.

Pure standard library and no I/O, so it is tested without a server. Time is injected
(monotonic seconds) for sessions and lock-outs.

- Hashes are ``scrypt$n$r$p$salt_b64$hash_b64`` (``hashlib.scrypt``, random 16-byte salt),
  verified in constant time. A password or a PIN is the same thing to this module.
- Sessions are random tokens kept in memory only (a restart logs everybody out) with an
  idle and an absolute expiry; each session carries its own CSRF token.
- Lock-out: ``max_failures`` failed logins for one account, or from one client address,
  within ``window_s`` lock that account/address out for ``lockout_s``. A locked-out login
  is refused without even checking the password (so it cannot be used as an oracle).
"""

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
_MAXMEM = 64 * 1024 * 1024

# defaults until HmiConfig carries them (see docs/hmi.md)
SESSION_IDLE_S = 15 * 60.0
SESSION_MAX_S = 8 * 3600.0
MAX_FAILURES = 5
FAILURE_WINDOW_S = 15 * 60.0
LOCKOUT_S = 5 * 60.0

# a fixed hash to spend the same time on unknown accounts as on known ones
_DUMMY_SALT = b"gridwarden-dummy"


class PasswordHashError(ValueError):
    """A stored hash string is not in the ``scrypt$n$r$p$salt$hash`` format."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new salted hash line for ``[hmi.users]``."""
    if not secret:
        raise ValueError("an empty password or PIN cannot be hashed")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=HASH_BYTES
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise PasswordHashError("expected scrypt$n$r$p$salt_b64$hash_b64")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise PasswordHashError(f"malformed hash: {exc}") from exc
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or not digest:
        raise PasswordHashError("scrypt parameters out of range")
    return n, r, p, salt, digest


def verify_password(secret: str, stored: str | None) -> bool:
    """True if ``secret`` matches ``stored``; an unknown account (None) or a malformed
    hash costs the same scrypt work and is False."""
    try:
        n, r, p, salt, expected = parse_hash(stored) if stored else (0, 0, 0, b"", b"")
    except PasswordHashError:
        stored = None
    if not stored:
        n, r, p, salt, expected = SCRYPT_N, SCRYPT_R, SCRYPT_P, _DUMMY_SALT, b"\0" * HASH_BYTES
    digest = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=len(expected)
    )
    return hmac.compare_digest(digest, expected) and stored is not None


@dataclass
class Session:
    account: str
    token: str
    csrf: str
    created: float
    last_seen: float


class Sessions:
    """In-memory session tokens with idle and absolute expiry."""

    def __init__(
        self,
        *,
        idle_s: float = SESSION_IDLE_S,
        max_s: float = SESSION_MAX_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self._by_token: dict[str, Session] = {}

    def create(self, account: str) -> Session:
        self._expire()
        now = self.clock()
        s = Session(account, secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (touching it), or None."""
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None:
            return None
        now = self.clock()
        if now - s.last_seen > self.idle_s or now - s.created > self.max_s:
            del self._by_token[token]
            return None
        s.last_seen = now
        return s

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def __len__(self) -> int:
        self._expire()
        return len(self._by_token)

    def _expire(self) -> None:
        now = self.clock()
        dead = [
            t
            for t, s in self._by_token.items()
            if now - s.last_seen > self.idle_s or now - s.created > self.max_s
        ]
        for t in dead:
            del self._by_token[t]


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LockOut:
    """Counts failed logins per key ("account:alice", "addr:10.0.0.5")."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        lockout_s: float = LOCKOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self._keys: dict[str, _Failures] = {}

    def locked_for_s(self, *keys: str) -> float:
        """Seconds until every one of ``keys`` is unlocked (0 if none is locked)."""
        now = self.clock()
        worst = 0.0
        for k in keys:
            f = self._keys.get(k)
            if f is not None and f.locked_until > now:
                worst = max(worst, f.locked_until - now)
        return worst

    def failure(self, *keys: str) -> bool:
        """Record one failure against each key; True if any key became locked."""
        now = self.clock()
        locked = False
        for k in keys:
            f = self._keys.setdefault(k, _Failures())
            f.times = [t for t in f.times if now - t < self.window_s]
            f.times.append(now)
            if len(f.times) >= self.max_failures:
                f.locked_until = now + self.lockout_s
                f.times.clear()
                locked = True
        if len(self._keys) > 10_000:  # bound memory against address spraying
            self._keys = {k: v for k, v in self._keys.items() if v.locked_until > now or v.times}
        return locked

    def success(self, *keys: str) -> None:
        for k in keys:
            self._keys.pop(k, None)


def check_users(users: Mapping[str, str]) -> list[str]:
    """Problems with the configured user hashes, one line each (empty if all parse)."""
    problems = []
    for account, stored in users.items():
        try:
            parse_hash(stored)
        except PasswordHashError as exc:
            problems.append(f"hmi.users.{account}: {exc}")
    return problems
