"""Application recorders that write the tenant log in the same transaction as the events.

They use the protected hooks of eventsourcing 9.5.6 (``_insert_events`` on SQLite; on
PostgreSQL the lock statements, the NOTIFY channel and the events table's layout, for an insert
written with ``COPY``); the tests exercise both, so an upgrade that changes them fails loudly.
"""

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg.sql import SQL, Composed, Identifier, Literal

from service.storage.resilience import bounded_retry, schema_lock
from service.storage.sql import SqlCursor, copy_rows
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

    def _copy_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's insert, written with ``COPY``; the same lock, NOTIFY and ids.

        The library binds the events as one array of a composite type, which psycopg dumps in
        Python, as text, and the server parses field by field; the tenant-log rows went as one
        INSERT each. ``COPY`` formats rows in C and the server loads them as one statement:
        on a batch of 1,000 that was a quarter of the writer's time. ``COPY`` cannot return
        the ids it assigns, so they are drawn from the table's sequence first, after the
        EXCLUSIVE lock, exactly where the library's INSERT draws them: the commit order is
        still the id order (the library's comment in ``_lock_table`` says why that matters).
        """
        if not stored_events:
            return None
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            prelude, copy = self._copy_statements
            # One round trip (statements without parameters go as one simple query): commit
            # durably, whatever the session says (201 means durable); the library's lock and
            # NOTIFY; then the ids (the count is an int, formatted as one).
            # A str (not bytes): the tracing instrumentation names spans by the statement.
            curs.execute(f"{prelude}{len(stored_events):d})")
            while curs.description is None and curs.nextset():
                pass
            ids = sorted(int(row["id"]) for row in curs.fetchall())
            copy_rows(
                curs,
                copy,
                (
                    (n, e.originator_id, e.originator_version, e.topic, e.state)
                    for n, e in zip(ids, stored_events, strict=True)
                ),
            )
            log = kwargs.get("log")
            if isinstance(log, LogWrite):
                append_to_tenant_log(SqlCursor(curs, "postgres"), stored_events, ids, log)
        return ids

    insert_events = bounded_retry(_copy_events)

    @cached_property
    def _copy_statements(self) -> tuple[str, Composed]:
        """The insert's first statement up to its count of ids, and its ``COPY``."""
        table = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        prelude = SQL("; ").join(
            [
                SQL("SET LOCAL synchronous_commit TO on"),
                *self.lock_table_statements,
                SQL("NOTIFY {0}").format(Identifier(self.channel_name)),
                SQL(
                    "SELECT nextval(pg_get_serial_sequence({0}, 'notification_id')) AS id"
                    " FROM generate_series(1, "
                ).format(Literal(f'"{self.datastore.schema}"."{self.events_table_name}"')),
            ]
        )
        copy = SQL(
            "COPY {0} (notification_id, originator_id, originator_version, topic, state) FROM STDIN"
        ).format(table)
        return prelude.as_string(), copy
