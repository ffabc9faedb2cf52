"""The CMC link's logic without a broker: command validation, leases on the monotonic
clock, acks, the offline buffer. Clocks are injected, so every duration is exact."""

import json
from typing import Any

import pytest

from controller import core
from controller.central import CentralSession, Outgoing

WALL0 = 1_800_000_000.0


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = WALL0

    def advance(self, s: float) -> None:
        self.mono += s
        self.wall += s


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def make(clocks: Clocks, *, buffer: int = 5, telemetry_s: float = 10.0) -> CentralSession:
    s = CentralSession(
        "gw",
        "site-a",
        telemetry_s=telemetry_s,
        offline_buffer=buffer,
        clock=lambda: clocks.mono,
        wall_clock=lambda: clocks.wall,
    )
    s.set_connected(True)
    drain(s)
    return s


def drain(s: CentralSession) -> list[tuple[str, dict[str, Any]]]:
    out = []
    while (item := s.peek()) is not None:
        s.sent(item)
        out.append((item.topic, json.loads(item.payload)))
    return out


def acks(s: CentralSession) -> list[dict[str, Any]]:
    return [p for t, p in drain(s) if t == "gw/site-a/ack"]


def limit(seq: int, kw: float = 30.0, valid_for_s: float = 60.0, issued_at: float = WALL0):
    return json.dumps(
        {
            "limit_kw": kw,
            "valid_for_s": valid_for_s,
            "issued_at": issued_at,
            "sequence": seq,
            "command_id": "c%d" % seq,
        }
    ).encode()


def breaker(seq: int, action: str = "trip", issued_at: float = WALL0) -> bytes:
    body = {"action": action, "command_id": "b%d" % seq, "sequence": seq, "issued_at": issued_at}
    return json.dumps(body).encode()


def test_a_limit_becomes_a_lease_measured_from_receipt_on_the_monotonic_clock(clocks):
    s = make(clocks)
    clocks.wall += 3600.0  # the wall clock is an hour fast: it must neither cut nor extend
    s.handle("gw/site-a/cmd/limit", limit(7, 30.0, 60.0, issued_at=clocks.wall - 1.0))
    lease = s.lease()
    assert lease is not None
    assert (lease.limit_kw, lease.expires_at, lease.sequence) == (30.0, 160.0, 7)
    [ack] = acks(s)
    assert ack["accepted"] is True and ack["command_id"] == "c7" and ack["kind"] == "limit"
    assert s.take_events() == []


@pytest.mark.parametrize(
    ("second", "why"),
    [(7, "stale sequence 7"), (6, "stale sequence 6")],
    ids=["replay", "out-of-order"],
)
def test_replayed_and_out_of_order_limits_are_rejected_with_a_reason(clocks, second, why):
    s = make(clocks)
    s.handle("gw/site-a/cmd/limit", limit(7, 30.0))
    s.handle("gw/site-a/cmd/limit", limit(second, 99.0))
    first, rejected = acks(s)
    assert first["accepted"] is True
    assert rejected["accepted"] is False and why in rejected["reason"]
    assert rejected["sequence"] == second
    lease = s.lease()
    assert lease is not None and lease.limit_kw == 30.0 and lease.sequence == 7
    [event] = s.take_events()
    assert event.code == "CENTRAL_COMMAND_REJECTED" and event.values["sequence"] == second


def test_a_limit_that_arrives_after_its_validity_is_rejected(clocks):
    s = make(clocks)
    s.handle("gw/site-a/cmd/limit", limit(3, 30.0, valid_for_s=60.0, issued_at=WALL0 - 61.0))
    [ack] = acks(s)
    assert ack["accepted"] is False and ack["reason"].startswith("expired")
    assert s.lease() is None
    # a late but still valid one is taken, and its lease runs its full length from receipt
    s.handle("gw/site-a/cmd/limit", limit(4, 25.0, valid_for_s=60.0, issued_at=WALL0 - 59.0))
    lease = s.lease()
    assert lease is not None and lease.expires_at == clocks.mono + 60.0


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"limit_kw": 30, "valid_for_s": 60, "issued_at": 1800000000}',  # no sequence
        b'{"limit_kw": -1, "valid_for_s": 60, "issued_at": 1800000000, "sequence": 9}',
        b'{"limit_kw": NaN, "valid_for_s": 60, "issued_at": 1800000000, "sequence": 9}',
        b'{"limit_kw": "30", "valid_for_s": 60, "issued_at": 1800000000, "sequence": 9}',
        b'{"limit_kw": 30, "valid_for_s": 0, "issued_at": 1800000000, "sequence": 9}',
        b'{"limit_kw": 30, "valid_for_s": 60, "issued_at": 1800000000, "sequence": 9, "x": 1}',
        b'{"limit_kw": 30, "valid_for_s": 60, "issued_at": 1800000000, "sequence": true}',
    ],
)
def test_malformed_limits_are_rejected_and_change_nothing(clocks, payload):
    s = make(clocks)
    s.handle("gw/site-a/cmd/limit", payload)
    [ack] = acks(s)
    assert ack["accepted"] is False and ack["reason"].startswith("malformed")
    assert s.lease() is None
    assert [e.code for e in s.take_events()] == ["CENTRAL_COMMAND_REJECTED"]
    s.handle("gw/site-a/cmd/limit", limit(9))  # the sequence was not consumed
    assert s.lease() is not None


def test_a_malformed_command_with_a_readable_id_is_acked_under_that_id(clocks):
    s = make(clocks)
    s.handle("gw/site-a/cmd/limit", b'{"command_id": "abc", "sequence": 4, "limit_kw": "x"}')
    [ack] = acks(s)
    assert (ack["command_id"], ack["sequence"], ack["accepted"]) == ("abc", 4, False)


def test_breaker_commands_go_to_the_core_and_are_acked_with_its_result(clocks):
    s = make(clocks)
    s.handle("gw/site-a/cmd/breaker", breaker(1, "trip"))
    s.handle("gw/site-a/cmd/breaker", breaker(2, "permit_close"))
    s.handle("gw/site-a/cmd/breaker", breaker(2, "trip"))  # replay: refused by the link
    cmds = s.take_commands()
    assert [(c.kind, c.source, c.command_id) for c in cmds] == [
        ("trip", "central", "b1"),
        ("permit_close", "central", "b2"),
    ]
    assert s.take_commands() == []
    [refused] = acks(s)  # only the link's own refusal so far
    assert refused["accepted"] is False and "stale sequence 2" in refused["reason"]
    s.on_period(
        {"state": "tripped"},
        [
            core.CommandResult("b1", "trip", True, "ok"),
            core.CommandResult("b2", "permit_close", False, "trip was by controller"),
            core.CommandResult("hmi-1", "reset", True, "ok"),  # not ours: no ack
        ],
    )
    got = {a["command_id"]: a for a in acks(s)}
    assert set(got) == {"b1", "b2"}
    assert got["b1"]["accepted"] is True and got["b1"]["sequence"] == 1
    assert got["b2"]["accepted"] is False and got["b2"]["reason"] == "trip was by controller"


def test_an_expired_breaker_command_is_rejected(clocks):
    s = make(clocks)
    s.handle("gw/site-a/cmd/breaker", breaker(1, "trip", issued_at=WALL0 - 120.0))
    assert s.take_commands() == []
    [ack] = acks(s)
    assert ack["accepted"] is False and ack["kind"] == "trip" and "expired" in ack["reason"]


def test_telemetry_every_telemetry_s_and_state_on_change(clocks):
    s = make(clocks, telemetry_s=10.0)
    topics = []
    for _ in range(25):
        s.on_period({"state": "normal", "cpo": {"demand_kw": 12.5}}, [])
        topics += [t for t, _ in drain(s)]
        clocks.advance(1.0)
    assert topics.count("gw/site-a/telemetry") == 3  # at 0, 10 and 20 s
    assert topics.count("gw/site-a/state") == 1
    s.on_period({"state": "fallback"}, [])
    states = [p for t, p in drain(s) if t == "gw/site-a/state"]
    assert states[0]["state"] == "fallback" and states[0]["link"] == "online"


def test_state_is_retained_and_goes_first(clocks):
    s = make(clocks, telemetry_s=1.0)
    s.handle("gw/site-a/cmd/limit", limit(1))
    s.on_period({"state": "curtailing"}, [])
    first = s.peek()
    assert isinstance(first, Outgoing)
    assert first.topic == "gw/site-a/state" and first.retain is True and first.qos == 1


def test_the_offline_buffer_is_bounded_drops_oldest_and_counts(clocks):
    s = make(clocks, buffer=5, telemetry_s=1.0)
    s.set_connected(False, "test")
    assert [e.code for e in s.take_events()] == ["CENTRAL_LINK_LOST"]
    for _ in range(8):
        s.on_period({"state": "fallback"}, [])
        clocks.advance(1.0)
    assert s.pending_telemetry() == 5
    s.set_connected(True)
    events = {e.code: e for e in s.take_events()}
    assert events["CENTRAL_TELEMETRY_DROPPED"].values["dropped"] == 3
    assert "CENTRAL_LINK_RESTORED" in events
    sent = [p for t, p in drain(s) if t == "gw/site-a/telemetry"]
    assert [p["seq"] for p in sent] == [4, 5, 6, 7, 8]  # oldest dropped first
    assert sent[-1]["dropped"] == 3


def test_losing_the_link_forgets_the_lease(clocks):
    s = make(clocks)
    s.handle("gw/site-a/cmd/limit", limit(5))
    assert s.lease() is not None
    s.set_connected(False, "broker gone")
    s.set_connected(True)
    assert s.lease() is None  # only a fresh command restores central control
    s.handle("gw/site-a/cmd/limit", limit(5))
    assert s.lease() is None  # and not a replay of the old one
    s.handle("gw/site-a/cmd/limit", limit(6))
    assert s.lease() is not None


def test_a_seeded_sequence_refuses_replays_after_a_restart(clocks):
    s = make(clocks)
    s.seed_sequence(41)
    s.handle("gw/site-a/cmd/limit", limit(41))
    assert s.lease() is None
    s.handle("gw/site-a/cmd/limit", limit(42))
    assert s.lease() is not None
