"""Regulator exports over HTTP: start one, poll it, download the bundle as .tar.gz.

Bundles are plaintext and kept only for ``export_retention_hours`` (service/integrity/jobs.py);
a janitor sweeps them when the app starts and then periodically.
"""

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.responses import StreamingResponse

from service.auth import Principal, Role
from service.container import Services
from service.deps import ServicesDep, audited, require_any
from service.integrity.export import ExportScope, write_bundle
from service.integrity.jobs import BundleStore, ExportJanitor, ExportJobs
from service.schemas import ExportOut, ExportRequest, Problem
from service.telemetry import observe_export

__all__ = ["bundle_response", "recent_exports", "router", "start_export"]


@asynccontextmanager
async def _janitor(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    retention = _retention(services)
    # Often enough that a bundle outlives its retention by at most a twelfth of it (or 15 min).
    interval = min(900.0, max(1.0, retention.total_seconds() / 12))
    janitor = ExportJanitor(_bundles(services), _jobs(services), interval)
    janitor.start()
    try:
        yield
    finally:
        janitor.stop()


router = APIRouter(prefix="/v1/exports", tags=["integrity"], lifespan=_janitor)
Auditor = Annotated[Principal, Depends(audited(Role.REGULATOR, Role.COMPLIANCE))]
_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
    422: {"model": Problem},
}


def _retention(services: Services) -> timedelta:
    return timedelta(hours=services.settings.export_retention_hours)


def _jobs(services: Services) -> ExportJobs:
    return ExportJobs(services.audit.db, _retention(services))


def _bundles(services: Services) -> BundleStore:
    return BundleStore(services.settings.exports_path)


def _run(
    services: Services,
    tenant: str,
    export_id: UUID,
    scope: ExportScope,
    previous_checkpoint: str | None,
) -> None:
    jobs, bundles = _jobs(services), _bundles(services)
    jobs.update(export_id, "running")
    try:
        with observe_export("full" if scope.full else "partial", tenant):
            summary = write_bundle(
                services.log,
                services.audit,
                tenant,
                bundles.directory(export_id),
                scope=scope,
                previous_checkpoint=previous_checkpoint,
            )
            # Packed once, here, before the job says done: downloads only read a finished file.
            bundles.pack(export_id)
    except Exception as error:  # the job records the failure; the client polls for it
        bundles.discard(export_id)
        jobs.update(export_id, "failed", detail=type(error).__name__)
        raise
    jobs.update(export_id, "done", events=summary.events, tree_size=summary.checkpoint.size)


@router.post(
    "",
    operation_id="create_export",
    status_code=202,
    response_model=ExportOut,
    responses=_ERRORS,
    summary="Start an export of the tenant's audit trail",
)
def create_export(
    request: ExportRequest,
    principal: Annotated[Principal, Depends(require_any(Role.REGULATOR, Role.COMPLIANCE))],
    services: ServicesDep,
    tasks: BackgroundTasks,
) -> ExportOut:
    """The export runs in the background; poll ``GET /v1/exports/{export_id}``."""
    return start_export(services, principal, request, tasks)


def start_export(
    services: Services, principal: Principal, request: ExportRequest, tasks: BackgroundTasks
) -> ExportOut:
    """Record the export in the self-audit, queue it, and return its pending job (the API's
    and the console's way to start one)."""
    services.reads.record(principal, "POST /v1/exports", request.model_dump(mode="json"))
    scope = ExportScope(request.since, request.until, tuple(request.record_refs or ()))
    export_id = uuid4()
    previous = request.previous_checkpoint
    if previous is not None and previous.split("\n", 1)[0] != services.log.origin(
        principal.tenant_id
    ):
        raise HTTPException(422, "previous_checkpoint is not a checkpoint of your tenant's log.")
    _jobs(services).create(export_id, principal.tenant_id)
    tasks.add_task(_run, services, principal.tenant_id, export_id, scope, previous)
    return ExportOut(export_id=export_id, status="pending")


def recent_exports(services: Services, principal: Principal) -> list[ExportOut]:
    """The caller's tenant's latest exports, newest first."""
    return _jobs(services).recent(principal.tenant_id)


@router.get(
    "/{export_id}",
    operation_id="get_export",
    response_model=ExportOut,
    responses=_ERRORS,
    summary="The state of an export",
)
def get_export(export_id: UUID, principal: Auditor, services: ServicesDep) -> ExportOut:
    """pending, running, done (with counts and expires_at), failed or expired."""
    jobs = _jobs(services)
    job = jobs.find(export_id, principal.tenant_id)
    if job is None:
        raise HTTPException(404, "No such export in your tenant.")
    if job.expires_at is not None and job.expires_at <= datetime.now(UTC):
        _bundles(services).sweep(jobs, datetime.now(UTC))  # the janitor has not got to it yet
        job = jobs.find(export_id, principal.tenant_id) or job
    return job


_GONE = "The bundle was deleted at the end of the export retention period; start a new export."


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(1 << 16):
            yield chunk


@router.get(
    "/{export_id}/bundle",
    operation_id="get_export_bundle",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}},
        410: {"model": Problem, "description": "Deleted after the export retention period"},
        **_ERRORS,
    },
    summary="The bundle (.tar.gz of the directory 'disclosure-audit export' writes)",
)
def get_export_bundle(
    export_id: UUID, principal: Auditor, services: ServicesDep
) -> StreamingResponse:
    """Available once the export is done, until its retention period ends."""
    return bundle_response(services, principal, export_id)


def bundle_response(services: Services, principal: Principal, export_id: UUID) -> StreamingResponse:
    """The bundle as a download, or an HTTPException that says why not."""
    jobs, bundles = _jobs(services), _bundles(services)
    job = jobs.find(export_id, principal.tenant_id)
    if job is None:
        raise HTTPException(404, "No such export in your tenant.")
    if job.expires_at is not None and job.expires_at <= datetime.now(UTC):
        bundles.sweep(jobs, datetime.now(UTC))  # the janitor has not got to it yet
        raise HTTPException(410, _GONE)
    if job.status == "expired":
        raise HTTPException(410, _GONE)
    if job.status != "done":
        raise HTTPException(409, f"The export is {job.status}; poll until it is done.")
    try:
        # Opened here, not when the body is sent: a sweep that deletes the file from now on
        # cannot cut this download short (the open file outlives its name).
        handle = bundles.archive(export_id).open("rb")
    except FileNotFoundError:
        raise HTTPException(
            410,
            "The bundle's file is not on this server: deleted, or written by another server of "
            "this deployment; start a new export.",
        ) from None
    size = str(os.fstat(handle.fileno()).st_size)
    name = f"export-{export_id}.tar.gz"
    return StreamingResponse(
        _chunks(handle),
        media_type="application/gzip",
        headers={"Content-Length": size, "Content-Disposition": f'attachment; filename="{name}"'},
    )
