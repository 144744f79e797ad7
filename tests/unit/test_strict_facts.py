"""The request models refuse what is not a well-formed fact, accept every real one, and read
back what an earlier version stored (facts.STORED)."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from domain import facts
from service.demo import demo_submissions
from service.spreadsheet import safe_cell, safe_row
from tests.fact_strategies import moments
from tests.factories import EXAMPLES, example

FACT = TypeAdapter(facts.Fact)
ROOT = Path(__file__).resolve().parents[2]


def _errors(body: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        FACT.validate_python(body)
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def _accepted(body: dict[str, Any]) -> facts.FactBase:
    fact: facts.FactBase = FACT.validate_python(body)
    return fact


@pytest.mark.parametrize(
    "moment",
    [
        "1900-01-01T00:00:00+14:00",
        "2200-12-31T23:59:59-12:00",
        "2026-03-02T15:04:05Z",
        "2026-03-02t15:04:05z",  # RFC 3339 5.6: T and Z in either case
        "2026-03-02T15:04:05.123456789+05:45",
        "2026-03-02T15:04:05-00:00",
    ],
)
def test_real_rfc3339_timestamps_are_accepted(moment: str) -> None:
    assert _accepted(example("RecordAccessed", occurred_at=moment)).occurred_at.tzinfo


@pytest.mark.parametrize(
    ("moment", "error"),
    [
        ("0044-01-06T10:00:00+00:00", "implausible_year"),
        ("1899-12-31T23:59:59Z", "implausible_year"),
        ("2201-01-01T00:00:00Z", "implausible_year"),
        ("9999-12-31T23:59:59Z", "implausible_year"),
        ("2026-03-02T15:04:05+23:59", "utc_offset_range"),
        ("2026-03-02T15:04:05-14:01", "utc_offset_range"),
        (0, "rfc3339_timestamp"),
        (1767607200, "rfc3339_timestamp"),
        (1767607200.5, "rfc3339_timestamp"),
        ("1767607200", "rfc3339_timestamp"),
        ("2026-03-02T15:04:05", "rfc3339_timestamp"),  # no offset
        ("2026-03-02 15:04:05Z", "rfc3339_timestamp"),
        ("20260302T150405Z", "rfc3339_timestamp"),
        ("2026-W10-1T15:04:05Z", "rfc3339_timestamp"),
        ("2026-03-02", "rfc3339_timestamp"),
        (True, "rfc3339_timestamp"),
    ],
)
def test_a_timestamp_that_is_not_real_is_refused_by_name(moment: object, error: str) -> None:
    assert _errors(example("RecordAccessed", occurred_at=moment)) == [
        (("RecordAccessed", "occurred_at"), error)
    ]


def test_every_timestamp_and_date_field_holds_the_same_rules() -> None:
    body = example(
        "MandatedReportFiled",
        suspected_at="1767607200",
        oral_at="2026-03-02T15:04:05+23:00",
        written_at="0044-01-06T10:00:00Z",
    )
    assert {loc[-1] for loc, _ in _errors(body)} == {"suspected_at", "oral_at", "written_at"}
    dated = example(
        "AuthorizationGranted",
        records_from=20250101,
        records_until="2025-13-01",
        expires_at=0,
    )
    assert {loc[-1] for loc, _ in _errors(dated)} == {"records_from", "records_until", "expires_at"}
    opened = example("RecordOpened", client_birth_date="1767607200")
    assert _errors(opened) == [(("RecordOpened", "client_birth_date"), "full_date")]
    old = example("RecordOpened", client_birth_date="1850-01-01")
    assert _errors(old) == [(("RecordOpened", "client_birth_date"), "implausible_year")]
    assert _accepted(example("RecordOpened", client_birth_date="1911-02-03"))


@pytest.mark.parametrize("value", ["true", "false", 1, 0, "1", "yes", None])
def test_booleans_are_never_coerced(value: object) -> None:
    errors = _errors(example("RecordAccessed", break_glass=value, justification="emergency"))
    assert errors == [(("RecordAccessed", "break_glass"), "bool_type")]
    granted = example("AuthorizationGranted", in_writing=value)
    assert _errors(granted) == [(("AuthorizationGranted", "in_writing"), "bool_type")]


@pytest.mark.parametrize(
    "value",
    ["a\x00b", "..", ".", "a\\b", "a/b", "a b", "-rf", "=1+1", "@x", "a?b", "a#b", "a%20b",
     "r\u00e9f", "a\u2028b", "", "x" * 201],
)  # fmt: skip
def test_identifiers_and_record_refs_come_from_a_url_safe_set(value: str) -> None:
    body = example("DisclosureMade", disclosure_id=value)
    assert _errors(body)[0][0] == ("DisclosureMade", "disclosure_id")
    actor = example("RecordAccessed", actor={"id": value, "name": "A", "role": "front_desk"})
    assert _errors(actor)[0][0] == ("RecordAccessed", "actor", "id")
    with pytest.raises(ValidationError):
        TypeAdapter(facts.RecordRef).validate_python(value)


@pytest.mark.parametrize(
    "value", ["jr-2041", "MRN.77123", "urn:oid:2.16.840.1.113883", "j.okafor@practice", "a~b_c"]
)
def test_usual_identifiers_are_accepted(value: str) -> None:
    assert TypeAdapter(facts.RecordRef).validate_python(value) == value
    assert _accepted(example("DisclosureMade", disclosure_id=value))


@pytest.mark.parametrize(
    "name",
    ["a\x00b", "a\x01b", "a\tb", "a\nb", "a\rb", "a\x85b", "a\u2028b", "a\u2029b", "a\u202eb",
     "a\u2066b", "a\ufffeb", " padded", "padded ", "\t", ""],
)  # fmt: skip
def test_names_are_one_line_of_plain_text(name: str) -> None:
    body = example("DisclosureMade", recipient={"name": name, "kind": "attorney"})
    assert _errors(body) == [(("DisclosureMade", "recipient", "name"), _kind(name))]


def _kind(text: str) -> str:
    return "string_too_short" if not text else "unsafe_text"


@pytest.mark.parametrize(
    "name",
    ["Morgan & Lee LLP", "Dr. L. Chen, psychiatrist", "\u05d3\u05d5\u05d3 \u05dc\u05d5\u05d9",
     "\u674e\u5c0f\u9f99", "Zo\u00eb O\u2019Brien-M\u00fcller", "\u0645\u062d\u0645\u062f\u200f",
     "\U0001f469\u200d\u2695\ufe0f Care", "=HYPERLINK(\"http://x\",\"click\")"],
)  # fmt: skip
def test_real_names_of_every_script_are_accepted(name: str) -> None:
    body = example("DisclosureMade", recipient={"name": name, "kind": "attorney"})
    assert isinstance(_accepted(body), facts.DisclosureMade)


def test_free_text_allows_tab_and_line_breaks_but_no_other_control() -> None:
    text = "first line\r\nsecond\tline\n"
    assert _accepted(example("LegalHoldPlaced", reason=text))
    for bad in ["a\x01b", "a\x00", "a\u2028b", "a\u2029b", "a\x0bb", "a\x1bb", "a\u202eb"]:
        assert _errors(example("LegalHoldPlaced", reason=bad)) == [
            (("LegalHoldPlaced", "reason"), "unsafe_text")
        ]
    assert _errors(example("LegalHoldPlaced", reason=" \n\t")) == [
        (("LegalHoldPlaced", "reason"), "unsafe_text")
    ]


@pytest.mark.parametrize(
    "replacement",
    [{"x": 2**53}, {"x": -(2**53)}, {"x": float("nan")}, {"x": float("inf")},
     {"x": "a\x00"}, {"a\u2028": 1}, {"x": [[[[[[[[[1]]]]]]]]]}],
)  # fmt: skip
def test_a_correction_holds_only_what_canonical_json_can_write(replacement: Any) -> None:
    body = example("EventCorrected", replacement=replacement)
    assert _errors(body)[0][0] == ("EventCorrected", "replacement")


def test_a_reference_id_is_usable_in_a_uri() -> None:
    body = example("DisclosureMade", legal_basis={"kind": "court_order", "reference_id": "ord 1"})
    assert _errors(body) == [(("DisclosureMade", "legal_basis", "reference_id"), "unsafe_text")]


def test_a_docket_number_is_a_label_not_an_identifier() -> None:
    body = example("LegalDemandReceived", case_number="No. 1:26-cv-01234 (D. Mass.)")
    assert _accepted(body)
    assert _errors(example("LegalDemandReceived", case_number="a\x00"))


def test_what_an_earlier_version_stored_still_reads_back() -> None:
    stored = example(
        "DisclosureMade",
        occurred_at="0044-01-06T10:00:00+23:59",
        disclosure_id="../d\x00",
        recipient={"name": " =evil\u2028name\u202e ", "kind": "attorney"},
        legal_basis={"kind": "court_order", "reference_id": "ord 1"},
        records_from="0001-01-01",
    )
    fact = FACT.validate_python(stored, context=facts.STORED)
    assert isinstance(fact, facts.DisclosureMade)
    assert fact.recipient.name == " =evil\u2028name\u202e "
    with pytest.raises(ValidationError):
        FACT.validate_python(stored)


def test_the_examples_and_the_json_schema_agree_with_the_rules() -> None:
    for type_ in EXAMPLES:
        _accepted(example(type_))
    _accepted(json.loads((ROOT / "docs" / "example-event.json").read_text()))
    assert len([_accepted(fact.model_dump(mode="json")) for _, fact in demo_submissions()]) > 30
    schema = facts.DisclosureMade.model_json_schema()
    assert schema["properties"]["disclosure_id"]["pattern"] == facts.IDENTIFIER_PATTERN
    assert schema["$defs"]["Recipient"]["properties"]["name"]["pattern"] == facts.NAME_PATTERN
    assert schema["properties"]["occurred_at"]["format"] == "date-time"
    assert schema["properties"]["occurred_at"]["pattern"] == facts.TIMESTAMP_PATTERN
    held = facts.LegalHoldPlaced.model_json_schema()
    assert held["properties"]["reason"]["pattern"] == facts.TEXT_PATTERN


TEXTS = [
    (TypeAdapter(facts.Identifier), facts.IDENTIFIER_PATTERN),
    (TypeAdapter(facts.Name), facts.NAME_PATTERN),
    (TypeAdapter(facts.ShortText), facts.TEXT_PATTERN),
]


def _takes(adapter: TypeAdapter[Any], value: object) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=30)
    | st.from_regex(facts.NAME_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 30)
    | st.from_regex(facts.TEXT_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 30)
    | st.sampled_from([" ", "\ufeff", "a\ufeff", "\t", "\u3000x", "x\u00a0", "a\x85", "1"])
)
def test_the_published_patterns_say_exactly_which_texts_are_accepted(text: str) -> None:
    """OpenAPI clients and contract fuzzers read the patterns; the validators must agree."""
    for adapter, pattern in TEXTS:
        assert _takes(adapter, text) == bool(re.fullmatch(pattern, text)), (pattern, text)


@settings(max_examples=200, deadline=None)
@given(moments() | st.from_regex(facts.TIMESTAMP_PATTERN, fullmatch=True))
def test_the_published_timestamp_pattern_covers_every_accepted_moment(text: str) -> None:
    adapter = TypeAdapter(facts.Timestamp)
    matches = bool(re.fullmatch(facts.TIMESTAMP_PATTERN, text))
    if _takes(adapter, text):
        assert matches
    else:  # the pattern cannot know calendars (2026-02-30, hour 24); it knows every range
        assert matches
        with pytest.raises(ValidationError) as caught:
            adapter.validate_python(text)
        assert caught.value.errors()[0]["type"].startswith("datetime_"), caught.value.errors()


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_neutralised() -> None:
    for trigger in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\uff1d1"]:
        assert safe_cell(trigger) == "'" + trigger
    assert safe_row(["Morgan & Lee", "", 3, None, "a=b"]) == ["Morgan & Lee", "", 3, None, "a=b"]
