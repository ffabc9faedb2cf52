"""The SQLite store: events, trends, durable state, and what a crash can and cannot do."""

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from controller import core
from controller.store import Store

ROOT = Path(__file__).resolve().parents[2]


def ev(code: str, severity: str = "info") -> core.Event:
    return core.Event(code, severity, f"{code} happened", {"x": 1})


async def test_events_and_state_round_trip(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.sqlite") as store:
        assert await store.load_state() is None
        store.add_events([ev("A"), ev("B", "alarm"), ev("C", "critical")], wall=time.time())
        await store.flush()
        await store.save_state({"version": 1, "tripped": True})
        recent = await store.recent_events(10)
        assert [e["code"] for e in recent] == ["C", "B", "A"]
        assert recent[0]["data"] == {"x": 1}
        assert [e["code"] for e in await store.recent_events(10, "alarm")] == ["C", "B"]
    async with Store(tmp_path / "s.sqlite") as again:
        assert await again.load_state() == {"version": 1, "tripped": True}


async def test_trend_aggregates_minutes(tmp_path: Path) -> None:
    start = (int(time.time()) // 60 - 10) * 60.0  # a minute boundary, ten minutes ago
    async with Store(tmp_path / "s.sqlite") as store:
        for i in range(120):  # two full minutes at 1 s, then one sample that closes them
            store.add_sample(100.0 + i % 2, 120.0, 50.0, 40.0 if i < 60 else None, wall=start + i)
        store.add_sample(1.0, 1.0, 1.0, 1.0, wall=start + 120)
        await store.flush()
        rows = await store.trend(start - 3600)
    first = int(start // 60)
    assert [r["minute"] for r in rows] == [first, first + 1]
    assert rows[0]["n"] == 60 and rows[0]["constraint_avg"] == 100.5
    assert rows[0]["constraint_max"] == 101.0 and rows[0]["ev_demand_avg"] == 40.0
    assert rows[1]["ev_demand_avg"] is None


async def test_retention_bounds_the_event_log(tmp_path: Path) -> None:
    now = time.time()
    store = Store(tmp_path / "s.sqlite", event_retention_days=1, max_events=50)
    async with store:
        store.add_events([ev("OLD")], wall=now - 3 * 86400)
        store.add_events([ev(f"E{i}") for i in range(100)], wall=now)
        await store.flush()  # prunes on the first flush
        events = await store.recent_events(1000)
    assert len(events) == 50 and "OLD" not in {e["code"] for e in events}


WRITER = """
import asyncio, sys
from controller.store import Store
from controller import core

async def main():
    store = Store(sys.argv[1])
    await store.start()
    n = 0
    while True:
        n += 1
        store.add_events([core.Event("E", "info", "n=%d" % n)])
        await store.flush()
        await store.save_state({"version": 1, "n": n, "tripped": True})
        if n == 50:
            print("ready", flush=True)

asyncio.run(main())
"""


def test_kill_minus_9_mid_write_leaves_a_consistent_file(tmp_path: Path) -> None:
    db = tmp_path / "crash.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        state = json.loads(conn.execute("SELECT value FROM kv").fetchone()[0])
        written = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert state["tripped"] is True and state["n"] >= 50
    assert written >= state["n"] - 1  # events flushed before each state write


async def test_overlapping_flushes_write_each_event_once(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.sqlite") as store:
        store.add_events([ev("A0"), ev("A1"), ev("A2")])
        first = asyncio.create_task(store.flush())
        store.add_events([ev("B")])
        await asyncio.gather(first, store.flush(), store.flush())
        codes = [e["code"] for e in await store.recent_events(10)]
    assert sorted(codes) == ["A0", "A1", "A2", "B"]


async def test_a_failed_flush_keeps_the_batch_for_the_next(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.sqlite") as store:
        conn = store._conn
        assert conn is not None
        await store._run(conn.execute, "PRAGMA query_only=ON")
        store.add_events([ev("TRIP", "critical")])
        await store.flush()
        assert not store.healthy
        store.add_events([ev("LATER")])
        await store._run(conn.execute, "PRAGMA query_only=OFF")
        await store.flush()
        codes = [e["code"] for e in await store.recent_events(10)]
    assert codes == ["LATER", "TRIP"] and store.healthy
