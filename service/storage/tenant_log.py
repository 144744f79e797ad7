"""The tenant log: a gapless position for every stored event of a tenant, written atomically
with the events, plus what idempotent ingest needs (event id, content digest, receipt).

This module owns the table ``da_tenant_log``: its definition, the rows the recorders append and
every query that reads it (``TenantLogTable``); nothing else names it.

The event store numbers events globally and may leave gaps (rolled-back inserts consume
sequence values); clients and the Merkle log need a gapless order per tenant, so positions are
assigned here, inside the insert transaction, after the store's write lock is held. Everything
else a row holds is prepared before: under the lock each row costs one splice of the position
into its pre-encoded leaf, one hash and one seal.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain import merkle
from domain.canonical import Splice
from service.storage.crypto import seal_state
from service.storage.sql import Database, Dialect, Row, SqlCursor, as_datetime

__all__ = [
    "LEAF_TOPIC",
    "TABLE",
    "TENANT_LOG_TABLES",
    "FactEntry",
    "LogRow",
    "LogWrite",
    "Placement",
    "TenantLogTable",
    "append_to_tenant_log",
    "leaf_bytes",
    "seal_leaf",
]

LEAF_TOPIC = "client-record/leaf"
TABLE = "da_tenant_log"  # the name every statement below spells out

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
class LogRow:
    """One event's row, prepared before the lock: all but its position."""

    tenant_id: str
    leaf: Splice  # the leaf's canonical bytes, "position" still to fill in
    key: bytes  # the record's data key, which seals the leaf
    recorded_at: datetime
    fact: FactEntry | None  # None for a registration


@dataclass(frozen=True)
class LogWrite:
    """The tenant-log rows of one save, by (record id, version); passed through
    ``Application.save`` to the recorder, which appends them in the same transaction."""

    rows: dict[tuple[UUID, int], LogRow]


@dataclass(frozen=True)
class Placement:
    """Where one event sits in its tenant's log."""

    notification_id: int
    tenant_id: str
    position: int
    recorded_at: datetime


def leaf_bytes(content: dict[str, object], position: int) -> bytes:
    """The canonical bytes (RFC 8785) of a leaf: its content with its tenant-log position."""
    members = {k: v for k, v in content.items() if k != "position"}
    return Splice(members, "position").fill(position)


def seal_leaf(key: bytes, data: bytes, record: UUID, version: int, recorded_at: datetime) -> bytes:
    """Seal a leaf's bytes with the record's key: they hold the event's personal data."""
    return seal_state(
        key, data, record=record, version=version, topic=LEAF_TOPIC, recorded_at=recorded_at
    )


def append_to_tenant_log(
    cursor: SqlCursor,
    stored_events: Sequence[StoredEvent],
    notification_ids: Sequence[int],
    write: LogWrite,
) -> None:
    """Give each just-inserted event the next position of its tenant (caller holds the lock)."""
    if len(notification_ids) != len(stored_events):
        raise RuntimeError("the event store returned fewer notification ids than events")
    tenants = sorted({row.tenant_id for row in write.rows.values()})
    # One index probe per tenant (the primary key read backwards from the tenant's end). The
    # earlier `MAX(position) ... WHERE tenant_id IN (...) GROUP BY tenant_id` read every row of
    # each tenant, on both stores and whatever the statistics: 150 ms a commit at 283k events,
    # held under the events-table lock and growing with the log (EXPLAIN ANALYZE; 0.2 ms now).
    values = ", ".join(["(CAST(%s AS TEXT))"] * len(tenants))
    found = cursor.fetchall(
        "SELECT v.column1 AS tenant_id, (SELECT l.position FROM da_tenant_log l"  # noqa: S608
        " WHERE l.tenant_id = v.column1 ORDER BY l.position DESC LIMIT 1) AS last"
        f" FROM (VALUES {values}) AS v",
        tenants,
    )
    last = {r["tenant_id"]: int(r["last"] or 0) for r in found}
    rows: list[Sequence[object]] = []
    for stored, notification_id in zip(stored_events, notification_ids, strict=True):
        record = UUID(str(stored.originator_id))
        version = stored.originator_version
        row = write.rows[(record, version)]
        position = last[row.tenant_id] = last[row.tenant_id] + 1
        data = row.leaf.fill(position)
        fact = row.fact
        rows.append(
            (
                row.tenant_id,
                position,
                notification_id,
                record,
                version,
                fact.event_id if fact else None,
                fact.digest if fact else None,
                row.recorded_at,
                fact.receipt if fact else None,
                merkle.leaf_hash(data),
                seal_leaf(row.key, data, record, version, row.recorded_at),
            )
        )
    cursor.insert_rows(
        "da_tenant_log",
        (
            "tenant_id",
            "position",
            "notification_id",
            "record_id",
            "originator_version",
            "event_id",
            "content_digest",
            "recorded_at",
            "receipt",
            "leaf_hash",
            "leaf_entry",
        ),
        rows,
    )


def _in(values: Sequence[object]) -> str:
    return ", ".join(["%s"] * len(values))


class TenantLogTable:
    """Every read of the tenant log. Only placeholders are ever interpolated into the SQL."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def size(self, tenant_id: str) -> int:
        """The tenant's latest position, which is also its tree size (0 when empty)."""
        row = self._db.read_one(
            "SELECT COALESCE(MAX(position), 0) AS last FROM da_tenant_log WHERE tenant_id = %s",
            (tenant_id,),
        )
        return int(row["last"]) if row else 0

    def facts(self, tenant_id: str, event_ids: Sequence[UUID]) -> list[Row]:
        """The rows of those client events the tenant already stored (idempotency)."""
        columns = (
            "t.event_id, t.record_id, t.originator_version, t.position, t.recorded_at,"
            " t.content_digest, t.receipt"
        )
        if self._db.dialect == "postgres":
            # One probe of the (tenant_id, event_id) index per id. As `event_id IN (...)` with
            # hundreds of ids, PostgreSQL without statistics (autovacuum off, or just after a
            # bulk load) chose the tenant's primary-key range and filtered every row of it:
            # 1.1 s for 500 ids at 274k events, growing with the log (EXPLAIN ANALYZE); this
            # form is a nested loop over the ids whatever the statistics (3 ms).
            return self._db.read(
                f"SELECT {columns} FROM unnest(%s::uuid[]) AS q(event_id)"  # noqa: S608
                " JOIN da_tenant_log t ON t.tenant_id = %s AND t.event_id = q.event_id",
                (list(event_ids), tenant_id),
            )
        rows: list[Row] = []
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start : start + 500]
            rows += self._db.read(
                f"SELECT {columns} FROM da_tenant_log t"  # noqa: S608
                f" WHERE t.tenant_id = %s AND t.event_id IN ({_in(chunk)})",
                (tenant_id, *chunk),
            )
        return rows

    def page(self, after: int, last: int) -> dict[int, Placement]:
        """Where the events with notification ids in (after, last] sit."""
        rows = self._db.read(
            "SELECT notification_id, tenant_id, position, recorded_at FROM da_tenant_log"
            " WHERE notification_id > %s AND notification_id <= %s",
            (after, last),
        )
        return {int(r["notification_id"]): _placement(r) for r in rows}

    def first_after(self, notification_id: int) -> Placement | None:
        """The oldest event after a notification id (projection lag)."""
        row = self._db.read_one(
            "SELECT notification_id, tenant_id, position, recorded_at FROM da_tenant_log"
            " WHERE notification_id > %s ORDER BY notification_id LIMIT 1",
            (notification_id,),
        )
        return _placement(row) if row else None

    def at(self, tenant_id: str, position: int) -> Placement | None:
        """The event at a tenant's position."""
        row = self._db.read_one(
            "SELECT notification_id, tenant_id, position, recorded_at FROM da_tenant_log"
            " WHERE tenant_id = %s AND position = %s",
            (tenant_id, position),
        )
        return _placement(row) if row else None

    def position_of_event(self, tenant_id: str, event_id: UUID) -> int | None:
        """The position of a client event."""
        row = self._db.read_one(
            "SELECT position FROM da_tenant_log WHERE tenant_id = %s AND event_id = %s",
            (tenant_id, event_id),
        )
        return int(row["position"]) if row else None

    def has_record(self, tenant_id: str, record: UUID) -> bool:
        """Whether the tenant has any event of this record (one index lookup)."""
        row = self._db.read_one(
            "SELECT 1 AS found FROM da_tenant_log WHERE tenant_id = %s AND record_id = %s LIMIT 1",
            (tenant_id, record),
        )
        return row is not None

    def tenants(self) -> list[str]:
        """Every tenant with at least one event."""
        rows = self._db.read("SELECT DISTINCT tenant_id FROM da_tenant_log ORDER BY tenant_id")
        return [str(r["tenant_id"]) for r in rows]

    def records(self, tenant_id: str) -> list[UUID]:
        """The ids of every record of the tenant, in the order they first appeared."""
        rows = self._db.read(
            "SELECT record_id FROM da_tenant_log WHERE tenant_id = %s AND originator_version = 1"
            " ORDER BY position",
            (tenant_id,),
        )
        return [UUID(str(r["record_id"])) for r in rows]

    def of_record(self, tenant_id: str, record: UUID) -> dict[int, Placement]:
        """Where each event of a record sits, by record version."""
        rows = self._db.read(
            "SELECT originator_version, notification_id, tenant_id, position, recorded_at"
            " FROM da_tenant_log WHERE tenant_id = %s AND record_id = %s"
            " ORDER BY originator_version",
            (tenant_id, record),
        )
        return {int(r["originator_version"]): _placement(r) for r in rows}

    def leaf_hashes(
        self, tenant_id: str, after: int, size: int, limit: int
    ) -> list[tuple[int, bytes]]:
        """(position, leaf hash) at positions (after, size], at most ``limit``, in order."""
        rows = self._db.read(
            "SELECT position, leaf_hash FROM da_tenant_log WHERE tenant_id = %s"
            " AND position > %s AND position <= %s ORDER BY position LIMIT %s",
            (tenant_id, after, size, limit),
        )
        return [(int(r["position"]), bytes(r["leaf_hash"])) for r in rows]

    def leaves(self, tenant_id: str, after: int, size: int, limit: int) -> list[Row]:
        """Whole leaf rows at positions (after, size], at most ``limit``, in order."""
        return self._db.read(
            "SELECT position, record_id, originator_version, leaf_hash, leaf_entry,"
            " receipt FROM da_tenant_log WHERE tenant_id = %s AND position > %s"
            " AND position <= %s ORDER BY position LIMIT %s",
            (tenant_id, after, size, limit),
        )


def _placement(row: Row) -> Placement:
    return Placement(
        notification_id=int(row["notification_id"]),
        tenant_id=str(row["tenant_id"]),
        position=int(row["position"]),
        recorded_at=as_datetime(row["recorded_at"]),
    )
