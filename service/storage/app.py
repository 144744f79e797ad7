"""The event-sourced application: records facts idempotently and reads a record's stream back.

Concurrency model: a write loads the record (from the aggregate cache, fast-forwarded), appends,
and saves with an optimistic version check. When another writer won the race for the same record
(or the same event id), the whole attempt is redone from the idempotency check, so concurrent
clients all succeed and each fact is stored once.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import random
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Mapper
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from domain import facts
from domain.errors import EventIdReusedError, RecordErasedError, RecordNotFoundError
from domain.policy.engine import Judgment, judge_on_record
from domain.policy.rulesets import Rulebook
from domain.record import ClientRecord, check_not_in_future, record_id
from service.storage.crypto import MasterKey, open_state, seal_state
from service.storage.keyring import KEYRING_TABLES, RecordKeyring
from service.storage.mapper import RecordCipherMapper
from service.storage.sql import Database, as_datetime, as_uuid
from service.storage.tenant_log import (
    TENANT_LOG_TABLES,
    FactEntry,
    LeafEntry,
    LogWrite,
    tenant_size,
)

__all__ = ["AuditLog", "Receipt", "StoredEvent", "Submission", "WriteContentionError"]


_JUDGMENT_TOPIC = "client-record/judgment"


class WriteContentionError(Exception):
    """Raised when a write lost the race for its record more often than allowed."""


@dataclass(frozen=True)
class Submission:
    """One fact for one record, as posted by a clinical system."""

    record_ref: str
    fact: facts.FactBase


@dataclass(frozen=True)
class Receipt:
    """Proof that a fact is stored, with the policy engine's judgment of it at ingest."""

    event_id: UUID
    record_ref: str
    position: int
    recorded_at: datetime
    findings: tuple[dict[str, Any], ...]
    accountable: bool | None
    excess_categories: tuple[str, ...]
    ruleset: str | None


@dataclass(frozen=True)
class StoredEvent:
    """One event of a record's stream as read back, with its tenant-log position."""

    position: int
    recorded_at: datetime
    event: ClientRecord.Event


def _judgment_dict(judgment: Judgment | None) -> dict[str, Any]:
    if judgment is None:  # the judgment was sealed with a record key since destroyed
        return {"findings": [], "accountable": None, "excess_categories": [], "ruleset": None}
    return {
        "findings": [f.as_dict() for f in judgment.findings],
        "accountable": judgment.accountable,
        "excess_categories": [c.value for c in judgment.excess_categories],
        "ruleset": judgment.ruleset,
    }


def leaf_content(event: Any) -> dict[str, Any]:
    """What a Merkle leaf commits to for one stored event, with a random salt.

    The salt keeps a bare leaf hash from being matched against guessed contents; it is sealed
    with the rest of the leaf, so after crypto-shredding only the hash remains.
    """
    content: dict[str, Any] = {
        "type": type(event).TOPIC.rsplit("/", 1)[-1],
        "record_ref": event.record_ref,
        "recorded_at": event.timestamp.isoformat(),
        "salt": base64.b64encode(secrets.token_bytes(16)).decode(),
    }
    if isinstance(event, ClientRecord.FactRecorded):
        content["type"] = type(event.fact).__name__
        content["event"] = event.fact.model_dump(mode="json", exclude_none=True)
    else:
        content["type"] = "RecordRegistered"
    return content


def _receipt(
    submission: Submission, position: int, recorded_at: datetime, judgment: dict[str, Any]
) -> Receipt:
    return Receipt(
        event_id=submission.fact.event_id,
        record_ref=submission.record_ref,
        position=position,
        recorded_at=recorded_at,
        findings=tuple(judgment["findings"]),
        accountable=judgment["accountable"],
        excess_categories=tuple(judgment["excess_categories"]),
        ruleset=judgment["ruleset"],
    )


class AuditLog(Application[UUID]):
    """Client-record streams in one store, with per-record encryption and a tenant log."""

    name = "audit"

    def __init__(
        self, env: dict[str, str], master_key: MasterKey, rulebook: Rulebook, *, write_attempts: int
    ) -> None:
        self.rulebook = rulebook
        self._master = master_key
        self._pseudonym_key = master_key.derive("record-id")
        self._digest_key = master_key.derive("content-digest")
        self._blind_key = master_key.derive("blind-index")
        self.saved = threading.Event()  # set after every write: wakes an in-process projector
        self._write_attempts = write_attempts
        super().__init__(env=env)
        self.db.create_tables(TENANT_LOG_TABLES)

    def construct_mapper(self) -> Mapper[UUID]:
        """Our mapper, which needs the keyring, which needs the factory's connection pool."""
        datastore = cast(Any, self.factory).datastore
        if not isinstance(datastore, SQLiteDatastore | PostgresDatastore):
            raise TypeError("the audit log runs on SQLite or PostgreSQL only")
        self.db = Database(datastore)
        self.db.create_tables(KEYRING_TABLES)
        self.keyring = RecordKeyring(self.db, self._master)
        return RecordCipherMapper(self.keyring)

    def blind(self, value: str) -> bytes:
        """A keyed digest of a normalised name: read models filter on it, never on the name."""
        normal = " ".join(value.casefold().split())
        return hmac.new(self._blind_key, normal.encode(), hashlib.sha256).digest()

    def record_id(self, tenant_id: str, record_ref: str) -> UUID:
        """The stream id of a tenant's record."""
        return record_id(self._pseudonym_key, tenant_id, record_ref)

    def _digest(self, submission: Submission) -> bytes:
        canonical = json.dumps(
            {"record_ref": submission.record_ref, "fact": submission.fact.model_dump(mode="json")},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hmac.new(self._digest_key, canonical.encode(), hashlib.sha256).digest()

    def record_facts(
        self, tenant_id: str, submissions: Sequence[Submission]
    ) -> tuple[list[Receipt], bool]:
        """Store the submissions atomically; return their receipts and whether anything was new.

        Facts already stored with the same content keep their original receipts; an event id
        reused with different content stores nothing and raises EventIdReusedError.
        """
        now = datetime.now(UTC)
        for index, submission in enumerate(submissions):
            check_not_in_future(submission.fact, now, index if len(submissions) > 1 else None)
        unique: dict[UUID, tuple[Submission, bytes]] = {}
        for submission in submissions:
            digest = self._digest(submission)
            seen = unique.get(submission.fact.event_id)
            if seen is not None and seen[1] != digest:
                raise EventIdReusedError(str(submission.fact.event_id))
            unique[submission.fact.event_id] = (submission, digest)

        for attempt in range(self._write_attempts):
            stored = self._stored_receipts(tenant_id, unique)
            new = {eid: item for eid, item in unique.items() if eid not in stored}
            if not new:
                return [stored[s.fact.event_id] for s in submissions], False
            try:
                written = self._write(tenant_id, list(new.values()))
            except IntegrityError:
                # Another writer appended to one of these records, or stored one of these event
                # ids, first. Back off a little, with jitter, and redo the attempt.
                time.sleep(min(0.05, 0.001 * (attempt + 1)) * random.random())  # noqa: S311
                continue
            stored.update(written)
            return [stored[s.fact.event_id] for s in submissions], True
        raise WriteContentionError(f"gave up after {self._write_attempts} attempts")

    def _stored_receipts(
        self, tenant_id: str, unique: dict[UUID, tuple[Submission, bytes]]
    ) -> dict[UUID, Receipt]:
        ids = list(unique)
        found: dict[UUID, Receipt] = {}
        rows = []
        with self.db.transaction(commit=False) as cursor:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join(["%s"] * len(chunk))
                # Only placeholders are interpolated; values are bound.
                where = f"WHERE tenant_id = %s AND event_id IN ({marks})"
                query = f"SELECT * FROM da_tenant_log {where}"  # noqa: S608
                rows += cursor.fetchall(query, (tenant_id, *chunk))
        for row in rows:
            event_id = as_uuid(row["event_id"])
            submission, digest = unique[event_id]
            if bytes(row["content_digest"]) != digest:
                raise EventIdReusedError(str(event_id))
            judgment = self.open_judgment(
                as_uuid(row["record_id"]), int(row["originator_version"]), row["receipt"]
            )
            found[event_id] = _receipt(
                submission, int(row["position"]), as_datetime(row["recorded_at"]), judgment
            )
        return found

    def _key_of(self, record: UUID) -> bytes:
        key = self.keyring.find(record)
        if key is None:
            raise RecordErasedError(f"record {record} has no data key")
        return key

    def _seal_judgment(
        self, record: UUID, version: int, judgment: dict[str, Any], recorded_at: datetime
    ) -> str:
        # Findings describe what was disclosed: personal data, sealed with the record's key.
        sealed = seal_state(
            self._key_of(record),
            json.dumps(judgment).encode(),
            record=record,
            version=version,
            topic=_JUDGMENT_TOPIC,
            recorded_at=recorded_at,
        )
        return base64.b64encode(sealed).decode()

    def open_judgment(self, record: UUID, version: int, stored: str) -> dict[str, Any]:
        """The judgment stored with a fact, or an empty one if the record was shredded."""
        key = self.keyring.find(record)
        if key is None:
            return _judgment_dict(None)
        plain = open_state(
            key, base64.b64decode(stored), record=record, version=version, topic=_JUDGMENT_TOPIC
        )
        loaded: dict[str, Any] = json.loads(plain)
        return loaded

    def _write(self, tenant_id: str, items: list[tuple[Submission, bytes]]) -> dict[UUID, Receipt]:
        recorded_at = datetime.now(UTC)
        records: dict[UUID, ClientRecord] = {}
        entries: dict[tuple[UUID, int], FactEntry] = {}
        placed: list[tuple[Submission, tuple[UUID, int], dict[str, Any]]] = []
        for submission, digest in items:
            rid = self.record_id(tenant_id, submission.record_ref)
            record = records.get(rid)
            if record is None:
                record = self._load_or_register(tenant_id, submission.record_ref, rid, recorded_at)
                records[rid] = record
            judgment = _judgment_dict(self.judge(record, submission.fact))
            record.record(submission.fact, recorded_at)
            key = (rid, record.version)
            sealed = self._seal_judgment(rid, record.version, judgment, recorded_at)
            entries[key] = FactEntry(submission.fact.event_id, digest, sealed)
            placed.append((submission, key, judgment))
        leaves = {
            (rid, event.originator_version): LeafEntry(leaf_content(event), self._key_of(rid))
            for rid, record in records.items()
            for event in record.pending_events
        }
        log = LogWrite(tenant_id=tenant_id, recorded_at=recorded_at, facts=entries, leaves=leaves)
        self.save(*records.values(), log=log)
        self.saved.set()
        return {
            submission.fact.event_id: _receipt(
                submission, log.positions[key], recorded_at, judgment
            )
            for submission, key, judgment in placed
        }

    def judge(self, record: ClientRecord, fact: facts.FactBase) -> Judgment:
        """The policy engine's verdict on a fact, against the record's history so far."""
        return judge_on_record(self.rulebook, record.legal_facts, fact)

    def _load_or_register(
        self, tenant_id: str, record_ref: str, rid: UUID, recorded_at: datetime
    ) -> ClientRecord:
        try:
            return cast(ClientRecord, self.repository.get(rid))
        except AggregateNotFoundError:
            self.keyring.ensure(tenant_id, rid)
            record = ClientRecord.register(id=rid, tenant_id=tenant_id, record_ref=record_ref)
            # The registration carries the same recorded_at as the facts saved with it.
            object.__setattr__(record.pending_events[0], "timestamp", recorded_at)
            return record

    def has_record(self, tenant_id: str, record_ref: str) -> bool:
        """Whether the tenant has any event of this record (one index lookup)."""
        with self.db.transaction(commit=False) as cursor:
            row = cursor.fetchone(
                "SELECT 1 AS found FROM da_tenant_log WHERE tenant_id = %s AND record_id = %s"
                " LIMIT 1",
                (tenant_id, self.record_id(tenant_id, record_ref)),
            )
        return row is not None

    def read_record(self, tenant_id: str, record_ref: str) -> list[StoredEvent]:
        """Every event of a tenant's record with its position; raises if the tenant has none."""
        rid = self.record_id(tenant_id, record_ref)
        with self.db.transaction(commit=False) as cursor:
            rows = cursor.fetchall(
                "SELECT originator_version, position, recorded_at FROM da_tenant_log"
                " WHERE tenant_id = %s AND record_id = %s ORDER BY originator_version",
                (tenant_id, rid),
            )
        if not rows:
            raise RecordNotFoundError(record_ref)
        placed = {int(r["originator_version"]): r for r in rows}
        events = cast(list[ClientRecord.Event], list(self.events.get(rid)))
        return [
            StoredEvent(
                position=int(placed[e.originator_version]["position"]),
                recorded_at=as_datetime(placed[e.originator_version]["recorded_at"]),
                event=e,
            )
            for e in events
            if e.originator_version in placed
        ]

    def shred_record(self, tenant_id: str, record_ref: str) -> bool:
        """Destroy a record's data key (crypto-shredding). True if a key was destroyed."""
        rid = self.record_id(tenant_id, record_ref)
        destroyed = self.keyring.destroy(rid)
        if self.repository.cache is not None:
            with contextlib.suppress(KeyError):
                self.repository.cache.get(rid, evict=True)
        return destroyed

    def last_position(self, tenant_id: str) -> int:
        """The tenant's latest log position (0 when empty)."""
        return tenant_size(self.db, tenant_id)
