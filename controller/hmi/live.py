"""The live feed: one producer samples the runtime once per interval, every client gets
the same pre-encoded bytes.

Nothing here runs on the control tick: the producer is its own task, it serialises once
per sample whatever the number of clients, and a slow client only ever skips to the
newest sample (it never queues a backlog).
"""

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class LiveFeed:
    """Latest sample + a wake-up for waiting clients."""

    def __init__(
        self,
        sample: Callable[[], Awaitable[dict[str, Any]]],
        interval_s: float = 1.0,
    ) -> None:
        self._sample = sample
        self.interval_s = interval_s
        self.payload: bytes = b""
        self.version = 0
        self.closed = False
        self.clients = 0
        self._changed = asyncio.Event()

    async def run(self) -> None:
        """Sample until cancelled (one producer for all clients)."""
        while not self.closed:
            try:
                data = await self._sample()
            except Exception as exc:  # a bad sample must not end the feed; say so once
                log.warning("HMI live sample failed: %r", exc)
                data = {"error": f"sample failed: {exc!r}"}
            self.publish(data)
            await asyncio.sleep(self.interval_s)

    def publish(self, data: dict[str, Any]) -> None:
        body = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
        self.version += 1
        self.payload = f"id: {self.version}\nevent: status\ndata: {body}\n\n".encode()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def next(self, seen: int, timeout_s: float) -> int:
        """Wait for a sample newer than ``seen``; its version (``seen`` on timeout)."""
        if self.version > seen or self.closed:
            return self.version
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        return self.version


def finite(data: Any) -> Any:
    """JSON has no NaN/inf: turn them into None (a dead reading shows as "—")."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data
