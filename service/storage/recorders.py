"""Application recorders that write the tenant log in the same transaction as the events.

They use the protected hooks of eventsourcing 9.5.6 (``_insert_events`` on SQLite,
``_insert_events`` and ``_fetch_ids_after_insert_events`` on PostgreSQL); the tests exercise
both, so an upgrade that changes them fails loudly.
"""

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from service.storage.resilience import bounded_retry, schema_lock
from service.storage.sql import SqlCursor
from service.storage.tenant_log import LogWrite, append_to_tenant_log

__all__ = ["PostgresAuditRecorder", "SQLiteAuditRecorder"]


class SQLiteAuditRecorder(SQLiteApplicationRecorder):
    """SQLite events plus tenant-log rows; SQLite serialises writers, so positions are safe."""

    def select_events_after(self, after: Mapping[UUID, int]) -> list[StoredEvent]:
        """The events of several records past the versions given, by record, in order (a
        local database: one indexed query per record costs no round trip)."""
        return [e for rid, version in after.items() for e in self.select_events(rid, gt=version)]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        log = kwargs.get("log")
        if isinstance(log, LogWrite) and ids:
            append_to_tenant_log(SqlCursor(c, "sqlite"), stored_events, ids, log)
        return ids


class PostgresAuditRecorder(PostgresApplicationRecorder):
    """PostgreSQL events plus tenant-log rows, under the events table's EXCLUSIVE lock."""

    # The library retries these ten times on connection errors, each try waiting for a pooled
    # connection: close to a minute per request while the database is down. Retry briefly,
    # then let the error become 503 + Retry-After.
    insert_events = bounded_retry(PostgresApplicationRecorder.insert_events)
    select_events = bounded_retry(PostgresApplicationRecorder.select_events)
    select_notifications = bounded_retry(PostgresApplicationRecorder.select_notifications)
    max_notification_id = bounded_retry(PostgresApplicationRecorder.max_notification_id)

    def select_events_after(self, after: Mapping[UUID, int]) -> list[StoredEvent]:
        """The events of several records past the versions given, by record, in order: one
        round trip for a whole group (the writer catching up on other processes' appends)."""
        if not after:
            return []
        statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%s::{id_type}[], %s::bigint[]) AS q(originator_id, version)"
            " JOIN {schema}.{table} e ON e.originator_id = q.originator_id"
            " AND e.originator_version > q.version"
            " ORDER BY e.originator_id, e.originator_version"
        ).format(
            id_type=Identifier(self.datastore.originator_id_type),
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, [list(after), list(after.values())])
            return [
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def create_table(self) -> None:
        """The library's tables, types and function, created by one starting process at a time."""
        with schema_lock(self.datastore):
            super().create_table()

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # 201 means durable: never let a session setting relax commit durability for a write.
        curs.execute("SET LOCAL synchronous_commit TO on")
        super()._insert_events(curs, stored_events, **kwargs)

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        log = kwargs.get("log")
        if isinstance(log, LogWrite) and ids:
            append_to_tenant_log(SqlCursor(curs, "postgres"), stored_events, ids, log)
        return ids
