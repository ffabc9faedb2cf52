"""What the HMI shows, as plain JSON-able dicts built from the runtime (no aiohttp here).

``live_status`` is ``Runtime.status_dict()`` with HMI extras added beside its keys (never
changing them): the breaker's aux-contact confirmation, the central link in CMC, the
latest command results. ``commissioning`` adds raw meter values, link health and the
effective configuration with every secret hidden.
"""

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.runtime import Runtime

HIDDEN = "(hidden)"
_SECRET_KEY = re.compile(r"token|password|secret|passphrase|private|psk|key_file|users", re.I)


def breaker_confirmation(wanted: str | None, status: str) -> str:
    """One of: confirmed, mismatch, no aux contact, no order yet."""
    if wanted is None:
        return "no order yet"
    if status == "unknown":
        return "no aux contact"
    expect = "open" if wanted == "trip" else "closed"
    return "confirmed" if status == expect else "mismatch"


def live_status(runtime: "Runtime") -> dict[str, Any]:
    st = runtime.status_dict()
    breaker = st["breaker"]
    breaker["aux"] = breaker_confirmation(breaker.get("wanted"), str(breaker.get("status")))
    st["central"] = _central(runtime) if st["scheme"] == "CMC" else None
    st["commands"] = [
        {"id": r.command_id, "kind": r.kind, "accepted": r.accepted, "reason": r.reason}
        for r in list(runtime.command_results)[-10:]
    ]
    st["wall_time"] = runtime.wall_clock()
    return st


def _central(runtime: "Runtime") -> dict[str, Any]:
    lease = runtime.lease
    now = runtime.clock()
    return {
        "connected": runtime.central_connected,
        "lease_limit_kw": lease.limit_kw if lease else None,
        "lease_sequence": lease.sequence if lease else None,
        "lease_remaining_s": round(lease.expires_at - now, 1) if lease else None,
    }


def hide_secrets(value: Any, key: str = "") -> Any:
    """A copy of a config dump with every secret-looking value replaced by HIDDEN (for a
    mapping of accounts, the account names stay and the hashes go)."""
    if isinstance(value, dict):
        if key and _SECRET_KEY.search(key):
            return dict.fromkeys(value, HIDDEN)
        return {k: hide_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_secrets(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", False):
        return HIDDEN
    return value


def commissioning(runtime: "Runtime") -> dict[str, Any]:
    st = live_status(runtime)
    cfg = hide_secrets(runtime.config.model_dump(mode="json"))
    cpo = st["cpo"]
    links = {
        "meter": {
            "configured": runtime.config.meter is not None,
            "ok": st["meter"] is not None and not st["meter"].get("error"),
            "age_s": st["meter"]["age_s"] if st["meter"] else None,
            "error": runtime.meter_error,
        },
        "cpo": None
        if cpo is None
        else {
            "ok": cpo["reachable"],
            "demand_age_s": cpo["demand_age_s"],
            "error": cpo["last_error"],
        },
        "central": st["central"],
        "breaker": st["breaker"],
        "store": st["store"],
        "tick": st["tick"],
    }
    return {"meter": st["meter"], "links": links, "config": cfg}
