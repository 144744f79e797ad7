"""FHIR search out: what a FHIR client sees of ``/fhir/R4/AuditEvent`` and ``/metadata``, and
that every AuditEvent the service writes (search and bundle) is valid FHIR R4 by an independent
validator (Medplum's ``validateResource``, run with Node) and follows each BALP slice it claims
(FHIRPath, ``fhirpathpy``; the slices of ``IHE/ITI.BasicAudit`` ``input/fsh``)."""

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fhirpathpy import evaluate

from service.auth import Role
from service.integrity.export import ExportScope, write_bundle
from tests.conftest import Api, post_scenarios

ROOT = Path(__file__).resolve().parents[2]
FHIR = "/fhir/R4"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
PATIENT = (
    "entity.where(type.code = '1' and role.code = '1'"
    " and (what.reference.startsWith('Patient/') or what.type = 'Patient')"
    " and what.identifier.system.exists())"
)
# Each FHIRPath must be true of every resource of its profile (the slices of its FSH).
SLICES = {
    "PrivacyDisclosure.Source": [
        "meta.profile.exists()",
        "type.code = '110106' and action = 'R' and outcome = '0' and outcomeDesc.exists()",
        "subtype.where(system = 'http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle'"
        " and code = 'disclose').exists()",
        "agent.where(type.coding.code = '110153').count() = 1",
        "agent.where(type.coding.code = '110153').network.exists()",
        "agent.where(type.coding.code = '110153').who.exists()",
        "agent.where(type.coding.code = '110152').count() = 1",
        "agent.where(type.coding.code = '110152').network.exists()",
        "agent.where(type.coding.code = '110152').who.exists()",
        # val-audit-source: the source agent is the audit source
        "agent.where(type.coding.code = '110153').who = source.observer",
        "agent.where(type.coding.code = '159541003').who.identifier.system.exists()",
        "agent.where(type.coding.code = '429577009').all(who.type = 'Patient')",
        "source.observer.identifier.system.exists() and source.observer.type = 'Device'",
        f"{PATIENT}.count() = 1",
        "entity.count() >= 2",
    ],
    "PatientRead": [
        "meta.profile.exists()",
        "type.system = 'http://terminology.hl7.org/CodeSystem/audit-event-type'"
        " and type.code = 'rest' and action = 'R' and outcome = '0'",
        "subtype.where(system = 'http://hl7.org/fhir/restful-interaction'"
        " and (code = 'read' or code = 'vread')).exists()",
        # Read: the client is the Destination (110152), the server the Source (110153)
        "agent.where(type.coding.code = '110152').network.exists()",
        "agent.where(type.coding.code = '110153').network.exists()",
        "agent.where(type.coding.code = 'IRCP').all(requestor = true and network.empty()"
        " and who.identifier.system.exists())",
        "source.observer.identifier.system.exists()",
        f"{PATIENT}.count() = 1",
        "entity.where(type.code = '2' and (role.code = '4' or role.code = '3'"
        " or role.code = '20')).what.exists()",
    ],
}
for _write, _action in (("Create", "C"), ("Update", "U")):
    SLICES[f"Patient{_write}"] = [
        "meta.profile.exists()",
        f"type.code = 'rest' and action = '{_action}' and outcome = '0'",
        "subtype.where(system = 'http://hl7.org/fhir/restful-interaction'"
        f" and code = '{_write.lower()}').exists()",
        # Create and Update: the client is the Source (110153), the server the Destination
        "agent.where(type.coding.code = '110153').network.exists()",
        "agent.where(type.coding.code = '110152').network.exists()",
        "agent.where(type.coding.code = 'AUT' or type.coding.code = 'INF'"
        " or type.coding.code = 'CST').all(requestor = true and network.empty())",
        f"{PATIENT}.count() = 1",
        "entity.where(type.code = '2' and role.code = '4').what.exists()",
    ]


def _medplum(path: Path) -> str:
    """Medplum's verdict on every resource of an NDJSON file ('' when all are valid)."""
    modules = subprocess.run(
        [str(ROOT / "scripts" / "ensure-medplum")], check=True, capture_output=True, text=True
    ).stdout.strip()
    done = subprocess.run(
        ["node", str(ROOT / "scripts" / "medplum-validate.mjs"), modules, str(path)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return "" if done.returncode == 0 else done.stdout


def _conforms(resources: list[dict[str, Any]], tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    assert _medplum(path) == ""
    for resource in resources:
        (profile,) = resource["meta"]["profile"]
        assert profile.startswith(BALP)
        for expression in SLICES.get(profile.removeprefix(BALP), []):
            assert evaluate(resource, expression) == [True], (profile, expression, resource["id"])


def _search(api: Api, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    response = api.client.get(f"{FHIR}/AuditEvent{query}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    return body


def _all(api: Api, headers: dict[str, str], query: str) -> list[dict[str, Any]]:
    """Every resource, following the next links."""
    found: list[dict[str, Any]] = []
    url: str | None = f"{FHIR}/AuditEvent{query}"
    while url is not None:
        response = api.client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        for entry in body["entry"]:
            assert entry["search"] == {"mode": "match"}
            assert entry["fullUrl"].endswith(f"/fhir/R4/AuditEvent/{entry['resource']['id']}")
            found.append(entry["resource"])
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
    return found


@pytest.fixture
def loaded(api: Api) -> tuple[dict[str, str], int]:
    """The demo scenarios posted over HTTP, projected; a compliance key."""
    last = post_scenarios(api, api.writer())
    api.services.projector.catch_up()
    return api.key(Role.COMPLIANCE), last


def test_search_and_bundle_answer_the_same_valid_balp_resources(
    api: Api, loaded: tuple[dict[str, str], int], tmp_path: Path
) -> None:
    headers, _ = loaded
    searched = _all(api, headers, "?_count=7")
    assert len(searched) == 18  # 15 disclosures and 3 accesses of the scenarios
    write_bundle(api.services.log, api.services.audit, api.tenant, tmp_path / "bundle",
                 scope=ExportScope())  # fmt: skip
    exported = [json.loads(line) for line in
                (tmp_path / "bundle" / "auditevents.ndjson").read_text().splitlines()]  # fmt: skip
    assert searched == exported  # the same resources, byte for byte once parsed, in log order
    _conforms(searched, tmp_path, "search")
    _conforms(exported, tmp_path, "export")
    profiles = {r["meta"]["profile"][0].removeprefix(BALP) for r in searched}
    assert profiles == {"PrivacyDisclosure.Source", "PatientRead", "PatientCreate",
                        "PatientUpdate"}  # fmt: skip


def test_the_independent_checks_catch_a_broken_resource(
    api: Api, loaded: tuple[dict[str, str], int], tmp_path: Path
) -> None:
    headers, _ = loaded
    disclosure = _search(api, headers, "?type=110106&_count=1")["entry"][0]["resource"]
    broken = json.loads(json.dumps(disclosure))
    broken["recorded"] = "yesterday"
    path = tmp_path / "broken.ndjson"
    path.write_text(json.dumps(broken) + "\n")
    assert "recorded" in _medplum(path)
    del disclosure["agent"][1]["network"]
    assert evaluate(disclosure, "agent.where(type.coding.code = '110152').network.exists()") == [
        False
    ]


def test_filters_narrow_the_search(api: Api, loaded: tuple[dict[str, str], int]) -> None:
    headers, _ = loaded
    everything = _all(api, headers, "")
    record = everything[0]["entity"][0]["what"]["identifier"]["value"]
    mine = [r for r in everything if r["entity"][0]["what"]["identifier"]["value"] == record]
    assert _all(api, headers, f"?patient=Patient/{record}") == mine
    assert _all(api, headers, f"?patient={record}") == mine
    assert _all(api, headers, "?patient=no-such-record") == []

    disclosures = [r for r in everything if r["type"]["code"] == "110106"]
    accesses = [r for r in everything if r["type"]["code"] == "rest"]
    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    assert _all(api, headers, "?type=110106") == disclosures
    assert _all(api, headers, f"?type={dcm}|110106") == disclosures
    assert _all(api, headers, f"?type={dcm}|") == disclosures
    assert _all(api, headers, "?type=rest") == accesses
    assert _all(api, headers, "?type=rest,110106") == everything
    assert _all(api, headers, "?type=rest&type=110106") == []
    restful = "http://hl7.org/fhir/restful-interaction"
    for code in ("read", "create", "update"):
        done = [r for r in accesses if r["subtype"][0]["code"] == code]
        assert done, code
        assert _all(api, headers, f"?subtype={restful}|{code}") == done
    assert _all(api, headers, "?subtype=read,create,update") == accesses
    assert _all(api, headers, "?subtype=disclose") == disclosures
    assert _all(api, headers, "?subtype=vread") == []
    assert _all(api, headers, "?subtype=read&type=110106") == []

    actor = accesses[0]["agent"][0]["who"]["identifier"]
    by_actor = [r for r in everything
                if any(a["who"].get("identifier") == actor for a in r["agent"])]  # fmt: skip
    assert _all(api, headers, f"?agent={actor['value']}") == by_actor
    assert _all(api, headers, f"?agent:identifier={actor['system']}|{actor['value']}") == by_actor
    assert _all(api, headers, f"?agent:identifier=urn:other|{actor['value']}") == []


def test_date_searches_recorded_with_prefixes(api: Api, loaded: tuple[dict[str, str], int]) -> None:
    headers, _ = loaded
    everything = _all(api, headers, "")
    today = datetime.now(UTC).date()
    tomorrow, yesterday = today + timedelta(days=1), today - timedelta(days=1)
    assert _all(api, headers, f"?date={today}") == everything
    assert _all(api, headers, f"?date=eq{today.isoformat()[:7]}") == everything
    assert _all(api, headers, f"?date=ge{today}&date=lt{tomorrow}") == everything
    assert _all(api, headers, f"?date=le{yesterday}") == []
    assert _all(api, headers, f"?date=gt{today}") == []
    assert _all(api, headers, f"?date=lt{today}") == []
    first = everything[0]["recorded"]  # an instant in UTC, e.g. 2026-12-03T11:02:03.123456Z
    assert _all(api, headers, f"?date=ge{first.replace('Z', '%2B00:00')}")[0] == everything[0]
    assert _all(api, headers, f"?date=lt{first.replace('Z', '%2B00:00')}") == []


def test_paging_count_total_and_links(api: Api, loaded: tuple[dict[str, str], int]) -> None:
    headers, _ = loaded
    whole = _search(api, headers, "")
    assert whole["total"] == len(whole["entry"]) == 18  # all on one page: the total is exact
    assert [link["relation"] for link in whole["link"]] == ["self"]
    page = _search(api, headers, "?_count=5&type=110106")
    assert len(page["entry"]) == 5
    assert "total" not in page  # not known without counting: omitted, never a guess
    (self_link,) = [link["url"] for link in page["link"] if link["relation"] == "self"]
    (next_link,) = [link["url"] for link in page["link"] if link["relation"] == "next"]
    assert urlsplit(self_link).path == "/fhir/R4/AuditEvent"
    kept = parse_qs(urlsplit(next_link).query)
    assert kept["type"] == ["110106"]
    assert kept["_count"] == ["5"]
    assert len(_all(api, headers, "?_count=1000")) == 18
    for bad in ("?_count=0", "?_count=1001", "?_count=x", "?_cursor=bm9wZQ=="):
        response = api.client.get(f"{FHIR}/AuditEvent{bad}", headers=headers)
        assert response.status_code == 400, bad
        assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("query", "named"),
    [("?name=x", "name"), ("?patient:identifier=a|b", "patient:identifier"),
     ("?_sort=date", "_sort"), ("?date=sa2026", "date"), ("?date=2026-13", "date"),
     ("?date=yesterday", "date"), ("?date=2026-02-30", "date"), ("?patient=a/b", "patient"),
     ("?agent=a%00b", "agent")],
)  # fmt: skip
def test_unknown_parameters_and_bad_values_are_400_outcomes_naming_them(
    api: Api, query: str, named: str
) -> None:
    response = api.client.get(f"{FHIR}/AuditEvent{query}", headers=api.key(Role.COMPLIANCE))
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert named in outcome["issue"][0]["diagnostics"]


def test_read_by_id(api: Api, loaded: tuple[dict[str, str], int]) -> None:
    headers, _ = loaded
    resource = _search(api, headers, "?_count=1")["entry"][0]["resource"]
    response = api.client.get(f"{FHIR}/AuditEvent/{resource['id']}", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json() == resource
    for missing in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        response = api.client.get(f"{FHIR}/AuditEvent/{missing}", headers=headers)
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["code"] == "not-found"


def test_another_tenant_sees_nothing(api: Api, loaded: tuple[dict[str, str], int]) -> None:
    headers, _ = loaded
    resource = _search(api, headers, "?_count=1")["entry"][0]["resource"]
    other = api.key(Role.COMPLIANCE, tenant=f"{api.tenant}-other")
    assert _search(api, other, "")["entry"] == []
    record = resource["entity"][0]["what"]["identifier"]["value"]
    assert _search(api, other, f"?patient={record}")["entry"] == []
    response = api.client.get(f"{FHIR}/AuditEvent/{resource['id']}", headers=other)
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "path", ["/AuditEvent", "/AuditEvent/00000000-0000-4000-8000-000000000000"]
)
def test_roles_on_every_search_route(api: Api, path: str) -> None:
    response = api.client.get(FHIR + path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "login"
    response = api.client.get(FHIR + path, headers=api.key(Role.INGEST))
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "forbidden"


def test_each_search_is_in_the_self_audit(api: Api, loaded: tuple[dict[str, str], int]) -> None:
    headers, _ = loaded
    _search(api, headers, "?type=rest")
    reads = api.client.get("/v1/audit-reads?limit=1000", headers=headers).json()["items"]
    assert any(r["route"] == "GET /fhir/R4/AuditEvent" for r in reads), reads


def test_metadata_says_what_is_supported(api: Api, tmp_path: Path) -> None:
    response = api.client.get(f"{FHIR}/metadata")  # public: clients read it before logging in
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["format"] == ["application/fhir+json"]
    (rest,) = statement["rest"]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    resources = {r["type"]: r for r in rest["resource"]}
    audit = resources["AuditEvent"]
    assert {i["code"] for i in audit["interaction"]} == {"read", "search-type", "create"}
    assert {p["name"] for p in audit["searchParam"]} == {
        "patient", "date", "agent", "type", "subtype"}  # fmt: skip
    assert {i["code"] for i in resources["Consent"]["interaction"]} == {"create", "update"}
    path = tmp_path / "metadata.ndjson"
    path.write_text(json.dumps(statement) + "\n")
    assert _medplum(path) == ""
