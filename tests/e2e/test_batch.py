"""Batches are atomic: all stored or none."""

from uuid import uuid4

from tests.conftest import Api
from tests.factories import example


def _timeline_status(api: Api, record_ref: str, headers: dict[str, str]) -> int:
    return api.client.get(f"/v1/records/{record_ref}/timeline", headers=headers).status_code


def test_a_batch_with_one_invalid_event_stores_nothing(api: Api) -> None:
    headers = api.writer()
    refs = [f"b-{uuid4().hex[:6]}" for _ in range(5)]
    events = [{**example("RecordAccessed"), "record_ref": ref} for ref in refs]
    events[3]["purpose_of_use"] = "CURIOSITY"
    response = api.client.post("/v1/events:batch", json={"events": events}, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][:3] == ["body", "events", 3]
    assert all(_timeline_status(api, ref, headers) == 404 for ref in refs)
    assert api.services.audit.last_position(api.tenant) == 0


def test_a_batch_that_conflicts_in_storage_stores_nothing(api: Api) -> None:
    headers = api.writer()
    used = example("RecordAccessed")
    assert api.client.post("/v1/records/b-1/events", json=used, headers=headers).status_code == 201
    before = api.services.audit.last_position(api.tenant)
    fresh = [{**example("RecordAccessed"), "record_ref": f"b-new-{n}"} for n in range(3)]
    reused = {**used, "record_ref": "b-1", "action": "print"}
    response = api.client.post(
        "/v1/events:batch", json={"events": [*fresh, reused]}, headers=headers
    )
    assert response.status_code == 409
    assert api.services.audit.last_position(api.tenant) == before
    assert all(_timeline_status(api, e["record_ref"], headers) == 404 for e in fresh)


def test_a_valid_batch_of_1000_is_stored_atomically_with_consecutive_positions(api: Api) -> None:
    headers = api.writer()
    events = [{**example("RecordAccessed"), "record_ref": f"bulk-{n % 10}"} for n in range(1000)]
    response = api.client.post("/v1/events:batch", json={"events": events}, headers=headers)
    assert response.status_code == 201, response.text
    receipts = response.json()["receipts"]
    assert [r["event_id"] for r in receipts] == [e["event_id"] for e in events]
    positions = sorted(r["position"] for r in receipts)
    # Ten new records: ten registrations plus 1000 facts, one gapless run.
    assert api.services.audit.last_position(api.tenant) == 1010
    assert len(set(positions)) == 1000
    assert {r["recorded_at"] for r in receipts} == {receipts[0]["recorded_at"]}
    timeline = api.client.get(
        "/v1/records/bulk-0/timeline", headers=headers, params={"limit": 1000}
    ).json()
    assert len(timeline["items"]) == 100


def test_more_than_1000_events_are_refused(api: Api) -> None:
    events = [{**example("RecordAccessed"), "record_ref": "x"} for _ in range(1001)]
    response = api.client.post("/v1/events:batch", json={"events": events}, headers=api.writer())
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "events"]


def test_a_repeated_batch_returns_the_original_receipts(api: Api) -> None:
    headers = api.writer()
    events = [{**example("RecordAccessed"), "record_ref": "rep"} for _ in range(3)]
    first = api.client.post("/v1/events:batch", json={"events": events}, headers=headers)
    again = api.client.post("/v1/events:batch", json={"events": events}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()


def test_a_batch_may_mix_stored_and_new_events(api: Api) -> None:
    headers = api.writer()
    old = {**example("RecordAccessed"), "record_ref": "mix"}
    first = api.client.post("/v1/events:batch", json={"events": [old]}, headers=headers)
    new = {**example("RecordAccessed"), "record_ref": "mix"}
    both = api.client.post("/v1/events:batch", json={"events": [old, new]}, headers=headers)
    assert both.status_code == 201
    assert both.json()["receipts"][0] == first.json()["receipts"][0]


def test_the_same_event_twice_in_one_batch_with_different_content_is_409(api: Api) -> None:
    body = {**example("RecordAccessed"), "record_ref": "dup"}
    other = {**body, "action": "print"}
    response = api.client.post(
        "/v1/events:batch", json={"events": [body, other]}, headers=api.writer()
    )
    assert response.status_code == 409


def test_a_batch_item_must_name_its_record(api: Api) -> None:
    response = api.client.post(
        "/v1/events:batch", json={"events": [example("RecordAccessed")]}, headers=api.writer()
    )
    assert response.status_code == 422
    assert "record_ref" in response.json()["errors"][0]["loc"]
