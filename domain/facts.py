"""Facts a clinical system reports: one frozen model per event type of the public API.

A fact is validated for well-formedness only (types, vocabularies, required fields, ranges that
end before they start). Whether what it describes was lawful is a finding, never a rejection
(PRODUCT.md section 2.1).
"""

import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    JsonValue,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from domain.vocabulary import (
    AccessAction,
    ActorRole,
    AuthorizationKind,
    BreakGlassDetermination,
    DataCategory,
    DemandKind,
    DemandOutcome,
    DisclosureMethod,
    FindingResolution,
    Grantor,
    LegalBasisKind,
    MinimumNecessaryMode,
    NotifiedPartyKind,
    PrivilegeHolder,
    PurposeOfUse,
    RecipientKind,
    ReportKind,
    Setting,
)

__all__ = [
    "FACT_TYPES",
    "FACT_TYPES_BY_NAME",
    "Actor",
    "AuthorizationGranted",
    "AuthorizationRevoked",
    "BreakGlassReviewed",
    "CourtOrderIssued",
    "DemandAnswered",
    "DisclosureMade",
    "DutyToWarnExercised",
    "EventCorrected",
    "Fact",
    "FactBase",
    "FindingAcknowledged",
    "LegalDemandReceived",
    "LegalHoldPlaced",
    "LegalHoldReleased",
    "MandatedReportFiled",
    "PrivilegeAsserted",
    "PrivilegeWaived",
    "RecordAccessed",
    "RecordOpened",
    "RecordRef",
]

STORED: Final[Mapping[str, bool]] = {"stored": True}
"""Validation context for facts read back from storage (``model_validate(data, context=STORED)``).

The checks marked "at the edge" below refuse what a client may no longer send; a fact stored
before a check existed must still read back, or its record's stream and every read model built
from it would stop on it for good (events are immutable). Shape checks stay on: stored facts were
serialised by pydantic, so they always pass them.
"""


def _at_the_edge(info: ValidationInfo) -> bool:
    context = info.context
    return not (isinstance(context, Mapping) and context.get("stored"))


@dataclass(frozen=True)
class _Charset:
    """A whole-string pattern checked at the edge, published as the JSON-schema ``pattern``.

    Python's ``re`` runs it (``fullmatch``, so ``$`` never admits a trailing newline); each
    pattern is written to match in linear time and in ECMA-262 syntax as JSON Schema expects.
    """

    pattern: str
    message: str
    visible: bool = False
    """Also require one character that is not white space (free text may not be blank)."""
    published: str | None = None
    """The JSON-schema pattern when it differs from ``pattern``: the same rule in one regex
    (``visible`` included), which would backtrack quadratically if run here."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Run the inner (length) checks, then this one."""
        regex = re.compile(self.pattern)

        def check(value: str, info: ValidationInfo) -> str:
            if _at_the_edge(info) and (
                not regex.fullmatch(value) or (self.visible and value.isspace())
            ):
                raise PydanticCustomError("unsafe_text", self.message)
            return value

        return core_schema.with_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The inner schema with this pattern."""
        return {**handler(schema), "pattern": self.published or self.pattern}


@dataclass(frozen=True)
class _Published:
    """A JSON-schema ``pattern`` documenting a rule the validators enforce (year and offset
    ranges), so clients and contract fuzzers see it in the OpenAPI document."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The inner schema with this pattern."""
        return {**handler(schema), "pattern": self.pattern}


# Never in any text, at the edge: C0 and C1 controls (NUL included) but tab, LF and CR; U+2028
# and U+2029, which split lines in JavaScript and in Python's str.splitlines; the bidirectional
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that make a name or a
# spreadsheet cell display other than it reads ("Trojan Source", CVE-2021-42574); and the
# noncharacters U+FFFE and U+FFFF, which XML (and so FHIR XML) cannot carry; U+FEFF, a byte
# order mark that is invisible in text (and white space to ECMA-262 regexes, not to Python's).
# Lone surrogates are refused by pydantic itself. Letters of every script, combining marks, ZWJ
# and the plain LRM/RLM marks stay allowed: real names need them.
NEVER_IN_TEXT: Final = (
    r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff"
)
"""A regex character class of what no text may hold (FHIR output replaces it in old facts)."""
_LINES = r"\t\n\r"

# Identifiers travel in URL paths and queries, file names, CSV cells and FHIR uri elements, so
# they use RFC 3986 "unreserved" characters plus ":" and "@" (URNs, OIDs, e-mail-like ids), which
# are safe in a path segment unencoded. The first must be a letter or digit: that rules out the
# "." and ".." path segments, a leading "-" (read as a CLI option) and the spreadsheet formula
# triggers "=", "+", "-", "@". Backslash, "/", "?", "#", "%" and white space are never allowed.
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@~-]*$"
NAME_PATTERN: Final = rf"^[^\s{NEVER_IN_TEXT}](?:[^{_LINES}{NEVER_IN_TEXT}]*[^\s{NEVER_IN_TEXT}])?$"
TEXT_PATTERN: Final = rf"^[^{NEVER_IN_TEXT}]*[^\s{NEVER_IN_TEXT}][^{NEVER_IN_TEXT}]*$"
_TEXT_CHARACTERS = rf"^[^{NEVER_IN_TEXT}]+$"  # TEXT_PATTERN, checked in linear time

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    _Charset(
        IDENTIFIER_PATTERN,
        "must be letters, digits and . _ : @ ~ - only, starting with a letter or digit",
    ),
]
"""An id chosen by the clinical system: 1..200 URL-safe characters."""

RecordRef = Identifier
"""The clinical system's client-record id; it travels in URL paths (the Identifier rules)."""

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=300),
    _Charset(
        NAME_PATTERN,
        "must be one line of text without control or bidirectional-override characters, "
        "and must not start or end with white space",
    ),
]
"""A person's or an organisation's name ("Morgan & Lee LLP"), or a label such as a statute or
a docket number: any script and punctuation, on one line."""

ShortText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2000),
    _Charset(
        _TEXT_CHARACTERS,
        "must hold visible text and no control characters other than tab and line breaks",
        visible=True,
        published=TEXT_PATTERN,
    ),
]
"""Free text is personal data: kept short, stored encrypted with the record's key. Tab, LF and
CR are allowed here only."""

Jurisdiction = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")]
"""ISO 3166 country, optionally with a subdivision: "US", "US-MA"."""

# Plausible years. 1900: no client alive today, nor any record a practice still holds, is older
# (the oldest living people were born after 1905). 2200: no authorization, deadline or retention
# lasts that long; a later year is a typo or a "never" sentinel such as 9999 (omit the field
# instead). The range also keeps every UTC conversion and every 4-digit rendering of a moment
# inside what Python, PostgreSQL and FHIR represent.
FIRST_YEAR: Final = 1900
LAST_YEAR: Final = 2200
# RFC 3339 section 5.6: offsets are real UTC offsets, which the IANA database keeps within
# -12:00..+14:00 (Kiribati); anything beyond +-14:00 is not a place on Earth.
MAX_OFFSET: Final = timedelta(hours=14)

# RFC 3339 date-time with a mandatory offset ("T" and "Z" in either case, as its ABNF allows);
# at most nanoseconds. No week dates, no ordinal dates, no basic format, no epoch numbers.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _timestamp_text(value: object, info: ValidationInfo) -> object:
    # A datetime object comes from Python code (the batch route re-validates a dumped item);
    # JSON can only send text, which must be RFC 3339. pydantic's lax parser alone would also
    # take numbers and digit strings as Unix times.
    if isinstance(value, datetime) or not _at_the_edge(info):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "rfc3339_timestamp",
            "must be an RFC 3339 timestamp with a UTC offset, e.g. 2026-03-02T15:04:05-05:00",
        )
    return value


def _plausible_moment(value: datetime, info: ValidationInfo) -> datetime:
    if not _at_the_edge(info):
        return value
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise PydanticCustomError(
            "implausible_year", f"the year must be from {FIRST_YEAR} to {LAST_YEAR}"
        )
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        raise PydanticCustomError("utc_offset_range", "the UTC offset must be within +-14:00")
    return value


def _date_text(value: object, info: ValidationInfo) -> object:
    if (isinstance(value, date) and not isinstance(value, datetime)) or not _at_the_edge(info):
        return value
    if not isinstance(value, str) or not _FULL_DATE.fullmatch(value):
        raise PydanticCustomError("full_date", "must be a date written YYYY-MM-DD")
    return value


def _plausible_day(value: date, info: ValidationInfo) -> date:
    if _at_the_edge(info) and not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise PydanticCustomError(
            "implausible_year", f"the year must be from {FIRST_YEAR} to {LAST_YEAR}"
        )
    return value


_YEARS = r"(19[0-9]{2}|2[01][0-9]{2}|2200)"
TIMESTAMP_PATTERN: Final = (
    rf"^{_YEARS}-[0-9]{{2}}-[0-9]{{2}}[Tt][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(\.[0-9]{{1,9}})?"
    r"([Zz]|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)$"
)
"""What ``Timestamp`` accepts, as one pattern for the JSON schema (with format date-time)."""
DAY_PATTERN: Final = rf"^{_YEARS}-[0-9]{{2}}-[0-9]{{2}}$"

Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp_text),
    AfterValidator(_plausible_moment),
    _Published(TIMESTAMP_PATTERN),
]
"""A moment: RFC 3339 text with an offset within +-14:00, in a plausible year."""

Day = Annotated[
    date, BeforeValidator(_date_text), AfterValidator(_plausible_day), _Published(DAY_PATTERN)
]
"""A calendar date: YYYY-MM-DD text in a plausible year."""

Flag = StrictBool
"""true or false only: no "true", 1 or "yes" coerced into a boolean."""

_TEXT_REGEX = re.compile(_TEXT_CHARACTERS)
_MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 (the Merkle leaves) represents numbers as IEEE 754
_MAX_DEPTH = 8


def _plain_json(value: dict[str, JsonValue], info: ValidationInfo) -> dict[str, JsonValue]:
    # A correction's replacement is free-form JSON; hold its strings to the free-text rules and
    # its numbers to what canonical JSON (RFC 8785) can write, or the event would be accepted
    # and then fail when its Merkle leaf is written or exported.
    if not _at_the_edge(info):
        return value

    def walk(node: JsonValue, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise PydanticCustomError("json_depth", f"nests deeper than {_MAX_DEPTH} levels")
        if isinstance(node, str) and not _TEXT_REGEX.fullmatch(node) and node:
            raise PydanticCustomError(
                "unsafe_text", "holds text with control characters other than tab and newline"
            )
        if isinstance(node, bool) or node is None or isinstance(node, str):
            return
        if isinstance(node, int) and abs(node) > _MAX_SAFE_INTEGER:
            raise PydanticCustomError("number_range", "holds an integer beyond +-(2**53 - 1)")
        if isinstance(node, float) and not math.isfinite(node):
            raise PydanticCustomError("number_range", "holds a number that is not finite")
        if isinstance(node, list):
            for item in node:
                walk(item, depth + 1)
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(key, depth + 1)
                walk(item, depth + 1)

    walk(value, 1)
    return value


Categories = Annotated[list[DataCategory], Field(min_length=1, max_length=len(DataCategory))]


class Frozen(BaseModel):
    """Immutable, strict about unknown fields: the base of every value in a fact."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Actor(Frozen):
    """The person or system that did what the fact reports."""

    id: Identifier
    name: Name
    role: ActorRole


class Source(Frozen):
    """The clinical system that reported the fact."""

    system: Identifier


class FactBase(Frozen):
    """Fields every fact carries."""

    event_id: UUID
    occurred_at: Timestamp
    actor: Actor
    source: Source


class DateRanged(FactBase):
    """A fact that names a range of record dates; the range may not end before it starts."""

    records_from: Day | None = None
    records_until: Day | None = None

    @field_validator("records_until")
    @classmethod
    def _range_ends_after_start(cls, value: Day | None, info: ValidationInfo) -> date | None:
        start = info.data.get("records_from")
        if value is not None and start is not None and value < start:
            raise ValueError("records_until is before records_from")
        return value


class Participant(Frozen):
    """A person in a joint (couple, family, group) record."""

    id: Identifier
    adult: Flag


class RecordOpened(FactBase):
    """A client record was opened under a jurisdiction's rules."""

    type: Literal["RecordOpened"]
    jurisdiction: Jurisdiction
    setting: Setting
    participants: Annotated[list[Participant], Field(max_length=50)] | None = None
    client_birth_date: Day | None = None
    minor_consented_to_treatment: Flag | None = None
    part2_program: Flag | None = None


class RecordAccessed(FactBase):
    """Someone in the practice used the record."""

    type: Literal["RecordAccessed"]
    categories: Categories
    action: AccessAction
    purpose_of_use: PurposeOfUse
    break_glass: Flag = False
    justification: ShortText | None = None


class BreakGlassReviewed(FactBase):
    """An emergency access was reviewed."""

    type: Literal["BreakGlassReviewed"]
    access_event_id: UUID
    determination: BreakGlassDetermination


class Recipient(Frozen):
    """Who received records."""

    name: Name
    kind: RecipientKind
    address: ShortText | None = None
    identifier: Identifier | None = None
    """An id for the recipient (NPI, bar number, agency code); when both sides give one, it decides
    whether two recipients are the same party."""


class AuthorizationGranted(DateRanged):
    """The client (or a personal representative) authorized disclosures."""

    type: Literal["AuthorizationGranted"]
    authorization_id: Identifier
    kind: AuthorizationKind
    granted_by: Grantor
    participant_id: Identifier | None = None
    recipients: Annotated[list[Recipient], Field(min_length=1, max_length=50)]
    purposes: Annotated[list[PurposeOfUse], Field(min_length=1, max_length=len(PurposeOfUse))]
    categories: Categories
    expires_at: Timestamp | None = None
    in_writing: Flag


class AuthorizationRevoked(FactBase):
    """An authorization was revoked."""

    type: Literal["AuthorizationRevoked"]
    authorization_id: Identifier
    in_writing: Flag


class Assurances(Frozen):
    """Satisfactory assurances that come with a subpoena (45 CFR 164.512(e)(1)(ii))."""

    client_notified_at: Timestamp | None = None
    objection_deadline: Day | None = None
    protective_order: Flag | None = None


class LegalDemandReceived(DateRanged):
    """A subpoena, order, warrant or request for the record was served."""

    type: Literal["LegalDemandReceived"]
    demand_id: Identifier
    kind: DemandKind
    issuer: Name
    court: Name | None = None
    case_number: Name | None = None  # a docket number: "1:26-cv-01234"
    categories: Categories
    return_date: Day | None = None
    assurances: Assurances | None = None


class PrivilegeAsserted(FactBase):
    """The psychotherapist-patient privilege was asserted against a demand."""

    type: Literal["PrivilegeAsserted"]
    demand_id: Identifier
    holder: PrivilegeHolder
    statute: Name | None = None


class PrivilegeWaived(FactBase):
    """The client waived the privilege for a demand's proceeding."""

    type: Literal["PrivilegeWaived"]
    demand_id: Identifier
    categories: Categories
    in_writing: Flag


class OrderRecipient(Frozen):
    """Who a court order allows to receive records."""

    name: Name
    kind: RecipientKind
    identifier: Identifier | None = None
    """As on Recipient: when both sides give one, it decides the match."""


class CourtOrderIssued(DateRanged):
    """A court ordered disclosure, possibly piercing the privilege."""

    type: Literal["CourtOrderIssued"]
    order_id: Identifier
    demand_id: Identifier | None = None
    court: Name
    judge: Name | None = None
    pierces_privilege: Flag
    ground: ShortText | None = None
    categories: Categories
    recipients: Annotated[list[OrderRecipient], Field(max_length=50)]
    part2_findings: Flag | None = None
    """True if the order was issued under 42 CFR Part 2 Subpart E with the 2.64(d) findings (good
    cause: other ways unavailable or ineffective, public interest outweighs the injury); only such
    an order lets Part 2 records go."""


class DemandAnswered(FactBase):
    """A legal demand was answered."""

    type: Literal["DemandAnswered"]
    demand_id: Identifier
    outcome: DemandOutcome


class MandatedReportFiled(FactBase):
    """A mandated abuse report was made to an agency."""

    type: Literal["MandatedReportFiled"]
    report_id: Identifier
    kind: ReportKind
    agency: Name
    statute: Name | None = None
    suspected_at: Timestamp
    oral_at: Timestamp | None = None
    written_at: Timestamp | None = None
    categories: Categories


class NotifiedParty(Frozen):
    """Someone warned of a threat."""

    name: Name
    kind: NotifiedPartyKind


class DutyToWarnExercised(FactBase):
    """The therapist warned of a serious threat (Tarasoff duty)."""

    type: Literal["DutyToWarnExercised"]
    warning_id: Identifier
    victim_identified: Flag
    notified: Annotated[list[NotifiedParty], Field(min_length=1, max_length=20)]
    statute: Name | None = None
    categories: Categories | None = None


class LegalBasis(Frozen):
    """The basis a disclosure relies on, and the authorization, order, demand or report it names."""

    kind: LegalBasisKind
    reference_id: Identifier | None = None


class MinimumNecessary(Frozen):
    """How the practice limited a disclosure to the minimum necessary."""

    mode: MinimumNecessaryMode
    reviewer: Name | None = None
    justification: ShortText | None = None


class DisclosureMade(DateRanged):
    """Records left the practice."""

    type: Literal["DisclosureMade"]
    disclosure_id: Identifier
    recipient: Recipient
    categories: Categories
    method: DisclosureMethod
    legal_basis: LegalBasis
    purpose_of_use: PurposeOfUse
    minimum_necessary: MinimumNecessary | None = None


class LegalHoldPlaced(FactBase):
    """A legal hold suspends destruction of the record."""

    type: Literal["LegalHoldPlaced"]
    hold_id: Identifier
    reason: ShortText


class LegalHoldReleased(FactBase):
    """A legal hold was lifted."""

    type: Literal["LegalHoldReleased"]
    hold_id: Identifier
    reason: ShortText


class EventCorrected(FactBase):
    """An earlier fact was wrong; this one says how, without touching the original."""

    type: Literal["EventCorrected"]
    corrects_event_id: UUID
    reason: ShortText
    replacement: Annotated[
        dict[str, JsonValue], Field(min_length=1, max_length=50), AfterValidator(_plain_json)
    ]


class FindingAcknowledged(FactBase):
    """A compliance officer closed a finding."""

    type: Literal["FindingAcknowledged"]
    finding_id: Identifier
    resolution: FindingResolution
    note: ShortText | None = None


Fact = Annotated[
    RecordOpened
    | RecordAccessed
    | BreakGlassReviewed
    | AuthorizationGranted
    | AuthorizationRevoked
    | LegalDemandReceived
    | PrivilegeAsserted
    | PrivilegeWaived
    | CourtOrderIssued
    | DemandAnswered
    | MandatedReportFiled
    | DutyToWarnExercised
    | DisclosureMade
    | LegalHoldPlaced
    | LegalHoldReleased
    | EventCorrected
    | FindingAcknowledged,
    Field(discriminator="type"),
]
"""Any fact, told apart by its ``type``."""

FACT_TYPES: tuple[type[FactBase], ...] = typing.get_args(typing.get_args(Fact)[0])
"""Every fact type, in the order of ``Fact``: the one list the rest is derived from (the
record's event classes, the request unions, the ingest contract)."""

FACT_TYPES_BY_NAME: dict[str, type[FactBase]] = {cls.__name__: cls for cls in FACT_TYPES}
"""Fact classes by their ``type`` value."""
