"""The store's event-log additions for the HMI: filters and acknowledgement."""

from pathlib import Path

from controller import core
from controller.store import Store


def ev(code: str, severity: str) -> core.Event:
    return core.Event(code, severity, code.lower(), {"n": 1})


async def test_ack_one_and_all_record_the_account_and_skip_info(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.sqlite", wall_clock=lambda: 1000.0) as store:
        store.add_events(
            [ev("STARTED", "info"), ev("OVER_LIMIT", "warning"), ev("TRIP", "critical"),
             ev("EMERGENCY", "alarm")], 10.0,
        )  # fmt: skip
        await store.flush()
        assert await store.count_unacked() == 3
        ids = {e["code"]: e["id"] for e in await store.recent_events(10)}
        assert not await store.ack_event(ids["STARTED"], "alice")  # info needs no ack
        assert await store.ack_event(ids["TRIP"], "alice")
        assert not await store.ack_event(ids["TRIP"], "bob")  # already acknowledged
        assert not await store.ack_event(99999, "alice")
        assert await store.count_unacked() == 2
        assert await store.ack_all("bob") == 2
        assert await store.ack_all("bob") == 0
        rows = {e["code"]: e for e in await store.recent_events(20)}
        assert rows["TRIP"]["acked_by"] == "alice" and rows["TRIP"]["acked_ts"] == 1000.0
        assert rows["EMERGENCY"]["acked_by"] == "bob"
        acks = await store.query_events(10, code="ALARM_ACKED")
        assert [(a["data"]["account"], a["data"]["count"]) for a in acks] == [
            ("bob", 2), ("alice", 1)
        ]  # fmt: skip


async def test_query_filters_by_severity_code_prefix_unacked_and_page(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.sqlite") as store:
        store.add_events([ev("TRIP", "critical"), ev("TRIP_RESET", "info"),
                          ev("METER_LOST", "alarm"), ev("T_X", "warning")])  # fmt: skip
        await store.flush()
        codes = lambda rows: [r["code"] for r in rows]  # noqa: E731
        assert codes(await store.query_events(10, code="TRIP")) == ["TRIP_RESET", "TRIP"]
        assert codes(await store.query_events(10, code="T_")) == ["T_X"]  # '_' is literal
        assert codes(await store.query_events(10, "alarm")) == ["METER_LOST", "TRIP"]
        assert codes(await store.query_events(10, unacked_only=True)) == [
            "T_X", "METER_LOST", "TRIP"
        ]  # fmt: skip
        newest = (await store.query_events(1))[0]["id"]
        assert codes(await store.query_events(2, before_id=newest)) == ["METER_LOST", "TRIP_RESET"]
