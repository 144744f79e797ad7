"""Request and response bodies of the public API (API.md), separate from stored events."""

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, Union
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from domain import facts
from domain.record import ClientRecord
from domain.vocabulary import FindingResolution
from service.application.ingest import Receipt
from service.storage.app import StoredEvent

__all__ = [
    "INGEST_FACT_TYPES",
    "MAX_BATCH",
    "AcknowledgementOut",
    "AcknowledgementRequest",
    "BatchItem",
    "BatchReceipts",
    "BatchRequest",
    "ConsistencyProofOut",
    "ExportOut",
    "ExportRequest",
    "FindingOut",
    "InclusionProofOut",
    "IngestFact",
    "Page",
    "Problem",
    "ReceiptOut",
    "TimelineItem",
    "TimelinePage",
    "fact_of",
]

MAX_BATCH = 1000


class Out(BaseModel):
    """Base of response bodies."""

    model_config = ConfigDict(frozen=True)


class FindingOut(Out):
    """A rule the fact breaks, as judged at ingest."""

    rule: str = Field(description="Rule id of PRODUCT.md section 5, e.g. PN-1")
    severity: str = Field(description="low, medium or high")
    citation: str = Field(description="The law or standard the rule applies")
    message: str
    evidence: list[UUID] = Field(description="event_ids of the facts the finding rests on")
    ruleset: str = Field(
        description="The rule set and version that produced it, e.g. US-MA@2026.11"
    )


class ReceiptOut(Out):
    """Proof of storage: only a 2xx with this body means the fact is stored."""

    event_id: UUID
    record_ref: str
    position: int = Field(description="Position in the tenant log; use it as ?min_position=.")
    recorded_at: datetime
    findings: list[FindingOut]
    accountable: bool | None = Field(
        description="Whether the disclosure belongs in a 164.528 accounting; null for facts "
        "that are not disclosures."
    )
    excess_categories: list[str] = Field(
        description="Categories disclosed beyond what the legal basis allows (minimum necessary)."
    )
    ruleset: str | None = Field(description="The rule set that judged the fact.")

    @classmethod
    def of(cls, receipt: Receipt) -> "ReceiptOut":
        """The response body of a stored receipt."""
        return cls(
            event_id=receipt.event_id,
            record_ref=receipt.record_ref,
            position=receipt.position,
            recorded_at=receipt.recorded_at,
            findings=[FindingOut.model_validate(f) for f in receipt.findings],
            accountable=receipt.accountable,
            excess_categories=list(receipt.excess_categories),
            ruleset=receipt.ruleset,
        )


class BatchReceipts(Out):
    """Receipts of a batch, in the order of the request."""

    receipts: list[ReceiptOut]


INGEST_FACT_TYPES: tuple[type[facts.FactBase], ...] = tuple(
    model for model in facts.FACT_TYPES if model is not facts.FindingAcknowledged
)
"""What a clinical system may post: every fact but FindingAcknowledged, which is the compliance
officer's act (API.md: "the ingest role cannot post that fact"); it has its own route."""

_ACK_ROUTE = "POST /v1/findings/<finding_id>/acknowledgement"


def _no_acknowledgement(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # The discriminated union already refuses the type; this only swaps pydantic's generic
    # "does not match any of the expected tags" for a message that says where it belongs.
    try:
        return handler(value)
    except ValidationError:
        if isinstance(value, dict) and value.get("type") == "FindingAcknowledged":
            raise PydanticCustomError(
                "union_tag_invalid",
                "FindingAcknowledged is not accepted on the ingest endpoints: a compliance key "
                f"records it with {_ACK_ROUTE}. Allowed types: "
                + ", ".join(model.__name__ for model in INGEST_FACT_TYPES),
            ) from None
        raise


def _with_record_ref(model: type[facts.FactBase]) -> type[facts.FactBase]:
    return create_model(
        f"{model.__name__}Item",
        __base__=model,
        __doc__=f"{model.__doc__} (batch item: names its record)",
        record_ref=(facts.RecordRef, ...),
    )


if TYPE_CHECKING:
    IngestFact = facts.FactBase

    class BatchItem(facts.FactBase):
        """A fact with the record it belongs to."""

        type: str
        record_ref: str

else:
    # An alias, not a bare Annotated: FastAPI keeps only the Field metadata of a body
    # parameter's Annotated (it would drop the validator), but passes an alias through whole.
    IngestFact = TypeAliasType(
        "IngestFact",
        Annotated[
            Union[INGEST_FACT_TYPES],  # noqa: UP007
            Field(discriminator="type"),
            WrapValidator(_no_acknowledgement),
        ],
    )
    BatchItem = Annotated[
        Union[tuple(_with_record_ref(m) for m in INGEST_FACT_TYPES)],  # noqa: UP007
        Field(discriminator="type"),
        WrapValidator(_no_acknowledgement),
    ]


def fact_of(item: facts.FactBase) -> facts.FactBase:
    """The fact a validated batch item carries, as its own type, without its ``record_ref``.

    The item's class is the fact's class plus ``record_ref`` (``_with_record_ref``), so every
    field, field validator and model validator of the fact has already run on it: the fact
    is built from the validated values, not dumped and validated a second time (a fifth of the
    request thread's time on a batch of 1000).
    """
    model = type(item).__mro__[1]
    if (
        "record_ref" not in type(item).model_fields
        or not issubclass(model, facts.FactBase)
        or "record_ref" in model.model_fields
    ):
        raise TypeError(f"{type(item).__name__} is not a batch item")
    values = {name: getattr(item, name) for name in model.model_fields}
    return model.model_construct(item.model_fields_set - {"record_ref"}, **values)


class BatchRequest(BaseModel):
    """Up to 1000 facts, for any records of the caller's tenant, stored all or none."""

    model_config = ConfigDict(extra="forbid")
    events: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_BATCH)]


class TimelineItem(Out):
    """One event of a record; a redacted one (record key destroyed) shows no content."""

    position: int
    recorded_at: datetime
    type: str
    redacted: bool
    event_id: UUID | None = None
    occurred_at: datetime | None = None
    event: dict[str, Any] | None = None

    @classmethod
    def of(cls, stored: StoredEvent) -> "TimelineItem":
        """The timeline entry of a stored event."""
        event = stored.event
        if isinstance(event, ClientRecord.FactRecorded):
            fact = event.fact
            return cls(
                position=stored.position,
                recorded_at=stored.recorded_at,
                type=type(fact).__name__,
                redacted=False,
                event_id=fact.event_id,
                occurred_at=fact.occurred_at,
                event=fact.model_dump(mode="json", exclude_none=True),
            )
        if isinstance(event, ClientRecord.Destroyed):  # the certificate outlives the record
            return cls(
                position=stored.position,
                recorded_at=stored.recorded_at,
                type="RecordDestroyed",
                redacted=False,
                occurred_at=stored.recorded_at,
                event=event.model_dump(mode="json", exclude={"originator_version"}),
            )
        original = getattr(event, "original_topic", type(event).TOPIC)
        return cls(
            position=stored.position,
            recorded_at=stored.recorded_at,
            type=original.rsplit("/", 1)[-1],
            redacted=True,
        )


class TimelinePage(Out):
    """A page of a record's timeline, in occurred_at order."""

    items: list[TimelineItem]
    next_cursor: str | None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class InclusionProofOut(Out):
    """An RFC 9162 inclusion proof (hashes in base64)."""

    event_id: UUID
    leaf_index: int
    tree_size: int
    leaf_hash: str
    proof: list[str]


class ConsistencyProofOut(Out):
    """An RFC 9162 consistency proof (hashes in base64)."""

    from_size: int
    to_size: int
    proof: list[str]


class ExportRequest(BaseModel):
    """What a regulator export holds; no field means the whole log (API.md)."""

    model_config = ConfigDict(extra="forbid")
    since: date | None = None
    until: date | None = None
    record_refs: Annotated[list[facts.RecordRef], Field(max_length=1000)] | None = None
    previous_checkpoint: Annotated[str, Field(max_length=4000)] | None = Field(
        default=None,
        description="checkpoint.txt of an earlier bundle: adds a consistency proof from it.",
    )


class ExportOut(Out):
    """The state of an export."""

    export_id: UUID
    status: str = Field(
        description="pending, running, done, failed, or expired (the bundle was deleted at the "
        "end of the retention period; start a new export)"
    )
    events: int | None = None
    tree_size: int | None = None
    detail: str | None = None
    expires_at: datetime | None = Field(
        default=None, description="When a done export's bundle will be deleted (retention)."
    )


class AcknowledgementRequest(BaseModel):
    """How a compliance officer closed a finding."""

    model_config = ConfigDict(extra="forbid")
    resolution: FindingResolution
    note: facts.ShortText | None = None


class AcknowledgementOut(Out):
    """The stored FindingAcknowledged fact: the finding shows it once read models reach position."""

    finding_id: UUID
    resolution: FindingResolution
    event_id: UUID = Field(description="The FindingAcknowledged fact in the record's stream.")
    position: int = Field(description="Position in the tenant log; use it as ?min_position=.")
    recorded_at: datetime


T = TypeVar("T")


class Page(Out, Generic[T]):
    """A page of a list (API.md "Lists"): pass ``next_cursor`` as ``?cursor=`` for the next."""

    items: list[T]
    next_cursor: str | None
