"""Stored bytes reveal no payload text; destroying one record's key erases only that record."""

from pathlib import Path

import psycopg

from service.settings import Settings
from tests.conftest import Api
from tests.factories import example, unique_name


def _raw_storage(settings: Settings) -> bytes:
    """Every byte the store holds: the SQLite files, or every row of every PostgreSQL table."""
    if settings.database_url is None:
        files = sorted(Path(settings.home).glob("audit.sqlite3*"))
        assert files, "the SQLite store should exist"
        return b"".join(path.read_bytes() for path in files)
    chunks = []
    with psycopg.connect(settings.database_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert any(t[0] == "audit_events" for t in tables)
        for (table,) in tables:
            for (row,) in conn.execute(f'SELECT t::text FROM "{table}" t'):  # noqa: S608
                chunks.append(row.encode())
    return b"\n".join(chunks)


def test_no_payload_text_reaches_the_stored_bytes(api: Api) -> None:
    recipient = unique_name()
    justification = unique_name("Client disclosed plan to")
    headers = api.writer()
    disclosure = example("DisclosureMade", recipient={"name": recipient, "kind": "attorney"})
    access = example("RecordAccessed", break_glass=True, justification=justification)
    record_ref = "mrn-" + unique_name("").strip().replace(" ", "")
    for body in (disclosure, access):
        response = api.client.post(f"/v1/records/{record_ref}/events", json=body, headers=headers)
        assert response.status_code == 201
    raw = _raw_storage(api.services.settings)
    assert len(raw) > 1000
    for secret in (recipient, justification, record_ref):
        assert secret.encode() not in raw, f"{secret!r} is stored in clear"
        assert secret.encode().hex().encode() not in raw, f"{secret!r} is stored as hex"
    timeline = api.client.get(f"/v1/records/{record_ref}/timeline", headers=headers).json()
    assert timeline["items"][0]["event"]["recipient"]["name"] == recipient


def test_destroying_a_records_key_redacts_it_and_no_other(api: Api) -> None:
    headers = api.writer()
    shredded = [example("DisclosureMade"), example("RecordAccessed")]
    kept = [example("DisclosureMade")]
    for body in shredded:
        assert (
            api.client.post("/v1/records/gone/events", json=body, headers=headers).status_code
            == 201
        )
    for body in kept:
        assert (
            api.client.post("/v1/records/kept/events", json=body, headers=headers).status_code
            == 201
        )
    before = api.client.get("/v1/records/gone/timeline", headers=headers).json()["items"]

    assert api.services.shred_record(api.tenant, "gone")
    assert not api.services.shred_record(api.tenant, "gone"), "already destroyed"

    after = api.client.get("/v1/records/gone/timeline", headers=headers).json()["items"]
    assert [(i["position"], i["type"], i["recorded_at"]) for i in after] == [
        (i["position"], i["type"], i["recorded_at"]) for i in before
    ]
    assert all(i["redacted"] and i["event"] is None and i["event_id"] is None for i in after)
    other = api.client.get("/v1/records/kept/timeline", headers=headers).json()["items"]
    assert [i["event_id"] for i in other] == [kept[0]["event_id"]]
    assert other[0]["event"]["recipient"]["name"] == kept[0]["recipient"]["name"]

    refused = api.client.post(
        "/v1/records/gone/events", json=example("RecordAccessed"), headers=headers
    )
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/record-erased")


def test_a_fresh_process_also_reads_the_shredded_record_as_redacted(api: Api) -> None:
    from service.container import build_services

    headers = api.writer()
    api.client.post("/v1/records/gone2/events", json=example("RecordOpened"), headers=headers)
    api.services.shred_record(api.tenant, "gone2")
    fresh = build_services(api.services.settings)
    try:
        events = fresh.audit.read_record(api.tenant, "gone2")
    finally:
        fresh.close()
    assert [type(e.event).__name__ for e in events] == ["RedactedRegistration", "Redacted"]
