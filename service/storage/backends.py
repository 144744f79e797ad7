"""The embedded SQLite backend, made durable: every commit is fsynced before we answer 201."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import ConnectionPoolClosedError, InfrastructureFactoryError
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteFactory,
    SQLiteTransaction,
)

__all__ = ["DurableSQLiteFactory"]


class _ImmediateTransaction(SQLiteTransaction):
    def __enter__(self) -> SQLiteCursor:
        if not self.commit:
            return super().__enter__()
        # A deferred transaction that reads, then writes, fails at once with "database is
        # locked" when another process committed in between (WAL: the read snapshot is stale,
        # and SQLite does not wait). Taking the write lock first makes it wait for the other
        # process instead (busy timeout), as 'projections rebuild' beside 'serve' needs.
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


class _ImmediateConnection(SQLiteConnection):
    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        with _ImmediateTransaction(self, commit=commit) as cursor, cursor:
            yield cursor


class _DurableSQLitePool(SQLiteConnectionPool):
    def get_connection(
        self, timeout: float | None = None, *, is_writer: bool | None = None
    ) -> SQLiteConnection:
        """The library's, except that a reader never queues behind a writer.

        The library issues connections in request order through a one-place queue, and a
        thread waiting for the writer connection keeps that place while it waits. A thread
        that holds the writer and reads on another connection (the projector inside its
        transaction reading a record's history, eventsourcing 9.5.6 ``select_events``) then
        waits for the queued writer, which waits for it: both stood still until the pool's
        5 s timeout failed the queued writer. In WAL mode a reader needs no writer to be done,
        so it skips the queue (the counts the library keeps for readers stay right).
        """
        if is_writer is True or self._mutually_exclusive_read_write:
            return super().get_connection(timeout, is_writer=is_writer)
        if self._closed:
            raise ConnectionPoolClosedError
        with self._no_readers:
            self._num_readers += 1
        try:
            connection = self._get_connection(
                timeout=self.pool_timeout if timeout is None else timeout
            )
        except BaseException:
            with self._no_readers:
                self._num_readers -= 1
            raise
        connection.is_writer = is_writer
        return connection

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection.__class__ = _ImmediateConnection  # same state, writers begin IMMEDIATE
        # WAL with synchronous=FULL syncs the log at every commit: an acknowledged write
        # survives power loss, not only a process crash.
        connection.cursor().execute("PRAGMA synchronous=FULL")
        return connection


class DurableSQLiteFactory(SQLiteFactory):
    """The library's SQLite factory: ``synchronous=FULL``, and writers take the lock first."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        pool = self.datastore.pool
        if pool.is_sqlite_memory_mode:
            raise InfrastructureFactoryError("the embedded store must be a file, not :memory:")
        self.datastore.pool = _DurableSQLitePool(
            db_name=pool.db_name, lock_timeout=pool.lock_timeout, pool_size=5, max_overflow=10
        )
