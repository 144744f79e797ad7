"""The tenant log as a Merkle tree: leaf hashes, signed checkpoints, proofs, sealed entries.

Leaf ``i`` of a tenant's tree is the event at tenant-log position ``i + 1``. A checkpoint is
signed once per tree size and stored; asked again for the same size, the log returns the stored
one and refuses (loudly) if the tree would now give a different root (C2SP tlog-checkpoint: a
log MUST NOT sign two inconsistent checkpoints). Every checkpoint is signed by the log's own
key, named by its origin (``service/integrity/signing.py``).
"""

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain import merkle
from service.integrity.signing import LogKey, LogKeyring, log_origin, sign_note, signatures
from service.storage.crypto import SealedStateError, open_state
from service.storage.keyring import RecordKeyring
from service.storage.sql import Database, Dialect, as_uuid
from service.storage.tenant_log import LEAF_TOPIC, TenantLogTable

__all__ = ["CHECKPOINT_TABLES", "Checkpoint", "LogEntry", "SplitViewError", "TenantLog"]

CHECKPOINT_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_checkpoints (tenant_id TEXT NOT NULL,"
        " tree_size BIGINT NOT NULL, root_hash BYTEA NOT NULL, note TEXT NOT NULL,"
        " key_id TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL,"
        " PRIMARY KEY (tenant_id, tree_size))",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_checkpoints (tenant_id TEXT NOT NULL,"
        " tree_size INTEGER NOT NULL, root_hash BLOB NOT NULL, note TEXT NOT NULL,"
        " key_id TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (tenant_id, tree_size))",
    ],
}


class SplitViewError(Exception):
    """Raised when the tree no longer matches a checkpoint the log already signed."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the tree's size and root."""

    origin: str
    size: int
    root: bytes
    note: str


@dataclass(frozen=True)
class LogEntry:
    """One leaf of the log, opened if its record's key still exists."""

    position: int
    record_id: UUID
    version: int
    leaf_hash: bytes
    data: bytes | None
    receipt: str | None

    @property
    def content(self) -> dict[str, Any] | None:
        """The leaf's JSON content, or None for an erased (crypto-shredded) leaf."""
        return None if self.data is None else dict(json.loads(self.data))


class TenantLog:
    """Reads the tenant log as a tree and signs checkpoints of it."""

    def __init__(
        self,
        db: Database,
        keyring: RecordKeyring,
        log_keys: LogKeyring,
        origin_prefix: str,
        lifecycle_key: Callable[[], bytes],
    ) -> None:
        self._db = db
        self._table = TenantLogTable(db)
        self._keyring = keyring
        self._lifecycle_key = lifecycle_key
        self.log_keys = log_keys
        self._origin_prefix = origin_prefix

    def origin(self, tenant_id: str) -> str:
        """The checkpoint origin line of a tenant's log."""
        return log_origin(self._origin_prefix, tenant_id)

    def signing_key(self, tenant_id: str, *, create: bool = False) -> LogKey:
        """The key that signs the tenant's log now (its newest generation)."""
        return self.log_keys.current(self.origin(tenant_id), create=create)

    def vkeys(self, tenant_id: str) -> str:
        """The verifier keys of the tenant's log, every generation, one per line."""
        return self.log_keys.vkeys(self.origin(tenant_id))

    def size(self, tenant_id: str) -> int:
        """How many leaves the tenant's tree has."""
        return self._table.size(tenant_id)

    def leaf_hashes(self, tenant_id: str, size: int) -> list[bytes]:
        """The first ``size`` leaf hashes, in order."""
        return [leaf for _, leaf in self._table.leaf_hashes(tenant_id, 0, size, max(size, 1))]

    def iter_leaf_hashes(self, tenant_id: str, size: int) -> Iterator[bytes]:
        """The first ``size`` leaf hashes, in order, read in pages (flat memory)."""
        last = 0
        while last < size:
            page = self._table.leaf_hashes(tenant_id, last, size, 10000)
            if not page:
                return
            last = page[-1][0]
            yield from (leaf for _, leaf in page)

    def checkpoint(self, tenant_id: str, *, create_key: bool = True) -> Checkpoint:
        """A signed checkpoint of the tenant's tree at its current size."""
        size = self.size(tenant_id)
        builder = merkle.TreeBuilder()
        builder.extend(self.iter_leaf_hashes(tenant_id, size))
        if builder.size != size:
            raise SplitViewError(f"the log of {tenant_id} has gaps below position {size}")
        root = builder.root()
        with self._db.transaction(commit=False) as cursor:
            stored = cursor.fetchone(
                "SELECT root_hash, note FROM da_checkpoints"
                " WHERE tenant_id = %s AND tree_size = %s",
                (tenant_id, size),
            )
        if stored is None:
            key = self.signing_key(tenant_id, create=create_key)
            text = f"{self.origin(tenant_id)}\n{size}\n{base64.b64encode(root).decode()}\n"
            note = sign_note(text, key)
            with self._db.transaction() as cursor:
                cursor.execute(
                    "INSERT INTO da_checkpoints (tenant_id, tree_size, root_hash, note, key_id,"
                    " created_at) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (tenant_id, tree_size) DO NOTHING",
                    (tenant_id, size, root, note, key.id_hex, datetime.now(UTC)),
                )
                stored = cursor.fetchone(
                    "SELECT root_hash, note FROM da_checkpoints"
                    " WHERE tenant_id = %s AND tree_size = %s",
                    (tenant_id, size),
                )
        if stored is None or bytes(stored["root_hash"]) != root:
            raise SplitViewError(
                f"the log of {tenant_id} at size {size} no longer has the root it signed"
            )
        note = self._named(tenant_id, size, str(stored["note"]), create_key=create_key)
        return Checkpoint(self.origin(tenant_id), size, root, note)

    def stored_note(self, tenant_id: str, note: str) -> str | None:
        """The log's own signed note of a checkpoint text (signed by the log's key, as
        :meth:`checkpoint` answers it), or None if the log never signed that text."""
        try:
            text, _ = signatures(note)
            size = int(text.split("\n")[1])
        except (ValueError, IndexError):
            return None
        with self._db.transaction(commit=False) as cursor:
            row = cursor.fetchone(
                "SELECT note FROM da_checkpoints WHERE tenant_id = %s AND tree_size = %s",
                (tenant_id, size),
            )
        if row is None or signatures(str(row["note"]))[0] != text:
            return None
        return self._named(tenant_id, size, str(row["note"]), create_key=False)

    def _named(self, tenant_id: str, size: int, note: str, *, create_key: bool) -> str:
        """The stored note, with a signature by the log's own key added if it has none.

        Checkpoints stored before keys were per log are signed only by the legacy key, named
        by the bare origin prefix, which a witness looking the log's key up by its origin does
        not find. They are not re-signed as new checkpoints: the log adds a second signature
        line, by the log's own key of the same generation, over the *same* text, and stores
        the note so. That is no split view (tlog-checkpoint forbids two *different* checkpoints
        of one size; signed-note lets a note carry several signatures, and verifiers ignore
        the ones they do not know), the legacy signature stays valid for whoever pinned the
        legacy key, and every answer for that size is the same note from then on.
        """
        origin = self.origin(tenant_id)
        text, signed = signatures(note)
        if any(name == origin for name, _ in signed):
            return note
        legacy = {key.id_hex: index for index, key in enumerate(self.log_keys.legacy_keys())}
        generation = next((legacy[i.hex()] for _, i in signed if i.hex() in legacy), None)
        key = (
            self.log_keys.keys(origin)[generation]
            if generation is not None
            else self.signing_key(tenant_id, create=create_key)
        )
        named = note + key.signature_line(text.encode())
        with self._db.transaction() as cursor:
            cursor.execute(
                "UPDATE da_checkpoints SET note = %s WHERE tenant_id = %s AND tree_size = %s"
                " AND note = %s",
                (named, tenant_id, size, note),
            )
            row = cursor.fetchone(
                "SELECT note FROM da_checkpoints WHERE tenant_id = %s AND tree_size = %s",
                (tenant_id, size),
            )
        return named if row is None else str(row["note"])

    def latest_checkpoint(self, tenant_id: str) -> Checkpoint | None:
        """The largest checkpoint signed so far, as stored (no recomputation: a page may show it
        at any size of log; :meth:`checkpoint` is what checks the tree against it)."""
        with self._db.transaction(commit=False) as cursor:
            row = cursor.fetchone(
                "SELECT tree_size, root_hash, note FROM da_checkpoints WHERE tenant_id = %s"
                " ORDER BY tree_size DESC LIMIT 1",
                (tenant_id,),
            )
        if row is None:
            return None
        size, root = int(row["tree_size"]), bytes(row["root_hash"])
        try:
            note = self._named(tenant_id, size, str(row["note"]), create_key=False)
        except FileNotFoundError:  # no key to name a legacy note with: shown as stored
            note = str(row["note"])
        return Checkpoint(self.origin(tenant_id), size, root, note)

    def position_of(self, tenant_id: str, event_id: UUID) -> int | None:
        """The position of a client event in the tenant log."""
        return self._table.position_of_event(tenant_id, event_id)

    def entries(
        self, tenant_id: str, size: int, records: set[UUID] | None = None
    ) -> Iterator[LogEntry]:
        """Leaves 1..size in order, in pages, opened with their record keys where they exist."""
        last = 0
        while last < size:
            rows = self._table.leaves(tenant_id, last, size, 1000)
            if not rows:
                return
            for row in rows:
                last = int(row["position"])
                record = as_uuid(row["record_id"])
                if records is not None and record not in records:
                    continue
                yield LogEntry(
                    position=last,
                    record_id=record,
                    version=int(row["originator_version"]),
                    leaf_hash=bytes(row["leaf_hash"]),
                    data=self._open(record, int(row["originator_version"]), row["leaf_entry"]),
                    receipt=row["receipt"],
                )

    def _open(self, record: UUID, version: int, sealed: bytes) -> bytes | None:
        """A leaf's bytes; None for an erased one (its record's key was destroyed).

        A record's certificate of destruction is sealed with the lifecycle key (it must outlive
        the record's key), every other leaf with the record's key; a leaf neither opens was
        altered or moved, and fails loudly.
        """
        key = self._keyring.find(record)
        keys = [key] if key is not None else []
        keys.append(self._lifecycle_key())
        for candidate in keys:
            try:
                return open_state(
                    candidate, bytes(sealed), record=record, version=version, topic=LEAF_TOPIC
                )
            except SealedStateError:
                if key is None:
                    return None  # crypto-shredded: only the leaf hash remains
                continue
        raise SealedStateError(f"leaf {version} of record {record} fails authentication")

    def recorded_at(self, tenant_id: str, position: int) -> datetime | None:
        """When the event at a position was recorded."""
        placement = self._table.at(tenant_id, position)
        return placement.recorded_at if placement else None
