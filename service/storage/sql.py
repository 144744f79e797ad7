"""One small SQL surface over the library's SQLite and PostgreSQL connections.

Our own tables (tenant log, record keys, API keys) live in the same database as the events, so
that a write can touch both in one transaction. Statements use ``%s`` placeholders; on SQLite
they are rewritten to ``?`` and UUIDs and datetimes are bound as text.
"""

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from opentelemetry.trace import SpanKind
from psycopg import Cursor
from psycopg.sql import Composed

from service.telemetry import span, spans_recorded

__all__ = ["Database", "Dialect", "Row", "SqlCursor", "as_datetime", "as_uuid", "copy_rows"]

Dialect = Literal["sqlite", "postgres"]
Row = dict[str, Any]

_CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)", re.IGNORECASE)


def _sqlite_param(value: object) -> object:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def copy_rows(
    cursor: "Cursor[Any]", statement: str | Composed, rows: Iterable[Sequence[object]]
) -> None:
    """``COPY ... FROM STDIN`` of rows, traced like the statements the psycopg instrumentation
    traces (it wraps ``execute`` only): a client span named ``COPY`` with the statement."""
    if not spans_recorded():
        _copy(cursor, statement, rows)
        return
    text = statement if isinstance(statement, str) else statement.as_string(cursor)
    attributes = {"db.system": "postgresql", "db.statement": text}
    with span("COPY", attributes, kind=SpanKind.CLIENT):
        _copy(cursor, statement, rows)


def _copy(
    cursor: "Cursor[Any]", statement: str | Composed, rows: Iterable[Sequence[object]]
) -> None:
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


class SqlCursor:
    """A cursor of either dialect behind one interface."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect: Dialect = dialect

    def _prepare(self, sql: str, params: Sequence[object]) -> tuple[str, Sequence[object]]:
        if self.dialect == "sqlite":
            return sql.replace("%s", "?"), [_sqlite_param(p) for p in params]
        return sql, params

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        """Run one statement."""
        self._cursor.execute(*self._prepare(sql, params))

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement for each row of parameters."""
        if not rows:
            return
        if self.dialect == "sqlite":
            self._cursor.executemany(
                sql.replace("%s", "?"), [[_sqlite_param(p) for p in row] for row in rows]
            )
        else:
            self._cursor.executemany(sql, rows)

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> None:
        """Insert rows into a table of ours (names are ours, never a caller's): on PostgreSQL
        with ``COPY``, which formats rows in C and loads them as one statement, rather than
        one INSERT per row; on SQLite with one prepared statement stepped per row."""
        if not rows:
            return
        names = ", ".join(columns)
        if self.dialect == "postgres":
            copy_rows(self._cursor, f"COPY {table} ({names}) FROM STDIN", rows)
        else:
            marks = ", ".join(["%s"] * len(columns))
            self.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608

    def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        """Run a query and return its first row."""
        self.execute(sql, params)
        row = self._cursor.fetchone()
        return None if row is None else dict(row)

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run a query and return every row."""
        self.execute(sql, params)
        return [dict(row) for row in self._cursor.fetchall()]


class Database:
    """Transactions on the event store's own connection pool."""

    def __init__(self, datastore: SQLiteDatastore | PostgresDatastore) -> None:
        self._datastore = datastore
        self.dialect: Dialect = "postgres" if isinstance(datastore, PostgresDatastore) else "sqlite"
        self.tables: set[str] = set()

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[SqlCursor]:
        """A transaction that commits on success (when ``commit``) and rolls back on error."""
        with self._datastore.transaction(commit=commit) as cursor:
            yield SqlCursor(cursor, self.dialect)

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """The rows of a single-statement read, outside an explicit transaction.

        A single statement is atomic on its own: on PostgreSQL (autocommit connections) this is
        one round trip instead of three (BEGIN, the query, ROLLBACK). Hot paths use it: every
        request's key lookup, the writer's idempotency lookup, the tenant log's reads.
        """
        if isinstance(self._datastore, PostgresDatastore):
            with self._datastore.cursor() as cursor:
                return SqlCursor(cursor, self.dialect).fetchall(sql, params)
        with self.transaction(commit=False) as cursor:
            return cursor.fetchall(sql, params)

    def read_one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        """The first row of a single-statement read (see ``read``), or None."""
        rows = self.read(sql, params)
        return rows[0] if rows else None

    def create_tables(self, statements: dict[Dialect, list[str]]) -> None:
        """Create tables idempotently; on PostgreSQL, one process at a time."""
        # Remembered so that readiness can check that every table this process needs exists.
        self.tables.update(_CREATED_TABLE.findall(" ".join(statements[self.dialect])))
        with self.transaction() as cursor:
            if self.dialect == "postgres":
                # Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalogue.
                cursor.execute("SELECT pg_advisory_xact_lock(4242001)")
            for statement in statements[self.dialect]:
                cursor.execute(statement)

    def add_column(self, table: str, column: str, definition: str) -> None:
        """Add a column a later version gave an existing table, unless it is there already."""
        with self.transaction() as cursor:
            if self.dialect == "postgres":
                cursor.execute("SELECT pg_advisory_xact_lock(4242001)")  # as create_tables
                cursor.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}"
                )
                return
            # SQLite has no ADD COLUMN IF NOT EXISTS; its writers are serialised by the store.
            columns = cursor.fetchall(f"PRAGMA table_info({table})")
            if all(c["name"] != column for c in columns):
                cursor.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def as_uuid(value: object) -> UUID:
    """A UUID column read back from either dialect."""
    return value if isinstance(value, UUID) else UUID(str(value))


def as_datetime(value: object) -> datetime:
    """A timestamp column read back from either dialect."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(UTC)
