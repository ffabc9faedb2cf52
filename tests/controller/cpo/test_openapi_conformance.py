"""The published API document and what the simulator (and the client) actually exchange.

Every answer of the simulator, for every status it can give, is validated against the
response schema that docs/api/cpo-openapi.yaml declares for that path, method and status;
the client's request bodies against the request schema. jsonschema validates the
components (OpenAPI 3.1 schemas are JSON Schema 2020-12).
"""

import json
from typing import Any

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from controller.cpo import DemandReport, LimitRequest
from hil.cpo_sim import OPENAPI_PATH, CpoSimulator

from .helpers import SITE, TOKEN, LinkFactory, wait_for

SPEC_URI = "urn:gridwarden:cpo-openapi"
SPEC: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
REGISTRY = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)


def validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}{ref}"}, registry=REGISTRY, format_checker=FormatChecker()
    )


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_schema_ref(template: str, method: str, status: int) -> str:
    responses = SPEC["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, not in the spec"
    response = resolve(responses[str(status)])
    schema = response["content"]["application/json"]["schema"]
    ref: str = schema["$ref"]
    return ref


def template_of(path: str) -> str:
    base = SPEC["servers"][0]["url"].split("://", 1)[1].split("/", 1)[1]  # "v1"
    rel = path.removeprefix("/" + base)
    parts = rel.strip("/").split("/")
    assert parts[0] == "sites" and len(parts) == 3, path
    return f"/sites/{{site_id}}/{parts[2]}"


class Checked:
    """Calls the simulator over HTTP and checks each answer against the spec."""

    def __init__(self, session: aiohttp.ClientSession, sim: CpoSimulator) -> None:
        self.session, self.sim = session, sim
        self.seen: set[tuple[str, str, int]] = set()

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = TOKEN
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Token {token}"} if token is not None else {}
        url = f"http://127.0.0.1:{self.sim.port}{path}"
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        headers["Content-Type"] = "application/json"
        async with self.session.request(method, url, data=data, headers=headers) as resp:
            assert resp.content_type == "application/json"
            payload = await resp.json()
            template = template_of(path)
            validator(response_schema_ref(template, method, resp.status)).validate(payload)
            if resp.status == 401:
                assert resp.headers["WWW-Authenticate"].startswith("Token")
            self.seen.add((template, method.lower(), resp.status))
            return resp.status, payload


def limit_body(sequence: int, limit_kw: float = 20.0) -> dict[str, Any]:
    return {
        "limit_kw": limit_kw,
        "valid_until": "2030-01-01T00:05:00Z",
        "issued_at": "2030-01-01T00:00:00Z",
        "sequence": sequence,
        "reason": "curtail",
    }


def test_the_document_is_openapi_3_1_with_valid_schemas() -> None:
    assert SPEC["openapi"].startswith("3.1")
    assert SPEC["servers"][0]["url"].endswith("/v1")
    for name, schema in SPEC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert name
    for template in ("/sites/{site_id}/limit", "/sites/{site_id}/demand"):
        assert template in SPEC["paths"]
    assert set(resolve(SPEC["components"]["schemas"]["Reason"])["enum"]) == {
        "normal",
        "curtail",
        "emergency",
        "fallback",
    }


def test_the_spec_examples_parse_with_the_wire_models() -> None:
    put = SPEC["paths"]["/sites/{site_id}/limit"]["put"]
    example = put["requestBody"]["content"]["application/json"]["example"]
    validator("#/components/schemas/LimitRequest").validate(example)
    LimitRequest.model_validate(example)
    get = SPEC["paths"]["/sites/{site_id}/demand"]["get"]
    report = get["responses"]["200"]["content"]["application/json"]["example"]
    validator("#/components/schemas/DemandReport").validate(report)
    DemandReport.model_validate(report)


async def test_the_simulator_serves_exactly_the_document(sim: CpoSimulator) -> None:
    expected = OPENAPI_PATH.read_bytes()
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{sim.port}/openapi.yaml"
        async with session.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == expected


async def test_every_simulator_answer_matches_the_spec(sim: CpoSimulator) -> None:
    limit = f"/v1/sites/{SITE}/limit"
    demand = f"/v1/sites/{SITE}/demand"
    async with aiohttp.ClientSession() as session:
        c = Checked(session, sim)
        assert (await c.call("GET", demand))[0] == 200
        status, ack = await c.call("PUT", limit, limit_body(3))
        assert status == 200 and ack["sequence"] == 3
        assert (await c.call("PUT", limit, limit_body(3)))[0] == 200  # replay
        status, err = await c.call("PUT", limit, limit_body(2))
        assert (status, err["code"], err["details"]["current_sequence"]) == (
            409,
            "stale_sequence",
            3,
        )
        status, err = await c.call("PUT", limit, limit_body(3, limit_kw=1.0))
        assert (status, err["code"]) == (409, "sequence_conflict")
        status, err = await c.call("PUT", limit, {**limit_body(4), "limit_kw": -1})
        assert (status, err["code"]) == (400, "invalid_request")
        status, err = await c.call("PUT", limit, {**limit_body(4), "colour": "red"})
        assert (status, err["code"]) == (400, "invalid_request")
        status, err = await c.call("PUT", limit, "{not json")
        assert (status, err["code"]) == (400, "invalid_request")
        naive = {**limit_body(4), "valid_until": "2030-01-01T00:05:00"}
        assert (await c.call("PUT", limit, naive))[0] == 400
        status, report = await c.call("GET", demand)
        assert status == 200 and report["site_id"] == SITE
        for path, method in ((demand, "GET"), (limit, "PUT")):
            status, err = await c.call(method, path, limit_body(9), token="wrong")
            assert (status, err["code"]) == (401, "unauthorized")
            status, err = await c.call(method, path, limit_body(9), token=None)
            assert status == 401
            status, err = await c.call(method, path.replace(SITE, "elsewhere"), limit_body(9))
            assert (status, err["code"]) == (404, "unknown_site")
        sim.faults.fail_status = 503
        for path, method in ((demand, "GET"), (limit, "PUT")):
            status, err = await c.call(method, path, limit_body(9))
            assert (status, err["code"]) == (503, "unavailable")
        sim.faults.fail_status = 500
        for path, method in ((demand, "GET"), (limit, "PUT")):
            assert (await c.call(method, path, limit_body(9)))[0] == 500
        sim.faults.fail_status = None
        sim.faults.drop_auth = True
        assert (await c.call("GET", demand))[0] == 401
    # every status the spec declares for the two operations was produced and checked
    declared = {
        (template, method, int(code))
        for template, item in SPEC["paths"].items()
        for method, op in item.items()
        if method in ("get", "put")
        for code in op["responses"]
    }
    assert declared <= c.seen, declared - c.seen


async def test_the_clients_requests_match_the_spec(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    link = start_link()
    for seq, reason in enumerate(("normal", "curtail", "emergency", "fallback"), start=1):
        link.submit_limit(10.0 * seq, seq, 30.0, reason)
        await wait_for(lambda s=seq: link.snapshot().acked_sequence == s)  # type: ignore[misc]
    bodies = [r.body for r in sim.requests if r.method == "PUT"]
    assert len(bodies) == 4
    check = validator("#/components/schemas/LimitRequest")
    for body in bodies:
        check.validate(body)
    assert [b["reason"] for b in bodies if b] == ["normal", "curtail", "emergency", "fallback"]


def test_the_validator_is_not_vacuous() -> None:
    check = validator("#/components/schemas/DemandReport")
    good = {
        "site_id": "s",
        "measured_at": "2030-01-01T00:00:00Z",
        "demand_kw": 1.0,
        "applied_limit_kw": None,
        "chargepoints": [{"id": "cp1", "status": "charging", "power_kw": 1.0, "max_kw": 7.4}],
    }
    check.validate(good)
    for bad in (
        {**good, "demand_kw": -1},
        {**good, "measured_at": "2030-01-01T00:00:00"},
        {k: v for k, v in good.items() if k != "applied_limit_kw"},
        {**good, "chargepoints": [{"id": "cp1", "status": "busy", "power_kw": 1, "max_kw": 7}]},
    ):
        with pytest.raises(ValidationError):
            check.validate(bad)
