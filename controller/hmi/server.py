"""The HMI's HTTP server: ``GET /api/status`` (and the event log) on the HMI port.

The one module that imports aiohttp's server side for the controller. Read-only views need
no login; the bind address defaults to 127.0.0.1 (no remote access by default). The HMI
page itself lands with issue 6; this serves the API it is built on.
"""

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from controller.runtime import Runtime

log = logging.getLogger(__name__)

RUNTIME_KEY: web.AppKey["Runtime"] = web.AppKey("runtime")


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[RUNTIME_KEY].status_dict())


async def _events(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME_KEY]
    try:
        limit = max(1, min(1000, int(request.query.get("limit", "100"))))
    except ValueError:
        return web.json_response({"error": "limit must be an integer"}, status=400)
    severity = request.query.get("severity")
    return web.json_response(await rt.store.recent_events(limit, severity))


async def _index(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME_KEY]
    st = rt.status_dict()
    body = (
        "<!doctype html><meta charset=utf-8><title>gridwarden</title>"
        f"<h1>gridwarden — {st['site']['id']}</h1><p>{st['state']}: {st['reason']}</p>"
        "<p>The full HMI page lands with issue 6; the live data is at "
        "<a href=/api/status>/api/status</a> and <a href=/api/events>/api/events</a>.</p>"
    )
    return web.Response(text=body, content_type="text/html")


def make_app(runtime: "Runtime") -> web.Application:
    app = web.Application()
    app[RUNTIME_KEY] = runtime
    app.router.add_get("/", _index)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/api/events", _events)
    return app


async def serve(runtime: "Runtime") -> None:
    """Serve until cancelled, on the configured address(es)."""
    hmi = runtime.config.hmi
    runner = web.AppRunner(make_app(runtime), access_log=None)
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
