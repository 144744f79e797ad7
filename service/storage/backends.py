"""The embedded SQLite backend, made durable: every commit is fsynced before we answer 201."""

from typing import Any

from eventsourcing.persistence import InfrastructureFactoryError
from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteFactory

__all__ = ["DurableSQLiteFactory"]


class _DurableSQLitePool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        # WAL with synchronous=FULL syncs the log at every commit: an acknowledged write
        # survives power loss, not only a process crash.
        connection.cursor().execute("PRAGMA synchronous=FULL")
        return connection


class DurableSQLiteFactory(SQLiteFactory):
    """The library's SQLite factory with a connection pool that sets ``synchronous=FULL``."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        pool = self.datastore.pool
        if pool.is_sqlite_memory_mode:
            raise InfrastructureFactoryError("the embedded store must be a file, not :memory:")
        self.datastore.pool = _DurableSQLitePool(
            db_name=pool.db_name, lock_timeout=pool.lock_timeout, pool_size=5, max_overflow=10
        )
