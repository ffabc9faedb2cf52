"""Fixtures of the CPO client tests: the CPO simulator on an ephemeral loopback port, and
links to it. Everything started here is stopped in the fixture's finally."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from controller.cpo import CpoLink, PollingCpoLink
from controller.cpo.rest import RestTransport
from hil.cpo_sim import CpoSimulator, SiteSettings

from .helpers import SITE, TOKEN, LinkFactory


@pytest.fixture
async def sim() -> AsyncIterator[CpoSimulator]:
    simulator = CpoSimulator(
        [SiteSettings(SITE, chargepoints=4, response_delay_s=0.0, utilisation=0.3, seed=3)],
        token=TOKEN,
    )
    await simulator.start(port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def start_link(sim: CpoSimulator) -> AsyncIterator[LinkFactory]:
    """Build a link to the simulator (or any ``base_url``) and run it; cancelled afterwards."""
    running: list[tuple[CpoLink, asyncio.Task[None]]] = []

    def start(
        base_url: str | None = None,
        *,
        token: str = TOKEN,
        ca_file: object = None,
        total_timeout_s: float = 1.0,
        demand_poll_s: float = 0.05,
        unreachable_after_s: float = 0.5,
        max_attempts: int = 4,
        retry_base_s: float = 0.02,
        retry_max_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> PollingCpoLink:
        transport = RestTransport(
            base_url or sim.base_url,
            SITE,
            token,
            ca_file=ca_file,  # type: ignore[arg-type]
            connect_timeout_s=total_timeout_s,
            total_timeout_s=total_timeout_s,
        )
        link = PollingCpoLink(
            transport,
            demand_poll_s=demand_poll_s,
            unreachable_after_s=unreachable_after_s,
            clock=clock,
            wall_clock=wall_clock,
            max_attempts=max_attempts,
            retry_base_s=retry_base_s,
            retry_max_s=retry_max_s,
        )
        running.append((link, asyncio.create_task(link.run())))
        return link

    try:
        yield start
    finally:
        for link, task in running:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await link.aclose()
