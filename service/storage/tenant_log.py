"""The tenant log: a gapless position for every stored event of a tenant, written atomically
with the events, plus what idempotent ingest needs (event id, content digest, receipt).

The event store numbers events globally and may leave gaps (rolled-back inserts consume
sequence values); clients and the Merkle log need a gapless order per tenant, so positions are
assigned here, inside the insert transaction, after the store's write lock is held.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from service.storage.sql import Dialect, Row, SqlCursor

__all__ = ["TENANT_LOG_TABLES", "FactEntry", "LogWrite", "append_to_tenant_log"]

TENANT_LOG_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_tenant_log ("
        " tenant_id TEXT NOT NULL, position BIGINT NOT NULL,"
        " notification_id BIGINT NOT NULL UNIQUE, record_id UUID NOT NULL,"
        " originator_version BIGINT NOT NULL, event_id UUID, content_digest BYTEA,"
        " recorded_at TIMESTAMPTZ NOT NULL, receipt TEXT,"
        " PRIMARY KEY (tenant_id, position), UNIQUE (tenant_id, event_id))",
        "CREATE INDEX IF NOT EXISTS da_tenant_log_record_idx"
        " ON da_tenant_log (record_id, originator_version)",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_tenant_log ("
        " tenant_id TEXT NOT NULL, position INTEGER NOT NULL,"
        " notification_id INTEGER NOT NULL UNIQUE, record_id TEXT NOT NULL,"
        " originator_version INTEGER NOT NULL, event_id TEXT, content_digest BLOB,"
        " recorded_at TEXT NOT NULL, receipt TEXT,"
        " PRIMARY KEY (tenant_id, position), UNIQUE (tenant_id, event_id))",
        "CREATE INDEX IF NOT EXISTS da_tenant_log_record_idx"
        " ON da_tenant_log (record_id, originator_version)",
    ],
}


@dataclass(frozen=True)
class FactEntry:
    """What the tenant log keeps about one client-reported fact."""

    event_id: UUID
    digest: bytes
    receipt: str


@dataclass
class LogWrite:
    """Passed through ``Application.save`` to the recorder; positions are filled in there."""

    tenant_id: str
    recorded_at: datetime
    facts: dict[tuple[UUID, int], FactEntry]
    positions: dict[tuple[UUID, int], int] = field(default_factory=dict)


def append_to_tenant_log(
    cursor: SqlCursor,
    stored_events: Sequence[StoredEvent],
    notification_ids: Sequence[int],
    log: LogWrite,
) -> None:
    """Give each just-inserted event the next positions of its tenant (caller holds the lock)."""
    if len(notification_ids) != len(stored_events):
        raise RuntimeError("the event store returned fewer notification ids than events")
    row: Row | None = cursor.fetchone(
        "SELECT COALESCE(MAX(position), 0) AS last FROM da_tenant_log WHERE tenant_id = %s",
        (log.tenant_id,),
    )
    position = int(row["last"]) if row else 0
    rows: list[Sequence[object]] = []
    log.positions.clear()
    for stored, notification_id in zip(stored_events, notification_ids, strict=True):
        position += 1
        record = UUID(str(stored.originator_id))
        key = (record, stored.originator_version)
        entry = log.facts.get(key)
        rows.append(
            (
                log.tenant_id,
                position,
                notification_id,
                record,
                stored.originator_version,
                entry.event_id if entry else None,
                entry.digest if entry else None,
                log.recorded_at,
                entry.receipt if entry else None,
            )
        )
        log.positions[key] = position
    cursor.executemany(
        "INSERT INTO da_tenant_log (tenant_id, position, notification_id, record_id,"
        " originator_version, event_id, content_digest, recorded_at, receipt)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        rows,
    )
