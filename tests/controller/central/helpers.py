"""A miniature of the daemon's wiring around a ``CentralLink``: each period it reads the
link into the core's inputs, steps the real core, and hands the status and the command
results back to the link, exactly as controller/runtime.py is meant to."""

import asyncio
import time
from typing import Any

from controller import core
from controller.central import CentralLink
from tests.controller.core.helpers import settings

FALLBACK_KW = 20.0


def cmc_settings(**kw: Any) -> core.CoreSettings:
    s: core.CoreSettings = settings(scheme="CMC", limit=None, release_hold_s=0.0, **kw)
    return s


class MiniRuntime:
    def __init__(self, link: CentralLink, s: core.CoreSettings, period_s: float) -> None:
        self.link = link
        self.s = s
        self.period_s = period_s
        self.state = core.State(s, time.monotonic())
        self.history: list[tuple[float, str, float]] = []  # (monotonic, state, ev limit)
        self.events: list[core.Event] = []
        self.local_commands: list[core.Command] = []

    @property
    def mode(self) -> str:
        return self.history[-1][1] if self.history else "none"

    @property
    def limit_kw(self) -> float:
        return self.history[-1][2] if self.history else float("nan")

    def tick(self) -> None:
        now = time.monotonic()
        inputs = core.Inputs(
            demand=core.Demand(0.0, now),
            lease=self.link.lease(),
            central_connected=self.link.connected,
            commands=self.local_commands + self.link.take_commands(),
        )
        self.local_commands = []
        self.state, actions = core.step(self.s, self.state, inputs, now)
        st = actions.status
        self.history.append((now, st.state, st.ev_limit_kw))
        self.events += actions.events + self.link.take_events()
        status = {
            "state": st.state,
            "reason": st.reason,
            "ev_limit": {"limit_kw": st.ev_limit_kw},
            "cpo": {"demand_kw": 0.0},
            "alarms": list(st.alarms),
        }
        self.link.on_period(status, list(actions.command_results))

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.period_s)

    async def until(self, predicate: Any, timeout_s: float = 5.0) -> float:
        """Wait until ``predicate(self)`` holds at a tick; returns when (monotonic)."""
        deadline = time.monotonic() + timeout_s
        seen = len(self.history)
        while time.monotonic() < deadline:
            if len(self.history) > seen:
                seen = len(self.history)
                if predicate(self):
                    return self.history[-1][0]
            await asyncio.sleep(0.01)
        raise AssertionError(f"not reached in {timeout_s} s; last {self.history[-3:]}")


async def wait_until(predicate: Any, timeout_s: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + (what or repr(predicate)))
        await asyncio.sleep(0.01)
