"""The fast path of ``POST /v1/records/{record_ref}/events`` answers exactly as the declared
route does: the same status, headers and body for every fact it takes, and every request it
declines is the declared route's to answer, refusal for refusal."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from service.auth import Role
from service.routes import ingest as ingest_routes
from service.schemas import INGEST_FACT_TYPES
from tests.conftest import Api
from tests.fact_strategies import candidate_facts
from tests.factories import example

# Headers that differ between any two responses, whichever path answers.
_VARYING = {"date", "x-request-id", "content-length"}


@contextmanager
def _fast(api: Api, on: bool, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Requests with the fast path on (as in a process exporting no spans) or off (as in one
    that does); yields the list of requests the fast path took."""
    taken: list[object] = []
    accept = ingest_routes._accept

    def counted(scope: Any, body: bytes) -> Any:
        accepted = accept(scope, body)
        if accepted is not None:
            taken.append(accepted)
        return accepted

    with monkeypatch.context() as patch:
        patch.setattr(ingest_routes, "spans_recorded", lambda: not on)
        patch.setattr(ingest_routes, "_accept", counted)
        yield taken


def _answer(api: Api, path: str, **request: Any) -> tuple[int, dict[str, str], Any]:
    response = api.client.post(path, **request)
    headers = {k: v for k, v in response.headers.items() if k not in _VARYING}
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body.pop("recorded_at", None)  # the moment of storing: different on every post
    return response.status_code, headers, body


def _both(
    api: Api, monkeypatch: pytest.MonkeyPatch, record: str, **request: Any
) -> tuple[tuple[int, dict[str, str], Any], tuple[int, dict[str, str], Any], int]:
    """The same request to two fresh-equal tenants, fast path on for one and off for the
    other; both answers, and how many requests the fast path took."""
    fast_headers = request.pop("fast_headers")
    slow_headers = request.pop("slow_headers")
    with _fast(api, True, monkeypatch) as taken:
        fast = _answer(api, f"/v1/records/{record}/events", headers=fast_headers, **request)
    with _fast(api, False, monkeypatch) as skipped:
        slow = _answer(api, f"/v1/records/{record}/events", headers=slow_headers, **request)
    assert skipped == [], "spans are recorded: the declared route answers"
    return fast, slow, len(taken)


@pytest.fixture
def keys(api: Api) -> tuple[dict[str, str], dict[str, str]]:
    """An ingest key each for two tenants that receive the same requests, each key already
    admitted once (a process admits a key from memory only after it has checked it)."""
    fast, slow = api.writer(api.tenant + "-fast"), api.writer(api.tenant + "-slow")
    for headers in (fast, slow):
        warm = api.client.post(
            "/v1/records/warm-up/events", json=example("RecordAccessed"), headers=headers
        )
        assert warm.status_code == 201, warm.text
    return fast, slow


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=candidate_facts(INGEST_FACT_TYPES))
@pytest.mark.parametrize("store", ["sqlite"])
def test_every_fact_taken_is_answered_as_the_declared_route_answers(
    api: Api,
    keys: tuple[dict[str, str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
) -> None:
    try:
        ingest_routes._FACT.validate_python(body)
    except ValidationError:
        return  # not a fact the API takes: the refusals are tested below
    fast, slow, taken = _both(
        api, monkeypatch, "same-record", json=body, fast_headers=keys[0], slow_headers=keys[1]
    )
    assert taken == 1, "a valid fact from an admitted key takes the fast path"
    assert fast == slow
    # 200/409: a drawn event id met again; 422: a fact in the future, refused while storing.
    assert fast[0] in (200, 201, 409, 422), fast
    again, again_slow, _ = _both(
        api, monkeypatch, "same-record", json=body, fast_headers=keys[0], slow_headers=keys[1]
    )
    assert again == again_slow
    if fast[0] == 201:
        assert again[0] == 200, "a repeat is answered 200"
        assert again[2] == fast[2], "with the original receipt"


def _refusals(api: Api) -> list[tuple[str, dict[str, Any]]]:
    valid = example("RecordAccessed")
    raw = json.dumps(valid)
    return [
        ("no key", {"json": valid, "headers": {"Authorization": ""}}),
        ("unknown key", {"json": valid, "headers": {"Authorization": "Bearer da_00_nope"}}),
        ("basic auth", {"json": valid, "headers": {"Authorization": "Basic dXNlcjpwYXNz"}}),
        ("no ingest role", {"json": valid, "headers": api.key(Role.COMPLIANCE)}),
        ("text/plain", {"content": raw, "headers": {"Content-Type": "text/plain"}}),
        ("latin-1", {"content": raw,
                     "headers": {"Content-Type": "application/json; charset=latin-1"}}),
        ("no type", {"content": raw.encode(), "headers": {"Content-Type": ""}}),
        ("a key twice", {"content": raw[:-1] + ', "action": "print"}',
                         "headers": {"Content-Type": "application/json"}}),
        ("not JSON", {"content": b"{nope", "headers": {"Content-Type": "application/json"}}),
        ("empty", {"content": b"", "headers": {"Content-Type": "application/json"}}),
        ("a list", {"json": [valid], "headers": {}}),
        ("missing field", {"json": {k: v for k, v in valid.items() if k != "actor"},
                           "headers": {}}),
        ("extra field", {"json": {**valid, "nickname": "x"}, "headers": {}}),
        ("acknowledgement", {"json": example("FindingAcknowledged"), "headers": {}}),
        ("in the future", {"json": {**valid, "occurred_at": "2199-01-01T00:00:00Z"},
                           "headers": {}}),
    ]  # fmt: skip


@pytest.mark.parametrize("store", ["sqlite"])
def test_every_refusal_is_the_declared_routes(
    api: Api, keys: tuple[dict[str, str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for label, request in _refusals(api):
        own = request.pop("headers")
        fast_headers = {**keys[0], **own}  # a request's own Authorization replaces the key
        slow_headers = {**keys[1], **own}
        fast, slow, taken = _both(
            api, monkeypatch, "refused", fast_headers=fast_headers, slow_headers=slow_headers,
            **request,
        )  # fmt: skip
        assert fast == slow, label
        assert 400 <= fast[0] < 500, (label, fast)
        # A fact in the future is refused while storing, past the fast path's own checks.
        assert taken == (label == "in the future"), f"{label}: taken {taken}"
    for label, path in (
        ("bad record ref", "/v1/records/a%20b/events"),
        ("long", "/v1/records/" + "r" * 300 + "/events"),
    ):
        with _fast(api, True, monkeypatch) as taken_list:
            fast = _answer(api, path, json=example("RecordAccessed"), headers=keys[0])
        with _fast(api, False, monkeypatch):
            slow = _answer(api, path, json=example("RecordAccessed"), headers=keys[1])
        assert fast == slow, label
        assert fast[0] == 422, (label, fast)
        assert taken_list == [], label
    # Declined but stored: the declared route ignores a query string; the fast path leaves it.
    fast, slow, taken = _both(
        api, monkeypatch, "queried", json=example("RecordAccessed"), params={"x": "1"},
        fast_headers=keys[0], slow_headers=keys[1],
    )  # fmt: skip
    assert fast[0] == slow[0] == 201
    assert taken == 0


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_reused_event_id_is_a_409_on_either_path(
    api: Api, keys: tuple[dict[str, str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = example("RecordAccessed")
    changed = {**first, "action": "print"}
    for body, status in ((first, 201), (changed, 409)):
        fast, slow, taken = _both(
            api, monkeypatch, "reused", json=body, fast_headers=keys[0], slow_headers=keys[1]
        )
        assert fast == slow
        assert fast[0] == status, fast
        assert taken == 1
