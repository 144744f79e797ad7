"""A record's status at an instant: authorizations, privilege per demand, open demands, holds."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from domain import facts
from projections.views import RecordStatus

__all__ = ["record_status"]


def record_status(record_ref: str, history: Iterable[facts.FactBase], at: datetime) -> RecordStatus:
    """What stood at ``at``, from the facts that had occurred by then (recorded order aside)."""
    known = sorted(
        (f for f in history if f.occurred_at <= at), key=lambda f: (f.occurred_at, str(f.event_id))
    )
    opened = [f for f in known if isinstance(f, facts.RecordOpened)]
    revoked = {f.authorization_id: f for f in known if isinstance(f, facts.AuthorizationRevoked)}
    authorizations = []
    for grant in (f for f in known if isinstance(f, facts.AuthorizationGranted)):
        revocation = revoked.get(grant.authorization_id)
        if revocation is not None and revocation.occurred_at < grant.occurred_at:
            revocation = None
        status = "active"
        if revocation is not None:
            status = "revoked"
        elif grant.expires_at is not None and grant.expires_at <= at:
            status = "expired"
        authorizations.append({
            "authorization_id": grant.authorization_id, "kind": grant.kind.value,
            "status": status, "granted_at": grant.occurred_at.isoformat(),
            "revoked_at": revocation.occurred_at.isoformat() if revocation else None,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            "recipients": [r.name for r in grant.recipients],
            "purposes": [p.value for p in grant.purposes],
            "categories": [c.value for c in grant.categories],
        })  # fmt: skip
    demands = {f.demand_id: f for f in known if isinstance(f, facts.LegalDemandReceived)}
    answered = {f.demand_id: f for f in known if isinstance(f, facts.DemandAnswered)}
    privilege = []
    for assertion in (f for f in known if isinstance(f, facts.PrivilegeAsserted)):
        state = "asserted"
        if any(isinstance(f, facts.PrivilegeWaived) and f.demand_id == assertion.demand_id
               for f in known):  # fmt: skip
            state = "waived"
        if any(isinstance(f, facts.CourtOrderIssued) and f.demand_id == assertion.demand_id
               and f.pierces_privilege for f in known):  # fmt: skip
            state = "pierced"
        privilege.append(
            {
                "demand_id": assertion.demand_id,
                "status": state,
                "holder": assertion.holder.value,
                "statute": assertion.statute,
            }
        )
    holds: dict[str, facts.FactBase] = {}
    for fact in known:
        if isinstance(fact, facts.LegalHoldPlaced):
            holds[fact.hold_id] = fact
        elif isinstance(fact, facts.LegalHoldReleased):
            holds.pop(fact.hold_id, None)
    standing: dict[str, Any] = {
        "record_ref": record_ref,
        "as_of": at.isoformat(),
        "jurisdiction": opened[-1].jurisdiction if opened else None,
        "setting": opened[-1].setting.value if opened else None,
        "authorizations": authorizations,
        "privilege": privilege,
        "open_demands": [
            {
                "demand_id": d.demand_id,
                "kind": d.kind.value,
                "issuer": d.issuer,
                "return_date": d.return_date.isoformat() if d.return_date else None,
            }
            for d in demands.values()
            if d.demand_id not in answered
        ],
        "holds": [{"hold_id": h, "placed_at": f.occurred_at.isoformat()} for h, f in holds.items()],
    }
    return RecordStatus.model_validate(standing)
