"""Wire models of the CPO REST API v1 (docs/api/cpo-openapi.yaml), shared by the client in
``controller.cpo.rest`` and the CPO simulator in ``hil.cpo_sim``.

These are the only definitions of the JSON bodies in Python: when the OpenAPI document
changes, change these with it (tests/controller/cpo/test_openapi_conformance.py checks that
the simulator's answers, built from these models, validate against the document).

Requests are strict (unknown keys refused); responses are read leniently (unknown keys are
ignored) so that a CPO can add fields within v1 without breaking deployed controllers.
Times are RFC 3339 date-times with an offset; a naive time is refused.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

API_VERSION = "v1"

Reason = Literal["normal", "curtail", "emergency", "fallback"]
REASONS: tuple[str, ...] = ("normal", "curtail", "emergency", "fallback")

ChargepointStatus = Literal[
    "available", "charging", "suspended_ev", "suspended_evse", "faulted", "offline"
]
"""``suspended_evse``: paused by the CPO's load management; ``suspended_ev``: the EV is
plugged in but not drawing (full, or its own schedule)."""

SiteId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
NonNegKw = Annotated[float, Field(ge=0, allow_inf_nan=False)]

# Stable error codes of the common error body (docs/api/cpo-openapi.yaml, Error.code).
ERR_UNAUTHORIZED = "unauthorized"
ERR_NOT_FOUND = "unknown_site"
ERR_INVALID = "invalid_request"
ERR_STALE_SEQUENCE = "stale_sequence"
ERR_SEQUENCE_CONFLICT = "sequence_conflict"
ERR_UNAVAILABLE = "unavailable"
ERR_INTERNAL = "internal_error"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LimitRequest(_Request):
    """``PUT /v1/sites/{site_id}/limit``: the EV site's power limit from the DERMS."""

    limit_kw: NonNegKw
    valid_until: AwareDatetime
    """After this instant without a newer limit, the CPO applies its configured safe limit."""
    issued_at: AwareDatetime
    sequence: Annotated[int, Field(ge=0, le=2**53 - 1)]
    """Increases with every new limit; a lower one than the CPO has accepted is stale."""
    reason: Reason


class LimitAck(_Response):
    """Answer to an accepted (or idempotently replayed) limit."""

    site_id: SiteId
    sequence: Annotated[int, Field(ge=0)]
    limit_kw: NonNegKw
    valid_until: AwareDatetime
    received_at: AwareDatetime


class Chargepoint(_Response):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    status: ChargepointStatus
    power_kw: NonNegKw
    max_kw: Annotated[float, Field(gt=0, allow_inf_nan=False)]


class DemandReport(_Response):
    """``GET /v1/sites/{site_id}/demand``: what the EV site draws and which limit it applies."""

    site_id: SiteId
    measured_at: AwareDatetime
    demand_kw: NonNegKw
    applied_limit_kw: NonNegKw | None
    """The limit the CPO enforces now (its safe limit after ``valid_until`` lapsed); null when
    no DERMS limit has ever been received."""
    chargepoints: tuple[Chargepoint, ...]


class ErrorBody(_Response):
    """The common error body of every 4xx/5xx answer."""

    code: Annotated[str, Field(min_length=1)]
    message: str
    details: dict[str, Any] | None = None


def error_json(code: str, message: str, **details: Any) -> dict[str, Any]:
    """A JSON-able error body (servers use it; the client reads ``ErrorBody``)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return body


def to_json(model: BaseModel) -> dict[str, Any]:
    """A model as a JSON-able dict, times as RFC 3339 strings."""
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


def utc(ts: float) -> datetime:
    """A POSIX timestamp as an aware UTC datetime (what the wire carries)."""
    return datetime.fromtimestamp(ts, tz=UTC)
