"""Many clients writing to one record at once: every event stored once, in one order."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Api
from tests.factories import example


@pytest.mark.slow
def test_20_threads_posting_50_events_each_to_one_record_lose_nothing(api: Api) -> None:
    headers = api.writer()
    bodies = [[example("RecordAccessed") for _ in range(50)] for _ in range(20)]

    def post_all(batch: list[dict[str, object]]) -> list[int]:
        positions = []
        for body in batch:
            response = api.client.post("/v1/records/shared/events", json=body, headers=headers)
            assert response.status_code == 201, response.text
            positions.append(response.json()["position"])
        return positions

    with ThreadPoolExecutor(max_workers=20) as pool:
        per_thread = list(pool.map(post_all, bodies))

    positions = [p for thread in per_thread for p in thread]
    assert len(set(positions)) == 1000, "every acknowledged event has its own position"
    for thread in per_thread:
        assert thread == sorted(thread), "a client's sequential writes keep their order"

    stored = []
    cursor = None
    while True:
        params = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/v1/records/shared/timeline", headers=headers, params=params).json()
        stored += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    sent = {body["event_id"] for batch in bodies for body in batch}
    assert {item["event_id"] for item in stored} == sent
    assert len(stored) == 1000
    assert sorted(item["position"] for item in stored) == sorted(positions)
    # One consistent order: the tenant log has no gaps (position 1 is the record's registration).
    assert sorted(positions) == list(range(2, 1002))
