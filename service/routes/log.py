"""The tenant log: signed checkpoints, verifier keys, and Merkle proofs (API.md "Integrity")."""

import base64
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse

from domain import merkle
from service.auth import Principal, Role
from service.deps import MAX_POSITION, ServicesDep, audited
from service.schemas import ConsistencyProofOut, InclusionProofOut, Problem

__all__ = ["router"]

router = APIRouter(prefix="/v1/log", tags=["integrity"])
Auditor = Annotated[Principal, Depends(audited(Role.REGULATOR, Role.COMPLIANCE))]
_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    422: {"model": Problem},
}


@router.get(
    "/checkpoint",
    operation_id="get_checkpoint",
    response_class=PlainTextResponse,
    responses=_ERRORS,
    summary="The tenant's latest signed checkpoint (C2SP signed note)",
)
def get_checkpoint(principal: Auditor, services: ServicesDep) -> str:
    """Signs a checkpoint of the current tree size if none exists for it yet."""
    return services.log.checkpoint(principal.tenant_id).note


@router.get(
    "/public-key",
    operation_id="get_public_key",
    response_class=PlainTextResponse,
    responses=_ERRORS,
    summary="The verifier keys of the tenant's log (C2SP vkey), one per line",
)
def get_public_key(principal: Auditor, services: ServicesDep) -> str:
    """Every key that signed or signs the tenant's checkpoints, oldest first, each named by the
    log's origin (the first line of its checkpoints)."""
    return services.log.vkeys(principal.tenant_id)


def _size(services: ServicesDep, tenant: str, size: int | None) -> int:
    current = services.log.size(tenant)
    if size is None:
        return current
    if size < 1 or size > current:
        raise HTTPException(404, f"The log has {current} leaves; no tree of size {size}.")
    return size


@router.get(
    "/proofs/inclusion",
    operation_id="get_inclusion_proof",
    response_model=InclusionProofOut,
    responses=_ERRORS,
    summary="RFC 9162 inclusion proof of an event",
)
def get_inclusion_proof(
    principal: Auditor,
    services: ServicesDep,
    event_id: UUID,
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_POSITION)] = None,
) -> InclusionProofOut:
    """Proves the event is leaf ``position - 1`` of the tree of ``tree_size`` (default: now)."""
    position = services.log.position_of(principal.tenant_id, event_id)
    if position is None:
        raise HTTPException(404, "No such event in your tenant's log.")
    size = _size(services, principal.tenant_id, tree_size)
    if position > size:
        raise HTTPException(404, f"The event is not in the tree of size {size}.")
    leaves = services.log.leaf_hashes(principal.tenant_id, size)
    proof = merkle.inclusion_proof(leaves, position - 1)
    return InclusionProofOut(
        event_id=event_id,
        leaf_index=position - 1,
        tree_size=size,
        leaf_hash=base64.b64encode(leaves[position - 1]).decode(),
        proof=[base64.b64encode(p).decode() for p in proof],
    )


@router.get(
    "/proofs/consistency",
    operation_id="get_consistency_proof",
    response_model=ConsistencyProofOut,
    responses=_ERRORS,
    summary="RFC 9162 consistency proof between two tree sizes",
)
def get_consistency_proof(
    principal: Auditor,
    services: ServicesDep,
    from_size: Annotated[int, Query(ge=1, le=MAX_POSITION)],
    to_size: Annotated[int | None, Query(ge=1, le=MAX_POSITION)] = None,
) -> ConsistencyProofOut:
    """Proves the tree of ``from_size`` is a prefix of the tree of ``to_size`` (default: now)."""
    size = _size(services, principal.tenant_id, to_size)
    if from_size > size:
        raise HTTPException(422, "from_size must not exceed to_size.")
    leaves = services.log.leaf_hashes(principal.tenant_id, size)
    proof = merkle.consistency_proof(leaves, from_size) if from_size < size else []
    return ConsistencyProofOut(
        from_size=from_size, to_size=size, proof=[base64.b64encode(p).decode() for p in proof]
    )
