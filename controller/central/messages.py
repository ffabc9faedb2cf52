"""The CMC wire format: topics and the JSON payloads exchanged with the central platform.

Pure data (pydantic), no I/O. Commands are parsed strictly: unknown keys, wrong types,
non-finite numbers and missing fields are refused, so a malformed command can never reach
the core. The same models are used by the central-platform simulator (``hil``), so both
ends of the link agree on one definition; docs/mqtt.md and docs/api/central-asyncapi.yaml
describe them for third parties.
"""

import json
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

KIND_LIMIT = "limit"
KIND_TRIP = "trip"
KIND_PERMIT_CLOSE = "permit_close"

LINK_ONLINE = "online"
LINK_OFFLINE = "offline"

_Finite = Field(allow_inf_nan=False)


class Topics(NamedTuple):
    """The five topics of one site under ``{prefix}/{site_id}/``."""

    telemetry: str
    state: str
    cmd_limit: str
    cmd_breaker: str
    ack: str

    @classmethod
    def of(cls, prefix: str, site_id: str) -> "Topics":
        base = f"{prefix}/{site_id}"
        return cls(
            f"{base}/telemetry", f"{base}/state", f"{base}/cmd/limit", f"{base}/cmd/breaker",
            f"{base}/ack",
        )  # fmt: skip


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LimitCommand(_Command):
    """``cmd/limit``: the EV site's limit for the next ``valid_for_s`` seconds.

    The lease runs on the controller's monotonic clock from receipt. ``issued_at`` (Unix
    seconds, the platform's wall clock) is used only to refuse a command that arrives after
    its validity has already ended (e.g. delivered late after an outage).
    """

    limit_kw: Annotated[float, Field(ge=0.0, le=100_000.0), _Finite]
    valid_for_s: Annotated[float, Field(gt=0.0, le=86_400.0), _Finite]
    issued_at: Annotated[float, Field(gt=0.0), _Finite]
    sequence: Annotated[int, Field(ge=0)]
    command_id: Annotated[str, Field(max_length=64)] = ""


class BreakerCommand(_Command):
    """``cmd/breaker``: trip the breaker now, or permit it to be closed again (the core
    refuses a permit-close unless local conditions allow it)."""

    action: Literal["trip", "permit_close"]
    command_id: Annotated[str, Field(min_length=1, max_length=64)]
    sequence: Annotated[int, Field(ge=0)]
    issued_at: Annotated[float, Field(gt=0.0), _Finite]
    valid_for_s: Annotated[float, Field(gt=0.0, le=86_400.0), _Finite] = 60.0


class Ack(BaseModel):
    """``ack``: the result of one command. ``kind`` is ``limit``, ``trip``,
    ``permit_close`` or ``unknown`` (a payload too broken to tell)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str
    kind: str
    sequence: int | None
    accepted: bool
    reason: str
    at: float


def guess_fields(payload: bytes) -> tuple[str, int | None]:
    """``command_id`` and ``sequence`` of a payload that failed validation, if readable,
    so the ack of a refused command can still be correlated by the sender."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return "", None
    if not isinstance(data, dict):
        return "", None
    cid = data.get("command_id")
    seq = data.get("sequence")
    return (
        cid[:64] if isinstance(cid, str) else "",
        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
    )


def dumps(data: dict[str, Any]) -> bytes:
    """Compact JSON, the encoding of every payload on the link."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def offline_state() -> bytes:
    """The retained ``state`` payload when the controller is gone (also its last will)."""
    return dumps({"link": LINK_OFFLINE})
