"""The client-record aggregate and the pure checks of the domain."""

from datetime import UTC, datetime, timedelta
from typing import cast
from uuid import uuid4

import pytest
from pydantic import TypeAdapter, ValidationError

from domain import facts
from domain.errors import FactInFutureError, RecordErasedError
from domain.record import EVENT_CLASS_BY_TYPE, ClientRecord, check_not_in_future, record_id
from tests.factories import example

FACT = TypeAdapter(facts.Fact)
KEY = b"k" * 32


def test_every_fact_type_has_its_own_event_class_with_a_stable_topic() -> None:
    assert set(EVENT_CLASS_BY_TYPE) == set(facts.FACT_TYPES)
    topics = [cls.TOPIC for cls in EVENT_CLASS_BY_TYPE.values()]
    assert len(set(topics)) == len(topics)
    for fact_type, event_class in EVENT_CLASS_BY_TYPE.items():
        assert event_class.__name__ == fact_type.__name__
        assert event_class.TOPIC == f"client-record/{fact_type.__name__}"


def test_record_ids_are_deterministic_keyed_and_tenant_scoped() -> None:
    first = record_id(KEY, "practice-a", "mrn-1")
    assert first == record_id(KEY, "practice-a", "mrn-1")
    assert first != record_id(KEY, "practice-b", "mrn-1")
    assert first != record_id(b"other-key" * 4, "practice-a", "mrn-1")
    assert first.version == 8
    # The separator keeps ("a", "b\x00c") and ("a\x00b", "c") apart.
    assert record_id(KEY, "a", "bc") != record_id(KEY, "ab", "c")


def test_a_record_appends_facts_in_order_and_remembers_its_jurisdiction() -> None:
    now = datetime.now(UTC)
    record = ClientRecord.register(id=uuid4(), tenant_id="t", record_ref="r")
    opened = FACT.validate_python(example("RecordOpened", jurisdiction="US-CA"))
    access = FACT.validate_python(example("RecordAccessed"))
    record.record(opened, now)
    record.record(access, now)
    events = record.collect_events()
    assert [type(e).__name__ for e in events] == ["Registered", "RecordOpened", "RecordAccessed"]
    assert [e.originator_version for e in events] == [1, 2, 3]
    assert record.jurisdiction == "US-CA"
    assert record.fact_count == 2


def test_a_fork_takes_new_facts_and_leaves_the_original_as_it_was() -> None:
    now = datetime.now(UTC)
    record = ClientRecord.register(id=uuid4(), tenant_id="t", record_ref="r")
    record.record(FACT.validate_python(example("RecordOpened", jurisdiction="US-MA")), now)
    record.record(FACT.validate_python(example("AuthorizationGranted")), now)
    record.collect_events()
    fork = record.fork()
    fork.record(FACT.validate_python(example("RecordOpened", jurisdiction="US-CA")), now)
    fork.record(FACT.validate_python(example("AuthorizationRevoked")), now)
    assert [type(e).__name__ for e in fork.pending_events] == [
        "RecordOpened",
        "AuthorizationRevoked",
    ]
    assert (fork.version, fork.fact_count, fork.jurisdiction) == (5, 4, "US-CA")
    assert [type(f).__name__ for f in fork.legal_facts][-1] == "AuthorizationRevoked"
    assert record.pending_events == []
    assert (record.version, record.fact_count, record.jurisdiction) == (3, 2, "US-MA")
    assert [type(f).__name__ for f in record.legal_facts][-1] == "AuthorizationGranted"


def test_events_are_frozen() -> None:
    record = ClientRecord.register(id=uuid4(), tenant_id="t", record_ref="r")
    (event,) = record.collect_events()
    registered = cast(ClientRecord.Registered, event)
    with pytest.raises(ValidationError):
        registered.tenant_id = "other"  # type: ignore[misc]


def test_an_erased_record_takes_no_new_facts() -> None:
    erased = ClientRecord.RedactedRegistration(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=datetime.now(UTC),
        originator_topic=ClientRecord.TOPIC,
        original_topic=ClientRecord.Registered.TOPIC,
    ).mutate(None)
    assert isinstance(erased, ClientRecord)
    assert erased.erased
    with pytest.raises(RecordErasedError):
        erased.record(FACT.validate_python(example("RecordAccessed")), datetime.now(UTC))


def test_the_future_check_allows_clock_skew_only() -> None:
    now = datetime.now(UTC)
    check_not_in_future(FACT.validate_python(example("RecordAccessed")), now)
    near = FACT.validate_python(
        example("RecordAccessed", occurred_at=(now + timedelta(minutes=4)).isoformat())
    )
    check_not_in_future(near, now)
    far = FACT.validate_python(
        example("RecordAccessed", occurred_at=(now + timedelta(minutes=6)).isoformat())
    )
    with pytest.raises(FactInFutureError):
        check_not_in_future(far, now)


def test_facts_refuse_unknown_fields_and_are_immutable() -> None:
    with pytest.raises(ValidationError) as caught:
        FACT.validate_python(example("RecordAccessed", note="x"))
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    fact = facts.RecordAccessed.model_validate(example("RecordAccessed"))
    with pytest.raises(ValidationError):
        fact.justification = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [("jurisdiction", "Massachusetts"), ("jurisdiction", "us-ma"), ("setting", "solo")],
)
def test_record_opened_checks_its_vocabulary(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        FACT.validate_python(example("RecordOpened", **{field: value}))
