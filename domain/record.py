"""The client-record aggregate: one event stream per (tenant, record_ref).

Every fact a clinical system reports is appended as an explicit event class named after its API
type. The aggregate keeps only what writes need; judgments are derived elsewhere from its history.
"""

import hashlib
import hmac
from datetime import date, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import BaseAggregate, CanInitAggregate, CanMutateAggregate
from eventsourcing.utils import register_topic
from pydantic import BaseModel, ConfigDict, create_model

from domain import facts
from domain.errors import FactInFutureError, RecordErasedError
from domain.policy.state import LEGAL_FACTS

__all__ = [
    "CLOCK_SKEW",
    "EVENT_CLASS_BY_TYPE",
    "ClientRecord",
    "DocumentedDisclosure",
    "check_not_in_future",
    "record_id",
]

CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future an ``occurred_at`` may lie before we call the clock wrong."""


def record_id(pseudonym_key: bytes, tenant_id: str, record_ref: str) -> UUID:
    """The stream id of a client record: a keyed hash, so the id reveals nothing of the ref.

    A plain uuid5 of a medical-record number could be reversed by hashing every likely number;
    an HMAC with a secret key cannot.
    """
    digest = hmac.new(
        pseudonym_key, f"{tenant_id}\x00{record_ref}".encode(), hashlib.sha256
    ).digest()
    # RFC 9562 UUIDv8 (custom): set the version and variant bits by hand; Python 3.11's UUID()
    # accepts only versions 1-5.
    value = int.from_bytes(digest[:16], "big")
    value &= ~(0xF000 << 64)
    value |= 0x8000 << 64
    value &= ~(0xC000 << 48)
    value |= 0x8000 << 48
    return UUID(int=value)


def check_not_in_future(fact: facts.FactBase, now: datetime, index: int | None = None) -> None:
    """Refuse a fact dated in the future beyond the allowed clock skew."""
    if fact.occurred_at > now + CLOCK_SKEW:
        raise FactInFutureError(index, CLOCK_SKEW.total_seconds())


class ClientRecord(BaseAggregate[UUID]):
    """Everything that happened to one client record, in the order we recorded it."""

    TOPIC: ClassVar[str] = "client-record"

    class Event(BaseModel, CanMutateAggregate[UUID]):
        """Base of every event of a client record; ``timestamp`` is when we recorded it."""

        model_config = ConfigDict(frozen=True, extra="forbid")
        TOPIC: ClassVar[str] = "client-record/Event"

        originator_id: UUID
        originator_version: int
        timestamp: datetime

    class Registered(Event, CanInitAggregate[UUID]):
        """The service heard of the record for the first time."""

        TOPIC: ClassVar[str] = "client-record/Registered"
        originator_topic: str
        tenant_id: str
        record_ref: str

    class FactRecorded(Event):
        """A fact reported by a clinical system was recorded."""

        TOPIC: ClassVar[str] = "client-record/FactRecorded"
        tenant_id: str
        record_ref: str
        fact: facts.FactBase

        def apply(self, aggregate: Any) -> None:
            aggregate.fact_count += 1
            if isinstance(self.fact, LEGAL_FACTS):
                aggregate.legal_facts = (*aggregate.legal_facts, self.fact)
            if isinstance(self.fact, facts.RecordOpened):
                aggregate.jurisdiction = self.fact.jurisdiction

    class Redacted(Event):
        """Stand-in for an event whose record key was destroyed: its kind and time, nothing else."""

        TOPIC: ClassVar[str] = "client-record/Redacted"
        original_topic: str

        def apply(self, aggregate: Any) -> None:
            aggregate.erased = True

    class RedactedRegistration(Event, CanInitAggregate[UUID]):
        """Stand-in for the registration of a record whose key was destroyed."""

        TOPIC: ClassVar[str] = "client-record/RedactedRegistration"
        originator_topic: str
        original_topic: str

        def apply(self, aggregate: Any) -> None:
            aggregate.erased = True

    class Destroyed(Event):
        """The record was destroyed at the end of its retention: its certificate of destruction.

        It names no client (the stream id is a keyed pseudonym; no record_ref), so it is sealed
        with the service's lifecycle key, not the record's, and stays readable after the
        record's key is destroyed: who destroyed it, under which rule, and what the 6-year
        documentation duty (45 CFR 164.530(j)) still needs of its disclosures.
        """

        TOPIC: ClassVar[str] = "client-record/RecordDestroyed"
        tenant_id: str
        destroyed_by: str
        ruleset: str
        rule: str
        citation: str
        last_service: date | None
        due_on: date
        method: str
        method_citation: str
        documentation: tuple["DocumentedDisclosure", ...]

        def apply(self, aggregate: Any) -> None:
            aggregate.erased = True

    class Snapshot(Event):
        """The record's state at a version, so that loading it after a restart reads this and
        the few events after it, not the whole stream (a record may hold 100,000 accesses)."""

        TOPIC: ClassVar[str] = "client-record/Snapshot"
        tenant_id: str | None
        record_ref: str | None
        jurisdiction: str | None
        fact_count: int
        erased: bool
        legal_facts: tuple[dict[str, Any], ...]

        @classmethod
        def take(cls, record: "ClientRecord") -> "ClientRecord.Snapshot":
            """The state of a record as it was last saved (its pending events excluded)."""
            if record.pending_events:
                raise ValueError("snapshot a record only after its events are saved")
            return cls(
                originator_id=record.id,
                originator_version=record.version,
                timestamp=record.modified_on,
                tenant_id=record.tenant_id,
                record_ref=record.record_ref,
                jurisdiction=record.jurisdiction,
                fact_count=record.fact_count,
                erased=record.erased,
                legal_facts=tuple(f.model_dump(mode="json") for f in record.legal_facts),
            )

        def mutate(self, aggregate: Any) -> Any:
            """The record rebuilt from this snapshot (the first step of a replay)."""
            record = object.__new__(ClientRecord)
            record.__dict__.update(
                _id=self.originator_id,
                _version=self.originator_version,
                _created_on=self.timestamp,
                _modified_on=self.timestamp,
                _pending_events=[],
                tenant_id=self.tenant_id,
                record_ref=self.record_ref,
                jurisdiction=self.jurisdiction,
                fact_count=self.fact_count,
                erased=self.erased,
                # Stored facts skip the edge-only checks, as every stored event does.
                legal_facts=tuple(
                    facts.FACT_TYPES_BY_NAME[f["type"]].model_validate(f, context=facts.STORED)
                    for f in self.legal_facts
                ),
            )
            return record

    def fork(self) -> "ClientRecord":
        """A copy to try new events on, leaving this one as it was.

        Shallow: all state here is immutable (``legal_facts`` is a tuple of frozen facts, and
        events replace state rather than change it) except the list of pending events, which
        the copy gets its own of. A faithful copy, as cheap on a long record as on a new one.
        """
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__["_pending_events"] = list(self.pending_events)
        return clone

    def destroy(self, recorded_at: datetime, **certificate: Any) -> None:
        """Append the certificate of destruction (the key is destroyed right after it)."""
        if self.erased:
            raise RecordErasedError("the record was destroyed already")
        self.trigger_event(
            ClientRecord.Destroyed, timestamp=recorded_at, tenant_id=self.tenant_id, **certificate
        )

    @classmethod
    def register(cls, id: UUID, tenant_id: str, record_ref: str) -> "ClientRecord":
        """Start the stream of a record the service has not seen before."""
        return cls._create(cls.Registered, id=id, tenant_id=tenant_id, record_ref=record_ref)

    def __init__(self, tenant_id: str | None = None, record_ref: str | None = None) -> None:
        # Both are None only for a record rebuilt from a redacted registration (key destroyed).
        self.tenant_id = tenant_id
        self.record_ref = record_ref
        self.jurisdiction: str | None = None
        self.fact_count = 0
        self.erased = False
        # What later facts are judged against (frozen models in a tuple: safe to share).
        self.legal_facts: tuple[facts.FactBase, ...] = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> "ClientRecord":
        # The repository deep-copies cached aggregates on every read: the same faithful copy.
        return self.fork()

    @staticmethod
    def legal_fact_types() -> tuple[type[facts.FactBase], ...]:
        """The fact types a record keeps to judge later facts against."""
        return LEGAL_FACTS

    def record(self, fact: facts.FactBase, recorded_at: datetime) -> None:
        """Append a reported fact to the record."""
        if self.tenant_id is None or self.record_ref is None or self.erased:
            raise RecordErasedError("a record whose key was destroyed takes no new facts")
        self.trigger_event(
            EVENT_CLASS_BY_TYPE[type(fact)],
            timestamp=recorded_at,
            tenant_id=self.tenant_id,
            record_ref=self.record_ref,
            fact=fact,
        )


class DocumentedDisclosure(BaseModel):
    """What a destroyed record's certificate keeps of one disclosure, report or warning: that
    it happened, when, and its legal basis kind (45 CFR 164.530(j): six years), naming no one."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: str
    occurred_on: date
    legal_basis: str


ClientRecord.Destroyed.model_rebuild()


def _event_class(fact_type: type[facts.FactBase]) -> type[ClientRecord.FactRecorded]:
    """The event class that records one fact type, named after it, with a stable topic."""
    name = fact_type.__name__
    event_class = create_model(
        name,
        __base__=ClientRecord.FactRecorded,
        __doc__=f"A fact of type ``{name}`` was recorded.",
        __module__=__name__,
        fact=(fact_type, ...),
    )
    event_class.TOPIC = f"{ClientRecord.TOPIC}/{name}"
    event_class.__qualname__ = f"ClientRecord.{name}"
    setattr(ClientRecord, name, event_class)
    return event_class


EVENT_CLASS_BY_TYPE: dict[type[facts.FactBase], type[ClientRecord.FactRecorded]] = {
    fact_type: _event_class(fact_type) for fact_type in facts.FACT_TYPES
}
"""The event class that records each fact type, derived from the one list of fact types
(``facts.Fact``); each is ``ClientRecord.<type>`` with the topic ``client-record/<type>``, so
stored events never depend on module paths."""

# Stable topics: stored events name these strings, not module paths, so code can move freely.
register_topic(ClientRecord.TOPIC, ClientRecord)
_STABLE: tuple[type[ClientRecord.Event], ...] = (
    ClientRecord.Registered,
    ClientRecord.Redacted,
    ClientRecord.RedactedRegistration,
    ClientRecord.Destroyed,
    ClientRecord.Snapshot,
    *EVENT_CLASS_BY_TYPE.values(),
)
for _cls in _STABLE:
    register_topic(_cls.TOPIC, _cls)
