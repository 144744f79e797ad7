"""Application recorders that write the tenant log in the same transaction as the events.

They use the protected hooks of eventsourcing 9.5.6 (``_insert_events`` on SQLite,
``_insert_events`` and ``_fetch_ids_after_insert_events`` on PostgreSQL); the tests exercise
both, so an upgrade that changes them fails loudly.
"""

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow

from service.storage.resilience import bounded_retry, schema_lock
from service.storage.sql import SqlCursor
from service.storage.tenant_log import LogWrite, append_to_tenant_log

__all__ = ["PostgresAuditRecorder", "SQLiteAuditRecorder"]


class SQLiteAuditRecorder(SQLiteApplicationRecorder):
    """SQLite events plus tenant-log rows; SQLite serialises writers, so positions are safe."""

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
