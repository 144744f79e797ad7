"""FHIR ingest (issue 15, acceptance 1, 2 and the ingest part of 5): the IHE BALP example
AuditEvents (tests/data/balp) and what HAPI's BALP interceptor and Medplum send are recorded
as accesses and disclosures, Consents as authorizations; what cannot be mapped is refused with
an OperationOutcome naming the element, and nothing is stored. Both stores."""

import copy
import json
import re
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from service.auth import Role
from service.fhir.ingest import Rules, map_audit_event
from service.fhir.outcome import FhirError
from tests.conftest import Api

PROFILE = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DIV = '<div xmlns="http://www.w3.org/1999/xhtml">Audit Event</div>'
BALP = Path(__file__).resolve().parent.parent / "data" / "balp"
FHIR = {"Content-Type": "application/fhir+json"}


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BALP / name).read_text())
    return data


def _post(api: Api, path: str, resource: object, headers: dict[str, str], *,
          method: str = "POST", content_type: str = "application/fhir+json") -> Any:  # fmt: skip
    body = resource if isinstance(resource, bytes) else json.dumps(resource).encode()
    return api.client.request(
        method, path, content=body, headers=headers | {"Content-Type": content_type}
    )


def _positions(outcome: dict[str, Any]) -> list[int]:
    return [
        int(m[1])
        for issue in outcome["issue"]
        if (m := re.search(r"at log position (\d+)", issue["diagnostics"]))
    ]


def _items(api: Api, path: str, headers: dict[str, str], position: int, **params: Any) -> Any:
    query = {"min_position": position, "limit": 1000} | params
    response = api.client.get(path, params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _outcome(response: Any, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issues: list[dict[str, Any]] = body["issue"]
    return issues


def _expressions(issues: list[dict[str, Any]]) -> list[str]:
    return [e for issue in issues for e in issue.get("expression", [])]


def _nothing_stored(api: Api, headers: dict[str, str], record_ref: str = "ex-patient") -> None:
    response = api.client.get(f"/v1/records/{record_ref}", headers=headers)
    assert response.status_code == 404, response.text


# What a HAPI FHIR server with BalpAuditCaptureInterceptor sends for a read of an Observation
# (BalpAuditCaptureInterceptor.createAuditEventCommon): no id, no purposeOfEvent, the user from
# IBalpAuditContextServices.getAgentUserWho, the client and server as displays.
def hapi_read(patient: str = "Patient/123") -> dict[str, Any]:
    """The minimal PatientRead a HAPI server sends."""
    return {
        "resourceType": "AuditEvent",
        "meta": {"profile": [PROFILE + "PatientRead"]},
        "text": {"status": "generated", "div": DIV},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "Restful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read",
                     "display": "read"}],
        "action": "R",
        "recorded": "2026-11-30T10:15:00.000+00:00",
        "outcome": "0",
        "source": {"observer": {"display": "http://fhir.practice.example/fhir"}},
        "agent": [
            {"type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                  "code": "110152", "display": "Destination Role ID"}]},
             "who": {"identifier": {"system": "http://clients", "value": "ehr-app"},
                     "display": "10.0.0.7"},
             "requestor": False, "network": {"address": "10.0.0.7", "type": "2"}},
            {"type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                  "code": "110153", "display": "Source Role ID"}]},
             "who": {"display": "http://fhir.practice.example/fhir"}, "requestor": False,
             "network": {"address": "http://fhir.practice.example/fhir"}},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                  "code": "IRCP", "display": "information recipient"}]},
             "who": {"identifier": {"system": "http://users", "value": "dr.lee"},
                     "display": "Dr. Lee"},
             "requestor": True},
        ],
        "entity": [
            {"type": {"system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
                      "code": "XrequestId"}, "what": {"identifier": {"value": uuid4().hex}}},
            {"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "2", "display": "System Object"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4",
                      "display": "Domain Resource"},
             "what": {"reference": "Observation/obs-1/_history/2"}},
            {"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "1", "display": "Person"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1",
                      "display": "Patient"},
             "what": {"reference": patient}},
        ],
    }  # fmt: skip


def medplum_read() -> dict[str, Any]:
    """An AuditEvent as Medplum writes one per REST call: the patient is the entity read."""
    return {
        "resourceType": "AuditEvent",
        "id": str(uuid4()),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                 "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "update"}],
        "action": "U",
        "recorded": "2026-11-30T11:00:00.000Z",
        "outcome": "0",
        "source": {"observer": {"reference": "Device/medplum", "display": "Medplum"}},
        "agent": [{"who": {"reference": "Practitioner/pr-9", "display": "Alex Kim"},
                   "requestor": True}],
        "entity": [{"what": {"reference": "Patient/p-77"}}],
    }  # fmt: skip


ACCESS_EXAMPLES = {
    "PatientRead-ex-auditBasicReadServer.json": ("view", ["progress_notes"]),
    "PatientQuery-ex-auditBasicQueryGet.json": ("view", ["assessments"]),
    "PatientCreate-ex-auditBasicCreate.json": ("create", ["progress_notes"]),
}
DISCLOSURE_EXAMPLES = {
    "PrivacyDisclosureSource-ex-auditPrivacyDisclosure-source.json": (
        "myMachine.example.org",
        {"id": "model-number-ABC-serial-number-1234",
         "name": "model number ABC, serial number 1234", "role": "records_custodian"},
    ),
    "PrivacyDisclosureRecipient-ex-auditPrivacyDisclosure-recipient.json": (
        "Device/ex-device",
        {"id": "myMachine.example.org", "name": "myMachine.example.org",
         "role": "records_custodian"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ACCESS_EXAMPLES))
def test_each_balp_access_example_is_in_the_access_log(api: Api, name: str) -> None:
    headers = api.writer()
    response = _post(api, "/fhir/R4/AuditEvent", _example(name), headers)
    issues = _outcome(response, 201)
    assert issues[0]["severity"] == "information"
    (position,) = _positions(response.json())
    event_id = response.headers["location"].rsplit("/", 1)[1]
    assert response.headers["location"] == f"/fhir/R4/AuditEvent/{event_id}"
    (entry,) = _items(api, "/v1/access-log", headers, position)
    action, categories = ACCESS_EXAMPLES[name]
    assert entry["event_id"] == event_id
    assert entry["record_ref"] == "ex-patient"
    assert entry["action"] == action
    assert entry["categories"] == categories
    assert entry["purpose_of_use"] == "TREAT"  # none stated: DISCLOSURE_AUDIT_FHIR_DEFAULT_PURPOSE
    assert entry["actor"] == {
        "id": "John-Smith",
        "name": "John Smith",
        "role": "treating_clinician",
    }
    assert entry["source"] == {"system": "Device-ex-device"}
    assert entry["occurred_at"].startswith("2020-04-29T09:49:00")


@pytest.mark.parametrize("name", sorted(DISCLOSURE_EXAMPLES))
def test_each_balp_privacy_disclosure_is_in_the_disclosures_register(api: Api, name: str) -> None:
    headers = api.writer()
    response = _post(api, "/fhir/R4/AuditEvent", _example(name), headers)
    _outcome(response, 201)
    (position,) = _positions(response.json())
    (entry,) = _items(api, "/v1/disclosures", headers, position)
    recipient, actor = DISCLOSURE_EXAMPLES[name]
    assert entry["record_ref"] == "ex-patient"
    assert entry["recipient"] == {"name": recipient, "kind": "other", "address": None,
                                  "identifier": None}  # fmt: skip
    assert entry["categories"] == ["progress_notes"]
    assert entry["purpose_of_use"] == "PATRQT"
    assert entry["method"] == "electronic_exchange"
    # "patient requested" names no basis: none is invented, and the engine judges it so.
    assert entry["legal_basis"] == {"kind": "none_stated", "reference_id": None}
    assert entry["accountable"] is True
    assert entry["findings"], "a disclosure with no stated basis is a finding"
    assert entry["actor"] == actor
    assert entry["disclosure_id"] == _example(name)["id"]


def test_posting_an_example_twice_stores_it_once(api: Api) -> None:
    headers = api.writer()
    resource = _example("PatientRead-ex-auditBasicReadServer.json")
    first = _post(api, "/fhir/R4/AuditEvent", resource, headers)
    again = _post(api, "/fhir/R4/AuditEvent", resource, headers)
    _outcome(first, 201)
    issues = _outcome(again, 200)
    assert issues[0]["diagnostics"].startswith("Already stored")
    assert again.headers["location"] == first.headers["location"]
    assert _positions(again.json()) == _positions(first.json())
    entries = _items(api, "/v1/access-log", headers, _positions(first.json())[0])
    assert len(entries) == 1
    # Without an id (as HAPI sends) the digest of the resource names the event.
    hapi = hapi_read()
    one, two = (_post(api, "/fhir/R4/AuditEvent", hapi, headers) for _ in range(2))
    assert (one.status_code, two.status_code) == (201, 200)
    assert one.headers["location"] == two.headers["location"]


def test_what_hapi_and_medplum_send_is_recorded(api: Api) -> None:
    headers = api.writer()
    response = _post(api, "/fhir/R4/AuditEvent", hapi_read(), headers,
                     content_type="application/json")  # fmt: skip
    _outcome(response, 201)
    (entry,) = _items(api, "/v1/access-log", headers, _positions(response.json())[0])
    assert entry["record_ref"] == "123"
    assert entry["actor"] == {"id": "dr.lee", "name": "Dr. Lee", "role": "treating_clinician"}
    assert entry["categories"] == ["assessments"]
    assert entry["source"] == {"system": "http:-fhir.practice.example-fhir"}
    medplum = _post(api, "/fhir/R4/AuditEvent", medplum_read(), headers)
    _outcome(medplum, 201)
    (entry,) = _items(api, "/v1/access-log", headers, _positions(medplum.json())[0],
                      record_ref="p-77")  # fmt: skip
    assert entry["action"] == "update"
    assert entry["categories"] == ["demographics"]
    assert entry["actor"] == {"id": "Practitioner-pr-9", "name": "Alex Kim",
                              "role": "treating_clinician"}  # fmt: skip


def test_a_query_touching_several_patients_is_one_access_per_record(api: Api) -> None:
    headers = api.writer()
    resource = hapi_read()
    resource["entity"].append(copy.deepcopy(resource["entity"][2]))
    resource["entity"][3]["what"] = {"reference": "Patient/456"}
    response = _post(api, "/fhir/R4/AuditEvent", resource, headers)
    _outcome(response, 201)
    positions = _positions(response.json())
    assert len(positions) == 2
    refs = {e["record_ref"] for e in _items(api, "/v1/access-log", headers, max(positions))}
    assert refs == {"123", "456"}


def test_a_disclosure_stating_its_basis_records_it(api: Api) -> None:
    headers = api.writer()
    resource = _example("PrivacyDisclosureSource-ex-auditPrivacyDisclosure-source.json")
    resource["id"] = "disc-treat"
    resource["purposeOfEvent"] = [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}
            ]
        }
    ]
    resource["agent"][1]["who"] = {"reference": "Practitioner/dr-ng", "display": "Dr. Ng"}
    resource["entity"][1]["securityLabel"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSYTHPN"}
    ]
    response = _post(api, "/fhir/R4/AuditEvent", resource, headers)
    _outcome(response, 201)
    (entry,) = _items(api, "/v1/disclosures", headers, _positions(response.json())[0])
    assert entry["legal_basis"] == {"kind": "treatment", "reference_id": None}
    assert entry["recipient"] == {"name": "Dr. Ng", "kind": "health_provider", "address": None,
                                  "identifier": None}  # fmt: skip
    assert entry["categories"] == ["psychotherapy_notes", "progress_notes"]


def _bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }


def _without_patient(resource: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(resource)
    bad["entity"] = [e for e in bad["entity"] if e.get("role", {}).get("code") != "1"]
    return bad


def test_a_transaction_bundle_is_all_or_nothing(api: Api) -> None:
    headers = api.writer()
    good = hapi_read("Patient/tx-1")
    other = hapi_read("Patient/tx-2")
    bad = _without_patient(hapi_read("Patient/tx-3"))
    response = _post(api, "/fhir/R4", _bundle("transaction", good, other, bad), headers)
    issues = _outcome(response, 422)
    assert _expressions(issues) == ["Bundle.entry[2].resource.entity"]
    for ref in ("tx-1", "tx-2", "tx-3"):
        _nothing_stored(api, headers, ref)
    response = _post(api, "/fhir/R4", _bundle("transaction", good, other), headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "201 Created"]
    position = max(p for e in body["entry"] for p in _positions(e["response"]["outcome"]))
    refs = {e["record_ref"] for e in _items(api, "/v1/access-log", headers, position)}
    assert refs == {"tx-1", "tx-2"}


def test_a_batch_bundle_stores_the_good_entries_and_reports_the_bad(api: Api) -> None:
    headers = api.writer()
    good = hapi_read("Patient/b-1")
    bad = _without_patient(hapi_read("Patient/b-2"))
    unknown = _example("PatientRead-ex-auditBasicReadServer.json")
    unknown["purposeOfEvent"] = [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "NOSUCH"}
            ]
        }
    ]
    response = _post(api, "/fhir/R4", _bundle("batch", good, bad, unknown), headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "422", "422"]
    assert _expressions(body["entry"][1]["response"]["outcome"]["issue"]) == [
        "Bundle.entry[1].resource.entity"
    ]
    assert body["entry"][0]["response"]["location"].startswith("/fhir/R4/AuditEvent/")
    position = _positions(body["entry"][0]["response"]["outcome"])[0]
    assert {e["record_ref"] for e in _items(api, "/v1/access-log", headers, position)} == {"b-1"}
    _nothing_stored(api, headers, "b-2")
    _nothing_stored(api, headers, "ex-patient")


def consent(status: str = "active", **changes: Any) -> dict[str, Any]:
    """A patient-privacy Consent authorizing a release of progress notes to an attorney."""
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": "consent-7",
        "meta": {"lastUpdated": "2026-11-20T09:00:00Z"},
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "64292-6"}]}],
        "patient": {"reference": "Patient/c-1"},
        "dateTime": "2026-11-01T10:00:00-05:00",
        "performer": [{"reference": "Patient/c-1", "display": "Jordan Rivera"}],
        "sourceAttachment": {"contentType": "application/pdf", "title": "signed release"},
        "provision": {
            "type": "permit",
            "period": {"end": "2027-05-01T00:00:00Z"},
            "dataPeriod": {"start": "2026-01-01", "end": "2026-10-31"},
            "actor": [{"role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP"}]},
                "reference": {"display": "Morgan & Lee LLP"}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                         "code": "HLEGAL"}],
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}],
            "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                               "code": "PSYTHPN"}],
        },
    }  # fmt: skip
    return resource | changes


def _authorizations(api: Api, headers: dict[str, str], position: int) -> Any:
    response = api.client.get("/v1/records/c-1", params={"min_position": position}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["authorizations"]


def test_a_consent_is_granted_then_revoked(api: Api) -> None:
    headers = api.writer()
    created = _post(api, "/fhir/R4/Consent", consent(), headers)
    _outcome(created, 201)
    assert created.headers["location"] == "/fhir/R4/Consent/consent-7"
    (granted,) = _authorizations(api, headers, _positions(created.json())[0])
    assert granted["authorization_id"] == "consent-7"
    assert granted["status"] == "active"
    assert granted["kind"] == "hipaa_general"
    assert granted["recipients"] == ["Morgan & Lee LLP"]
    assert granted["purposes"] == ["HLEGAL"]
    assert granted["categories"] == ["psychotherapy_notes", "diagnosis"]
    assert granted["expires_at"].startswith("2027-05-01")
    assert _post(api, "/fhir/R4/Consent", consent(), headers).status_code == 200
    revoked = consent("inactive", meta={"lastUpdated": "2026-11-25T12:00:00Z"})
    response = _post(api, "/fhir/R4/Consent/consent-7", revoked, headers, method="PUT")
    _outcome(response, 201)
    (after,) = _authorizations(api, headers, _positions(response.json())[0])
    assert after["status"] == "revoked"
    assert after["revoked_at"].startswith("2026-11-25T12:00:00")
    again = _post(api, "/fhir/R4/Consent/consent-7", revoked, headers, method="PUT")
    assert again.status_code == 200, again.text


def test_an_unmappable_consent_is_refused(api: Api) -> None:
    headers = api.writer()
    no_actor = consent()
    no_actor["provision"] = {k: v for k, v in no_actor["provision"].items() if k != "actor"}
    oral = {k: v for k, v in consent().items() if k != "sourceAttachment"}
    cases = [
        (no_actor, "Consent.provision.actor"),
        (oral, "Consent.source[x]"),
        (consent("draft"), "Consent.status"),
        (consent(performer=[{"reference": "Practitioner/x"}]), "Consent.performer"),
    ]
    for resource, expression in cases:
        issues = _outcome(_post(api, "/fhir/R4/Consent", resource, headers), 422)
        assert _expressions(issues) == [expression]
    mismatch = _post(api, "/fhir/R4/Consent/other-id", consent(), headers, method="PUT")
    assert _expressions(_outcome(mismatch, 400)) == ["Consent.id"]
    _nothing_stored(api, headers, "c-1")


def _duplicated() -> bytes:
    text = json.dumps(_example("PatientRead-ex-auditBasicReadServer.json"))
    return text.replace('"action": "R"', '"action": "R", "action": "C"').encode()


def _unknown_purpose() -> dict[str, Any]:
    resource = _example("PatientRead-ex-auditBasicReadServer.json")
    resource["purposeOfEvent"] = [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "NOSUCH"}
            ]
        }
    ]
    return resource


REFUSED: dict[str, tuple[object, str, int, list[str]]] = {
    "malformed JSON": (b'{"resourceType": "AuditEvent",', FHIR["Content-Type"], 400, []),
    "not an AuditEvent": ({"resourceType": "Patient", "id": "ex-patient"}, FHIR["Content-Type"],
                          400, ["Patient.resourceType"]),
    "no patient entity": (_without_patient(_example("PatientRead-ex-auditBasicReadServer.json")),
                          FHIR["Content-Type"], 422, ["AuditEvent.entity"]),
    "unknown purpose": (_unknown_purpose(), FHIR["Content-Type"], 422,
                        ["AuditEvent.purposeOfEvent[0].coding[0].code"]),
    "wrong media type": (_example("PatientRead-ex-auditBasicReadServer.json"), "text/plain", 415,
                         []),
    "duplicated key": (_duplicated(), FHIR["Content-Type"], 400, ["AuditEvent.action"]),
    "not FHIR": ({**_example("PatientRead-ex-auditBasicReadServer.json"), "colour": "red"},
                 FHIR["Content-Type"], 400, ["AuditEvent.colour"]),
    "failed attempt": ({**_example("PatientRead-ex-auditBasicReadServer.json"), "outcome": "8"},
                       FHIR["Content-Type"], 422, ["AuditEvent.outcome"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_cannot_be_mapped_is_refused_and_nothing_is_stored(api: Api, case: str) -> None:
    headers = api.writer()
    resource, content_type, status, expressions = REFUSED[case]
    response = _post(api, "/fhir/R4/AuditEvent", resource, headers, content_type=content_type)
    issues = _outcome(response, status)
    assert all(i["severity"] == "error" for i in issues)
    assert _expressions(issues) == expressions
    _nothing_stored(api, headers)


def test_the_same_resource_from_another_tenant_is_another_record(api: Api) -> None:
    mine, theirs = api.writer(), api.writer(tenant=f"t-{uuid4().hex[:12]}")
    resource = _example("PatientRead-ex-auditBasicReadServer.json")
    first = _post(api, "/fhir/R4/AuditEvent", resource, mine)
    second = _post(api, "/fhir/R4/AuditEvent", resource, theirs)
    assert (first.status_code, second.status_code) == (201, 201)
    (position,) = _positions(second.json())
    (entry,) = _items(api, "/v1/access-log", theirs, position)
    assert entry["record_ref"] == "ex-patient"
    (own,) = _items(api, "/v1/access-log", mine, _positions(first.json())[0])
    assert own["position"] == _positions(first.json())[0]
    created = _post(api, "/fhir/R4/Consent", consent(), theirs)
    assert created.status_code == 201
    _nothing_stored(api, mine, "c-1")


INGEST_ROUTES = [
    ("POST", "/fhir/R4/AuditEvent"),
    ("POST", "/fhir/R4/Consent"),
    ("PUT", "/fhir/R4/Consent/consent-7"),
    ("POST", "/fhir/R4"),
]


@pytest.mark.parametrize(("method", "path"), INGEST_ROUTES)
def test_every_ingest_route_needs_an_ingest_key(api: Api, method: str, path: str) -> None:
    body = consent() if "Consent" in path else hapi_read()
    if path == "/fhir/R4":
        body = _bundle("batch", hapi_read())
    anonymous = _post(api, path, body, {}, method=method)
    issues = _outcome(anonymous, 401)
    assert issues[0]["code"] == "login"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    compliance = _post(api, path, body, api.key(Role.COMPLIANCE), method=method)
    assert _outcome(compliance, 403)[0]["code"] == "forbidden"
    _nothing_stored(api, api.writer(), "123")
    _nothing_stored(api, api.writer(), "c-1")


def test_the_bundle_hapis_sink_sends_is_stored(api: Api) -> None:
    # AsyncMemoryQueueBackedFhirClientBalpSink: BundleBuilder.addTransactionCreateEntry per event.
    headers = api.writer()
    events = [hapi_read("Patient/h-1"), hapi_read("Patient/h-2")]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid4()}", "resource": e,
             "request": {"method": "POST", "url": "AuditEvent"}}
            for e in events
        ],
    }  # fmt: skip
    response = _post(api, "/fhir/R4", bundle, headers,
                     content_type="application/fhir+json; charset=UTF-8")  # fmt: skip
    assert response.status_code == 200, response.text
    # The sink's fallback: each event again by create, answered as a repeat.
    for event in events:
        assert _post(api, "/fhir/R4/AuditEvent", event, headers).status_code == 200


def test_the_record_ref_rule_and_the_defaults_are_settings() -> None:
    mrn = "urn:oid:1.2.3.4"
    resource = hapi_read()
    resource["entity"][2]["what"] = {"identifier": {"system": mrn, "value": "MRN-0042"}}
    with pytest.raises(FhirError) as refused:
        map_audit_event(copy.deepcopy(resource), Rules())
    assert refused.value.issues[0].expression == "AuditEvent.entity[2].what.reference"
    (submission,) = map_audit_event(
        copy.deepcopy(resource), Rules(record_ref="identifier", identifier_system=mrn)
    ).submissions
    assert submission.record_ref == "MRN-0042"
    with pytest.raises(FhirError) as other_system:
        map_audit_event(copy.deepcopy(resource), Rules(record_ref="identifier",
                                                       identifier_system="urn:other"))  # fmt: skip
    assert other_system.value.issues[0].expression == "AuditEvent.entity[2].what.identifier.system"
    strict = Rules(default_purpose=None, default_actor_role=None, other_category=None)
    with pytest.raises(FhirError) as no_purpose:
        map_audit_event(hapi_read(), strict)
    assert no_purpose.value.status == 422
    assert no_purpose.value.issues[0].expression == "AuditEvent.purposeOfEvent"
    with pytest.raises(FhirError) as no_category:
        map_audit_event(_example("PatientRead-ex-auditBasicReadServer.json"),
                        Rules(other_category=None))  # fmt: skip
    assert no_category.value.issues[0].expression == "AuditEvent.entity[1].what"
