"""Findings: a compliance officer acknowledges one (API.md "Queries")."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Path

from service.auth import Principal, Role
from service.deps import ServicesDep, require
from service.findings import FindingNotFoundError, acknowledge_finding
from service.schemas import AcknowledgementOut, AcknowledgementRequest, Problem

__all__ = ["router"]

router = APIRouter(prefix="/v1/findings", tags=["queries"])

Officer = Annotated[Principal, Depends(require(Role.COMPLIANCE))]


@router.post(
    "/{finding_id}/acknowledgement",
    operation_id="acknowledge_finding",
    status_code=201,
    response_model=AcknowledgementOut,
    responses={
        401: {"model": Problem, "description": "No or invalid API key"},
        403: {"model": Problem, "description": "The key lacks the compliance role"},
        404: {"model": Problem, "description": "No such finding in your tenant"},
        409: {"model": Problem, "description": "The finding's record was crypto-shredded"},
        413: {"model": Problem, "description": "Request body too large"},
        422: {"model": Problem, "description": "Malformed body; nothing stored"},
        503: {"model": Problem, "description": "Store unavailable or contended; retry"},
    },
    summary="Acknowledge a finding (recorded as FindingAcknowledged in the record's stream)",
)
def post_acknowledgement(
    finding_id: Annotated[UUID, Path(description="A finding_id from GET /v1/findings")],
    body: AcknowledgementRequest,
    principal: Officer,
    services: ServicesDep,
) -> AcknowledgementOut:
    """Close a finding. GET /v1/findings?min_position=<position> then shows it acknowledged."""
    try:
        stored = acknowledge_finding(services, principal, finding_id, body.resolution, body.note)
    except FindingNotFoundError:
        raise HTTPException(404, "No such finding in your tenant.") from None
    return AcknowledgementOut(
        finding_id=finding_id,
        resolution=stored.fact.resolution,
        event_id=stored.receipt.event_id,
        position=stored.receipt.position,
        recorded_at=stored.receipt.recorded_at,
    )
