"""The CMC link to the DNO's central platform (MQTT).

The daemon uses ``build_central_link(config.central, site_id)`` and the ``CentralLink``
Protocol only. Each period the tick reads ``lease()``, ``connected`` and
``take_commands()`` into the core's inputs, then hands the period's status and command
results to ``on_period`` (non-blocking) and writes ``take_events()`` to the store. ``run()``
is the link's long-running task. Topics and payloads: docs/mqtt.md and
docs/api/central-asyncapi.yaml. aiomqtt is imported only by ``controller.central.mqtt``.
"""

import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from controller import core
from controller.central.messages import (
    KIND_LIMIT,
    KIND_PERMIT_CLOSE,
    KIND_TRIP,
    LINK_OFFLINE,
    LINK_ONLINE,
    Ack,
    BreakerCommand,
    LimitCommand,
    Topics,
)
from controller.central.session import (
    EV_LINK_LOST,
    EV_LINK_RESTORED,
    EV_REJECTED,
    EV_TELEMETRY_DROPPED,
    CentralSession,
    Outgoing,
)
from controller.config import CentralConfig


@runtime_checkable
class CentralLink(Protocol):
    """What the daemon needs from the link to the central platform."""

    async def run(self) -> None:
        """Connect, subscribe, reconnect with backoff; never raises but CancelledError."""

    def lease(self) -> core.Lease | None:
        """The newest accepted limit (``expires_at`` on the monotonic clock), or None; None
        again as soon as the link drops, so only a fresh command restores central control."""

    @property
    def connected(self) -> bool:
        """The link is up (subscribed)."""

    def take_commands(self) -> list[core.Command]:
        """Valid breaker commands received since the last call (source ``central``)."""

    def seed_sequence(self, last_limit_sequence: int) -> None:
        """Refuse limit sequences up to this one (after a restart, from the core's
        persisted ``central_sequence``), so a replay cannot revive an old lease."""

    def take_events(self) -> list[core.Event]:
        """Link events since the last call: rejected commands, link lost/restored,
        telemetry dropped from the offline buffer."""

    def on_period(self, telemetry: dict[str, Any], results: list[core.CommandResult]) -> None:
        """Queue telemetry (every ``telemetry_s``), state changes and the acks of this
        period's results for commands this link issued. Never blocks."""

    async def aclose(self) -> None:
        """Publish ``offline`` (retained) if connected and stop ``run``."""


def build_central_link(
    config: CentralConfig,
    site_id: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    reconnect_min_s: float = 1.0,
    reconnect_max_s: float = 60.0,
    keepalive_s: int | None = None,
) -> CentralLink:
    """The MQTT link of one site, not yet connected (run its ``run()`` as a task)."""
    from controller.central.mqtt import MqttCentralLink  # noqa: PLC0415 (aiomqtt on demand)

    return MqttCentralLink(
        config,
        site_id,
        clock=clock,
        wall_clock=wall_clock,
        reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
        keepalive_s=keepalive_s,
    )


__all__ = [
    "EV_LINK_LOST",
    "EV_LINK_RESTORED",
    "EV_REJECTED",
    "EV_TELEMETRY_DROPPED",
    "KIND_LIMIT",
    "KIND_PERMIT_CLOSE",
    "KIND_TRIP",
    "LINK_OFFLINE",
    "LINK_ONLINE",
    "Ack",
    "BreakerCommand",
    "CentralLink",
    "CentralSession",
    "LimitCommand",
    "Outgoing",
    "Topics",
    "build_central_link",
]
