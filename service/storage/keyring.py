"""Per-record data keys: created with a record, wrapped by the master key, destroyable.

Destroying a record's key is crypto-shredding: its events stay in the log, unreadable, and every
other record is untouched. Unwrapped keys are cached for a short time; a destruction evicts the
key in this process at once and in other processes when their cache entry expires.
"""

import secrets
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from uuid import UUID

from service.storage.crypto import MasterKey
from service.storage.sql import Database, Dialect

__all__ = ["KEYRING_TABLES", "RecordKeyring"]

KEYRING_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_record_keys ("
        " record_id UUID PRIMARY KEY, tenant_id TEXT NOT NULL, wrapped_key BYTEA,"
        " created_at TIMESTAMPTZ NOT NULL, destroyed_at TIMESTAMPTZ)",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_record_keys ("
        " record_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, wrapped_key BLOB,"
        " created_at TEXT NOT NULL, destroyed_at TEXT)",
    ],
}


class RecordKeyring:
    """Finds, creates and destroys the data key of each client record."""

    def __init__(
        self,
        database: Database,
        master: MasterKey,
        *,
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
    ) -> None:
        self._db = database
        self._master = master
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[UUID, tuple[bytes | None, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _remember(self, record: UUID, key: bytes | None) -> None:
        with self._lock:
            self._cache[record] = (key, time.monotonic() + self._cache_seconds)
            self._cache.move_to_end(record)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _cached(self, record: UUID) -> tuple[bool, bytes | None]:
        with self._lock:
            entry = self._cache.get(record)
            if entry is None or entry[1] < time.monotonic():
                return False, None
            return True, entry[0]

    def find(self, record: UUID) -> bytes | None:
        """The record's data key, or None if it never existed or was destroyed."""
        hit, key = self._cached(record)
        if hit:
            return key
        row = self._db.read_one(
            "SELECT wrapped_key FROM da_record_keys WHERE record_id = %s", (record,)
        )
        key = None
        if row is not None and row["wrapped_key"] is not None:
            key = self._master.unwrap(bytes(row["wrapped_key"]), record)
        # Remember only keys that exist: a key about to be created must not be cached as absent.
        if key is not None or row is not None:
            self._remember(record, key)
        return key

    def ensure(self, tenant_id: str, record: UUID) -> bytes:
        """The record's data key, created if the record has none yet (safe under concurrency)."""
        key = self.find(record)
        if key is not None:
            return key
        wrapped = self._master.wrap(secrets.token_bytes(32), record)
        with self._db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO da_record_keys (record_id, tenant_id, wrapped_key, created_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (record_id) DO NOTHING",
                (record, tenant_id, wrapped, datetime.now(UTC)),
            )
        key = self.find(record)
        if key is None:
            raise KeyError(f"the key of record {record} was destroyed; it takes no new facts")
        return key

    def destroy(self, record: UUID) -> bool:
        """Crypto-shred one record: forget its data key for good. True if a key was destroyed."""
        with self._db.transaction() as cursor:
            row = cursor.fetchone(
                "SELECT wrapped_key FROM da_record_keys WHERE record_id = %s", (record,)
            )
            if row is None or row["wrapped_key"] is None:
                destroyed = False
            else:
                cursor.execute(
                    "UPDATE da_record_keys SET wrapped_key = NULL, destroyed_at = %s"
                    " WHERE record_id = %s",
                    (datetime.now(UTC), record),
                )
                destroyed = True
        self._remember(record, None)
        return destroyed
