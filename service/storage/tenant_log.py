"""The tenant log: a gapless position for every stored event of a tenant, written atomically
with the events, plus what idempotent ingest needs (event id, content digest, receipt).

The event store numbers events globally and may leave gaps (rolled-back inserts consume
sequence values); clients and the Merkle log need a gapless order per tenant, so positions are
assigned here, inside the insert transaction, after the store's write lock is held.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import rfc8785
from eventsourcing.persistence import StoredEvent

from domain import merkle
from service.storage.crypto import seal_state
from service.storage.sql import Database, Dialect, Row, SqlCursor

__all__ = [
    "LEAF_TOPIC",
    "TENANT_LOG_TABLES",
    "FactEntry",
    "LeafEntry",
    "LogWrite",
    "append_to_tenant_log",
    "leaf_bytes",
    "seal_leaf",
    "tenant_size",
]

LEAF_TOPIC = "client-record/leaf"

# A record's events, looked up by tenant and record (404 checks, timelines). Led by the tenant,
# so the planner needs no statistics to prefer it: with (record_id, ...) alone and a table not
# yet analysed, PostgreSQL ANDed it with a scan of the whole tenant (60 ms at 1M events). The
# index of version 1 is dropped once the new one exists.
_RECORD_INDEX = [
    "CREATE INDEX IF NOT EXISTS da_tenant_log_record"
    " ON da_tenant_log (tenant_id, record_id, originator_version)",
    "DROP INDEX IF EXISTS da_tenant_log_record_idx",
]

TENANT_LOG_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_tenant_log ("
        " tenant_id TEXT NOT NULL, position BIGINT NOT NULL,"
        " notification_id BIGINT NOT NULL UNIQUE, record_id UUID NOT NULL,"
        " originator_version BIGINT NOT NULL, event_id UUID, content_digest BYTEA,"
        " recorded_at TIMESTAMPTZ NOT NULL, receipt TEXT,"
        " leaf_hash BYTEA NOT NULL, leaf_entry BYTEA NOT NULL,"
        " PRIMARY KEY (tenant_id, position), UNIQUE (tenant_id, event_id))",
        *_RECORD_INDEX,
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_tenant_log ("
        " tenant_id TEXT NOT NULL, position INTEGER NOT NULL,"
        " notification_id INTEGER NOT NULL UNIQUE, record_id TEXT NOT NULL,"
        " originator_version INTEGER NOT NULL, event_id TEXT, content_digest BLOB,"
        " recorded_at TEXT NOT NULL, receipt TEXT,"
        " leaf_hash BLOB NOT NULL, leaf_entry BLOB NOT NULL,"
        " PRIMARY KEY (tenant_id, position), UNIQUE (tenant_id, event_id))",
        *_RECORD_INDEX,
    ],
}


@dataclass(frozen=True)
class FactEntry:
    """What the tenant log keeps about one client-reported fact."""

    event_id: UUID
    digest: bytes
    receipt: str


@dataclass(frozen=True)
class LeafEntry:
    """The content of one Merkle leaf, before its position is known, and the key that seals it."""

    content: dict[str, Any]
    key: bytes


@dataclass
class LogWrite:
    """Passed through ``Application.save`` to the recorder; positions are filled in there."""

    tenant_id: str
    recorded_at: datetime
    facts: dict[tuple[UUID, int], FactEntry]
    leaves: dict[tuple[UUID, int], LeafEntry]
    positions: dict[tuple[UUID, int], int] = field(default_factory=dict)


def leaf_bytes(content: dict[str, Any], position: int) -> bytes:
    """The canonical bytes (RFC 8785) of a leaf: its content with its tenant-log position."""
    return rfc8785.dumps({**content, "position": position})


def seal_leaf(key: bytes, data: bytes, record: UUID, version: int, recorded_at: datetime) -> bytes:
    """Seal a leaf's bytes with the record's key: they hold the event's personal data."""
    return seal_state(
        key, data, record=record, version=version, topic=LEAF_TOPIC, recorded_at=recorded_at
    )


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
        leaf = log.leaves[key]
        data = leaf_bytes(leaf.content, position)
        sealed = seal_leaf(leaf.key, data, record, stored.originator_version, log.recorded_at)
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
                merkle.leaf_hash(data),
                sealed,
            )
        )
        log.positions[key] = position
    cursor.executemany(
        "INSERT INTO da_tenant_log (tenant_id, position, notification_id, record_id,"
        " originator_version, event_id, content_digest, recorded_at, receipt, leaf_hash,"
        " leaf_entry) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        rows,
    )


def tenant_size(db: Database, tenant_id: str) -> int:
    """The tenant's latest log position, which is also its tree size (0 when empty)."""
    with db.transaction(commit=False) as cursor:
        row = cursor.fetchone(
            "SELECT COALESCE(MAX(position), 0) AS last FROM da_tenant_log WHERE tenant_id = %s",
            (tenant_id,),
        )
    return int(row["last"]) if row else 0
