"""Acknowledging a finding is the compliance officer's act (API.md "Queries"), not ingest's."""

from typing import Any
from uuid import uuid4

import pytest

from domain import facts
from domain.record import EVENT_CLASS_BY_TYPE
from service.auth import Role
from tests.conftest import Api
from tests.factories import example

# Validation of a body never reaches the store, so these run on the embedded one only.
sqlite_only = pytest.mark.parametrize("store", ["sqlite"])


def _open_finding(api: Api, record_ref: str) -> dict[str, Any]:
    """Post a break-glass access (it raises a finding) and return that finding once projected."""
    body = example("RecordAccessed", break_glass=True, purpose_of_use="BTG")
    receipt = api.client.post(f"/v1/records/{record_ref}/events", json=body, headers=api.writer())
    assert receipt.status_code == 201, receipt.text
    listed = api.client.get(
        "/v1/findings",
        params={"record_ref": record_ref, "min_position": receipt.json()["position"]},
        headers=api.key(Role.COMPLIANCE),
    )
    (finding,) = listed.json()["items"]
    assert finding["status"] == "open"
    return dict(finding)


def _acknowledge(api: Api, finding_id: str, headers: dict[str, str], **body: Any) -> Any:
    return api.client.post(f"/v1/findings/{finding_id}/acknowledgement", json=body, headers=headers)


def test_a_compliance_key_acknowledges_a_finding_in_the_records_stream(api: Api) -> None:
    finding = _open_finding(api, "ack-1")
    officer = api.key(Role.COMPLIANCE)
    response = _acknowledge(
        api, finding["finding_id"], officer, resolution="accepted_risk", note="clinician on call"
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["finding_id"] == finding["finding_id"]
    assert answer["resolution"] == "accepted_risk"

    listed = api.client.get(
        "/v1/findings",
        params={"record_ref": "ack-1", "min_position": answer["position"]},
        headers=officer,
    ).json()["items"]
    assert [(f["finding_id"], f["status"], f["resolution"]) for f in listed] == [
        (finding["finding_id"], "acknowledged", "accepted_risk")
    ]
    assert (
        api.client.get(
            "/v1/findings", params={"record_ref": "ack-1", "status": "open"}, headers=officer
        ).json()["items"]
        == []
    )

    # The fact sits in the finding's record, after the access it judges, naming the key.
    timeline = api.client.get("/v1/records/ack-1/timeline", headers=officer).json()["items"]
    assert [item["type"] for item in timeline] == ["RecordAccessed", "FindingAcknowledged"]
    fact = timeline[-1]["event"]
    assert fact["event_id"] == answer["event_id"]
    assert fact["finding_id"] == finding["finding_id"]
    assert fact["note"] == "clinician on call"
    assert fact["actor"]["role"] == "compliance_officer"
    assert fact["source"] == {"system": "disclosure-audit"}
    key_ids = {k.key_id for k in api.services.keys.list(api.tenant)}
    assert fact["actor"]["id"] in key_ids
    stored = api.services.audit.read_record(api.tenant, "ack-1")
    assert isinstance(stored[-1].event, EVENT_CLASS_BY_TYPE[facts.FindingAcknowledged])
    assert stored[-1].position == answer["position"]


def test_a_later_acknowledgement_changes_the_resolution(api: Api) -> None:
    finding = _open_finding(api, "ack-2")
    officer = api.key(Role.COMPLIANCE)
    first = _acknowledge(api, finding["finding_id"], officer, resolution="accepted_risk")
    second = _acknowledge(api, finding["finding_id"], officer, resolution="remediated")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["event_id"] != second.json()["event_id"]
    (shown,) = api.client.get(
        "/v1/findings",
        params={"record_ref": "ack-2", "min_position": second.json()["position"]},
        headers=officer,
    ).json()["items"]
    assert shown["resolution"] == "remediated"


def test_an_ingest_key_may_not_acknowledge_and_no_key_is_401(api: Api) -> None:
    finding = _open_finding(api, "ack-3")
    denied = _acknowledge(api, finding["finding_id"], api.key(Role.INGEST), resolution="remediated")
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert "compliance" in denied.json()["detail"]
    anonymous = _acknowledge(api, finding["finding_id"], {}, resolution="remediated")
    assert anonymous.status_code == 401
    listed = api.client.get(
        "/v1/findings", params={"record_ref": "ack-3"}, headers=api.key(Role.COMPLIANCE)
    ).json()["items"]
    assert [f["status"] for f in listed] == ["open"]


def test_another_tenants_finding_and_an_unknown_one_are_not_found(api: Api) -> None:
    finding = _open_finding(api, "ack-4")
    intruder = api.key(Role.COMPLIANCE, tenant=api.tenant + "-other")
    for finding_id, headers in (
        (finding["finding_id"], intruder),
        (str(uuid4()), api.key(Role.COMPLIANCE)),
    ):
        response = _acknowledge(api, finding_id, headers, resolution="false_positive")
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"] == "No such finding in your tenant."
    assert len(api.services.audit.read_record(api.tenant, "ack-4")) == 2  # registration + access


@sqlite_only
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resolution": "ignored"}, "resolution"),
        ({}, "resolution"),
        ({"resolution": "remediated", "finding_id": "x"}, "finding_id"),
        ({"resolution": "remediated", "note": ""}, "note"),
    ],
    ids=["unknown-resolution", "missing-resolution", "extra-field", "empty-note"],
)
def test_a_malformed_acknowledgement_is_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = api.client.post(
        f"/v1/findings/{uuid4()}/acknowledgement", json=body, headers=api.key(Role.COMPLIANCE)
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert any(error["loc"][-1] == field for error in problem["errors"]), problem
    assert "ignored" not in response.text


@sqlite_only
def test_a_finding_id_that_is_no_uuid_is_422(api: Api) -> None:
    response = api.client.post(
        "/v1/findings/not-a-finding/acknowledgement",
        json={"resolution": "remediated"},
        headers=api.key(Role.COMPLIANCE),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "finding_id"]


def test_the_ingest_endpoints_refuse_finding_acknowledged_naming_the_route(api: Api) -> None:
    finding = _open_finding(api, "ack-5")
    ack = example("FindingAcknowledged", finding_id=finding["finding_id"])
    # Even a key with every role: the fact is simply not one these endpoints take.
    everything = api.key(*Role)
    single = api.client.post("/v1/records/ack-5/events", json=ack, headers=everything)
    batch = api.client.post(
        "/v1/events:batch",
        json={
            "events": [
                {**example("RecordAccessed"), "record_ref": "ack-5"},
                {**ack, "record_ref": "ack-5"},
            ]
        },
        headers=everything,
    )
    for response, loc in ((single, ["body", "type"]), (batch, ["body", "events", 1, "type"])):
        assert response.status_code == 422, response.text
        (error,) = response.json()["errors"]
        assert error["loc"] == loc
        assert "/v1/findings/<finding_id>/acknowledgement" in error["msg"]
        assert "RecordAccessed" in error["msg"]  # the allowed types are named
    # The row of issue 10: an EHR integration's ingest-only key got 201 and silenced findings.
    ingest_only = api.client.post("/v1/records/ack-5/events", json=ack, headers=api.key())
    assert ingest_only.status_code == 422
    assert len(api.services.audit.read_record(api.tenant, "ack-5")) == 2  # nothing stored
    listed = api.client.get(
        "/v1/findings", params={"record_ref": "ack-5"}, headers=everything
    ).json()["items"]
    assert [f["status"] for f in listed] == ["open"]
