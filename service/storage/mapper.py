"""The mapper between domain events and stored bytes: per-record encryption, redaction on read.

The library's own cipher takes one key for the whole store and never sees the aggregate id
(reference: eventsourcing 9.5 ``Mapper.to_stored_event``), so crypto-shredding one record needs a
mapper of our own. A record whose key is destroyed reads back as redacted stand-in events, so a
replay or a projection never stops on it. Its certificate of destruction is the one event sealed
with the service's lifecycle key instead, so it reads back in full.
"""

import json
from collections.abc import Callable
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import resolve_topic

from domain import facts
from domain.record import ClientRecord
from service.storage.crypto import open_state, recorded_at_of, seal_state
from service.storage.keyring import RecordKeyring

__all__ = ["RecordCipherMapper"]


class RecordCipherMapper(Mapper[UUID]):
    """Serialises pydantic events to JSON and seals them with their record's data key."""

    def __init__(self, keyring: RecordKeyring, lifecycle_key: Callable[[], bytes]) -> None:
        super().__init__(transcoder=JSONTranscoder())
        self._keyring = keyring
        self._lifecycle_key = lifecycle_key

    def _key(self, record: UUID, topic: str) -> bytes | None:
        if topic == ClientRecord.Destroyed.TOPIC:
            return self._lifecycle_key()
        return self._keyring.find(record)

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        """Seal one event; its record's key must exist (the ingest path ensures it)."""
        event = cast(ClientRecord.Event, domain_event)
        topic = type(event).TOPIC
        key = self._key(event.originator_id, topic)
        if key is None:
            raise KeyError(f"record {event.originator_id} has no data key")
        plaintext = event.model_dump_json(exclude={"originator_id", "originator_version"})
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=topic,
            state=seal_state(
                key,
                plaintext.encode(),
                record=event.originator_id,
                version=event.originator_version,
                topic=topic,
                recorded_at=event.timestamp,
            ),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        """Open one event, or stand in for it with a redacted skeleton if its key is gone."""
        record = UUID(str(stored_event.originator_id))
        version = stored_event.originator_version
        state = bytes(stored_event.state)
        key = self._key(record, stored_event.topic)
        if key is None:
            return self._redacted(record, version, stored_event.topic, state)
        plaintext = open_state(key, state, record=record, version=version, topic=stored_event.topic)
        fields: dict[str, Any] = json.loads(plaintext)
        fields["originator_id"] = record
        fields["originator_version"] = version
        event_class: type[ClientRecord.Event] = resolve_topic(stored_event.topic)
        # Stored facts skip the edge-only checks: one accepted before a check existed must
        # still read back (facts.STORED).
        return event_class.model_validate(fields, context=facts.STORED)

    @staticmethod
    def _redacted(record: UUID, version: int, topic: str, state: bytes) -> ClientRecord.Event:
        recorded_at = recorded_at_of(state)
        if version == 1:
            return ClientRecord.RedactedRegistration(
                originator_id=record,
                originator_version=version,
                timestamp=recorded_at,
                originator_topic=ClientRecord.TOPIC,
                original_topic=topic,
            )
        return ClientRecord.Redacted(
            originator_id=record,
            originator_version=version,
            timestamp=recorded_at,
            original_topic=topic,
        )
