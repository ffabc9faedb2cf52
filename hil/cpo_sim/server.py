"""The CPO simulator's HTTP side: serves docs/api/cpo-openapi.yaml (``GET /openapi.yaml``)
and implements it for one or more ``SimSite``s. The only module that imports aiohttp's server
for the CPO simulator.

Test and bench controls live in ``CpoSimulator.faults`` (a ``Faults``; change its fields at
any time) and in each site's ``SiteSettings`` (``response_delay_s``, ``ignore_limits``,
``fallback_kw``). ``requests`` records every API request (method, path, status).
The wrapper reads ``clock``/``wall_clock`` (default ``time.monotonic``/``time.time``) and
hands model time to the sites; inject both to drive it from a test clock.
"""

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from controller.cpo.models import (
    API_VERSION,
    ERR_INTERNAL,
    ERR_INVALID,
    ERR_NOT_FOUND,
    ERR_UNAUTHORIZED,
    ERR_UNAVAILABLE,
    Chargepoint,
    DemandReport,
    LimitAck,
    LimitRequest,
    error_json,
    to_json,
    utc,
)
from hil.cpo_sim.model import LimitRefused, SimSite, SiteSettings
from hil.ev_sessions import EvSession

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "api" / "cpo-openapi.yaml"
API_PREFIX = f"/{API_VERSION}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Faults:
    """Misbehaviours to switch on for tests and the bench (all off by default)."""

    answer_delay_s: float = 0.0
    """Wait this long before handling each API request (a slow back office)."""
    hang: bool = False
    """Never answer API requests (until the simulator stops): the client must time out."""
    fail_status: int | None = None
    """Answer every API request with this status (e.g. 503) and the error body."""
    fail_next: int = 0
    """Answer the next N API requests with 503, then recover (counts down)."""
    drop_auth: bool = False
    """Refuse every token with 401, as if the DERMS's credentials were revoked."""
    stale_measured_at_s: float = 0.0
    """Report ``measured_at`` this many seconds in the past (a stale CPO cache)."""
    malformed_demand: bool = False
    """Answer the demand endpoint with a body that breaks the schema (off-spec on purpose)."""


@dataclass(frozen=True)
class RequestRecord:
    at: float
    method: str
    path: str
    status: int
    body: dict[str, Any] | None = None


@dataclass
class _Served:
    runner: web.AppRunner
    port: int
    scheme: str


class CpoSimulator:
    """A CPO back office hosting the v1 API for ``sites``.

    In process::

        sim = CpoSimulator([SiteSettings("demo-site", chargepoints=6)], token="t")
        base_url = await sim.start(port=0)      # http://127.0.0.1:<port>/v1
        kw = sim.site("demo-site").power_kw(time.monotonic())
        await sim.stop()

    or ``async with CpoSimulator(...) as sim: ...`` (starts on an ephemeral port).
    """

    def __init__(
        self,
        sites: Iterable[SiteSettings],
        *,
        token: str = "sim-token",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        openapi_path: Path = OPENAPI_PATH,
        sessions: dict[str, list[EvSession]] | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self.token = token
        self.openapi_path = openapi_path
        self.faults = faults if faults is not None else Faults()
        self.requests: list[RequestRecord] = []
        t0 = clock()
        self._sites: dict[str, SimSite] = {}
        for settings in sites:
            given = (sessions or {}).get(settings.site_id)
            self._sites[settings.site_id] = SimSite(settings, t0, sessions=given)
        if not self._sites:
            raise ValueError("a CPO simulator needs at least one site")
        self._served: _Served | None = None
        self._stopping = asyncio.Event()

    # --- in-process use ---------------------------------------------------------------------

    def site(self, site_id: str) -> SimSite:
        return self._sites[site_id]

    @property
    def site_ids(self) -> list[str]:
        return list(self._sites)

    @property
    def port(self) -> int:
        if self._served is None:
            raise RuntimeError("the CPO simulator is not started")
        return self._served.port

    @property
    def base_url(self) -> str:
        """The API base including the version, as a controller's ``cpo.base_url``."""
        if self._served is None:
            raise RuntimeError("the CPO simulator is not started")
        return f"{self._served.scheme}://127.0.0.1:{self._served.port}{API_PREFIX}"

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/openapi.yaml", self._openapi)
        app.router.add_put(API_PREFIX + "/sites/{site_id}/limit", self._put_limit)
        app.router.add_get(API_PREFIX + "/sites/{site_id}/demand", self._get_demand)
        return app

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Serve on ``host:port`` (0 = an ephemeral port); returns ``base_url``."""
        if self._served is not None:
            raise RuntimeError("the CPO simulator is already started")
        self._stopping.clear()
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound = runner.addresses[0][1]
        self._served = _Served(runner, int(bound), "https" if ssl_context else "http")
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()  # releases hanging and slow handlers at once
        served, self._served = self._served, None
        if served is not None:
            await served.runner.cleanup()

    async def __aenter__(self) -> "CpoSimulator":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- HTTP -------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: dict[str, Any] | None = None
        resp: web.StreamResponse | None
        try:
            if request.path.startswith(API_PREFIX + "/"):
                if request.can_read_body:
                    with contextlib.suppress(ValueError):
                        raw = json.loads(await request.read())
                        body = raw if isinstance(raw, dict) else None
                resp = await self._faulty(request) or await self._auth(request)
                if resp is None:
                    resp = await handler(request)
            else:
                resp = await handler(request)
        except web.HTTPException as exc:  # raised by aiohttp itself (e.g. body too large)
            resp = _error(exc.status, ERR_INVALID, exc.reason)
        except Exception:
            log.exception("CPO simulator: %s %s failed", request.method, request.path)
            resp = _error(500, ERR_INTERNAL, "the simulator failed; see its log")
        assert resp is not None
        self.requests.append(
            RequestRecord(self.clock(), request.method, request.path, resp.status, body)
        )
        return resp

    async def _faulty(self, request: web.Request) -> web.Response | None:
        f = self.faults
        if f.hang:
            await self._stopping.wait()
            return _error(503, ERR_UNAVAILABLE, "the simulator is stopping")
        if f.answer_delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), f.answer_delay_s)
        if f.fail_next > 0:
            f.fail_next -= 1
            return _error(503, ERR_UNAVAILABLE, "back office temporarily unavailable")
        if f.fail_status is not None:
            return _error(f.fail_status, ERR_UNAVAILABLE, "back office failing (simulated)")
        return None

    async def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme == "Token" and hmac.compare_digest(given.strip().encode(), self.token.encode())
        if ok and not self.faults.drop_auth:
            return None
        resp = _error(401, ERR_UNAUTHORIZED, "missing or invalid token")
        resp.headers["WWW-Authenticate"] = 'Token realm="cpo"'
        return resp

    async def _openapi(self, request: web.Request) -> web.Response:
        data = await asyncio.to_thread(self.openapi_path.read_bytes)
        return web.Response(body=data, content_type="application/yaml")

    def _site_or_404(self, request: web.Request) -> SimSite | web.Response:
        site_id = request.match_info["site_id"]
        site = self._sites.get(site_id)
        if site is None:
            return _error(404, ERR_NOT_FOUND, f"no site {site_id!r} at this CPO")
        return site

    async def _put_limit(self, request: web.Request) -> web.Response:
        site = self._site_or_404(request)
        if isinstance(site, web.Response):
            return site
        try:
            req = LimitRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
                for e in exc.errors()
            ]
            return _error(400, ERR_INVALID, "; ".join(problems), problems=problems)
        now, wall = self.clock(), self.wall_clock()
        expires_at = now + (req.valid_until.timestamp() - wall)
        try:
            lim, replay = site.apply_limit(req.limit_kw, req.sequence, req.reason, now, expires_at)
        except LimitRefused as exc:
            return _error(409, exc.code, str(exc), current_sequence=exc.current_sequence)
        ack = LimitAck(
            site_id=site.settings.site_id,
            sequence=lim.sequence,
            limit_kw=lim.limit_kw,
            valid_until=utc(wall + (lim.expires_at - now)) if not replay else req.valid_until,
            received_at=utc(wall - (now - lim.received_at)),
        )
        return web.json_response(to_json(ack))

    async def _get_demand(self, request: web.Request) -> web.Response:
        site = self._site_or_404(request)
        if isinstance(site, web.Response):
            return site
        now, wall = self.clock(), self.wall_clock()
        sid = site.settings.site_id
        if self.faults.malformed_demand:
            return web.json_response({"site_id": sid, "demand_kw": "a lot", "chargepoints": 3})
        points = site.chargepoint_states(now)
        report = DemandReport(
            site_id=sid,
            measured_at=utc(wall - self.faults.stale_measured_at_s),
            demand_kw=round(sum(p[2] for p in points), 3),
            applied_limit_kw=site.applied_limit_kw(),
            chargepoints=tuple(
                Chargepoint(id=cid, status=st, power_kw=round(kw, 3), max_kw=mx)  # type: ignore[arg-type]
                for cid, st, kw, mx in points
            ),
        )
        return web.json_response(to_json(report))


def _error(status: int, code: str, message: str, **details: Any) -> web.Response:
    """An answer with the API's common error body."""
    return web.json_response(error_json(code, message, **details), status=status)
