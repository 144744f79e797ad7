"""Per-record data keys: created with a record, wrapped by a key-encryption key, destroyable.

Destroying a record's key is crypto-shredding: its events stay in the log, unreadable, and every
other record is untouched. Unwrapped keys are cached for a short time. A destruction evicts the
key in this process at once, and appends a row to ``da_key_destructions`` in the same
transaction; every other process reads that table (``sync``: one index probe, usually empty)
before each read request, each group of writes and each projection page, so once the destroying
command returns no process serves the record from a cached key again.
"""

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from service.storage.crypto import unwrap_record_key, wrap_record_key
from service.storage.service_keys import ServiceKeys, ServiceKeyUnavailableError
from service.storage.sql import Database, Dialect, SqlCursor, as_uuid

__all__ = ["DESTRUCTION_TABLES", "KEYRING_COLUMNS", "KEYRING_TABLES", "RecordKeyring"]

KEYRING_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_record_keys ("
        " record_id UUID PRIMARY KEY, tenant_id TEXT NOT NULL, wrapped_key BYTEA,"
        " created_at TIMESTAMPTZ NOT NULL, destroyed_at TIMESTAMPTZ,"
        " kek_generation INTEGER NOT NULL DEFAULT 1)",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_record_keys ("
        " record_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, wrapped_key BLOB,"
        " created_at TEXT NOT NULL, destroyed_at TEXT, kek_generation INTEGER NOT NULL DEFAULT 1)",
    ],
}

KEYRING_COLUMNS: list[tuple[str, str, str]] = [
    # Which KEK generation wraps the key (service/storage/service_keys.py); keys stored before
    # there were generations are wrapped by generation 1.
    ("da_record_keys", "kek_generation", "INTEGER NOT NULL DEFAULT 1"),
]

DESTRUCTION_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_key_destructions (seq BIGSERIAL PRIMARY KEY,"
        " record_id UUID NOT NULL, destroyed_at TIMESTAMPTZ NOT NULL)",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_key_destructions (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " record_id TEXT NOT NULL, destroyed_at TEXT NOT NULL)",
    ],
}


class RecordKeyring:
    """Finds, creates and destroys the data key of each client record."""

    def __init__(
        self,
        database: Database,
        keys: ServiceKeys,
        *,
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
    ) -> None:
        self._db = database
        self._keys = keys
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[UUID, tuple[bytes | None, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._seen: int | None = None  # the last da_key_destructions.seq this process applied
        self._listeners: list[Callable[[list[UUID]], None]] = []

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

    def on_destroyed(self, listener: Callable[[list[UUID]], None]) -> None:
        """Call ``listener`` with the ids of records another process destroyed (see ``sync``),
        so that caches of their plaintext elsewhere in this process go too."""
        self._listeners.append(listener)

    def sync(self) -> None:
        """Learn of destructions committed by any process since the last call: evict their keys.

        One probe of the table's primary key; destructions are serialised by a lock, so their
        sequence numbers become visible in order and none is skipped.
        """
        seen = self._seen
        if seen is None:
            row = self._db.read_one("SELECT MAX(seq) AS last FROM da_key_destructions", ())
            last = int(row["last"] or 0) if row else 0
            with self._lock:
                self._cache.clear()  # filled before the first sync: nothing vouches for it
            self._seen = last
            return
        rows = self._db.read(
            "SELECT seq, record_id FROM da_key_destructions WHERE seq > %s ORDER BY seq", (seen,)
        )
        if not rows:
            return
        destroyed = [UUID(str(r["record_id"])) for r in rows]
        for record in destroyed:
            # Known absent, not merely forgotten: a later lookup (say inside a projector's
            # write transaction) needs no round trip.
            self._remember(record, None)
        for listener in self._listeners:
            listener(destroyed)
        self._seen = max(seen, int(rows[-1]["seq"]))

    def find(self, record: UUID) -> bytes | None:
        """The record's data key, or None if it never existed or was destroyed."""
        hit, key = self._cached(record)
        if hit:
            return key
        key, row = None, None
        for attempt in range(2):
            row = self._db.read_one(
                "SELECT wrapped_key, kek_generation FROM da_record_keys WHERE record_id = %s",
                (record,),
            )
            if row is None or row["wrapped_key"] is None:
                break
            try:
                kek = self._keys.kek(int(row["kek_generation"]))
            except ServiceKeyUnavailableError:
                # A rotation may have re-wrapped the key and retired its generation since the
                # row was read: read it once more.
                if attempt:
                    raise
                continue
            key = unwrap_record_key(kek, bytes(row["wrapped_key"]), record)
            break
        # Remember only keys that exist: a key about to be created must not be cached as absent.
        if key is not None or row is not None:
            self._remember(record, key)
        return key

    def holds(self, record: UUID) -> bool:
        """Whether the record's key is in memory now (``find`` would answer without a query)."""
        hit, key = self._cached(record)
        return hit and key is not None

    def destroyed(self, record: UUID) -> bool:
        """Whether the record had a key and it was destroyed (cached like ``find``)."""
        if self.find(record) is not None:
            return False
        hit, _ = self._cached(record)  # only a key row that exists is cached as absent
        return hit

    def ensure(self, tenant_id: str, record: UUID) -> bytes:
        """The record's data key, created if the record has none yet (safe under concurrency)."""
        key = self.find(record)
        if key is not None:
            return key
        for _ in range(3):
            # The newest KEK generation, read now: a rotation may have added one since start.
            generation = self._keys.current_generation()
            kek = self._keys.kek(generation)  # fails, saying why, if the master key was rotated
            wrapped = wrap_record_key(kek, secrets.token_bytes(32), record)
            with self._db.transaction() as cursor:
                # Never a key wrapped by a retired generation (service/storage/rotation.py).
                if not self._keys.hold(cursor, generation):
                    continue
                cursor.execute(
                    "INSERT INTO da_record_keys"
                    " (record_id, tenant_id, wrapped_key, created_at, kek_generation)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (record_id) DO NOTHING",
                    (record, tenant_id, wrapped, datetime.now(UTC), generation),
                )
            break
        else:
            raise ServiceKeyUnavailableError(
                "key-encryption key generations were retired while a record key was being "
                "created; retry the request"
            )
        key = self.find(record)
        if key is None:
            raise KeyError(f"the key of record {record} was destroyed; it takes no new facts")
        return key

    def rewrap(self, cursor: SqlCursor, generation: int, *, after: UUID, limit: int) -> list[UUID]:
        """Re-wrap, with KEK ``generation``, up to ``limit`` live keys that an older generation
        wraps, of record ids after ``after``, in order; the ids of the records (a rotation).

        The data keys stay the same, so nothing sealed with them changes. A key destroyed
        meanwhile stays destroyed: only the exact wrapped value read is replaced.
        """
        rows = cursor.fetchall(
            "SELECT record_id, wrapped_key, kek_generation FROM da_record_keys"
            " WHERE kek_generation < %s AND wrapped_key IS NOT NULL AND record_id > %s"
            " ORDER BY record_id LIMIT %s",
            (generation, after, limit),
        )
        kek = self._keys.kek(generation)
        updates = []
        for row in rows:
            record, old = as_uuid(row["record_id"]), bytes(row["wrapped_key"])
            data_key = unwrap_record_key(self._keys.kek(int(row["kek_generation"])), old, record)
            new = wrap_record_key(kek, data_key, record)
            updates.append((new, generation, record, old))
        cursor.executemany(
            "UPDATE da_record_keys SET wrapped_key = %s, kek_generation = %s"
            " WHERE record_id = %s AND wrapped_key = %s",
            updates,
        )
        return [update[2] for update in updates]

    def destroy(self, record: UUID) -> bool:
        """Crypto-shred one record: forget its data key for good. True if a key was destroyed."""
        with self._db.transaction() as cursor:
            row = cursor.fetchone(
                "SELECT wrapped_key FROM da_record_keys WHERE record_id = %s", (record,)
            )
            if row is None or row["wrapped_key"] is None:
                destroyed = False
            else:
                now = datetime.now(UTC)
                if self._db.dialect == "postgres":
                    # One destruction at a time, so sequence numbers commit in order (sync).
                    cursor.execute("LOCK TABLE da_key_destructions IN EXCLUSIVE MODE")
                cursor.execute(
                    "UPDATE da_record_keys SET wrapped_key = NULL, destroyed_at = %s"
                    " WHERE record_id = %s",
                    (now, record),
                )
                cursor.execute(
                    "INSERT INTO da_key_destructions (record_id, destroyed_at) VALUES (%s, %s)",
                    (record, now),
                )
                destroyed = True
        self._remember(record, None)
        return destroyed
