"""Every event type of API.md is accepted, and every malformed variant is refused by name."""

from typing import Any
from uuid import uuid4

import pytest

from domain import facts
from service.schemas import INGEST_FACT_TYPES
from tests.conftest import Api
from tests.factories import ENUM_FIELDS, EXAMPLES, example

# FindingAcknowledged has its own route (tests/e2e/test_finding_acknowledgement.py).
TYPES = sorted(model.__name__ for model in INGEST_FACT_TYPES)
# Validation never reaches the store, so these run on the embedded one only.
sqlite_only = pytest.mark.parametrize("store", ["sqlite"])


def _required_fields(type_: str) -> list[str]:
    model = facts.FACT_TYPES_BY_NAME[type_]
    return [name for name, field in model.model_fields.items() if field.is_required()]


def _refusal(api: Api, body: dict[str, Any], record_ref: str) -> dict[str, Any]:
    response = api.client.post(f"/v1/records/{record_ref}/events", json=body, headers=api.writer())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == 422
    assert problem["type"].endswith("/validation")
    return problem


def _names_field(problem: dict[str, Any], field: str) -> bool:
    return any(field in error["loc"] for error in problem["errors"])


def test_every_event_type_is_covered_by_the_examples() -> None:
    assert set(EXAMPLES) == set(facts.FACT_TYPES_BY_NAME)


@sqlite_only
@pytest.mark.parametrize("type_", TYPES)
def test_a_well_formed_event_of_each_type_is_stored(api: Api, type_: str) -> None:
    record_ref = f"rec-{uuid4().hex[:8]}"
    body = example(type_)
    response = api.client.post(f"/v1/records/{record_ref}/events", json=body, headers=api.writer())
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["event_id"] == body["event_id"]
    assert receipt["record_ref"] == record_ref
    assert receipt["position"] >= 1
    timeline = api.client.get(f"/v1/records/{record_ref}/timeline", headers=api.writer()).json()
    (item,) = timeline["items"]
    assert item["type"] == type_
    assert {name: item["event"][name] for name in body} == body


@sqlite_only
@pytest.mark.parametrize("type_", TYPES)
def test_each_missing_required_field_is_named_and_nothing_is_stored(api: Api, type_: str) -> None:
    record_ref = f"rec-{uuid4().hex[:8]}"
    required = _required_fields(type_)
    assert {"event_id", "occurred_at", "actor", "source", "type"} <= set(required)
    for field in required:
        body = example(type_)
        del body[field]
        problem = _refusal(api, body, record_ref)
        assert _names_field(problem, field), (field, problem["errors"])
    response = api.client.get(f"/v1/records/{record_ref}/timeline", headers=api.writer())
    assert response.status_code == 404


@sqlite_only
@pytest.mark.parametrize("type_", TYPES)
def test_an_unknown_enum_value_is_named(api: Api, type_: str) -> None:
    record_ref = f"rec-{uuid4().hex[:8]}"
    for field in ENUM_FIELDS[type_]:
        problem = _refusal(api, example(type_, **{field: "not_a_known_value"}), record_ref)
        assert _names_field(problem, field), (field, problem["errors"])
    actor = {"id": "x", "name": "X", "role": "janitor"}
    problem = _refusal(api, example(type_, actor=actor), record_ref)
    assert _names_field(problem, "role")
    problem = _refusal(api, example(type_, type="NotAnEventType"), record_ref)
    assert problem["errors"][0]["loc"][-1] == "type"


@sqlite_only
@pytest.mark.parametrize("type_", TYPES)
def test_an_unknown_field_is_refused_not_ignored(api: Api, type_: str) -> None:
    problem = _refusal(api, example(type_, diagnosis_text="should never be here"), "rec-x")
    assert _names_field(problem, "diagnosis_text")


@sqlite_only
def test_a_category_outside_the_vocabulary_is_named(api: Api) -> None:
    problem = _refusal(api, example("DisclosureMade", categories=["gossip"]), "rec-y")
    assert problem["errors"][0]["loc"][-2:] == ["categories", 0]


@sqlite_only
def test_a_date_range_that_ends_before_it_starts_is_refused(api: Api) -> None:
    body = example("DisclosureMade", records_from="2026-02-01", records_until="2026-01-01")
    problem = _refusal(api, body, "rec-z")
    assert _names_field(problem, "records_until")


@sqlite_only
def test_an_event_from_the_future_is_refused_but_small_clock_skew_is_tolerated(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    ok = api.client.post(
        "/v1/records/rec-clock/events",
        json=example("RecordAccessed", occurred_at=soon),
        headers=api.writer(),
    )
    assert ok.status_code == 201
    problem = _refusal(api, example("RecordAccessed", occurred_at=later), "rec-clock")
    assert problem["errors"][0]["loc"] == ["body", "occurred_at"]


@sqlite_only
def test_a_timestamp_without_offset_is_refused(api: Api) -> None:
    problem = _refusal(api, example("RecordAccessed", occurred_at="2026-03-02T15:04:05"), "r")
    assert _names_field(problem, "occurred_at")


@sqlite_only
def test_an_improper_disclosure_is_still_recorded(api: Api) -> None:
    """Facts are recorded, judgments derived (PRODUCT.md 2.1): no basis is not a rejection."""
    body = example(
        "DisclosureMade",
        categories=["psychotherapy_notes"],
        legal_basis={"kind": "none_stated"},
        recipient={"name": "Client's employer", "kind": "employer"},
    )
    response = api.client.post("/v1/records/rec-bad/events", json=body, headers=api.writer())
    assert response.status_code == 201


@sqlite_only
@pytest.mark.parametrize("record_ref", ["has space", "x" * 201])
def test_a_malformed_record_ref_is_refused(api: Api, record_ref: str) -> None:
    response = api.client.post(
        f"/v1/records/{record_ref}/events", json=example("RecordOpened"), headers=api.writer()
    )
    assert response.status_code == 422
    assert "record_ref" in response.json()["errors"][0]["loc"]


@sqlite_only
def test_a_body_that_is_not_json_gets_a_problem(api: Api) -> None:
    response = api.client.post(
        "/v1/records/r/events",
        content=b"{not json",
        headers={**api.writer(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/validation")


@sqlite_only
def test_a_body_over_the_limit_gets_413(api: Api) -> None:
    body = example(
        "EventCorrected", replacement={"x": "y" * (api.services.settings.max_body_bytes)}
    )
    response = api.client.post("/v1/records/r/events", json=body, headers=api.writer())
    assert response.status_code == 413
    assert response.json()["type"].endswith("/too-large")
