"""The CMC link's logic without the network: validate commands, keep the lease, queue acks,
state and telemetry, count what the offline buffer drops.

Sans-I/O (cf. h11): the MQTT adapter in ``controller.central.mqtt`` feeds it received
messages and connection changes and publishes what ``peek()`` hands out; the daemon's tick
calls ``on_period``. Time is injected: ``clock`` is monotonic (leases, periods),
``wall_clock`` is only for timestamps and the "arrived already expired" check. Nothing here
blocks, sleeps or raises on bad input from the network: a bad command becomes an ack with
a reason and an event.
"""

import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import ValidationError

from controller import core
from controller.central.messages import (
    KIND_LIMIT,
    LINK_ONLINE,
    Ack,
    BreakerCommand,
    LimitCommand,
    Topics,
    dumps,
    guess_fields,
)

log = logging.getLogger(__name__)

ACK_BUFFER = 256  # acks kept while the link is down (a command flood cannot grow memory)
ISSUED_MEMORY = 256  # breaker commands awaiting the core's result

EV_REJECTED = "CENTRAL_COMMAND_REJECTED"
EV_LINK_LOST = "CENTRAL_LINK_LOST"
EV_LINK_RESTORED = "CENTRAL_LINK_RESTORED"
EV_TELEMETRY_DROPPED = "CENTRAL_TELEMETRY_DROPPED"


class Outgoing(NamedTuple):
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class CentralSession:
    """Everything the link knows, apart from the socket."""

    def __init__(
        self,
        prefix: str,
        site_id: str,
        *,
        telemetry_s: float,
        offline_buffer: int,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.site_id = site_id
        self.topics = Topics.of(prefix, site_id)
        self.telemetry_s = telemetry_s
        self.buffer_max = max(1, offline_buffer)
        self.clock = clock
        self.wall_clock = wall_clock
        self.connected = False
        self.last_limit_sequence = -1
        self.last_breaker_sequence = -1
        self.dropped_total = 0  # telemetry messages dropped from the offline buffer, ever
        self._dropped_episode = 0
        self._lease: core.Lease | None = None
        self._commands: list[core.Command] = []
        self._events: list[core.Event] = []
        self._issued: OrderedDict[str, int] = OrderedDict()  # command_id -> sequence
        self._acks: deque[Outgoing] = deque(maxlen=ACK_BUFFER)
        self._telemetry: deque[Outgoing] = deque()
        self._state_msg: Outgoing | None = None
        self._state: dict[str, Any] = {"link": LINK_ONLINE, "state": None, "reason": ""}
        self._next_telemetry_at: float | None = None
        self._telemetry_seq = 0
        self._ever_connected = False

    # --- what the daemon reads -------------------------------------------------------------
    def lease(self) -> core.Lease | None:
        return self._lease

    def take_commands(self) -> list[core.Command]:
        out, self._commands = self._commands, []
        return out

    def take_events(self) -> list[core.Event]:
        out, self._events = self._events, []
        return out

    def seed_sequence(self, last_limit_sequence: int) -> None:
        """Refuse limit sequences up to ``last_limit_sequence`` (e.g. after a restart, from
        the core's persisted ``central_sequence``), so a replay cannot revive a lease."""
        self.last_limit_sequence = max(self.last_limit_sequence, last_limit_sequence)

    # --- the tick ----------------------------------------------------------------------------
    def on_period(self, status: dict[str, Any], results: list[core.CommandResult]) -> None:
        now = self.clock()
        for r in results:
            seq = self._issued.pop(r.command_id, None) if r.command_id else None
            if seq is not None:
                self._ack(r.command_id, r.kind, seq, r.accepted, r.reason)
        state = status.get("state")
        reason = str(status.get("reason", ""))
        if state != self._state["state"]:
            self._state = {"link": LINK_ONLINE, "state": state, "reason": reason}
            self._queue_state()
        if self._next_telemetry_at is None or now >= self._next_telemetry_at:
            # on a fixed grid, so a late tick does not shift every later message
            if self._next_telemetry_at is None or now - self._next_telemetry_at > self.telemetry_s:
                self._next_telemetry_at = now
            self._next_telemetry_at += self.telemetry_s
            self._queue_telemetry(status, now)

    def _queue_telemetry(self, status: dict[str, Any], now: float) -> None:
        self._telemetry_seq += 1
        if len(self._telemetry) >= self.buffer_max:
            self._telemetry.popleft()
            self.dropped_total += 1
            self._dropped_episode += 1
        lease = self._lease
        cpo = status.get("cpo") or {}
        meter = status.get("meter") or {}
        ev = status.get("ev_limit") or {}
        body = {
            "site_id": self.site_id,
            "seq": self._telemetry_seq,
            "at": self.wall_clock(),
            "state": status.get("state"),
            "reason": status.get("reason"),
            "measurement": {
                "constraint": status.get("constraint"),
                "power_kw": meter.get("power_kw"),
            },
            "limit": {
                "ev_limit_kw": ev.get("limit_kw"),
                "sent_kw": ev.get("sent_kw"),
                "lease_sequence": None if lease is None else lease.sequence,
                "lease_remaining_s": None
                if lease is None
                else round(max(0.0, lease.expires_at - now), 3),
            },
            "demand_kw": cpo.get("demand_kw"),
            "alarms": status.get("alarms", []),
            "dropped": self.dropped_total,
        }
        self._telemetry.append(Outgoing(self.topics.telemetry, dumps(_finite(body)), 1, False))

    def _queue_state(self) -> None:
        body = {**self._state, "at": self.wall_clock()}
        self._state_msg = Outgoing(self.topics.state, dumps(_finite(body)), 1, True)

    # --- the transport -----------------------------------------------------------------------
    def peek(self) -> Outgoing | None:
        """The next message to publish: state first, then acks, then telemetry oldest
        first. It stays queued until ``sent`` is called with it."""
        if self._state_msg is not None:
            return self._state_msg
        if self._acks:
            return self._acks[0]
        if self._telemetry:
            return self._telemetry[0]
        return None

    def sent(self, item: Outgoing) -> None:
        if item is self._state_msg:
            self._state_msg = None
        elif self._acks and item is self._acks[0]:
            self._acks.popleft()
        elif self._telemetry and item is self._telemetry[0]:
            self._telemetry.popleft()

    def pending_telemetry(self) -> int:
        return len(self._telemetry)

    def set_connected(self, up: bool, why: str = "") -> None:
        """The transport's view of the link. Going down forgets the lease: only a fresh
        command after reconnection restores central control, however short the outage."""
        if up == self.connected:
            return
        self.connected = up
        if up:
            if self._ever_connected:
                values: dict[str, Any] = {"dropped": self._dropped_episode}
                self._event(EV_LINK_RESTORED, core.model.INFO, "central link restored", values)
            if self._dropped_episode:
                self._event(
                    EV_TELEMETRY_DROPPED,
                    core.model.WARNING,
                    "offline telemetry buffer full: %d oldest messages dropped"
                    % self._dropped_episode,
                    {"dropped": self._dropped_episode, "dropped_total": self.dropped_total},
                )
            self._ever_connected = True
            self._dropped_episode = 0
            self._queue_state()  # retained "online" replaces the will
        else:
            self._lease = None
            self._event(EV_LINK_LOST, core.model.WARNING, "central link lost: " + why)

    def handle(self, topic: str, payload: bytes) -> None:
        """A message received on one of the site's command topics."""
        if topic == self.topics.cmd_limit:
            self._on_limit(payload)
        elif topic == self.topics.cmd_breaker:
            self._on_breaker(payload)

    def _on_limit(self, payload: bytes) -> None:
        now, wall = self.clock(), self.wall_clock()
        try:
            cmd = LimitCommand.model_validate_json(payload)
        except ValidationError as exc:
            cid, seq = guess_fields(payload)
            self._reject(cid, KIND_LIMIT, seq, "malformed: " + _summary(exc))
            return
        cid = cmd.command_id or "limit-%d" % cmd.sequence
        if cmd.sequence <= self.last_limit_sequence:
            reason = _stale(cmd.sequence, self.last_limit_sequence)
            self._reject(cid, KIND_LIMIT, cmd.sequence, reason)
            return
        age = wall - cmd.issued_at
        if age > cmd.valid_for_s:
            self._reject(cid, KIND_LIMIT, cmd.sequence, _expired(age, cmd.valid_for_s))
            return
        self.last_limit_sequence = cmd.sequence
        self._lease = core.Lease(cmd.limit_kw, now + cmd.valid_for_s, cmd.sequence)
        self._ack(cid, KIND_LIMIT, cmd.sequence, True, "ok")

    def _on_breaker(self, payload: bytes) -> None:
        wall = self.wall_clock()
        try:
            cmd = BreakerCommand.model_validate_json(payload)
        except ValidationError as exc:
            cid, seq = guess_fields(payload)
            self._reject(cid, "unknown", seq, "malformed: " + _summary(exc))
            return
        if cmd.sequence <= self.last_breaker_sequence:
            reason = _stale(cmd.sequence, self.last_breaker_sequence)
            self._reject(cmd.command_id, cmd.action, cmd.sequence, reason)
            return
        age = wall - cmd.issued_at
        if age > cmd.valid_for_s:
            self._reject(cmd.command_id, cmd.action, cmd.sequence, _expired(age, cmd.valid_for_s))
            return
        self.last_breaker_sequence = cmd.sequence
        self._issued[cmd.command_id] = cmd.sequence
        while len(self._issued) > ISSUED_MEMORY:
            self._issued.popitem(last=False)
        self._commands.append(core.Command(cmd.action, "central", cmd.command_id))

    # --- helpers -------------------------------------------------------------------------------
    def _reject(self, cid: str, kind: str, seq: int | None, reason: str) -> None:
        self._ack(cid, kind, seq, False, reason)
        self._event(
            EV_REJECTED,
            core.model.WARNING,
            "central %s command %s rejected: %s" % (kind, cid or "(no id)", reason),
            {"command_id": cid, "kind": kind, "sequence": seq, "reason": reason},
        )

    def _ack(self, cid: str, kind: str, seq: int | None, accepted: bool, reason: str) -> None:
        ack = Ack(
            command_id=cid, kind=kind, sequence=seq, accepted=accepted, reason=reason,
            at=self.wall_clock(),
        )  # fmt: skip
        self._acks.append(Outgoing(self.topics.ack, dumps(ack.model_dump()), 1, False))

    def _event(self, code: str, severity: str, message: str, values: Any = None) -> None:
        self._events.append(core.Event(code, severity, message, values))


def _stale(seq: int, last: int) -> str:
    return "stale sequence %d: not above the last accepted %d (replayed or out of order)" % (
        seq,
        last,
    )


def _expired(age_s: float, valid_for_s: float) -> str:
    return "expired: issued %.1f s ago, valid for %.1f s" % (age_s, valid_for_s)


def _summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append("%s: %s" % (loc, err["msg"]))
    return "; ".join(parts)[:300]


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: unknown numbers are sent as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
