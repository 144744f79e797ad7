"""Posting the same event again is safe; reusing its id for other content is a conflict."""

import json
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import Api
from tests.factories import example


def test_the_same_event_posted_50_times_at_once_is_stored_once(api: Api) -> None:
    body = example("DisclosureMade")
    headers = api.writer()

    def post() -> tuple[int, dict[str, object]]:
        response = api.client.post("/v1/records/rec-idem/events", json=body, headers=headers)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: post(), range(50)))

    statuses = sorted(status for status, _ in answers)
    assert statuses.count(201) == 1
    assert statuses.count(200) == 49
    receipts = {json.dumps(receipt, sort_keys=True) for _, receipt in answers}
    assert len(receipts) == 1, "every answer carries the same receipt"
    timeline = api.client.get("/v1/records/rec-idem/timeline", headers=headers).json()
    assert [item["event_id"] for item in timeline["items"]] == [body["event_id"]]


def test_a_repeat_returns_the_original_receipt(api: Api) -> None:
    body = example("RecordAccessed")
    first = api.client.post("/v1/records/rec-r/events", json=body, headers=api.writer())
    api.client.post(
        "/v1/records/rec-r/events", json=example("RecordAccessed"), headers=api.writer()
    )
    again = api.client.post("/v1/records/rec-r/events", json=body, headers=api.writer())
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()


def test_different_content_under_a_used_event_id_is_409_and_changes_nothing(api: Api) -> None:
    body = example("DisclosureMade")
    headers = api.writer()
    assert (
        api.client.post("/v1/records/rec-c/events", json=body, headers=headers).status_code == 201
    )
    changed = {**body, "categories": ["psychotherapy_notes"]}
    conflict = api.client.post("/v1/records/rec-c/events", json=changed, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["type"].endswith("/event-id-reused")
    elsewhere = api.client.post("/v1/records/other/events", json=body, headers=headers)
    assert elsewhere.status_code == 409, "the same id for another record is other content too"
    timeline = api.client.get("/v1/records/rec-c/timeline", headers=headers).json()
    assert timeline["items"][0]["event"]["categories"] == ["progress_notes"]


def test_content_is_compared_as_data_not_as_bytes(api: Api) -> None:
    body = example("RecordAccessed")
    headers = api.writer()
    api.client.post("/v1/records/rec-eq/events", json=body, headers=headers)
    reordered = dict(reversed(list(body.items())))
    same = api.client.post("/v1/records/rec-eq/events", json=reordered, headers=headers)
    assert same.status_code == 200
    # The same instant written with another offset would be stored (and shown) differently,
    # so it is different content.
    other_offset = {**body, "occurred_at": "2026-03-02T20:04:05+00:00"}
    answer = api.client.post("/v1/records/rec-eq/events", json=other_offset, headers=headers)
    assert answer.status_code == 409


def test_event_ids_are_scoped_to_the_tenant(api: Api) -> None:
    body = example("RecordAccessed")
    first = api.client.post("/v1/records/rec-s/events", json=body, headers=api.writer())
    other_tenant = api.writer(tenant=api.tenant + "-b")
    second = api.client.post("/v1/records/rec-s/events", json=body, headers=other_tenant)
    assert (first.status_code, second.status_code) == (201, 201)
