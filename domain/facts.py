"""Facts a clinical system reports: one frozen model per event type of the public API.

A fact is validated for well-formedness only (types, vocabularies, required fields, ranges that
end before they start). Whether what it describes was lawful is a finding, never a rejection
(PRODUCT.md section 2.1).
"""

from datetime import date
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

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

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]
"""An id chosen by the clinical system: 1..200 characters, no leading or trailing space."""

RecordRef = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s/?#]+$")]
"""The clinical system's client-record id; it travels in URL paths, so no space, / ? or #."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=300)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
"""Free text is personal data: kept short, stored encrypted with the record's key."""

Jurisdiction = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")]
"""ISO 3166 country, optionally with a subdivision: "US", "US-MA"."""

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
    occurred_at: AwareDatetime
    actor: Actor
    source: Source


class DateRanged(FactBase):
    """A fact that names a range of record dates; the range may not end before it starts."""

    records_from: date | None = None
    records_until: date | None = None

    @field_validator("records_until")
    @classmethod
    def _range_ends_after_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("records_from")
        if value is not None and start is not None and value < start:
            raise ValueError("records_until is before records_from")
        return value


class Participant(Frozen):
    """A person in a joint (couple, family, group) record."""

    id: Identifier
    adult: bool


class RecordOpened(FactBase):
    """A client record was opened under a jurisdiction's rules."""

    type: Literal["RecordOpened"]
    jurisdiction: Jurisdiction
    setting: Setting
    participants: Annotated[list[Participant], Field(max_length=50)] | None = None
    client_birth_date: date | None = None
    minor_consented_to_treatment: bool | None = None
    part2_program: bool | None = None


class RecordAccessed(FactBase):
    """Someone in the practice used the record."""

    type: Literal["RecordAccessed"]
    categories: Categories
    action: AccessAction
    purpose_of_use: PurposeOfUse
    break_glass: bool = False
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
    expires_at: AwareDatetime | None = None
    in_writing: bool


class AuthorizationRevoked(FactBase):
    """An authorization was revoked."""

    type: Literal["AuthorizationRevoked"]
    authorization_id: Identifier
    in_writing: bool


class Assurances(Frozen):
    """Satisfactory assurances that come with a subpoena (45 CFR 164.512(e)(1)(ii))."""

    client_notified_at: AwareDatetime | None = None
    objection_deadline: date | None = None
    protective_order: bool | None = None


class LegalDemandReceived(DateRanged):
    """A subpoena, order, warrant or request for the record was served."""

    type: Literal["LegalDemandReceived"]
    demand_id: Identifier
    kind: DemandKind
    issuer: Name
    court: Name | None = None
    case_number: Identifier | None = None
    categories: Categories
    return_date: date | None = None
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
    in_writing: bool


class OrderRecipient(Frozen):
    """Who a court order allows to receive records."""

    name: Name
    kind: RecipientKind


class CourtOrderIssued(DateRanged):
    """A court ordered disclosure, possibly piercing the privilege."""

    type: Literal["CourtOrderIssued"]
    order_id: Identifier
    demand_id: Identifier | None = None
    court: Name
    judge: Name | None = None
    pierces_privilege: bool
    ground: ShortText | None = None
    categories: Categories
    recipients: Annotated[list[OrderRecipient], Field(max_length=50)]


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
    suspected_at: AwareDatetime
    oral_at: AwareDatetime | None = None
    written_at: AwareDatetime | None = None
    categories: Categories


class NotifiedParty(Frozen):
    """Someone warned of a threat."""

    name: Name
    kind: NotifiedPartyKind


class DutyToWarnExercised(FactBase):
    """The therapist warned of a serious threat (Tarasoff duty)."""

    type: Literal["DutyToWarnExercised"]
    warning_id: Identifier
    victim_identified: bool
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
    replacement: Annotated[dict[str, JsonValue], Field(min_length=1, max_length=50)]


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

FACT_TYPES: tuple[type[FactBase], ...] = (
    RecordOpened,
    RecordAccessed,
    BreakGlassReviewed,
    AuthorizationGranted,
    AuthorizationRevoked,
    LegalDemandReceived,
    PrivilegeAsserted,
    PrivilegeWaived,
    CourtOrderIssued,
    DemandAnswered,
    MandatedReportFiled,
    DutyToWarnExercised,
    DisclosureMade,
    LegalHoldPlaced,
    LegalHoldReleased,
    EventCorrected,
    FindingAcknowledged,
)

FACT_TYPES_BY_NAME: dict[str, type[FactBase]] = {cls.__name__: cls for cls in FACT_TYPES}
"""Fact classes by their ``type`` value."""
