"""Every route authenticates, checks the role, and scopes data to the caller's tenant."""

from collections.abc import Callable
from dataclasses import dataclass

import httpx2 as httpx
import pytest

from service.auth import ApiKeyStore, Role
from tests.conftest import Api
from tests.factories import example


@dataclass(frozen=True)
class Route:
    """How to call one route for a given record."""

    method: str
    path: str
    role: Role
    call: Callable[[Api, str, dict[str, str]], httpx.Response]


def _post_event(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
    return api.client.post(
        f"/v1/records/{ref}/events", json=example("RecordAccessed"), headers=headers
    )


def _post_batch(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
    body = {"events": [{**example("RecordAccessed"), "record_ref": ref}]}
    return api.client.post("/v1/events:batch", json=body, headers=headers)


def _timeline(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
    return api.client.get(f"/v1/records/{ref}/timeline", headers=headers)


def _get(path: str) -> Callable[[Api, str, dict[str, str]], httpx.Response]:
    def call(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
        return api.client.get(path, headers=headers)

    return call


def _inclusion(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
    body = example("RecordAccessed")
    api.client.post(f"/v1/records/{ref}/events", json=body, headers=api.writer())
    return api.client.get(
        "/v1/log/proofs/inclusion", params={"event_id": body["event_id"]}, headers=headers
    )


def _create_export(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
    return api.client.post("/v1/exports", json={"record_refs": [ref]}, headers=headers)


_MISSING_EXPORT = "/v1/exports/00000000-0000-4000-8000-000000000000"


def _acknowledge(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
    return api.client.post(
        "/v1/findings/00000000-0000-4000-8000-000000000000/acknowledgement",
        json={"resolution": "remediated"},
        headers=headers,
    )


def _destroy(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
    return api.client.post(
        f"/v1/records/{ref}/destruction", json={"dry_run": True}, headers=headers
    )


def _record_get(suffix: str) -> Callable[[Api, str, dict[str, str]], httpx.Response]:
    def call(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
        return api.client.get(f"/v1/records/{ref}{suffix}", headers=headers)

    return call


def _list(path: str) -> Callable[[Api, str, dict[str, str]], httpx.Response]:
    def call(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
        return api.client.get(path, params={"record_ref": ref}, headers=headers)

    return call


ROUTES = [
    Route("POST", "/v1/records/{record_ref}/events", Role.INGEST, _post_event),
    Route("POST", "/v1/events:batch", Role.INGEST, _post_batch),
    Route("GET", "/v1/records/{record_ref}/timeline", Role.COMPLIANCE, _timeline),
    Route("GET", "/v1/log/checkpoint", Role.REGULATOR, _get("/v1/log/checkpoint")),
    Route("GET", "/v1/log/public-key", Role.REGULATOR, _get("/v1/log/public-key")),
    Route("GET", "/v1/log/proofs/inclusion", Role.REGULATOR, _inclusion),
    Route("GET", "/v1/log/proofs/consistency", Role.REGULATOR,
          _get("/v1/log/proofs/consistency?from_size=1")),
    Route("POST", "/v1/exports", Role.REGULATOR, _create_export),
    Route("GET", "/v1/exports/{export_id}", Role.REGULATOR, _get(_MISSING_EXPORT)),
    Route("GET", "/v1/exports/{export_id}/bundle", Role.REGULATOR,
          _get(_MISSING_EXPORT + "/bundle")),
    Route("GET", "/v1/records/{record_ref}", Role.COMPLIANCE, _record_get("")),
    Route("GET", "/v1/records/{record_ref}/accounting", Role.COMPLIANCE,
          _record_get("/accounting")),
    Route("GET", "/v1/access-log", Role.COMPLIANCE, _list("/v1/access-log")),
    Route("GET", "/v1/disclosures", Role.COMPLIANCE, _list("/v1/disclosures")),
    Route("GET", "/v1/findings", Role.COMPLIANCE, _list("/v1/findings")),
    Route("GET", "/v1/audit-reads", Role.COMPLIANCE, _get("/v1/audit-reads")),
    Route("POST", "/v1/findings/{finding_id}/acknowledgement", Role.COMPLIANCE, _acknowledge),
    Route("POST", "/v1/records/{record_ref}/destruction", Role.ADMIN, _destroy),
]  # fmt: skip
READS = [r for r in ROUTES if r.path.startswith("/v1/records/{record_ref}") and r.method == "GET"]
LISTS = [r for r in ROUTES if r.call.__name__ == "call" and r.path in (
    "/v1/access-log", "/v1/disclosures", "/v1/findings")]  # fmt: skip
REGULATOR_OR_COMPLIANCE = {r.path for r in ROUTES if r.role is Role.REGULATOR}


_FHIR = {"Content-Type": "application/fhir+json"}
_CONSENT: dict[str, object] = {"resourceType": "Consent", "status": "active"}


def _fhir_post(
    path: str, body: dict[str, object]
) -> Callable[[Api, str, dict[str, str]], httpx.Response]:
    def call(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
        return api.client.post(path, json=body, headers=headers | _FHIR)

    return call


def _fhir_put(api: Api, ref: str, headers: dict[str, str]) -> httpx.Response:
    return api.client.put("/fhir/R4/Consent/c-1", json=_CONSENT | {"id": "c-1"},
                          headers=headers | _FHIR)  # fmt: skip


FHIR_ROUTES = [
    Route("POST", "/fhir/R4", Role.INGEST,
          _fhir_post("/fhir/R4", {"resourceType": "Bundle", "type": "batch"})),
    Route("POST", "/fhir/R4/AuditEvent", Role.INGEST,
          _fhir_post("/fhir/R4/AuditEvent", {"resourceType": "AuditEvent"})),
    Route("POST", "/fhir/R4/Consent", Role.INGEST, _fhir_post("/fhir/R4/Consent", _CONSENT)),
    Route("PUT", "/fhir/R4/Consent/{consent_id}", Role.INGEST, _fhir_put),
    Route("GET", "/fhir/R4/AuditEvent", Role.COMPLIANCE, _get("/fhir/R4/AuditEvent?patient=x")),
    Route("GET", "/fhir/R4/AuditEvent/{event_id}", Role.COMPLIANCE,
          _get("/fhir/R4/AuditEvent/00000000-0000-4000-8000-000000000000")),
]  # fmt: skip
PUBLIC = {("GET", "/fhir/R4/metadata")}  # a FHIR server's CapabilityStatement is public


def test_the_table_covers_every_route_of_the_api(api: Api) -> None:
    paths = api.app.openapi()["paths"]
    served = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert served == {(r.method, r.path) for r in ROUTES + FHIR_ROUTES} | PUBLIC


def _outcome_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["code"])


@pytest.mark.parametrize("route", FHIR_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_fhir_routes_need_a_valid_key_and_the_right_role(api: Api, route: Route) -> None:
    missing = route.call(api, "rec-a", {})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert _outcome_code(missing) == "login"
    garbage = route.call(api, "rec-a", {"Authorization": "Bearer garbage"})
    assert garbage.status_code == 401
    key_id, token = api.services.keys.create(api.tenant, set(Role))
    assert api.services.keys.revoke(key_id)
    assert route.call(api, "rec-a", {"Authorization": f"Bearer {token}"}).status_code == 401
    wrong = route.call(api, "rec-a", api.key(*(r for r in Role if r != route.role)))
    assert wrong.status_code == 403
    assert _outcome_code(wrong) == "forbidden"
    allowed = route.call(api, "rec-a", api.key(route.role))
    assert allowed.status_code not in (401, 403), "the right role is let through"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_no_key_is_401_with_a_challenge(api: Api, route: Route) -> None:
    response = route.call(api, "rec-a", {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"].endswith("/unauthenticated")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
@pytest.mark.parametrize(
    "token", ["da_0123456789abcdef_" + "A" * 43, "garbage", ""], ids=["unknown", "garbage", "empty"]
)
def test_an_invalid_key_is_401(api: Api, route: Route, token: str) -> None:
    response = route.call(api, "rec-a", {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_a_revoked_key_is_401(api: Api, route: Route) -> None:
    key_id, token = api.services.keys.create(api.tenant, set(Role))
    assert api.services.keys.revoke(key_id)
    response = route.call(api, "rec-a", {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_a_key_without_the_role_is_403(api: Api, route: Route) -> None:
    others = {role for role in Role if role != route.role}
    if route.path in REGULATOR_OR_COMPLIANCE:
        others.discard(Role.COMPLIANCE)  # compliance officers may also read the log
    response = route.call(api, "rec-a", api.key(*others))
    assert response.status_code == 403
    assert response.json()["type"].endswith("/forbidden")
    allowed = route.call(api, "rec-a", api.key(route.role, Role.INGEST))
    assert allowed.status_code not in (401, 403), "the right role is let through"


@pytest.mark.parametrize("route", READS, ids=lambda r: f"{r.method} {r.path}")
def test_another_tenants_record_is_not_found(api: Api, route: Route) -> None:
    owner = api.writer()
    assert _post_event(api, "shared-ref", owner).status_code == 201
    assert route.call(api, "shared-ref", owner).status_code == 200
    intruder = api.writer(tenant=api.tenant + "-other")
    response = route.call(api, "shared-ref", intruder)
    assert response.status_code == 404
    assert "shared-ref" not in response.text


@pytest.mark.parametrize("route", LISTS, ids=lambda r: r.path)
def test_lists_show_nothing_of_another_tenant(api: Api, route: Route) -> None:
    owner = api.writer()
    body = example("DisclosureMade", legal_basis={"kind": "none_stated"})
    response = api.client.post("/v1/records/shared-ref/events", json=body, headers=owner)
    position = response.json()["position"]
    api.client.post("/v1/records/shared-ref/events", json=example("RecordAccessed"), headers=owner)
    mine = api.client.get(route.path, params={"min_position": position + 1}, headers=owner)
    assert mine.json()["items"], "the owner sees its own"
    intruder = api.writer(tenant=api.tenant + "-other")
    theirs = api.client.get(route.path, params={"record_ref": "shared-ref"}, headers=intruder)
    assert theirs.status_code == 200
    assert theirs.json()["items"] == []


def test_writes_by_another_tenant_land_in_a_separate_record(api: Api) -> None:
    owner, intruder = api.writer(), api.writer(tenant=api.tenant + "-other")
    assert _post_event(api, "same-ref", owner).status_code == 201
    assert _post_event(api, "same-ref", intruder).status_code == 201
    assert _post_batch(api, "same-ref", intruder).status_code == 201
    mine = _timeline(api, "same-ref", owner).json()["items"]
    theirs = _timeline(api, "same-ref", intruder).json()["items"]
    assert len(mine) == 1
    assert len(theirs) == 2
    assert not {i["event_id"] for i in mine} & {i["event_id"] for i in theirs}
    assert api.services.audit.record_id(api.tenant, "same-ref") != api.services.audit.record_id(
        api.tenant + "-other", "same-ref"
    )


def test_keys_are_stored_only_as_hashes(api: Api) -> None:
    _, token = api.services.keys.create(api.tenant, {Role.INGEST})
    with api.services.audit.db.transaction(commit=False) as cursor:
        rows = cursor.fetchall("SELECT * FROM da_api_keys")
    dumped = repr(rows)
    secret = token[len("da_") + 16 + 1 :]  # da_<16 hex key id>_<secret>; the secret may hold "_"
    assert len(secret) == 43
    assert token not in dumped
    assert secret not in dumped


@pytest.mark.parametrize("post", [_post_event, _post_batch], ids=["event", "batch"])
def test_a_key_revoked_by_another_process_writes_nothing_more(
    api: Api, post: Callable[[Api, str, dict[str, str]], httpx.Response]
) -> None:
    """The ingest routes admit a key they have seen from memory; the writer asks the store
    once per group whether it is still active, so a revocation made by another process
    (here: another key store on the same database) holds from the next write on."""
    key_id, token = api.services.keys.create(api.tenant, {Role.INGEST, Role.COMPLIANCE})
    headers = {"Authorization": f"Bearer {token}"}
    assert post(api, "revoked-elsewhere", headers).status_code == 201  # now known in memory
    assert ApiKeyStore(api.services.audit.db).revoke(key_id)  # not this process's store

    refused = post(api, "revoked-elsewhere", headers)

    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["type"].endswith("/unauthenticated")
    reader = api.key(Role.COMPLIANCE)
    timeline = _timeline(api, "revoked-elsewhere", reader).json()["items"]
    assert len([i for i in timeline if i["type"] == "RecordAccessed"]) == 1, "nothing stored"
    assert post(api, "revoked-elsewhere", headers).status_code == 401, "and it stays refused"
