"""The local HMI: its page, its JSON API, the live feed and the operator actions.

The one module that imports aiohttp's server side for the controller (its helpers in
``controller/hmi`` are plain Python). Read-only views need no login; operator actions
(reset after a trip, maintenance on/off, acknowledging alarms) need a session, a CSRF
token and a same-origin request, and every one is written to the event log with the
account. The bind address defaults to 127.0.0.1: no remote access unless configured.

Nothing here runs on the control tick: one producer task samples ``status_dict()`` once a
second for all live clients; commands are queued with ``submit_command`` and their
results read back from ``command_results`` after the next period.
"""

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from controller import core
from controller.hmi import auth
from controller.hmi.live import LiveFeed, finite
from controller.hmi.status import commissioning, live_status
from controller.store import StoreError

if TYPE_CHECKING:
    from controller.runtime import Runtime

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
COOKIE = "gw_session"
CSRF_HEADER = "X-CSRF-Token"
OPERATOR_COMMANDS = (core.model.CMD_RESET, core.model.CMD_MAINTENANCE_ON,
                     core.model.CMD_MAINTENANCE_OFF)  # fmt: skip
MAX_LIVE_CLIENTS = 200
KEEPALIVE_S = 15.0
SHUTDOWN_TIMEOUT_S = 2.0

RUNTIME_KEY: web.AppKey["Runtime"] = web.AppKey("runtime")
SESSIONS_KEY: web.AppKey[auth.Sessions] = web.AppKey("sessions")
LOCKOUT_KEY: web.AppKey[auth.LockOut] = web.AppKey("lockout")
FEED_KEY: web.AppKey[LiveFeed] = web.AppKey("feed")
HOSTS_KEY: web.AppKey[frozenset[str]] = web.AppKey("hosts")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


# --- read-only views ---------------------------------------------------------------------------
async def _status(request: web.Request) -> web.Response:
    return web.json_response(finite(live_status(request.app[RUNTIME_KEY])))


async def _events(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME_KEY]
    q = request.query
    try:
        limit = max(1, min(1000, int(q.get("limit", "100"))))
        before = int(q["before"]) if q.get("before") else None
    except ValueError:
        return _error(400, "limit and before must be integers")
    severity = q.get("severity") or None
    code = (q.get("code") or "").strip().upper() or None
    unacked = q.get("unacked") in ("1", "true", "yes")
    if code is None and not unacked and before is None:
        rows = await rt.store.recent_events(limit, severity)
    else:
        rows = await rt.store.query_events(
            limit, severity, code=code, unacked_only=unacked, before_id=before
        )
    return web.json_response(finite(rows))


async def _trend(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME_KEY]
    try:
        hours = max(0.1, min(48.0, float(request.query.get("hours", "24"))))
    except ValueError:
        return _error(400, "hours must be a number")
    rows = await rt.store.trend(rt.wall_clock() - hours * 3600.0)
    return web.json_response(
        finite({"unit": rt.status.unit, "hours": hours, "rows": rows}),
    )


async def _commissioning(request: web.Request) -> web.Response:
    return web.json_response(finite(commissioning(request.app[RUNTIME_KEY])))


async def _live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the latest sample, then each new one (≤ 1 s apart)."""
    feed = request.app[FEED_KEY]
    if feed.clients >= MAX_LIVE_CLIENTS:
        return _error(503, "too many live clients")
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    feed.clients += 1
    try:
        await resp.write(b"retry: 2000\n\n")
        seen = 0
        while not feed.closed:
            version = await feed.next(seen, KEEPALIVE_S)
            if feed.closed:
                break
            await resp.write(feed.payload if version > seen else b": keepalive\n\n")
            seen = version
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away, or the server stops
    finally:
        feed.clients -= 1
    return resp


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


# --- sessions ----------------------------------------------------------------------------------
async def _session(request: web.Request) -> web.Response:
    s = request.app[SESSIONS_KEY].get(request.cookies.get(COOKIE))
    users = request.app[RUNTIME_KEY].config.hmi.users
    return web.json_response(
        {
            "account": s.account if s else None,
            "csrf": s.csrf if s else None,
            "login_possible": bool(users),
        },
        headers={"Cache-Control": "no-store"},
    )


async def _login(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME_KEY]
    lockout = request.app[LOCKOUT_KEY]
    body = await _json_body(request)
    account = str(body.get("account", "")).strip()[:64]
    secret = str(body.get("password", ""))[:256]
    addr = request.remote or "?"
    keys = (f"account:{account}", f"addr:{addr}")
    wait_s = lockout.locked_for_s(*keys)
    if wait_s > 0:
        return _error(429, f"locked out after repeated failures; try again in {wait_s:.0f} s",
                      retry_after=wait_s)  # fmt: skip
    stored = rt.config.hmi.users.get(account)
    ok = await asyncio.to_thread(auth.verify_password, secret, stored)  # scrypt: off the loop
    if not ok:
        locked = lockout.failure(*keys)
        _record(rt, "LOGIN_FAILED", "info", f"failed login for {account!r} from {addr}",
                account=account, address=addr)  # fmt: skip
        if locked:
            _record(rt, "LOGIN_LOCKED", "warning",
                    f"login locked for {lockout.lockout_s:.0f} s: {account!r} from {addr}",
                    account=account, address=addr)  # fmt: skip
        return _error(401, "wrong account or password")
    lockout.success(*keys)
    s = request.app[SESSIONS_KEY].create(account)
    _record(rt, "LOGIN", "info", f"{account} logged in from {addr}", account=account,
            address=addr)  # fmt: skip
    resp = web.json_response({"account": account, "csrf": s.csrf})
    resp.set_cookie(COOKIE, s.token, httponly=True, samesite="Strict", path="/")
    return resp


async def _logout(request: web.Request) -> web.Response:
    token = request.cookies.get(COOKIE)
    s = _require_session(request)
    request.app[SESSIONS_KEY].drop(token)
    _record(request.app[RUNTIME_KEY], "LOGOUT", "info", f"{s.account} logged out",
            account=s.account)  # fmt: skip
    resp = web.json_response({"account": None})
    resp.del_cookie(COOKIE, path="/")
    return resp


# --- operator actions --------------------------------------------------------------------------
async def _command(request: web.Request) -> web.Response:
    s = _require_session(request)
    rt = request.app[RUNTIME_KEY]
    body = await _json_body(request)
    kind = body.get("kind")
    if kind not in OPERATOR_COMMANDS:
        return _error(400, f"kind must be one of {', '.join(OPERATOR_COMMANDS)}")
    command_id = "hmi-" + secrets.token_hex(6)
    rt.submit_command(core.Command(kind, s.account, command_id))
    result = await _wait_result(rt, command_id)
    addr = request.remote or "?"
    if result is None:
        _record(rt, "OPERATOR_ACTION", "info",
                f"{kind} by {s.account} from {addr}: no answer from the controller yet",
                account=s.account, kind=kind, command_id=command_id)  # fmt: skip
        return web.json_response(
            {"command_id": command_id, "kind": kind, "accepted": None,
             "reason": "queued; no answer from the controller yet"}, status=202,
        )  # fmt: skip
    verdict = "accepted" if result.accepted else "refused"
    _record(rt, "OPERATOR_ACTION", "info",
            f"{kind} by {s.account} from {addr}: {verdict}"
            + (f" ({result.reason})" if result.reason else ""),
            account=s.account, kind=kind, command_id=command_id, accepted=result.accepted,
            reason=result.reason)  # fmt: skip
    return web.json_response(
        {"command_id": command_id, "kind": kind, "accepted": result.accepted,
         "reason": result.reason}, status=200 if result.accepted else 409,
    )  # fmt: skip


async def _wait_result(rt: "Runtime", command_id: str) -> core.CommandResult | None:
    deadline = time.monotonic() + max(2.0, 3 * rt.period_s)
    while time.monotonic() < deadline:
        for r in reversed(rt.command_results):
            if r.command_id == command_id:
                return r
        await asyncio.sleep(min(0.05, rt.period_s / 4))
    return None


async def _ack_one(request: web.Request) -> web.Response:
    s = _require_session(request)
    rt = request.app[RUNTIME_KEY]
    try:
        event_id = int(request.match_info["event_id"])
    except ValueError:
        return _error(400, "event id must be an integer")
    try:
        done = await rt.store.ack_event(event_id, s.account)
    except StoreError as exc:
        return _error(503, str(exc))
    if not done:
        return _error(404, "no unacknowledged warning or alarm with that id")
    return web.json_response({"acked": 1, "account": s.account})


async def _ack_all(request: web.Request) -> web.Response:
    s = _require_session(request)
    try:
        n = await request.app[RUNTIME_KEY].store.ack_all(s.account)
    except StoreError as exc:
        return _error(503, str(exc))
    return web.json_response({"acked": n, "account": s.account})


# --- guards ------------------------------------------------------------------------------------
def _require_session(request: web.Request) -> auth.Session:
    """The request's session, with its CSRF token checked; else raise 401/403."""
    s = request.app[SESSIONS_KEY].get(request.cookies.get(COOKIE))
    if s is None:
        raise _http_error(web.HTTPUnauthorized, "log in first")
    sent = request.headers.get(CSRF_HEADER, "")
    if not secrets.compare_digest(sent.encode(), s.csrf.encode()):
        raise _http_error(web.HTTPForbidden, "missing or wrong CSRF token")
    return s


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Same-origin check on every state-changing request, security headers on all."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        problem = _origin_problem(request)
        if problem:
            return _error(403, problem)
    resp = await handler(request)
    if not resp.prepared:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
    return resp


def _origin_problem(request: web.Request) -> str | None:
    host = request.host  # the Host header, with port
    hostname = urlsplit("//" + host).hostname or ""
    if not _host_allowed(hostname, request.app[HOSTS_KEY]):
        return f"host {hostname!r} not accepted (use the controller's address)"
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return None  # not a browser (curl, scripts): the CSRF token still applies
        origin = referer
    parts = urlsplit(origin)
    if parts.netloc.lower() != host.lower() or parts.scheme not in ("http", "https"):
        return "cross-origin request refused"
    return None


def _host_allowed(hostname: str, names: frozenset[str]) -> bool:
    """IP literals and the machine's own names: a DNS-rebinding page (evil.example
    resolving to 127.0.0.1) carries its own name in Host and is refused."""
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return hostname.lower() in names
    return True


def _local_names() -> frozenset[str]:
    names = {"localhost"}
    with contextlib.suppress(OSError):
        h = socket.gethostname().lower()
        names |= {h, h + ".local"}
    return frozenset(names)


# --- helpers -----------------------------------------------------------------------------------
def _record(rt: "Runtime", code: str, severity: str, message: str, **values: Any) -> None:
    rt.store.add_events([core.Event(code, severity, message, values)], rt.wall_clock())
    log.info("%s %s", code, message)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise _http_error(web.HTTPUnsupportedMediaType, "send application/json")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _http_error(web.HTTPBadRequest, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _http_error(web.HTTPBadRequest, "body must be a JSON object")
    return body


def _error(status: int, message: str, **extra: Any) -> web.Response:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(int(extra["retry_after"]) + 1)
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def _http_error(cls: type[web.HTTPError], message: str) -> web.HTTPError:
    return cls(text=json.dumps({"error": message}), content_type="application/json")


# --- the app -----------------------------------------------------------------------------------
def make_app(runtime: "Runtime", *, live_interval_s: float = 1.0) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[RUNTIME_KEY] = runtime
    hmi = runtime.config.hmi
    app[SESSIONS_KEY] = auth.Sessions(idle_s=hmi.session_idle_s, max_s=hmi.session_max_s)
    app[LOCKOUT_KEY] = auth.LockOut(
        max_failures=hmi.login_max_failures,
        window_s=hmi.login_failure_window_s,
        lockout_s=hmi.login_lockout_s,
    )
    app[HOSTS_KEY] = _local_names() | {h.lower() for h in hmi.allowed_hosts}
    for problem in auth.check_users(runtime.config.hmi.users):
        log.error("%s (that account cannot log in)", problem)

    async def sample() -> dict[str, Any]:
        data: dict[str, Any] = finite(live_status(runtime))
        try:
            data["unacked"] = await runtime.store.count_unacked()
        except Exception:  # store closed or failing: the feed goes on without the count
            data["unacked"] = None
        return data

    feed = LiveFeed(sample, live_interval_s)
    app[FEED_KEY] = feed

    async def producer(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run(), name="hmi-live")
        yield
        feed.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def on_shutdown(app: web.Application) -> None:
        feed.close()  # live handlers return at once, so shutdown does not wait on them

    app.cleanup_ctx.append(producer)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", _index)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/trend", _trend)
    app.router.add_get("/api/commissioning", _commissioning)
    app.router.add_get("/api/live", _live)
    app.router.add_get("/api/session", _session)
    app.router.add_post("/api/login", _login)
    app.router.add_post("/api/logout", _logout)
    app.router.add_post("/api/command", _command)
    app.router.add_post("/api/events/ack-all", _ack_all)
    app.router.add_post(r"/api/events/{event_id:\d+}/ack", _ack_one)
    app.router.add_static("/static", STATIC_DIR, append_version=False)
    return app


async def serve(runtime: "Runtime") -> None:
    """Serve until cancelled, on the configured address(es)."""
    hmi = runtime.config.hmi
    runner = web.AppRunner(make_app(runtime), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        for host in [hmi.bind, *([hmi.service_bind] if hmi.service_bind else [])]:
            await web.TCPSite(runner, host, hmi.port).start()
        runtime.http_addresses = [(str(a[0]), int(a[1])) for a in runner.addresses]
        log.info("HMI on %s", ", ".join(f"http://{h}:{p}" for h, p in runtime.http_addresses))
        runtime.http_ready.set()
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()
