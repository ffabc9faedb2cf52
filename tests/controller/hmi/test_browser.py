"""The HMI in headless Chromium, served by `gridwarden run` as a real process (simulated
meter over Modbus TCP in this test process, simulated breaker, fast escalation).

Saves screenshots of the status page (normal, tripped; 800x480 panel and a phone) under
``artifacts/`` at the repository root.
"""

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

# no skip: scripts/bootstrap --dev installs both, and a skipped browser test proves nothing
import playwright.async_api as playwright_api
import pytest

from hal.sim.meter import SimMeter
from tests.controller.hmi.conftest import PIN, USERS, running_site

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("GRIDWARDEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PAGE_BUDGET_BYTES = 300 * 1024

pytestmark = [pytest.mark.browser]


def write_config(tmp: Path, meter_port: int) -> Path:
    users = "\n".join(f'{k} = "{v}"' for k, v in USERS.items())
    cfg = tmp / "site.toml"
    cfg.write_text(
        f"""
[site]
id = "browser-test"
name = "Browser test site"
clock_trusted = true
[scheme]
type = "CLM"
limit = 100.0
margin = 5.0
[ev_site]
max_kw = 80.0
min_kw = 2.0
fallback_kw = 20.0
[control]
period_s = 0.2
release_hold_s = 1.0
ramp_kw_per_s = 50.0
[escalation]
compliance_deadline_s = 1.0
compliance_deadline_unreachable_s = 1.0
trip_delay_s = 1.0
meter_timeout_s = 2.0
[meter]
transport = "tcp"
host = "127.0.0.1"
tcp_port = {meter_port}
poll_interval_s = 0.2
timeout_s = 0.3
ct_rating_a = 400.0
[breaker]
transport = "sim"
[hmi]
port = 0
[hmi.users]
{users}
[store]
path = "{tmp / "gw.sqlite"}"
"""
    )
    return cfg


@contextlib.asynccontextmanager
async def spawn(*argv: str) -> AsyncIterator[str]:
    """`python -m controller ARGV...` as a process; yields its HMI URL; SIGTERM at the end
    (the HMI must let it stop cleanly, exit code 0)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", *argv, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "JOURNAL_STREAM": ""},
    )  # fmt: skip
    assert proc.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stderr.readline()).decode()
                assert line, f"controller exited early with {await proc.wait()}"
                found = re.search(r"HMI on (http://127\.0\.0\.1:\d+)", line)
                if found:
                    break
        drain = asyncio.create_task(_drain(proc))
        yield found.group(1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            drain.cancel()
    assert proc.returncode == 0


@pytest.fixture
async def daemon_url(tmp_path: Path, sim_meter: tuple[SimMeter, int]) -> AsyncIterator[str]:
    """`gridwarden run` on a TCP simulated meter (controlled by the test), fast escalation."""
    async with spawn("run", "--config", str(write_config(tmp_path, sim_meter[1]))) as url:
        yield url


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as p:
        ctx = await p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            viewport={"width": 800, "height": 480},
        )
        try:
            yield ctx
        finally:
            await ctx.close()


async def test_hmi_in_chromium_live_values_trip_login_reset_and_event_log(
    daemon_url: str, sim_meter: tuple[SimMeter, int], chromium: object
) -> None:
    sim, _port = sim_meter
    ctx = chromium
    page = await ctx.new_page()  # type: ignore[attr-defined]
    requests: list[str] = []
    page_bytes = 0

    async def count(resp: object) -> None:
        nonlocal page_bytes
        body = await resp.body()  # type: ignore[attr-defined]
        page_bytes += len(body)

    page.on("request", lambda req: requests.append(req.url))
    page.on("response", lambda resp: None if "/api/live" in resp.url else count(resp))
    expect = playwright_api.expect
    ARTIFACTS.mkdir(exist_ok=True)

    await page.goto(daemon_url + "/")
    await expect(page.locator("#state")).to_have_text(
        re.compile("normal|curtailing"), timeout=10_000
    )

    # live values change without a reload
    uptime = await page.locator("#uptime").text_content()
    await expect(page.locator("#uptime")).not_to_have_text(uptime or "", timeout=5000)
    sim.set_power_kw(61.0)
    await expect(page.locator("#constraint-value")).to_have_text(
        re.compile(r"^6[01]\."), timeout=5000
    )
    await page.screenshot(path=str(ARTIFACTS / "hmi-status-normal.png"))
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(ARTIFACTS / "hmi-status-phone.png"), full_page=True)
    await page.set_viewport_size({"width": 800, "height": 480})

    # the site ignores its limit: emergency, then a trip
    sim.set_power_kw(130.0)
    await expect(page.locator("#state")).to_have_text("tripped", timeout=10_000)
    await expect(page.locator("#alarms")).to_contain_text("TRIPPED")
    await expect(page.locator("#breaker-status")).to_have_text("open")
    await page.screenshot(path=str(ARTIFACTS / "hmi-status-tripped.png"))

    # back within the limit; a reset without login is refused by the server
    sim.set_power_kw(40.0)
    await expect(page.locator("#constraint-value")).to_have_text(
        re.compile(r"^(39|40)\."), timeout=5000
    )
    await page.click("#btn-reset")
    await expect(page.locator("#action-result")).to_contain_text("refused")
    await expect(page.locator("#login-dialog")).to_be_visible()
    await asyncio.sleep(0.6)
    await expect(page.locator("#state")).to_have_text("tripped")

    # a wrong PIN is refused; the right one logs in and carries out the pending reset
    await page.fill("#login-account", "alice")
    await page.fill("#login-password", "0000")
    await page.click("#login-submit")
    await expect(page.locator("#login-error")).to_contain_text("wrong")
    await page.fill("#login-password", PIN)
    await page.click("#login-submit")
    await expect(page.locator("#action-result")).to_have_text("reset: accepted", timeout=5000)
    await expect(page.locator("#state")).not_to_have_text("tripped", timeout=5000)
    await expect(page.locator("#btn-login")).to_have_text("Log out alice")

    # the action is in the event log, with the account
    await page.click('nav a[data-view="log"]')
    row = page.locator("#event-table tr[data-code=OPERATOR_ACTION]")
    for _ in range(20):  # the store writes its queue once a second
        if await row.count():
            break
        await page.click("#event-filter button[type=submit]")
        await asyncio.sleep(0.25)
    await expect(row.first).to_contain_text("reset by alice")
    await expect(row.first).to_contain_text("accepted")
    await expect(page.locator("#event-table tr[data-code=TRIP_RESET]").first).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / "hmi-log.png"))

    await page.click('nav a[data-view="setup"]')
    await expect(page.locator("#config")).to_contain_text('"alice": "(hidden)"')
    await expect(page.locator("#meter-table")).to_contain_text("power_kw")

    assert all(u.startswith(daemon_url) for u in requests), "the page must need no internet"
    assert page_bytes < PAGE_BUDGET_BYTES, f"page weight {page_bytes} bytes"


def test_chromium_is_found() -> None:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists()


async def test_amps_scheme_shows_phases_and_a_24h_trend_from_the_store(
    tmp_path: Path, sim_meter: tuple[SimMeter, int], chromium: object
) -> None:
    async with running_site(tmp_path, sim_meter, unit="A", limit=150.0) as site:
        store, now = site.runtime.store, site.runtime.wall_clock()
        for i in range(24 * 60):  # a day of one-minute samples, before the controller started
            t = now - 86400.0 + 60.0 * i
            wave = 40.0 + 30.0 * ((i % 240) / 240.0)
            store.add_sample(wave + 20.0, 150.0, wave, wave - 5.0, t)
        store.add_sample(None, None, 0.0, None, now - 61.0)  # closes the last seeded minute
        await store.flush()

        page = await chromium.new_page()  # type: ignore[attr-defined]
        expect = playwright_api.expect
        await page.goto(site.url + "/")
        await expect(page.locator("#constraint-unit")).to_contain_text("A (L")
        await expect(page.locator("#phases .bar")).to_have_count(3)
        await page.screenshot(path=str(ARTIFACTS / "hmi-status-amps.png"))
        await page.click('nav a[data-view="log"]')
        await expect(page.locator("#trend canvas")).to_have_count(1)
        await expect(page.locator("#trend .u-legend")).to_contain_text("EV limit kW")
        await page.screenshot(path=str(ARTIFACTS / "hmi-trend.png"))


async def test_the_demo_daemon_serves_a_live_page(tmp_path: Path, chromium: object) -> None:
    async with spawn("demo", "--port", "0", "--store-dir", str(tmp_path)) as url:
        page = await chromium.new_page()  # type: ignore[attr-defined]
        expect = playwright_api.expect
        await page.goto(url + "/")
        await expect(page.locator("#site")).to_contain_text("Demo")
        await expect(page.locator("#scheme")).to_have_text("LMC")
        await expect(page.locator("#cpo-link")).to_have_text("up", timeout=10_000)
        uptime = await page.locator("#uptime").text_content()
        await expect(page.locator("#uptime")).not_to_have_text(uptime or "", timeout=5000)
        await expect(page.locator("#demand")).not_to_have_text("—", timeout=10_000)
        await page.screenshot(path=str(ARTIFACTS / "hmi-demo.png"))
