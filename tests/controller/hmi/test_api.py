"""The HMI's HTTP API against a running controller: read-only views, the live feed, login,
CSRF and origin checks, lock-out, operator actions and acknowledgement."""

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from controller.hmi import auth
from controller.hmi.server import COOKIE, CSRF_HEADER, SHUTDOWN_TIMEOUT_S
from hal.sim.meter import SimMeter
from tests.controller.hmi.conftest import PIN, Site, running_site


def client() -> aiohttp.ClientSession:
    """A client that keeps cookies from IP-address hosts (like a browser does)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def rows(site: Site, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(site.db) as conn:
        return conn.execute(sql, args).fetchall()


async def login(http: aiohttp.ClientSession, site: Site, account: str = "alice",
                secret: str = PIN) -> str:  # fmt: skip
    async with http.post(
        site.url + "/api/login", json={"account": account, "password": secret}
    ) as r:
        assert r.status == 200, await r.text()
        cookie = r.cookies[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        csrf: str = (await r.json())["csrf"]
        return csrf


async def test_read_only_views_need_no_login(site: Site) -> None:
    await site.runtime.store.flush()
    async with client() as http:
        async with http.get(site.url + "/api/status") as r:
            st = await r.json()
            assert r.status == 200
            assert st["scheme"] == "CLM" and st["constraint"]["limit"] == 100.0
            assert st["breaker"]["aux"] == "confirmed"  # sim breaker: closed as ordered
        async with http.get(site.url + "/") as r:
            page = await r.text()
            assert r.status == 200 and 'id="btn-reset"' in page
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        for path in ("/static/app.js", "/static/vendor/uplot/uPlot.iife.min.js"):
            async with http.get(site.url + path) as r:
                assert r.status == 200
        async with http.get(site.url + "/api/events?severity=info&limit=5") as r:
            assert any(e["code"] == "STARTED" for e in await r.json())
        async with http.get(site.url + "/api/trend?hours=24") as r:
            trend = await r.json()
            assert trend["unit"] == "kW" and isinstance(trend["rows"], list)


async def test_commissioning_shows_raw_values_and_hides_every_secret(site: Site) -> None:
    async with client() as http, http.get(site.url + "/api/commissioning") as r:
        d = await r.json()
    assert d["meter"]["power_kw"] > 30.0 and len(d["meter"]["currents_a"]) == 3
    assert d["links"]["meter"]["ok"] is True
    assert d["config"]["scheme"]["limit"] == 100.0
    assert d["config"]["hmi"]["users"] == {"alice": "(hidden)", "bob": "(hidden)"}
    assert "scrypt$" not in json.dumps(d)


async def test_live_feed_pushes_new_values_without_asking(site: Site) -> None:
    seen: list[dict[str, Any]] = []
    async with client() as http, http.get(site.url + "/api/live") as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        async with asyncio.timeout(5):
            async for raw in r.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if len(seen) == 1:
                        site.sim.set_power_kw(60.0)
                    if len(seen) >= 3:
                        break
    assert seen[0]["uptime_s"] < seen[-1]["uptime_s"]
    assert seen[0]["unacked"] is not None
    assert abs(seen[-1]["meter"]["power_kw"] - 60.0) < 2.0  # a value that changed live


async def test_reset_is_refused_without_login_and_accepted_with_it_after_a_trip(
    site: Site,
) -> None:
    await site.trip()
    site.sim.set_power_kw(40.0)
    await site.until(lambda: (site.runtime.status.constraint or 999) < 50)
    async with client() as http:
        async with http.post(site.url + "/api/command", json={"kind": "reset"}) as r:
            assert r.status == 401
        await asyncio.sleep(0.5)
        assert site.runtime.status.state == "tripped"

        csrf = await login(http, site)
        async with http.post(site.url + "/api/command", json={"kind": "reset"}) as r:
            assert r.status == 403  # logged in, but no CSRF token
        async with http.post(
            site.url + "/api/command", json={"kind": "reset"}, headers={CSRF_HEADER: "x" + csrf}
        ) as r:
            assert r.status == 403
        assert site.breaker.history[-1] == "trip"

        async with http.post(
            site.url + "/api/command", json={"kind": "reset"}, headers={CSRF_HEADER: csrf}
        ) as r:
            body = await r.json()
            assert r.status == 200 and body["accepted"] is True, body
    await site.until(lambda: site.breaker.history[-1:] == ["permit_close"])
    await site.runtime.store.flush()
    actions = rows(site, "SELECT data FROM events WHERE code = 'OPERATOR_ACTION'")
    assert [json.loads(a[0])["account"] for a in actions] == ["alice"]
    assert rows(site, "SELECT message FROM events WHERE code = 'TRIP_RESET'")[0][0].count("alice")


async def test_a_refused_command_shows_the_core_reason(site: Site) -> None:
    await site.trip()  # still overloaded: the core must refuse the reset
    async with client() as http:
        csrf = await login(http, site)
        async with http.post(
            site.url + "/api/command", json={"kind": "reset"}, headers={CSRF_HEADER: csrf}
        ) as r:
            body = await r.json()
    assert r.status == 409 and body["accepted"] is False and body["reason"]
    assert site.runtime.status.state == "tripped"


async def test_cross_origin_and_rebinding_posts_are_refused(site: Site) -> None:
    async with client() as http:
        csrf = await login(http, site)
        ok = {CSRF_HEADER: csrf}
        for headers in (
            {**ok, "Origin": "http://evil.example"},
            {**ok, "Referer": "http://evil.example/page"},
            {**ok, "Host": "evil.example"},  # DNS rebinding: the name is not ours
        ):
            async with http.post(
                site.url + "/api/command", json={"kind": "maintenance_on"}, headers=headers
            ) as r:
                assert r.status == 403, headers
        assert site.runtime.status.state != "maintenance"
        origin = {**ok, "Origin": site.url}
        async with http.post(
            site.url + "/api/command", json={"kind": "maintenance_on"}, headers=origin
        ) as r:
            assert r.status == 200
        await site.until(lambda: site.runtime.status.state == "maintenance")


async def test_repeated_failures_lock_the_account_out(site: Site) -> None:
    async with client() as http:
        for _ in range(auth.MAX_FAILURES):
            async with http.post(
                site.url + "/api/login", json={"account": "bob", "password": "guess"}
            ) as r:
                assert r.status == 401
        async with http.post(
            site.url + "/api/login", json={"account": "bob", "password": "bob-secret"}
        ) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) > 0  # even the right one
        async with http.get(site.url + "/api/session") as r:
            assert (await r.json())["account"] is None
    await site.runtime.store.flush()
    assert len(rows(site, "SELECT 1 FROM events WHERE code = 'LOGIN_LOCKED'")) == 1


async def test_acknowledging_alarms_needs_login_and_records_the_account(site: Site) -> None:
    await site.trip()
    await site.runtime.store.flush()
    async with client() as http:
        async with http.get(site.url + "/api/events?unacked=1") as r:
            unacked = await r.json()
        assert {"TRIP", "EMERGENCY"} <= {e["code"] for e in unacked}
        one = unacked[0]["id"]
        async with http.post(site.url + f"/api/events/{one}/ack") as r:
            assert r.status == 401
        csrf = await login(http, site)
        h = {CSRF_HEADER: csrf}
        async with http.post(site.url + f"/api/events/{one}/ack", headers=h) as r:
            assert r.status == 200
        async with http.post(site.url + f"/api/events/{one}/ack", headers=h) as r:
            assert r.status == 404  # already acknowledged
        async with http.post(site.url + "/api/events/ack-all", headers=h) as r:
            assert (await r.json())["acked"] == len(unacked) - 1
        async with http.get(site.url + "/api/events?unacked=1") as r:
            assert await r.json() == []
        async with http.get(site.url + "/api/events?code=ALARM_ACK") as r:
            acks = await r.json()
    assert [a["data"]["account"] for a in acks] == ["alice", "alice"]
    assert rows(site, "SELECT acked_by FROM events WHERE id = ?", one) == [("alice",)]


async def test_logout_ends_the_session(site: Site) -> None:
    async with client() as http:
        csrf = await login(http, site)
        async with http.post(site.url + "/api/logout", headers={CSRF_HEADER: csrf}) as r:
            assert r.status == 200
        async with http.post(
            site.url + "/api/command", json={"kind": "reset"}, headers={CSRF_HEADER: csrf}
        ) as r:
            assert r.status == 401


async def test_open_live_streams_do_not_hold_up_a_stop(
    tmp_path: Path, sim_meter: tuple[SimMeter, int]
) -> None:
    async with running_site(tmp_path, sim_meter) as site, client() as http:
        async with http.get(site.url + "/api/live") as r:
            async with asyncio.timeout(3):
                async for raw in r.content:
                    if raw.startswith(b"data: "):
                        break
            t0 = time.monotonic()
            site.runtime.stop()
            async with asyncio.timeout(5):
                async for _ in r.content:  # the server ends the stream
                    pass
        assert time.monotonic() - t0 < SHUTDOWN_TIMEOUT_S + 1.0
