"""A simulated breaker: the Breaker protocol with its state in plain sight.

Used by the demo, the HIL bench and controller tests. ``fail_to_open`` models a welded
breaker; ``history`` records every command. It must never import ``controller``.
"""

from __future__ import annotations

import asyncio

from hal.breaker import BreakerStatus
from hal.errors import BreakerFailedToOpen

__all__ = ["SimBreaker"]


class SimBreaker:
    """A breaker that obeys, unless ``fail_to_open`` is set."""

    def __init__(self, *, closed: bool = False, confirm_timeout_s: float = 0.05) -> None:
        #: the physical state: True = closed (current flows)
        self.closed = closed
        #: a welded/jammed breaker: trips are not obeyed and raise BreakerFailedToOpen
        self.fail_to_open = False
        #: commands received, in order ("trip", "permit_close")
        self.history: list[str] = []
        self.confirm_timeout_s = confirm_timeout_s

    def status(self) -> BreakerStatus:
        return BreakerStatus.CLOSED if self.closed else BreakerStatus.OPEN

    async def trip(self) -> BreakerStatus:
        self.history.append("trip")
        if self.fail_to_open:
            await asyncio.sleep(self.confirm_timeout_s)
            raise BreakerFailedToOpen("breaker failed to open: simulated welded contacts")
        self.closed = False
        return self.status()

    async def permit_close(self) -> BreakerStatus:
        self.history.append("permit_close")
        self.closed = True
        return self.status()

    async def close(self) -> None:
        return None
