"""Regulator exports over HTTP: start one, poll it, download the bundle as .tar.gz."""

import tarfile
from pathlib import Path
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException
from fastapi.responses import FileResponse

from service.auth import Principal, Role
from service.container import Services
from service.deps import ServicesDep, audited, require_any
from service.integrity.export import ExportScope, write_bundle
from service.integrity.jobs import ExportJobs
from service.schemas import ExportOut, ExportRequest, Problem
from service.telemetry import observe_export

__all__ = ["router"]

router = APIRouter(prefix="/v1/exports", tags=["integrity"])
Auditor = Annotated[Principal, Depends(audited(Role.REGULATOR, Role.COMPLIANCE))]
_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
    422: {"model": Problem},
}


def _directory(services: Services, export_id: UUID) -> Path:
    return services.settings.home / "exports" / str(export_id)


def _run(
    services: Services,
    tenant: str,
    export_id: UUID,
    scope: ExportScope,
    previous_checkpoint: str | None,
) -> None:
    jobs = ExportJobs(services.audit.db)
    jobs.update(export_id, "running")
    try:
        with observe_export("full" if scope.full else "partial", tenant):
            summary = write_bundle(
                services.log,
                services.audit,
                tenant,
                _directory(services, export_id),
                scope=scope,
                previous_checkpoint=previous_checkpoint,
            )
    except Exception as error:  # the job records the failure; the client polls for it
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
    services.reads.record(principal, "POST /v1/exports", request.model_dump(mode="json"))
    scope = ExportScope(request.since, request.until, tuple(request.record_refs or ()))
    export_id = uuid4()
    ExportJobs(services.audit.db).create(export_id, principal.tenant_id)
    previous = request.previous_checkpoint
    if previous is not None and previous.split("\n", 1)[0] != services.log.origin(
        principal.tenant_id
    ):
        raise HTTPException(422, "previous_checkpoint is not a checkpoint of your tenant's log.")
    tasks.add_task(_run, services, principal.tenant_id, export_id, scope, previous)
    return ExportOut(export_id=export_id, status="pending")


@router.get(
    "/{export_id}",
    operation_id="get_export",
    response_model=ExportOut,
    responses=_ERRORS,
    summary="The state of an export",
)
def get_export(export_id: UUID, principal: Auditor, services: ServicesDep) -> ExportOut:
    """pending, running, done (with counts) or failed."""
    job = ExportJobs(services.audit.db).find(export_id, principal.tenant_id)
    if job is None:
        raise HTTPException(404, "No such export in your tenant.")
    return job


@router.get(
    "/{export_id}/bundle",
    operation_id="get_export_bundle",
    responses={200: {"content": {"application/gzip": {}}}, **_ERRORS},
    summary="The bundle (.tar.gz of the directory 'disclosure-audit export' writes)",
)
def get_export_bundle(export_id: UUID, principal: Auditor, services: ServicesDep) -> FileResponse:
    """Available once the export is done."""
    job = ExportJobs(services.audit.db).find(export_id, principal.tenant_id)
    if job is None:
        raise HTTPException(404, "No such export in your tenant.")
    if job.status != "done":
        raise HTTPException(409, f"The export is {job.status}; poll until it is done.")
    directory = _directory(services, export_id)
    archive_path = directory.with_suffix(".tar.gz")
    if not archive_path.exists():  # packed once, on first download, on disk: memory stays flat
        partial = archive_path.with_suffix(".partial")
        with tarfile.open(partial, mode="w:gz") as archive:
            archive.add(directory, arcname=f"export-{export_id}")
        partial.rename(archive_path)
    return FileResponse(
        archive_path, media_type="application/gzip", filename=f"export-{export_id}.tar.gz"
    )
