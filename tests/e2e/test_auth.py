"""Every route authenticates, checks the role, and scopes data to the caller's tenant."""

from collections.abc import Callable
from dataclasses import dataclass

import httpx2 as httpx
import pytest

from service.auth import Role
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


ROUTES = [
    Route("POST", "/v1/records/{record_ref}/events", Role.INGEST, _post_event),
    Route("POST", "/v1/events:batch", Role.INGEST, _post_batch),
    Route("GET", "/v1/records/{record_ref}/timeline", Role.COMPLIANCE, _timeline),
]
READS = [r for r in ROUTES if r.method == "GET"]


def test_the_table_covers_every_route_of_the_api(api: Api) -> None:
    paths = api.app.openapi()["paths"]
    served = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert served == {(r.method, r.path) for r in ROUTES}


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
    response = route.call(api, "rec-a", api.key(*others))
    assert response.status_code == 403
    assert response.json()["type"].endswith("/forbidden")
    allowed = route.call(api, "rec-a", api.key(route.role, Role.INGEST))
    assert allowed.status_code in (200, 201, 404)


@pytest.mark.parametrize("route", READS, ids=lambda r: f"{r.method} {r.path}")
def test_another_tenants_record_is_not_found(api: Api, route: Route) -> None:
    owner = api.writer()
    assert _post_event(api, "shared-ref", owner).status_code == 201
    assert route.call(api, "shared-ref", owner).status_code == 200
    intruder = api.writer(tenant=api.tenant + "-other")
    response = route.call(api, "shared-ref", intruder)
    assert response.status_code == 404
    assert "shared-ref" not in response.text


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
    assert token not in dumped
    assert token.rsplit("_", 1)[1] not in dumped
