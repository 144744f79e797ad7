"""The fast canonical JSON writes exactly the bytes of the ``rfc8785`` reference encoder.

Leaf bytes are what a regulator's verifier re-hashes: one byte of difference and a genuine
bundle fails verification. So the equality is proven on generated JSON (floats, big integers,
non-BMP member names and control characters included, where the fast path must step aside) and
on leaves of generated events, through the same ``Splice`` the write path uses.
"""

from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from domain import canonical, facts
from domain.record import ClientRecord
from service.application.ingest import leaf_content
from service.storage.tenant_log import leaf_bytes
from tests.fact_strategies import candidate_facts, json_values

FACT: TypeAdapter[facts.FactBase] = TypeAdapter(facts.Fact)

_names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from("\ud7ff\ue000\U0001f600"),
    max_size=6,
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_names, inner, max_size=4),
    max_leaves=12,
)


def _reference(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except Exception as error:
        return type(error)


@settings(max_examples=600, derandomize=True)
@given(value=_json | json_values)
def test_canonical_bytes_equal_the_reference_encoder(value: Any) -> None:
    expected = _reference(value)
    if isinstance(expected, bytes):
        assert canonical.dumps(value) == expected
    else:
        with pytest.raises(expected):
            canonical.dumps(value)


@settings(max_examples=300, derandomize=True)
@given(
    members=st.dictionaries(_names.filter(lambda n: n != "position"), _json, max_size=5),
    position=st.integers(1, 2**53 - 1),
)
def test_a_spliced_position_gives_the_bytes_of_the_whole_object(
    members: dict[str, Any], position: int
) -> None:
    expected = _reference({**members, "position": position})
    if isinstance(expected, bytes):
        assert canonical.Splice(members, "position").fill(position) == expected


@pytest.mark.parametrize(
    "members",
    [
        # The splice encodes once with 2**53 - 1 in the member's place and cuts there: these
        # hold the same bytes elsewhere, where a cut would go wrong.
        {"event": {"position": 2**53 - 1}},
        {"event": {"position": 2**53 - 1, "x": [{"position": 2**53 - 1}]}},
        {"a": '"position":9007199254740991', "z": '\\"position\\":9007199254740991'},
        {"event": {"position": 9007199254740991.5}},
    ],
)
def test_a_splice_is_not_fooled_by_its_own_stand_in_elsewhere(members: dict[str, Any]) -> None:
    for position in (1, 2**53 - 1):
        expected = rfc8785.dumps({**members, "position": position})
        assert canonical.Splice(members, "position").fill(position) == expected


def test_the_member_to_fill_cannot_be_given_and_must_be_a_safe_integer() -> None:
    with pytest.raises(ValueError, match="must not be given"):
        canonical.Splice({"position": 1}, "position")
    with pytest.raises(ValueError, match="2\\*\\*53"):
        canonical.Splice({}, "position").fill(2**53)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(body=candidate_facts(facts.FACT_TYPES), position=st.integers(1, 10**9))
def test_leaves_of_generated_events_equal_the_reference_encoding(
    body: dict[str, Any], position: int
) -> None:
    try:
        fact = FACT.validate_python(body)
    except ValidationError:
        return  # the edge refuses it: never stored, never a leaf
    record = ClientRecord.register(id=uuid4(), tenant_id="t", record_ref="rec-1")
    record.record(fact, datetime.now(UTC))
    for event in record.pending_events:
        content = leaf_content(cast(ClientRecord.Event, event), "c2FsdA==")
        assert leaf_bytes(content, position) == rfc8785.dumps({**content, "position": position})
