"""Records lifecycle (API.md "Records lifecycle", role ``admin``): destroying a record at the end
of its retention. The use case is ``service/application/lifecycle.py``."""

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from domain import facts
from projections.views import RetentionView
from service.application.lifecycle import RecordRetention, retention_view
from service.auth import Principal, Role
from service.container import Services
from service.deps import ServicesDep, require
from service.schemas import Problem

__all__ = ["router", "sweep_all"]

_log = logging.getLogger("disclosure_audit.retention")
FIRST_SWEEP_SECONDS = 600.0


def sweep_all(services: Services) -> dict[str, int]:
    """One retention sweep of every tenant (RT-1 findings); the totals."""
    today = datetime.now(UTC).date()
    totals = {"tenants": 0, "raised": 0, "withdrawn": 0}
    for tenant in services.audit.tenant_log.tenants():
        changed = services.lifecycle.sweep(tenant, today)
        totals["tenants"] += 1
        totals["raised"] += changed["raised"]
        totals["withdrawn"] += changed["withdrawn"]
    return totals


@asynccontextmanager
async def _sweeper(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    hours = services.settings.retention_sweep_hours
    stop = threading.Event()

    def run() -> None:
        wait = FIRST_SWEEP_SECONDS
        while not stop.wait(wait):
            wait = hours * 3600
            try:
                totals = sweep_all(services)
            except Exception as error:
                _log.warning("retention sweep failed: %s", type(error).__name__)
            else:
                _log.info("retention sweep: %s", totals)

    thread = threading.Thread(target=run, name="retention-sweep", daemon=True)
    if hours > 0:
        thread.start()
    try:
        yield
    finally:
        stop.set()


router = APIRouter(prefix="/v1", tags=["lifecycle"], lifespan=_sweeper)

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


class DestructionRequest(BaseModel):
    """What to do: destroy the record, or only say whether it would be destroyed."""

    model_config = ConfigDict(extra="forbid")
    dry_run: bool = Field(
        default=False, description="Only report the retention: nothing is recorded or destroyed"
    )


class DestructionOut(BaseModel):
    """The outcome: the record's retention now, and its certificate's place once destroyed."""

    record_id: UUID = Field(description="The record's pseudonymous stream id (names no client)")
    destroyed: bool
    retention: RetentionView


@router.post(
    "/records/{record_ref}/destruction",
    operation_id="destroy_record",
    response_model=DestructionOut,
    status_code=201,
    responses={
        200: {"model": DestructionOut, "description": "Dry run, or destroyed already"},
        401: {"model": Problem},
        403: {"model": Problem},
        404: {"model": Problem, "description": "No such record in your tenant"},
        409: {
            "model": Problem,
            "description": "Not due, or blocked (a legal hold, an open demand, …): 'errors' "
            "lists each reason with its kind",
        },
        422: {"model": Problem},
    },
    summary="Destroy a record at the end of its retention (crypto-shredding)",
)
def destroy_record(
    record_ref: Annotated[facts.RecordRef, Path()],
    principal: Admin,
    services: ServicesDep,
    request: DestructionRequest | None = None,
) -> JSONResponse:
    """Records ``RecordDestroyed`` (the certificate: who, when, rule, method, and what the 6-year
    documentation duty still needs, naming no client), destroys the record's key in every
    process and purges its plaintext; a record not due or blocked is refused with the reasons."""
    # Not ``audited``: a write waits for no read model (?min_position= means nothing here). It
    # is still recorded in the self-audit, and sees destructions by other processes first.
    services.audit.sync_keys()
    dry_run = request is not None and request.dry_run
    route = "POST /v1/records/{record_ref}/destruction"
    services.reads.record(principal, route, {"record_ref": record_ref, "dry_run": dry_run})
    today = datetime.now(UTC).date()
    lifecycle = services.lifecycle
    before = lifecycle.retention(principal.tenant_id, record_ref, today)
    if dry_run or before.certificate is not None:
        body = DestructionOut(
            record_id=before.record_id,
            destroyed=before.certificate is not None,
            retention=retention_view(before, today),
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=200)
    certificate = lifecycle.destroy(
        principal.tenant_id, record_ref, f"api key {principal.key_id}", today
    )
    after = RecordRetention(None, certificate.record_id, None, certificate)
    body = DestructionOut(
        record_id=after.record_id, destroyed=True, retention=retention_view(after, today)
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=201)
