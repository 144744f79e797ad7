"""Receipts carry the policy engine's judgment, so a clinical system learns at once."""

from service.demo import scenario_events
from tests.conftest import Api
from tests.e2e.test_batch import _timeline_status
from tests.integration.test_encryption_at_rest import _raw_storage
from tests.unit.test_policy_scenarios import ACCOUNTABLE, EXPECTED


def test_posting_the_scenarios_over_http_returns_the_expected_findings(api: Api) -> None:
    headers = api.writer()
    seen: dict[str, dict[str, object]] = {}
    for scenario in scenario_events():
        for event in scenario.events:
            response = api.client.post(
                f"/v1/records/{scenario.record_ref}/events", json=event, headers=headers
            )
            assert response.status_code == 201, response.text
            if event["type"] == "DisclosureMade":
                seen[event["disclosure_id"]] = response.json()
    for record_ref, expected in EXPECTED.items():
        for label, rules in expected.items():
            if label.startswith("dis-"):
                receipt = seen[label]
                assert {f["rule"] for f in receipt["findings"]} == rules, (record_ref, label)  # type: ignore[attr-defined]
                assert receipt["accountable"] is ACCOUNTABLE[label]
    court = seen["dis-jr-3"]
    assert court["excess_categories"] == ["progress_notes", "psychotherapy_notes"]
    assert str(court["ruleset"]).startswith("US-MA@")
    finding = court["findings"][0]  # type: ignore[index]
    assert finding["citation"]
    assert finding["evidence"]
    assert finding["ruleset"].startswith("US-MA@")


def test_a_repeat_returns_the_judgment_made_at_ingest(api: Api) -> None:
    headers = api.writer()
    scenario = next(s for s in scenario_events() if s.record_ref == "cv-5520")
    receipts = [
        api.client.post("/v1/records/cv-5520/events", json=e, headers=headers).json()
        for e in scenario.events
    ]
    again = api.client.post("/v1/records/cv-5520/events", json=scenario.events[-1], headers=headers)
    assert again.status_code == 200
    assert again.json() == receipts[-1]
    assert [f["rule"] for f in again.json()["findings"]] == ["AU-1"]


def test_stored_judgments_are_sealed_with_the_record_key(api: Api) -> None:
    headers = api.writer()
    scenario = next(s for s in scenario_events() if s.record_ref == "cr-1187")
    for event in scenario.events:
        api.client.post("/v1/records/cr-sealed/events", json=event, headers=headers)
    raw = _raw_storage(api.services.settings)
    for text in (b"Morgan & Lee", b"cr-sealed", b"J. Okafor"):
        assert text not in raw
    with api.services.audit.db.transaction(commit=False) as cursor:
        rows = cursor.fetchall(
            "SELECT receipt FROM da_tenant_log WHERE tenant_id = %s AND receipt IS NOT NULL",
            (api.tenant,),
        )
    assert len(rows) == 4  # one receipt per fact: opened, authorized, two disclosures
    for row in rows:
        assert "PN-1" not in row["receipt"]
        assert "findings" not in row["receipt"]
    assert _timeline_status(api, "cr-sealed", headers) == 200
