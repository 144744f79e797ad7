"""Acknowledging a finding: the compliance officer's act, recorded as a fact in the record's stream.

API.md: ``POST /v1/findings/{finding_id}/acknowledgement`` records ``FindingAcknowledged`` in the
stream of the record the finding is about; the ingest role cannot post that fact. The finding is
looked up in the read models (that is where findings live), scoped to the caller's tenant.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from uuid import UUID, uuid4

from domain import facts
from domain.errors import RecordErasedError
from domain.record import ClientRecord
from domain.vocabulary import ActorRole, FindingResolution
from service.application.ingest import Receipt, Submission
from service.auth import Principal
from service.container import Services

__all__ = ["SOURCE_SYSTEM", "FindingNotFoundError", "acknowledge_finding"]

SOURCE_SYSTEM = "disclosure-audit"
"""The ``source.system`` of facts this service records itself (not posted by a clinical system)."""


class FindingNotFoundError(LookupError):
    """No such finding in the caller's tenant (another tenant's is simply not found)."""


@dataclass(frozen=True)
class Acknowledgement:
    """A stored acknowledgement: the fact and its receipt."""

    fact: facts.FindingAcknowledged
    receipt: Receipt


def _record_of(services: Services, tenant_id: str, finding_id: UUID) -> UUID:
    with services.audit.db.transaction(commit=False) as cursor:
        row = cursor.fetchone(
            "SELECT record_id FROM pv_findings WHERE finding_id = %s AND tenant_id = %s",
            (finding_id, tenant_id),
        )
    if row is None:
        raise FindingNotFoundError(str(finding_id))
    return UUID(str(row["record_id"]))


def acknowledge_finding(
    services: Services,
    principal: Principal,
    finding_id: UUID,
    resolution: FindingResolution,
    note: str | None,
) -> Acknowledgement:
    """Record that ``principal`` closed ``finding_id`` with ``resolution``.

    Each call is a new act with a new event_id (uuid4): an officer may revisit a finding and
    change the resolution, and the projection keeps the latest. A retried request therefore
    stores a second, identical acknowledgement, which changes nothing a reader sees; a
    deterministic id would instead turn a legitimate later acknowledgement into a 409.
    """
    record_id = _record_of(services, principal.tenant_id, finding_id)
    record = cast(ClientRecord, services.audit.repository.get(record_id))
    if record.record_ref is None:  # the record was crypto-shredded after it was projected
        raise RecordErasedError(f"record {record_id} has no data key")
    fact = facts.FindingAcknowledged(
        type="FindingAcknowledged",
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        # The actor is the API key: the service knows no person behind it, and the key id is
        # what the self-audit log (GET /v1/audit-reads) names too, so the two can be joined.
        actor=facts.Actor(
            id=principal.key_id,
            name=f"API key {principal.key_id}",
            role=ActorRole.COMPLIANCE_OFFICER,
        ),
        source=facts.Source(system=SOURCE_SYSTEM),
        finding_id=str(finding_id),
        resolution=resolution,
        note=note,
    )
    receipts, _ = services.ingest.record_facts(
        principal.tenant_id, [Submission(record_ref=record.record_ref, fact=fact)]
    )
    return Acknowledgement(fact=fact, receipt=receipts[0])
