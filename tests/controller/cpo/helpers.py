"""Shared helpers of the CPO tests: names, config, polling waits, a CA made on the spot."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from controller.config import CpoConfig
from controller.cpo import PollingCpoLink
from tests.pki import make_pki

SITE = "demo-site"
TOKEN = "s3cret-token"

LinkFactory = Callable[..., PollingCpoLink]


def cpo_config(base_url: str, **overrides: object) -> CpoConfig:
    values: dict[str, object] = {
        "base_url": base_url,
        "token": TOKEN,
        "connect_timeout_s": 1.0,
        "total_timeout_s": 1.0,
        "demand_poll_s": 0.05,
        "unreachable_after_s": 0.5,
    }
    values.update(overrides)
    return CpoConfig.model_validate(values)


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms; fail the test if it does not hold within the timeout."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1/localhost signed by it.

    Returns (ca.pem, server.pem, server.key)."""
    pki = make_pki(directory, [])
    return pki.ca, pki.server_cert, pki.server_key
