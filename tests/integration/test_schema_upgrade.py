"""A store written by an earlier version keeps working after an upgrade: its schema catches up
on start, with nothing to run by hand."""

from service.container import build_services
from service.settings import Settings
from service.storage.sql import Database
from tests.conftest import Api
from tests.factories import example


def _tenant_log_indexes(db: Database) -> set[str]:
    with db.transaction(commit=False) as cursor:
        if cursor.dialect == "postgres":
            rows = cursor.fetchall(
                "SELECT indexname AS name FROM pg_indexes WHERE tablename = %s", ("da_tenant_log",)
            )
        else:
            rows = cursor.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s",
                ("da_tenant_log",),
            )
    return {str(row["name"]) for row in rows}


def test_a_version_1_store_gets_the_tenant_scoped_record_index_on_start(
    api: Api, settings: Settings
) -> None:
    headers = api.writer()
    event = example("RecordAccessed")
    posted = api.client.post("/v1/records/upg-1/events", json=event, headers=headers)
    assert posted.status_code == 201, posted.text
    db = api.services.audit.db
    # Version 1 indexed the tenant log by (record_id, originator_version) alone.
    with db.transaction() as cursor:
        cursor.execute("DROP INDEX da_tenant_log_record")
        cursor.execute(
            "CREATE INDEX da_tenant_log_record_idx ON da_tenant_log (record_id, originator_version)"
        )
    assert "da_tenant_log_record" not in _tenant_log_indexes(db)

    build_services(settings).close()  # the upgraded service starts on the old store

    indexes = _tenant_log_indexes(db)
    assert "da_tenant_log_record" in indexes
    assert "da_tenant_log_record_idx" not in indexes
    timeline = api.client.get("/v1/records/upg-1/timeline", headers=headers)
    assert timeline.status_code == 200, timeline.text
    assert [e["event_id"] for e in timeline.json()["items"]][-1] == event["event_id"]
    missing = api.client.get("/v1/records/upg-none/accounting", headers=headers)
    assert missing.status_code == 404
