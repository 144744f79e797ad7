"""Compliance queries over the read models (API.md "Queries"); every one is self-audited."""

import base64
import binascii
import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query
from fastapi.responses import Response

from domain import facts
from domain.errors import RecordNotFoundError
from domain.policy.accounting import COLUMNS, row
from domain.policy.state import party_key
from domain.record import ClientRecord
from domain.vocabulary import ActorRole, DataCategory, LegalBasisKind, PurposeOfUse
from projections.queries import (
    FactFilter,
    FindingFilter,
    access_page,
    accounting,
    disclosure_page,
    finding_page,
)
from projections.status import record_status
from projections.views import (
    AccessEntry,
    AccountingEntry,
    AuditRead,
    DisclosureEntry,
    FindingView,
    RecordStatus,
)
from service.application.lifecycle import retention_view
from service.auth import Principal, Role
from service.deps import MAX_POSITION, ServicesDep, audited
from service.schemas import Page, Problem
from service.spreadsheet import safe_row

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["queries"])
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem},
    404: {"model": Problem}, 422: {"model": Problem},
    503: {"model": Problem, "description": "Read models not yet at min_position; retry"},
}  # fmt: skip


Reader = Annotated[Principal, Depends(audited(Role.COMPLIANCE))]
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=200)]


def _after(cursor: str | None) -> str:
    if cursor is None:
        return ""
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, binascii.Error):
        raise HTTPException(400, "The cursor is not one this API returned.") from None


def _position(cursor: str | None) -> int:
    after = _after(cursor)
    if not after:
        return 0
    if not after.isdigit() or int(after) > MAX_POSITION:
        raise HTTPException(400, "The cursor is not one this API returned.")
    return int(after)


def _next(after: str | None) -> str | None:
    return None if after is None else base64.urlsafe_b64encode(after.encode()).decode()


@router.get("/access-log", operation_id="get_access_log", response_model=Page[AccessEntry],
            responses=_ERRORS, summary="Who saw what: every access, filtered")  # fmt: skip
def get_access_log(
    principal: Reader,
    services: ServicesDep,
    record_ref: facts.RecordRef | None = None,
    actor_id: Annotated[str | None, Query(max_length=200)] = None,
    role: ActorRole | None = None,
    category: DataCategory | None = None,
    purpose_of_use: PurposeOfUse | None = None,
    break_glass: bool | None = None,
    since: facts.Day | None = None,
    until: facts.Day | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AccessEntry]:
    """Accesses in log order; ``since``/``until`` are days of ``occurred_at`` (UTC)."""
    tenant = principal.tenant_id
    f = FactFilter(
        type="RecordAccessed",
        record_id=services.audit.record_id(tenant, record_ref) if record_ref else None,
        actor_id=actor_id, role=role, category=category, purpose_of_use=purpose_of_use,
        break_glass=break_glass, since=since, until=until,
    )  # fmt: skip
    with services.audit.db.transaction(commit=False) as cur:
        page = access_page(cur, services.projector.sealer, tenant, f, limit=limit,
                           after=_position(cursor))  # fmt: skip
    return Page(items=page.items, next_cursor=_next(page.next_after))


@router.get("/disclosures", operation_id="get_disclosures", response_model=Page[DisclosureEntry],
            responses=_ERRORS, summary="The disclosures register with findings")  # fmt: skip
def get_disclosures(
    principal: Reader,
    services: ServicesDep,
    record_ref: facts.RecordRef | None = None,
    recipient: Annotated[str | None, Query(max_length=300)] = None,
    legal_basis: LegalBasisKind | None = None,
    category: DataCategory | None = None,
    rule: Annotated[str | None, Query(pattern=r"^[A-Z]{2}-\d$")] = None,
    accountable: bool | None = None,
    since: facts.Day | None = None,
    until: facts.Day | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[DisclosureEntry]:
    """Disclosures in log order; ``recipient`` matches a name ignoring case and spacing."""
    tenant = principal.tenant_id
    f = FactFilter(
        type="DisclosureMade",
        record_id=services.audit.record_id(tenant, record_ref) if record_ref else None,
        recipient_key=services.audit.blind(party_key(recipient)) if recipient else None,
        legal_basis=legal_basis, category=category, rule=rule, accountable=accountable,
        since=since, until=until,
    )  # fmt: skip
    with services.audit.db.transaction(commit=False) as cur:
        page = disclosure_page(cur, services.projector.sealer, tenant, f, limit=limit,
                               after=_position(cursor))  # fmt: skip
    return Page(items=page.items, next_cursor=_next(page.next_after))


@router.get("/findings", operation_id="get_findings", response_model=Page[FindingView],
            responses=_ERRORS, summary="The findings queue")  # fmt: skip
def get_findings(
    principal: Reader,
    services: ServicesDep,
    rule: Annotated[str | None, Query(pattern=r"^[A-Z]{2}-\d$")] = None,
    severity: Literal["low", "medium", "high"] | None = None,
    status: Literal["open", "acknowledged", "withdrawn"] | None = None,
    record_ref: facts.RecordRef | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[FindingView]:
    """Findings by the position of the fact they judge; acknowledge with FindingAcknowledged."""
    tenant = principal.tenant_id
    after = _after(cursor) or "0:"
    position, _, rule_after = after.partition(":")
    if not position.isdigit() or int(position) > MAX_POSITION:
        raise HTTPException(400, "The cursor is not one this API returned.")
    f = FindingFilter(
        rule=rule, severity=severity, status=status,
        record_id=services.audit.record_id(tenant, record_ref) if record_ref else None,
    )  # fmt: skip
    with services.audit.db.transaction(commit=False) as cur:
        page = finding_page(cur, services.projector.sealer, tenant, f, limit=limit,
                            after=(int(position), rule_after))  # fmt: skip
    return Page(items=page.items, next_cursor=_next(page.next_after))


@router.get("/records/{record_ref}", operation_id="get_record_status", responses=_ERRORS,
            response_model=RecordStatus,
            summary="A record's status now, or as of a time")  # fmt: skip
def get_record_status(
    principal: Reader,
    services: ServicesDep,
    record_ref: Annotated[facts.RecordRef, Path()],
    as_of: facts.Timestamp | None = None,
) -> RecordStatus:
    """Authorizations, privilege per demand, open demands and holds, as they stood."""
    stored = services.audit.read_record(principal.tenant_id, record_ref)
    history = [s.event.fact for s in stored if isinstance(s.event, ClientRecord.FactRecorded)]
    moment = as_of or datetime.now(UTC)
    if moment.tzinfo is None:
        raise HTTPException(422, "as_of needs a UTC offset, e.g. 2026-03-01T00:00:00Z.")
    status = record_status(record_ref, history, moment)
    if as_of is not None:
        return status
    today = moment.date()
    report = services.lifecycle.report(record_ref, stored, today)
    return status.model_copy(update={"retention": retention_view(report, today)})


@router.get(
    "/records/{record_ref}/accounting",
    operation_id="get_accounting",
    response_model=Page[AccountingEntry],
    responses={200: {"content": {"text/csv": {}}}, **_ERRORS},
    summary="The 45 CFR 164.528 accounting of disclosures (JSON, or CSV with Accept: text/csv)",
)
def get_accounting(
    principal: Reader,
    services: ServicesDep,
    record_ref: Annotated[facts.RecordRef, Path()],
    since: facts.Day | None = None,
    until: facts.Day | None = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """Accountable disclosures, reports and warnings of the rule set's lookback (six years
    under HIPAA, 164.528(a)(1)), or of ``since``..``until``; lawful repeats under a 164.512
    basis summarised (164.528(b)(3)), impermissible ones each on their own."""
    today = datetime.now(UTC).date()
    if not services.audit.has_record(principal.tenant_id, record_ref):
        raise RecordNotFoundError(record_ref)  # another tenant's record is simply not found
    record = services.audit.record_id(principal.tenant_id, record_ref)
    with services.audit.db.transaction(commit=False) as cur:
        items = accounting(cur, services.projector.sealer, services.audit.rulebook,
                           principal.tenant_id, (record, record_ref), since=since,
                           until=until or today, today=today)  # fmt: skip
    if accept and "text/csv" in accept:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        for item in items:
            # Names, addresses and ids a spreadsheet must show, never evaluate (OWASP).
            writer.writerow(safe_row(row(item.model_dump(mode="json"))))
        return Response(buffer.getvalue(), media_type="text/csv")
    body = Page(items=items, next_cursor=None)
    return Response(body.model_dump_json(), media_type="application/json")


@router.get("/audit-reads", operation_id="get_audit_reads", response_model=Page[AuditRead],
            responses=_ERRORS, summary="Who queried or exported the audit trail")  # fmt: skip
def get_audit_reads(
    principal: Reader, services: ServicesDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[AuditRead]:
    """Every query and export, oldest first; this read is itself recorded (once)."""
    items, after = services.reads.page(principal.tenant_id, limit=limit, after=_position(cursor))
    return Page(items=items, next_cursor=_next(None if after is None else str(after)))
