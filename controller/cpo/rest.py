"""The bespoke CPO REST API v1 over aiohttp: the only module that imports the aiohttp client.

``RestTransport`` does one exchange per call (``put_limit``, ``get_demand``) and turns every
aiohttp, TLS, timeout, HTTP and validation problem into a ``CpoError`` subclass, chained.
It holds no policy: retries, latest-wins and reachability live in ``controller.cpo.link``.
It never reads a clock.
"""

import json
import logging
import ssl
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from controller.cpo.errors import (
    CpoAuthError,
    CpoBadResponse,
    CpoError,
    CpoRejected,
    CpoServerError,
    CpoUnreachable,
)
from controller.cpo.models import DemandReport, ErrorBody, LimitAck, LimitRequest, to_json

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
"""Answers larger than this are refused (a demand report of 1000 chargepoints is ~100 kB)."""

M = TypeVar("M", bound=BaseModel)


def make_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host-name verification always on; ``ca_file`` replaces the system
    store (a CPO with a private CA), otherwise the system's trust store is used."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class RestTransport:
    """One site's endpoints under ``base_url`` (which includes the version, ``.../v1``).

    Use as an async context manager or call ``aclose()``; the HTTP session is created on
    first use inside the running loop.
    """

    def __init__(
        self,
        base_url: str,
        site_id: str,
        token: str,
        *,
        ca_file: Path | None = None,
        connect_timeout_s: float = 3.0,
        total_timeout_s: float = 5.0,
    ) -> None:
        base = base_url.rstrip("/")
        site = quote(site_id, safe="")
        self.site_id = site_id
        self.limit_url = f"{base}/sites/{site}/limit"
        self.demand_url = f"{base}/sites/{site}/demand"
        self._headers = {
            "Authorization": f"Token {token}",
            "Accept": "application/json",
            "User-Agent": "gridwarden-cpo-client/1",
        }
        self._ssl = make_ssl_context(ca_file) if base.startswith("https:") else None
        self._timeout = aiohttp.ClientTimeout(
            total=total_timeout_s, connect=connect_timeout_s, sock_connect=connect_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "RestTransport":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else False, limit=4
            )
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers=self._headers, connector=connector
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def put_limit(self, request: LimitRequest) -> LimitAck:
        ack = await self._exchange("PUT", self.limit_url, LimitAck, to_json(request))
        if ack.site_id != self.site_id or ack.sequence != request.sequence:
            raise CpoBadResponse(
                f"limit ack is for site {ack.site_id!r} sequence {ack.sequence},"
                f" sent {self.site_id!r} sequence {request.sequence}"
            )
        return ack

    async def get_demand(self) -> DemandReport:
        report = await self._exchange("GET", self.demand_url, DemandReport, None)
        if report.site_id != self.site_id:
            raise CpoBadResponse(f"demand report is for site {report.site_id!r}")
        return report

    async def _exchange(
        self, method: str, url: str, model: type[M], body: dict[str, Any] | None
    ) -> M:
        session = self._get_session()
        try:
            async with session.request(method, url, json=body) as resp:
                raw = await resp.content.read(MAX_BODY_BYTES + 1)
                status = resp.status
                ctype = resp.content_type
        except aiohttp.ClientConnectorCertificateError as exc:
            raise CpoUnreachable(f"TLS certificate of {url} not trusted: {exc}") from exc
        except aiohttp.ClientSSLError as exc:
            raise CpoUnreachable(f"TLS failure with {url}: {exc}") from exc
        except TimeoutError as exc:  # aiohttp's timeouts subclass asyncio/builtin TimeoutError
            raise CpoUnreachable(
                f"{method} {url}: no answer within {self._timeout.total:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise CpoUnreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if len(raw) > MAX_BODY_BYTES:
            raise CpoBadResponse(f"{method} {url}: answer larger than {MAX_BODY_BYTES} bytes")
        if status >= 400:
            raise _status_error(status, raw)
        if not 200 <= status < 300:
            raise CpoBadResponse(f"{method} {url}: unexpected HTTP {status}")
        if ctype != "application/json":
            raise CpoBadResponse(f"{method} {url}: content type {ctype!r}, not JSON")
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(body)"
            raise CpoBadResponse(
                f"{method} {url}: malformed {model.__name__}: {where}: {first['msg']}"
                f" ({exc.error_count()} problem(s))"
            ) from exc


def _status_error(status: int, raw: bytes) -> CpoError:
    try:
        err = ErrorBody.model_validate_json(raw)
        code, message, details = err.code, err.message, err.details
    except (ValidationError, ValueError):
        code, message, details = "unknown", _snippet(raw), None
    if status >= 500 or status == 429:
        return CpoServerError(status, code, message)
    if status in (401, 403):
        return CpoAuthError(status, code, message, details)
    return CpoRejected(status, code, message, details)


def _snippet(raw: bytes) -> str:
    text = raw[:200].decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text))[:200]
    except ValueError:
        return " ".join(text.split()) or "(empty body)"


__all__ = ["MAX_BODY_BYTES", "RestTransport", "make_ssl_context"]
