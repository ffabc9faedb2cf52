"""On-device storage: the event log, one-minute trends and the core's persisted state.

One SQLite file in WAL mode with ``synchronous=FULL``: a transaction that returned is on
disk, and ``kill -9`` or a power cut at any moment leaves the file consistent (SQLite's
journal guarantees it), losing at most the writes still queued in memory (one period).

All SQLite work runs on one dedicated thread that owns the connection, so no disk stall
ever blocks the control tick. Callers on the event loop queue writes without waiting
(``add_events``, ``add_sample``), or await the few writes that must be durable before the
controller acts (``save_state`` before a trip).

A full disk or read-only filesystem never stops the controller: writes that fail are kept
(bounded) and retried, ``healthy`` turns False and ``last_error`` says why; the runtime
raises an alarm from that. Never import this from ``controller/core``.
"""

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from controller.errors import GridwardenError

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,                -- wall time, seconds since the epoch
    code TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}', -- JSON values
    acked_by TEXT,
    acked_ts REAL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS trend (
    minute INTEGER PRIMARY KEY,      -- wall time // 60
    n INTEGER NOT NULL,
    constraint_avg REAL, constraint_max REAL,
    limit_avg REAL, ev_limit_avg REAL, ev_demand_avg REAL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    ts REAL NOT NULL
);
"""

MAX_PENDING = 10_000  # events and samples kept in memory while the disk refuses them
CORE_STATE_KEY = "core_state"
ACKABLE_SEVERITIES = ("warning", "alarm", "critical")  # what an operator acknowledges


class StoreError(GridwardenError):
    """The store could not do what was asked (the message says why)."""


class _Minute:
    """Accumulates one minute of samples into a trend row."""

    __slots__ = ("c_max", "c_n", "c_sum", "d_n", "d_sum", "ev_sum", "l_n", "l_sum", "minute", "n")

    def __init__(self, minute: int) -> None:
        self.minute = minute
        self.n = 0
        self.c_sum = self.c_max = 0.0
        self.c_n = 0
        self.l_sum = 0.0
        self.l_n = 0
        self.ev_sum = 0.0
        self.d_sum = 0.0
        self.d_n = 0

    def add(
        self, constraint: float | None, limit: float | None, ev: float, demand: float | None
    ) -> None:
        self.n += 1
        self.ev_sum += ev
        if constraint is not None:
            self.c_sum += constraint
            self.c_max = constraint if self.c_n == 0 else max(self.c_max, constraint)
            self.c_n += 1
        if limit is not None:
            self.l_sum += limit
            self.l_n += 1
        if demand is not None:
            self.d_sum += demand
            self.d_n += 1

    def row(self) -> tuple[Any, ...]:
        return (
            self.minute,
            self.n,
            self.c_sum / self.c_n if self.c_n else None,
            self.c_max if self.c_n else None,
            self.l_sum / self.l_n if self.l_n else None,
            self.ev_sum / self.n,
            self.d_sum / self.d_n if self.d_n else None,
        )


class Store:
    """The SQLite store. Use ``async with Store.open(path) as store`` or call ``start``."""

    def __init__(
        self,
        path: str | Path,
        *,
        event_retention_days: int = 365,
        trend_retention_h: int = 48,
        max_events: int = 200_000,
        wall_clock: Callable[[], float] = time.time,
        clock_trusted: Callable[[], bool] = lambda: True,
    ) -> None:
        self.path = Path(path)
        self.clock_trusted = clock_trusted
        #: the file did not exist before ``start``: a new device (nothing can be lost)
        self.created = False
        self._flush_lock = asyncio.Lock()
        self.event_retention_s = event_retention_days * 86400.0
        self.trend_retention_s = trend_retention_h * 3600.0
        self.max_events = max_events
        self.wall_clock = wall_clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._pending_events: deque[tuple[Any, ...]] = deque(maxlen=MAX_PENDING)
        self._pending_trend: deque[tuple[Any, ...]] = deque(maxlen=MAX_PENDING)
        self._minute: _Minute | None = None
        self.dropped = 0
        self.healthy = True
        self.last_error: str | None = None
        self._last_prune = 0.0

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._run(self._open)
        except sqlite3.Error as exc:
            self._fail(exc)
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from exc

    async def close(self) -> None:
        """Flush what is queued, checkpoint, close. Safe to call twice."""
        with contextlib.suppress(Exception):
            await self.flush()
        if self._conn is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> "Store":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.created = not self.path.exists()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=2000")
        conn.executescript(SCHEMA)
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            log.error("store %s failed its integrity check: %s", self.path, check)
        self._conn = conn

    def _close(self) -> None:
        assert self._conn is not None
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
        self._conn = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _fail(self, exc: BaseException) -> None:
        if self.healthy:
            log.error("store %s: writes failing: %s", self.path, exc)
        self.healthy = False
        self.last_error = str(exc)

    def _ok(self) -> None:
        if not self.healthy:
            log.warning("store %s: writes succeed again", self.path)
        self.healthy = True
        self.last_error = None

    # --- writes that never wait ------------------------------------------------------------
    def add_events(self, events: Iterable[Any], wall: float | None = None) -> None:
        """Queue core events (anything with code, severity, message, values)."""
        ts = self.wall_clock() if wall is None else wall
        for e in events:
            if len(self._pending_events) == self._pending_events.maxlen:
                self.dropped += 1
            self._pending_events.append(
                (ts, e.code, e.severity, e.message, json.dumps(e.values, default=str))
            )

    def add_sample(
        self,
        constraint: float | None,
        limit: float | None,
        ev_limit_kw: float,
        ev_demand_kw: float | None,
        wall: float | None = None,
    ) -> None:
        """Feed one period's figures; closed minutes become trend rows."""
        ts = self.wall_clock() if wall is None else wall
        minute = int(ts // 60)
        cur = self._minute
        if cur is None or cur.minute != minute:
            if cur is not None and cur.n:
                self._pending_trend.append(cur.row())
            cur = self._minute = _Minute(minute)
        cur.add(constraint, limit, ev_limit_kw, ev_demand_kw)

    async def flush(self) -> None:
        """Write what is queued, in one transaction. Failures put the batch back at the
        front of the queue. Flushes never overlap (the store loop and a failing task's
        last words may both ask for one)."""
        async with self._flush_lock:
            if self._conn is None or not (self._pending_events or self._pending_trend):
                return
            events, trend = list(self._pending_events), list(self._pending_trend)
            self._pending_events.clear()
            self._pending_trend.clear()
            try:
                await self._run(self._write, events, trend)
            except sqlite3.Error as exc:
                self._fail(exc)
                # back in front of what arrived meanwhile; the bound drops the oldest
                self._pending_events.extendleft(reversed(events))
                self._pending_trend.extendleft(reversed(trend))
                return
            self._ok()
            now = self.wall_clock()
            if now - self._last_prune > 3600.0:
                self._last_prune = now
                with contextlib.suppress(sqlite3.Error):
                    await self._run(self._prune, now, self.clock_trusted())

    def _write(self, events: list[tuple[Any, ...]], trend: list[tuple[Any, ...]]) -> None:
        conn = self._conn
        assert conn is not None
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO events(ts, code, severity, message, data) VALUES (?,?,?,?,?)", events
            )
            conn.executemany(
                "INSERT OR REPLACE INTO trend(minute, n, constraint_avg, constraint_max,"
                " limit_avg, ev_limit_avg, ev_demand_avg) VALUES (?,?,?,?,?,?,?)",
                trend,
            )

    def _prune(self, now: float, by_age: bool = True) -> None:
        """Bound the log by count always, and by age only when the wall clock is trusted:
        a clock that jumped years ahead must not erase the audit trail (trips included)."""
        conn = self._conn
        assert conn is not None
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
                (self.max_events,),
            )
            if by_age:
                conn.execute("DELETE FROM events WHERE ts < ?", (now - self.event_retention_s,))
                conn.execute(
                    "DELETE FROM trend WHERE minute < ?",
                    (int((now - self.trend_retention_s) // 60),),
                )

    # --- durable state ------------------------------------------------------------------------
    async def save_state(self, state: dict[str, Any]) -> None:
        """Write the core's persisted state durably (awaited: a trip waits for it)."""
        blob = json.dumps(state, sort_keys=True)
        try:
            await self._run(self._put, CORE_STATE_KEY, blob)
        except sqlite3.Error as exc:
            self._fail(exc)
            raise StoreError(f"{self.path}: cannot save the controller state: {exc}") from exc
        self._ok()

    def _put(self, key: str, value: str) -> None:
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError("store is closed")
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT OR REPLACE INTO kv(key, value, ts) VALUES (?,?,?)",
                (key, value, self.wall_clock()),
            )

    async def load_state(self) -> dict[str, Any] | None:
        """The last persisted core state, or None if there is none (a new device)."""
        row = await self._run(self._get, CORE_STATE_KEY)
        if row is None:
            return None
        data = json.loads(row)
        if not isinstance(data, dict):
            raise StoreError(f"{self.path}: persisted state is not an object")
        return data

    def _get(self, key: str) -> str | None:
        conn = self._conn
        assert conn is not None
        row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # --- reads for the HMI and the status API ---------------------------------------------------
    async def recent_events(
        self, limit: int = 100, min_severity: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first, at least ``min_severity`` (``query_events`` filters more)."""
        return await self.query_events(limit, min_severity)

    async def trend(self, since_wall: float) -> list[dict[str, Any]]:
        return await self._run(self._trend, since_wall)

    def _trend(self, since_wall: float) -> list[dict[str, Any]]:
        conn = self._conn
        assert conn is not None
        rows = conn.execute(
            "SELECT minute, n, constraint_avg, constraint_max, limit_avg, ev_limit_avg,"
            " ev_demand_avg FROM trend WHERE minute >= ? ORDER BY minute",
            (int(since_wall // 60),),
        ).fetchall()
        keys = ("minute", "n", "constraint_avg", "constraint_max", "limit_avg", "ev_limit_avg",
                "ev_demand_avg")  # fmt: skip
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # --- event log for the HMI: filters and acknowledgement (issue 6) -------------------------
    async def query_events(
        self,
        limit: int = 100,
        min_severity: str | None = None,
        *,
        code: str | None = None,
        unacked_only: bool = False,
        before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, filtered: at least ``min_severity``; ``code`` as a prefix;
        only alarms not yet acknowledged; only older than ``before_id`` (paging)."""
        return await self._run(
            self._query_events, limit, min_severity, code, unacked_only, before_id
        )

    def _query_events(
        self,
        limit: int,
        min_severity: str | None,
        code: str | None,
        unacked_only: bool,
        before_id: int | None,
    ) -> list[dict[str, Any]]:
        conn = self._conn
        assert conn is not None
        order = ["info", "warning", "alarm", "critical"]
        severities = order[order.index(min_severity) :] if min_severity in order else order
        if unacked_only:
            severities = [s for s in severities if s in ACKABLE_SEVERITIES]
        where = [f"severity IN ({','.join('?' * len(severities))})"]
        args: list[Any] = list(severities)
        if code:
            where.append("code LIKE ? ESCAPE '\\'")
            esc = code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(esc + "%")
        if unacked_only:
            where.append("acked_ts IS NULL")
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        rows = conn.execute(
            "SELECT id, ts, code, severity, message, data, acked_by, acked_ts FROM events"
            f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        keys = ("id", "ts", "code", "severity", "message", "data", "acked_by", "acked_ts")
        out = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["data"] = json.loads(item["data"])
            out.append(item)
        return out

    async def count_unacked(self) -> int:
        """Warnings, alarms and critical events nobody has acknowledged yet."""
        return await self._run(self._count_unacked)

    def _count_unacked(self) -> int:
        conn = self._conn
        assert conn is not None
        marks = ",".join("?" * len(ACKABLE_SEVERITIES))
        row = conn.execute(
            f"SELECT COUNT(*) FROM events WHERE acked_ts IS NULL AND severity IN ({marks})",
            ACKABLE_SEVERITIES,
        ).fetchone()
        return int(row[0])

    async def ack_event(self, event_id: int, account: str) -> bool:
        """Acknowledge one warning/alarm/critical event; records ALARM_ACKED with the
        account. False if there is no such unacknowledged event."""
        try:
            n = await self._run(self._ack, account, event_id)
        except sqlite3.Error as exc:
            self._fail(exc)
            raise StoreError(f"{self.path}: cannot acknowledge: {exc}") from exc
        return n > 0

    async def ack_all(self, account: str) -> int:
        """Acknowledge every unacknowledged warning/alarm/critical event; the count."""
        try:
            return await self._run(self._ack, account, None)
        except sqlite3.Error as exc:
            self._fail(exc)
            raise StoreError(f"{self.path}: cannot acknowledge: {exc}") from exc

    def _ack(self, account: str, event_id: int | None) -> int:
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError("store is closed")
        now = self.wall_clock()
        marks = ",".join("?" * len(ACKABLE_SEVERITIES))
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            sql = (
                "UPDATE events SET acked_by = ?, acked_ts = ?"
                f" WHERE acked_ts IS NULL AND severity IN ({marks})"
            )
            args: list[Any] = [account, now, *ACKABLE_SEVERITIES]
            if event_id is not None:
                sql += " AND id = ?"
                args.append(event_id)
            n = conn.execute(sql, args).rowcount
            if n:
                what = f"event {event_id}" if event_id is not None else f"{n} events"
                conn.execute(
                    "INSERT INTO events(ts, code, severity, message, data) VALUES (?,?,?,?,?)",
                    (
                        now,
                        "ALARM_ACKED",
                        "info",
                        f"{what} acknowledged by {account}",
                        json.dumps({"account": account, "event_id": event_id, "count": n}),
                    ),
                )
        return int(n)
