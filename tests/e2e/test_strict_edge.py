"""Issue 10, "Strict at the edge": every input of the issue's table that used to answer 201 is a
422 naming its field, on both stores, and nothing of it is stored."""

from typing import Any
from uuid import uuid4

import pytest

from service.auth import Role
from tests.conftest import Api
from tests.factories import example

CASES: list[tuple[str, dict[str, Any], list[str | int]]] = [
    ("year 44", {"occurred_at": "0044-01-06T10:00:00+00:00"}, ["occurred_at"]),
    ("offset +23:59", {"occurred_at": "2026-03-02T15:04:05+23:59"}, ["occurred_at"]),
    ("epoch number", {"occurred_at": 0}, ["occurred_at"]),
    ("epoch text", {"occurred_at": "1767607200"}, ["occurred_at"]),
    ("break_glass text", {"break_glass": "true"}, ["break_glass"]),
    ("break_glass number", {"break_glass": 1}, ["break_glass"]),
    (
        "NUL in a name",
        {"actor": {"id": "clin-17", "name": "Dr. A.\u0000Rivera", "role": "treating_clinician"}},
        ["actor", "name"],
    ),
    (
        "NUL in an id",
        {"actor": {"id": "clin\u000017", "name": "Dr. A. Rivera", "role": "treating_clinician"}},
        ["actor", "id"],
    ),
    ("U+0001 in free text", {"justification": "urgent\u0001"}, ["justification"]),
    ("U+2028 in free text", {"justification": "urgent\u2028call"}, ["justification"]),
]


def _texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    return [value] if isinstance(value, str) and len(value) > 6 else []


def _timeline_status(api: Api, record_ref: str) -> int:
    response = api.client.get(f"/v1/records/{record_ref}/timeline", headers=api.writer())
    return response.status_code


def _assert_refused(response: Any, loc: list[str | int]) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    locs = [error["loc"] for error in response.json()["errors"]]
    assert any(found[-len(loc) :] == loc for found in locs), locs


@pytest.mark.parametrize(("case", "fields", "loc"), CASES, ids=[c[0] for c in CASES])
def test_a_malformed_fact_is_422_naming_the_field_and_nothing_is_stored(
    api: Api, case: str, fields: dict[str, Any], loc: list[str | int]
) -> None:
    record_ref = f"rec-{uuid4().hex[:8]}"
    body = example("RecordAccessed", **fields)
    response = api.client.post(f"/v1/records/{record_ref}/events", json=body, headers=api.writer())
    _assert_refused(response, ["body", "RecordAccessed", *loc])
    assert response.json()["errors"][0]["loc"][:2] == ["body", "RecordAccessed"]
    for value in _texts(fields):  # never echoed: a submitted value may be PHI
        assert value not in response.text
    opened = {"record_ref": record_ref, **example("RecordOpened")}
    batch = api.client.post(
        "/v1/events:batch",
        json={"events": [opened, {"record_ref": record_ref, **body}]},
        headers=api.writer(),
    )
    _assert_refused(batch, ["body", "events", 1, "RecordAccessed", *loc])
    assert _timeline_status(api, record_ref) == 404  # neither the single post nor the batch


@pytest.mark.parametrize(
    "record_ref", ["..", ".", "\\", "a\\b", "a b", "a\u0000b", "-x", "r\u00e9f"]
)
def test_a_record_ref_outside_the_safe_set_is_refused_in_the_body_and_in_the_path(
    api: Api, record_ref: str
) -> None:
    item = {"record_ref": record_ref, **example("RecordOpened")}
    response = api.client.post("/v1/events:batch", json={"events": [item]}, headers=api.writer())
    _assert_refused(response, ["record_ref"])
    encoded = "".join(f"%{byte:02X}" for byte in record_ref.encode())  # no client-side dot removal
    single = api.client.post(
        f"/v1/records/{encoded}/events", json=example("RecordOpened"), headers=api.writer()
    )
    _assert_refused(single, ["path", "record_ref"])
    exported = api.client.post(
        "/v1/exports", json={"record_refs": [record_ref]}, headers=api.key(Role.REGULATOR)
    )
    _assert_refused(exported, ["body", "record_refs", 0])


def test_a_reference_id_with_a_space_is_refused(api: Api) -> None:
    record_ref = f"rec-{uuid4().hex[:8]}"
    body = example(
        "DisclosureMade", legal_basis={"kind": "court_order", "reference_id": "ord jr 1"}
    )
    response = api.client.post(f"/v1/records/{record_ref}/events", json=body, headers=api.writer())
    _assert_refused(response, ["body", "DisclosureMade", "legal_basis", "reference_id"])
    assert _timeline_status(api, record_ref) == 404


def test_the_same_facts_written_well_are_stored(api: Api) -> None:
    """The refusals above are about the values, not the fields: real values of each pass."""
    record_ref = f"rec-{uuid4().hex[:8]}"
    body = example(
        "RecordAccessed",
        occurred_at="2026-01-05T10:00:00+14:00",
        break_glass=True,
        justification="urgent:\tcalled the\r\non-call clinician",
        actor={"id": "urn:oid:1.2.3@ehr", "name": "Zo\u00eb O\u2019Brien", "role": "supervisor"},
    )
    response = api.client.post(f"/v1/records/{record_ref}/events", json=body, headers=api.writer())
    assert response.status_code == 201, response.text
    assert _timeline_status(api, record_ref) == 200
