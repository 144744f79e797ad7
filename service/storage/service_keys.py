"""The service's key hierarchy, stored in the database and wrapped under the master key.

Two kinds of key live in ``da_service_keys``, each row wrapped (AES-256-GCM, bound to the key's
name and generation) under one master key, named by its key id (``MasterKey.key_id``):

- **named keys**, one value each for the life of the store (generation 0): ``record-id``
  (pseudonymous record ids), ``content-digest`` (idempotency digests), ``blind-index`` (read-model
  filter indexes), ``audit-reads`` (sealed filters of the read log) and ``lifecycle`` (destruction
  certificates). They never change: record ids and digests are stored and compared.
- **generations of the key-encryption key** (KEK, name ``record-key-wrapping``, generation 1, 2,
  …) that wrap each record's data key in ``da_record_keys``. The newest generation is current:
  new record keys are wrapped with it.

A store that has no row yet (a new one, or one from before keys were stored) starts with the
values its keys always had, ``master.derive(name)``, so nothing stored needs migrating. Rotating
the master key (``service/storage/rotation.py``) wraps the same named keys under the new master
key and moves the record keys to a new KEK generation; once the rows under the old master key are
deleted, that key opens nothing new.
"""

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from service.storage.crypto import MasterKey, MasterKeyError, SealedStateError, unwrap_record_key
from service.storage.sql import Database, Dialect, SqlCursor, as_uuid

__all__ = [
    "KEK",
    "NAMED_KEYS",
    "SERVICE_KEY_TABLES",
    "ServiceKeyUnavailableError",
    "ServiceKeys",
    "WrappedKey",
]

SERVICE_KEY_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_service_keys (name TEXT NOT NULL,"
        " generation INTEGER NOT NULL, master_id TEXT NOT NULL, wrapped BYTEA NOT NULL,"
        " created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (name, generation, master_id))",
        # A master-key rotation in progress (service/storage/rotation.py), deleted when done.
        "CREATE TABLE IF NOT EXISTS da_master_rotations (new_master_id TEXT PRIMARY KEY,"
        " old_master_id TEXT NOT NULL, kek_generation INTEGER,"
        " started_at TIMESTAMPTZ NOT NULL)",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_service_keys (name TEXT NOT NULL,"
        " generation INTEGER NOT NULL, master_id TEXT NOT NULL, wrapped BLOB NOT NULL,"
        " created_at TEXT NOT NULL, PRIMARY KEY (name, generation, master_id))",
        "CREATE TABLE IF NOT EXISTS da_master_rotations (new_master_id TEXT PRIMARY KEY,"
        " old_master_id TEXT NOT NULL, kek_generation INTEGER, started_at TEXT NOT NULL)",
    ],
}

NAMED_KEYS = ("record-id", "content-digest", "blind-index", "audit-reads", "lifecycle")
KEK = "record-key-wrapping"
"""The name of the key-encryption key's rows; also what generation 1 was derived for."""

_ROTATE = (
    "A master-key rotation to it is unfinished: run 'disclosure-audit master-key rotate "
    "--new-key-file <this file>' again with the old key file configured, or start this process "
    "with the old key file until it is done."
)


class ServiceKeyUnavailableError(MasterKeyError):
    """A key this process needs is not wrapped under its master key: the master key was rotated
    after the process started and the process did not load the key before the old rows went."""


def label(name: str, generation: int) -> bytes:
    """What a wrapped key is bound to: its name and generation (so no row can be swapped)."""
    return f"{name}:{generation}".encode()


@dataclass(frozen=True)
class WrappedKey:
    """One row of ``da_service_keys``."""

    name: str
    generation: int
    master_id: str
    wrapped: bytes


def insert_wrapped(cursor: SqlCursor, rows: list[WrappedKey]) -> None:
    """Store wrapped keys; a row that exists already (same key, same master) is kept."""
    now = datetime.now(UTC)
    cursor.executemany(
        "INSERT INTO da_service_keys (name, generation, master_id, wrapped, created_at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name, generation, master_id) DO NOTHING",
        [(r.name, r.generation, r.master_id, r.wrapped, now) for r in rows],
    )


class ServiceKeys:
    """The service keys of one store as one master key opens them, loaded once per process.

    KEK generations are loaded again from the database when one is missing, so that a process
    keeps working while a rotation adds a generation (wrapped under the old master key too).
    """

    def __init__(self, database: Database, master: MasterKey) -> None:
        self._db = database
        self._master = master
        self._lock = threading.Lock()
        self._named: dict[str, bytes] = {}
        self._keks: dict[int, bytes] = {}

    @property
    def master(self) -> MasterKey:
        """The master key this process opens the keys with."""
        return self._master

    # Opening --------------------------------------------------------------------------------

    def _rows(self) -> list[WrappedKey]:
        rows = self._db.read(
            "SELECT name, generation, master_id, wrapped FROM da_service_keys"
            " ORDER BY name, generation",
            (),
        )
        return [
            WrappedKey(
                str(r["name"]), int(r["generation"]), str(r["master_id"]), bytes(r["wrapped"])
            )
            for r in rows
        ]

    def _unwrap(self, row: WrappedKey) -> bytes:
        try:
            return self._master.unwrap_key(row.wrapped, label(row.name, row.generation))
        except SealedStateError:
            raise MasterKeyError(
                f"the stored key {row.name!r} (generation {row.generation}) fails authentication "
                f"under master key {self._master.key_id}: the row in da_service_keys was altered. "
                "Restore it from a backup."
            ) from None

    def _legacy(self, name: str, generation: int) -> WrappedKey:
        key = self._master.derive(name)
        wrapped = self._master.wrap_key(key, label(name, generation))
        return WrappedKey(name, generation, self._master.key_id, wrapped)

    def _check_legacy_store(self) -> None:
        """Before starting the hierarchy of a store that has record keys, check that this master
        key is the one they were wrapped with: a wrong one must not become the store's."""
        row = self._db.read_one(
            "SELECT record_id, wrapped_key FROM da_record_keys WHERE wrapped_key IS NOT NULL"
            " LIMIT 1",
            (),
        )
        if row is None:
            return
        try:
            unwrap_record_key(
                self._master.derive(KEK), bytes(row["wrapped_key"]), as_uuid(row["record_id"])
            )
        except SealedStateError:
            raise MasterKeyError(
                f"the master key (id {self._master.key_id}) opens none of this store's record "
                "keys: it is not the key the store was created with. Point "
                "DISCLOSURE_AUDIT_MASTER_KEY_FILE at this store's master key file."
            ) from None

    def open(self) -> None:
        """Load every key under this master key; the first start writes the initial values.

        Raises MasterKeyError, saying what to do, when the master key opens no key of this store
        (a wrong key file, or the old one after a rotation).
        """
        if self._named:
            return
        rows = self._rows()
        if not rows:
            self._check_legacy_store()
            # Deterministic values: processes starting together write the same keys.
            initial = [self._legacy(name, 0) for name in NAMED_KEYS] + [self._legacy(KEK, 1)]
            with self._db.transaction() as cursor:
                insert_wrapped(cursor, initial)
            rows = self._rows()
        mine = {(r.name, r.generation): r for r in rows if r.master_id == self._master.key_id}
        if not mine:
            others = sorted({r.master_id for r in rows})
            raise MasterKeyError(
                f"the master key (id {self._master.key_id}) opens none of this store's keys, "
                f"which are wrapped under master key {' and '.join(others)}. Point "
                "DISCLOSURE_AUDIT_MASTER_KEY_FILE at this store's master key file (after "
                "'disclosure-audit master-key rotate', the new key file)."
            )
        named: dict[str, bytes] = {}
        for name in NAMED_KEYS:
            row = mine.get((name, 0))
            if row is not None:
                named[name] = self._unwrap(row)
            elif any(r.name == name for r in rows):
                raise MasterKeyError(
                    f"the store's key {name!r} is not wrapped under master key "
                    f"{self._master.key_id} yet. {_ROTATE}"
                )
            else:
                # A key this version introduced, on a store an earlier version started.
                with self._db.transaction() as cursor:
                    insert_wrapped(cursor, [self._legacy(name, 0)])
                named[name] = self._master.derive(name)
        keks = {g: self._unwrap(r) for (n, g), r in mine.items() if n == KEK}
        if not keks:
            raise MasterKeyError(
                f"no key-encryption key is wrapped under master key {self._master.key_id} "
                f"yet. {_ROTATE}"
            )
        with self._lock:
            self._keks.update(keks)
            self._named = named

    # Using ----------------------------------------------------------------------------------

    def named(self, name: str) -> bytes:
        """One of NAMED_KEYS."""
        if not self._named:
            self.open()
        return self._named[name]

    def current_generation(self) -> int:
        """The newest KEK generation in the database (read each time: creation is rare)."""
        row = self._db.read_one(
            "SELECT MAX(generation) AS g FROM da_service_keys WHERE name = %s", (KEK,)
        )
        if row is None or row["g"] is None:
            raise MasterKeyError("the store has no key-encryption key; restart the service")
        return int(row["g"])

    def kek(self, generation: int) -> bytes:
        """The KEK of one generation, loaded under this process's master key if not held yet."""
        with self._lock:
            held = self._keks.get(generation)
        if held is not None:
            return held
        row = self._db.read_one(
            "SELECT wrapped FROM da_service_keys"
            " WHERE name = %s AND generation = %s AND master_id = %s",
            (KEK, generation, self._master.key_id),
        )
        if row is None:
            raise ServiceKeyUnavailableError(
                f"key-encryption key generation {generation} is not wrapped under this "
                f"process's master key (id {self._master.key_id}): the master key was rotated. "
                "Restart with the new master key file (DISCLOSURE_AUDIT_MASTER_KEY_FILE)."
            )
        key = self._unwrap(WrappedKey(KEK, generation, self._master.key_id, bytes(row["wrapped"])))
        with self._lock:
            self._keks[generation] = key
        return key

    def add_kek(self, generation: int, key: bytes) -> None:
        """Hold a KEK this process created (a rotation) without reading it back."""
        with self._lock:
            self._keks[generation] = key

    def held_keks(self) -> dict[int, bytes]:
        """Every KEK generation this process holds (a rotation wraps them under the new key)."""
        with self._lock:
            return dict(self._keks)

    def hold(self, cursor: SqlCursor, generation: int) -> bool:
        """Whether a KEK generation still exists, keeping it until the cursor's transaction ends.

        A record key wrapped with a generation is inserted in the transaction that calls this:
        on PostgreSQL the rows stay share-locked, so a rotation's retirement of the generation
        waits for the insert and then re-wraps that key too; on SQLite writes are serialised.
        """
        query = "SELECT master_id FROM da_service_keys WHERE name = %s AND generation = %s"
        if cursor.dialect == "postgres":
            query += " FOR SHARE"
        rows = cursor.fetchall(query, (KEK, generation))
        return bool(rows)

    def masters(self) -> set[str]:
        """The key ids of every master key that wraps a row of this store."""
        rows = self._db.read("SELECT DISTINCT master_id FROM da_service_keys", ())
        return {str(r["master_id"]) for r in rows}
