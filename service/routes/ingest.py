"""Ingest: clinical systems post facts, one at a time or in atomic batches (API.md "Ingest")."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Response

from domain import facts
from service.application.ingest import Submission
from service.auth import Principal, Role
from service.deps import ServicesDep, require_writer
from service.schemas import (
    BatchReceipts,
    BatchRequest,
    IngestFact,
    Problem,
    ReceiptOut,
    fact_of,
)
from service.telemetry import observe_ingest

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["ingest"])

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "No or invalid API key, or a key revoked meanwhile"},
    403: {"model": Problem, "description": "The key lacks the ingest role"},
    409: {"model": Problem, "description": "event_id already used with different content"},
    413: {"model": Problem, "description": "Request body too large"},
    422: {
        "model": Problem,
        "description": "Malformed event, or a type this endpoint does not take "
        "(FindingAcknowledged has its own route); nothing stored",
    },
    503: {"model": Problem, "description": "Store unavailable or contended; retry"},
}

Ingestor = Annotated[Principal, Depends(require_writer(Role.INGEST))]


@router.post(
    "/records/{record_ref}/events",
    operation_id="post_event",
    status_code=201,
    response_model=ReceiptOut,
    responses={
        200: {"model": ReceiptOut, "description": "Already stored: the original receipt"},
        **_ERRORS,
    },
    summary="Record one fact about a client record",
)
async def post_event(
    record_ref: Annotated[facts.RecordRef, Path(description="The clinical system's record id")],
    fact: Annotated[IngestFact, Body()],
    principal: Ingestor,
    services: ServicesDep,
    response: Response,
) -> ReceiptOut:
    """Store one fact. 201 once durable; 200 with the original receipt for a repeat."""
    # async: the request waits for its group's commit without holding a thread.
    submissions = [Submission(record_ref=record_ref, fact=fact)]
    with observe_ingest(principal.tenant_id, submissions) as observed:
        receipts, created = await services.ingest.record_facts_async(
            principal.tenant_id, submissions, key_id=principal.key_id
        )
        observed.stored(receipts, created)
    response.status_code = 201 if created else 200
    return ReceiptOut.of(receipts[0])


@router.post(
    "/events:batch",
    operation_id="post_events_batch",
    status_code=201,
    response_model=BatchReceipts,
    responses={
        200: {"model": BatchReceipts, "description": "Every event was already stored"},
        **_ERRORS,
    },
    summary="Record up to 1000 facts atomically",
)
def post_events_batch(
    batch: BatchRequest, principal: Ingestor, services: ServicesDep, response: Response
) -> BatchReceipts:
    """Store all the facts or none. Repeats keep their original receipts."""
    submissions = [
        Submission(record_ref=item.record_ref, fact=fact_of(item)) for item in batch.events
    ]
    with observe_ingest(principal.tenant_id, submissions) as observed:
        receipts, created = services.ingest.record_facts(
            principal.tenant_id, submissions, key_id=principal.key_id
        )
        observed.stored(receipts, created)
    response.status_code = 201 if created else 200
    return BatchReceipts(receipts=[ReceiptOut.of(r) for r in receipts])
