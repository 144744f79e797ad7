"""The event store of client records: per-record encryption, the tenant log, snapshots.

This is storage only. Deciding what to store (idempotency, judging, grouping concurrent
requests into one commit) is the ingest use case's job (``service/application/ingest.py``);
the projector reads through the narrow ``EventFeed`` port this class also implements.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.persistence import IntegrityError, Mapper, Notification, Recording
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg.sql import SQL, Identifier

from domain.errors import RecordErasedError, RecordNotFoundError
from domain.policy.rulesets import Rulebook
from domain.record import ClientRecord, record_id
from service.storage.crypto import MasterKey, open_state, seal_state
from service.storage.keyring import RecordKeyring
from service.storage.mapper import RecordCipherMapper
from service.storage.recorders import PostgresAuditRecorder, SQLiteAuditRecorder
from service.storage.service_keys import ServiceKeys
from service.storage.sql import Database
from service.storage.tenant_log import LogWrite, Placement, TenantLogTable

__all__ = ["SNAPSHOT_INTERVAL", "AuditLog", "StoredEvent"]

SNAPSHOT_INTERVAL = 100
"""A record's state is snapshotted every this many events, so that loading it after a restart
reads at most this many events after the snapshot, however long the record is."""

_JUDGMENT_TOPIC = "client-record/judgment"
_WRITE_TURN = 0x6469_7363_6C6F_7365  # the advisory lock key of write_turn ("disclose")
_REMEMBERED_RECORD_IDS = 100_000  # stream ids kept in memory, by (tenant, record ref)


@dataclass(frozen=True)
class StoredEvent:
    """One event of a record's stream as read back, with its tenant-log position."""

    position: int
    recorded_at: datetime
    event: ClientRecord.Event


class AuditLog(Application[UUID]):
    """Client-record streams in one store, with per-record encryption and a tenant log."""

    name = "audit"
    is_snapshotting_enabled = True  # written by us after a commit, not by the library's save

    def __init__(self, env: dict[str, str], master_key: MasterKey, rulebook: Rulebook) -> None:
        # The rules stored facts are judged by; readers that judge again (the accounting, the
        # export) take them from here, so that every judgment of a store uses the same rules.
        self.rulebook = rulebook
        self._master = master_key
        self._record_ids: dict[tuple[str, str], UUID] = {}
        super().__init__(env=env)
        self.tenant_log = TenantLogTable(self.db)

    def construct_mapper(self) -> Mapper[UUID]:
        """Our mapper, which needs the keyring, which needs the factory's connection pool."""
        datastore = cast(Any, self.factory).datastore
        if not isinstance(datastore, SQLiteDatastore | PostgresDatastore):
            raise TypeError("the audit log runs on SQLite or PostgreSQL only")
        self.db = Database(datastore)
        # The keys stored wrapped under the master key; opened once the tables exist
        # (service/container.py), or else on first use.
        self.service_keys = ServiceKeys(self.db, self._master)
        self.keyring = RecordKeyring(self.db, self.service_keys)
        return RecordCipherMapper(self.keyring, lambda: self.lifecycle_key)

    # Keys and identifiers -----------------------------------------------------------------

    @property
    def lifecycle_key(self) -> bytes:
        """Seals what must stay readable after a record's key is destroyed: its certificate."""
        return self.service_keys.named("lifecycle")

    def blind(self, value: str) -> bytes:
        """A keyed digest of a normalised name: read models filter on it, never on the name."""
        normal = " ".join(value.casefold().split())
        return hmac.new(
            self.service_keys.named("blind-index"), normal.encode(), hashlib.sha256
        ).digest()

    def record_id(self, tenant_id: str, record_ref: str) -> UUID:
        """The stream id of a tenant's record (remembered: a post asks for it four times)."""
        found = self._record_ids.get((tenant_id, record_ref))
        if found is None:
            if len(self._record_ids) >= _REMEMBERED_RECORD_IDS:
                self._record_ids.clear()
            found = record_id(self.service_keys.named("record-id"), tenant_id, record_ref)
            self._record_ids[(tenant_id, record_ref)] = found
        return found

    def content_digest(self, canonical: bytes) -> bytes:
        """A keyed digest of a submission's canonical content (idempotency checks)."""
        return hmac.new(
            self.service_keys.named("content-digest"), canonical, hashlib.sha256
        ).digest()

    def key_of(self, record: UUID) -> bytes | None:
        """The record's data key, or None once it was destroyed."""
        return self.keyring.find(record)

    def sync_keys(self) -> None:
        """Learn of records destroyed by any process since the last call (one index probe)."""
        self.keyring.sync()

    def _key(self, record: UUID) -> bytes:
        key = self.keyring.find(record)
        if key is None:
            raise RecordErasedError(f"record {record} has no data key")
        return key

    def seal_judgment(
        self, record: UUID, version: int, judgment: dict[str, Any], recorded_at: datetime
    ) -> str:
        """Seal a judgment with the record's key: findings describe what was disclosed."""
        sealed = seal_state(
            self._key(record),
            json.dumps(judgment).encode(),
            record=record,
            version=version,
            topic=_JUDGMENT_TOPIC,
            recorded_at=recorded_at,
        )
        return base64.b64encode(sealed).decode()

    def open_judgment(self, record: UUID, version: int, stored: str) -> dict[str, Any] | None:
        """The judgment stored with a fact, or None if the record was shredded."""
        key = self.keyring.find(record)
        if key is None:
            return None
        plain = open_state(
            key, base64.b64decode(stored), record=record, version=version, topic=_JUDGMENT_TOPIC
        )
        loaded: dict[str, Any] = json.loads(plain)
        return loaded

    # Writing ------------------------------------------------------------------------------

    def load(self, record: UUID) -> ClientRecord | None:
        """A record as last saved (from its latest snapshot and the events after it)."""
        try:
            return cast(ClientRecord, self.repository.get(record))
        except AggregateNotFoundError:
            return None

    @property
    def known_unreachable(self) -> bool:
        """Whether the last connection attempt to the store failed (PostgreSQL; never SQLite)."""
        breaker = getattr(self.factory, "breaker", None)
        return bool(breaker is not None and breaker.down)

    def ensure_key(self, tenant_id: str, record: UUID) -> None:
        """Create the record's data key if it has none (a new record); warm the key cache."""
        self.keyring.ensure(tenant_id, record)

    def register(self, tenant_id: str, record_ref: str, recorded_at: datetime) -> ClientRecord:
        """A new record, not yet saved, whose data key exists."""
        rid = self.record_id(tenant_id, record_ref)
        self.keyring.ensure(tenant_id, rid)
        record = ClientRecord.register(id=rid, tenant_id=tenant_id, record_ref=record_ref)
        # The registration carries the same recorded_at as the facts saved with it.
        object.__setattr__(record.pending_events[0], "timestamp", recorded_at)
        return record

    def append(
        self, records: Collection[ClientRecord], write: LogWrite
    ) -> dict[tuple[UUID, int], Placement]:
        """Save the records' pending events and their tenant-log rows in one transaction.

        Raises the library's IntegrityError, storing nothing, when another writer appended to
        one of the records (or stored one of the event ids) first. Returns where each new event
        sits, by (record id, version), and snapshots the records that crossed an interval.
        """
        crossed = [
            r
            for r in records
            if r.pending_events
            and (r.pending_events[0].originator_version - 1) // SNAPSHOT_INTERVAL
            != r.version // SNAPSHOT_INTERVAL
        ]
        recordings = self._save_records(records, log=write)
        ids = [r.notification.id for r in recordings]
        # One range scan of the notification-id index: one save's ids are contiguous (drawn
        # under the events table's lock), and any other row the range held would be ignored.
        placed = self.tenant_log.page(min(ids) - 1, max(ids)) if ids else {}
        if crossed:
            self.snapshots_put(crossed)
        return {
            (r.domain_event.originator_id, r.domain_event.originator_version): placed[
                r.notification.id
            ]
            for r in recordings
        }

    def _save_records(
        self, records: Collection[ClientRecord], **kwargs: Any
    ) -> list[Recording[UUID]]:
        """``Application.save`` for records only: the library's version asks, of every object
        it is given, whether it is an event or an aggregate through ``typing`` runtime
        protocols, ~10 us per object on Python 3.11, paid under the writer's group commit."""
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for record in records:
            processing.events.extend(record.collect_events())
            processing.aggregates[record.id] = record
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def snapshots_put(self, records: Sequence[ClientRecord]) -> None:
        """Store snapshots of saved records (best effort: a missing one only costs replay)."""
        if self.snapshots is None:
            return
        for record in records:
            # Another process may have snapshotted this version first: the same state.
            with suppress(IntegrityError):
                self.snapshots.put([ClientRecord.Snapshot.take(record)])

    # Reading ------------------------------------------------------------------------------

    def has_record(self, tenant_id: str, record_ref: str) -> bool:
        """Whether the tenant has any event of this record (one index lookup)."""
        return self.tenant_log.has_record(tenant_id, self.record_id(tenant_id, record_ref))

    def read_record(self, tenant_id: str, record_ref: str) -> list[StoredEvent]:
        """Every event of a tenant's record with its position; raises if the tenant has none."""
        stored = self.read_stream(tenant_id, self.record_id(tenant_id, record_ref))
        if not stored:
            raise RecordNotFoundError(record_ref)
        return stored

    def read_stream(self, tenant_id: str, rid: UUID) -> list[StoredEvent]:
        """Every event of a tenant's record stream, by its id (empty if the tenant has none)."""
        placed = self.tenant_log.of_record(tenant_id, rid)
        if not placed:
            return []
        events = cast(list[ClientRecord.Event], list(self.events.get(rid)))
        return [
            StoredEvent(
                position=placed[e.originator_version].position,
                recorded_at=placed[e.originator_version].recorded_at,
                event=e,
            )
            for e in events
            if e.originator_version in placed
        ]

    def last_position(self, tenant_id: str) -> int:
        """The tenant's latest log position (0 when empty)."""
        return self.tenant_log.size(tenant_id)

    def shred_record(self, tenant_id: str, record_ref: str) -> bool:
        """Destroy a record's data key (crypto-shredding). True if a key was destroyed.

        Its snapshots go too: sealed with the destroyed key they could not be read, and a
        record loads from its redacted events instead.
        """
        return self.shred(self.record_id(tenant_id, record_ref))

    def shred(self, rid: UUID) -> bool:
        """``shred_record`` by stream id."""
        destroyed = self.keyring.destroy(rid)
        snapshots = getattr(self.snapshots, "recorder", None)
        table = getattr(snapshots, "events_table_name", None)
        if table is not None:
            # The library's SQLite recorder stores ids as 32 hex digits, not as our text form.
            ident: object = rid.hex if self.db.dialect == "sqlite" else rid
            with self.db.transaction() as cursor:
                cursor.execute(f"DELETE FROM {table} WHERE originator_id = %s", (ident,))  # noqa: S608
        return destroyed

    # The projector's port (service.projector.EventFeed) -----------------------------------

    def notifications(self, start: int, limit: int, stop: int | None = None) -> list[Notification]:
        """Stored events from notification id ``start`` on, in order."""
        return list(self.recorder.select_notifications(start=start, limit=limit, stop=stop))

    def last_notification_id(self) -> int:
        """The newest notification id (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def to_event(self, notification: Notification) -> ClientRecord.Event:
        """A stored event opened and mapped (redacted if its key is gone)."""
        return cast(ClientRecord.Event, self.mapper.to_domain_event(notification))

    def newer_events(self, known: Mapping[UUID, int]) -> dict[UUID, list[ClientRecord.Event]]:
        """Each record's events past the version given, in order, opened (one query on
        PostgreSQL); records with nothing newer are left out."""
        recorder = cast(PostgresAuditRecorder | SQLiteAuditRecorder, self.recorder)
        found: dict[UUID, list[ClientRecord.Event]] = {}
        for stored in recorder.select_events_after(known):
            event = cast(ClientRecord.Event, self.mapper.to_domain_event(stored))
            found.setdefault(event.originator_id, []).append(event)
        return found

    def history(self, record: UUID, up_to_version: int, after: int = 0) -> list[ClientRecord.Event]:
        """A record's events with versions in (``after``, ``up_to_version``]."""
        events = self.events.get(record, gt=after or None, lte=up_to_version)
        return cast(list[ClientRecord.Event], list(events))

    @contextmanager
    def write_turn(self, *, alone: bool) -> Iterator[None]:
        """Around one attempt of a group's write, from its catch-up read to its commit.

        PostgreSQL, where several processes write: writers share a turn; a writer that
        lost its race once (another process appended to one of its records between its read
        and its save) takes the turn alone, so the redo cannot lose again. Without it, two
        processes posting batches over the same records redid nearly every batch, often more
        than once. A session advisory lock, taken on a connection of its own and released on
        the way out (or by the server, should that connection break). SQLite: one writer at
        a time already; nothing to take.
        """
        if self.db.dialect != "postgres":
            yield
            return
        datastore = cast(Any, self.factory).datastore
        mode = "" if alone else "_shared"
        with datastore.get_connection() as conn:
            conn.execute(f"SELECT pg_advisory_lock{mode}(%s)", (_WRITE_TURN,), prepare=True)
            try:
                yield
            finally:
                with suppress(Exception):  # a broken connection releases it too
                    conn.execute(
                        f"SELECT pg_advisory_unlock{mode}(%s)", (_WRITE_TURN,), prepare=True
                    )

    @contextmanager
    def listening(self) -> Iterator[Any]:
        """PostgreSQL: a connection LISTENing on the channel every insert NOTIFYs."""
        datastore = cast(Any, self.factory).datastore
        channel = cast(Any, self.recorder).channel_name
        with datastore.get_connection() as conn:
            conn.execute(SQL("LISTEN {0}").format(Identifier(channel)))
            yield conn
