"""What the queries answer: one frozen view model per kind of result.

The routes, the OpenAPI document and the console's templates all read these, so a field named
here is a field a client and a template can rely on. Entries of a crypto-shredded record keep
their position, event id and time, say ``redacted: true``, and leave every personal field None.
"""

import datetime as dt
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain import facts
from domain.vocabulary import (
    AccessAction,
    AuthorizationKind,
    DataCategory,
    DemandKind,
    DisclosureMethod,
    LegalBasisKind,
    PrivilegeHolder,
    PurposeOfUse,
)

__all__ = [
    "AccessEntry",
    "AccountingEntry",
    "AccountingRecipient",
    "AuditRead",
    "AuthorizationStatus",
    "DisclosureEntry",
    "FindingStatus",
    "FindingView",
    "HoldStatus",
    "OpenDemand",
    "PrivilegeStatus",
    "RecordStatus",
    "View",
]


class View(BaseModel):
    """Base of every view: immutable."""

    model_config = ConfigDict(frozen=True)


FindingStatus = Literal["open", "acknowledged", "withdrawn"]


class FindingView(View):
    """A finding of the queue: a rule that a fact breaks, and where the officer stands on it."""

    finding_id: UUID = Field(description="Stable: the same rule on the same fact keeps its id")
    rule: str = Field(description="Rule id of PRODUCT.md section 5, e.g. PN-1")
    severity: Literal["low", "medium", "high"]
    citation: str
    message: str
    evidence: list[UUID] = Field(description="event_ids of the facts the finding rests on")
    ruleset: str = Field(description="Rule set and version, e.g. US-MA@2026.11")
    event_id: UUID = Field(description="The judged fact")
    position: int = Field(description="The judged fact's position in the tenant log")
    record_ref: str | None = Field(
        description="The record of the judged fact; null once it was crypto-shredded"
    )
    status: FindingStatus
    resolution: str | None
    changed_at_position: int = Field(description="Log position of the last change")


class _Entry(View):
    position: int
    event_id: UUID
    occurred_at: datetime
    redacted: bool = Field(description="The record was crypto-shredded: only these fields remain")
    record_ref: str | None = None
    actor: facts.Actor | None = None
    source: facts.Source | None = None
    categories: list[DataCategory] | None = None
    purpose_of_use: PurposeOfUse | None = None


class AccessEntry(_Entry):
    """One access of the access log (RecordAccessed)."""

    type: Literal["RecordAccessed"] = "RecordAccessed"
    action: AccessAction | None = None
    break_glass: bool | None = None
    justification: str | None = None


class DisclosureEntry(_Entry):
    """One disclosure of the register (DisclosureMade) with how it was judged."""

    type: Literal["DisclosureMade"] = "DisclosureMade"
    disclosure_id: str | None = None
    recipient: facts.Recipient | None = None
    method: DisclosureMethod | None = None
    legal_basis: facts.LegalBasis | None = None
    minimum_necessary: facts.MinimumNecessary | None = None
    records_from: date | None = None
    records_until: date | None = None
    findings: list[FindingView]
    excess_categories: list[DataCategory] = Field(
        description="Categories disclosed beyond what the legal basis allows (minimum necessary)"
    )
    accountable: bool | None = Field(description="Whether it belongs in a 164.528 accounting")


class AccountingRecipient(View):
    """To whom, as 164.528(b)(2)(ii) asks: a name and, if known, an address."""

    name: str
    address: str | None


class AccountingEntry(View):
    """One entry of the 45 CFR 164.528 accounting (a disclosure, or a summary of repeats)."""

    date: dt.date = Field(description="The first (or only) disclosure's date")
    last_date: dt.date = Field(description="The last disclosure summarised (= date when single)")
    count: int = Field(description="Disclosures this entry stands for (164.528(b)(3))")
    recipient: AccountingRecipient
    description: str = Field(description="What was disclosed, in plain words")
    purpose: str = Field(description="Why, or the basis, in plain words")
    legal_basis: LegalBasisKind
    disclosure_id: str
    purpose_of_use: PurposeOfUse | None
    categories: list[DataCategory]
    kind: Literal["disclosure", "report", "warning"]
    impermissible: bool = Field(description="Made without a valid basis: listed on its own")
    rules: list[str] = Field(description="The rules that found it impermissible")
    record_ref: str


class AuthorizationStatus(View):
    """An authorization as it stood."""

    authorization_id: str
    kind: AuthorizationKind
    status: Literal["active", "revoked", "expired"]
    granted_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None
    recipients: list[str]
    purposes: list[PurposeOfUse]
    categories: list[DataCategory]


class PrivilegeStatus(View):
    """Privilege asserted against one demand, and whether it still stands."""

    demand_id: str
    status: Literal["asserted", "waived", "pierced"]
    holder: PrivilegeHolder
    statute: str | None


class OpenDemand(View):
    """A legal demand not answered yet."""

    demand_id: str
    kind: DemandKind
    issuer: str
    return_date: date | None


class HoldStatus(View):
    """A legal hold in place."""

    hold_id: str
    placed_at: datetime


class RetentionBlock(View):
    """Something that stops a record's destruction, and what to do about it."""

    kind: str = Field(
        description="legal_hold, open_demand (an implicit hold), birth_date_unknown, "
        "no_record_opened, or not_yet_due"
    )
    ref: str | None = Field(default=None, description="The hold_id or demand_id")
    since: date | None = None
    reason: str


class RetentionView(View):
    """How long the record is kept, by which rule, and what blocks its destruction."""

    status: str = Field(description="kept (not yet due), due, blocked, or destroyed")
    ruleset: str | None = None
    rule: str | None = Field(default=None, description="adult or minor: the term that applies")
    citation: str | None = None
    last_service: date | None = None
    keep_until: date | None = Field(default=None, description="The last day it must be kept")
    due_on: date | None = Field(default=None, description="The first day it may be destroyed")
    blocks: list[RetentionBlock] = Field(default_factory=list)
    destroyed_at: datetime | None = None
    certificate_position: int | None = Field(
        default=None, description="Log position of the certificate of destruction"
    )


class RecordStatus(View):
    """A record's standing at an instant."""

    record_ref: str
    as_of: datetime
    jurisdiction: str | None
    setting: str | None
    authorizations: list[AuthorizationStatus]
    privilege: list[PrivilegeStatus]
    open_demands: list[OpenDemand]
    holds: list[HoldStatus]
    retention: RetentionView | None = Field(
        default=None, description="Retention now (not as_of): shown when as_of is not given"
    )


class AuditRead(View):
    """One read of the audit trail (the self-audit, PRODUCT.md 2.7)."""

    read_id: UUID
    at: datetime
    key_id: str
    route: str = Field(description="Method and route template, e.g. GET /v1/records/{record_ref}")
    record_ref: str | None = Field(
        description="The record a read was about (its record_ref path or query parameter)"
    )
    filters: dict[str, str | list[str]] = Field(
        description="Query and path parameters of the read (an export's: its body)"
    )
