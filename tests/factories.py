"""Valid example events of every API type, and small helpers to vary them."""

from copy import deepcopy
from typing import Any
from uuid import uuid4

__all__ = ["ENUM_FIELDS", "EXAMPLES", "example", "unique_name"]

_COMMON: dict[str, Any] = {
    "occurred_at": "2026-03-02T15:04:05-05:00",
    "actor": {"id": "clin-17", "name": "Dr. A. Rivera", "role": "treating_clinician"},
    "source": {"system": "ehr-main"},
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "RecordOpened": {"jurisdiction": "US-MA", "setting": "individual"},
    "RecordAccessed": {
        "categories": ["progress_notes"],
        "action": "view",
        "purpose_of_use": "TREAT",
    },
    "BreakGlassReviewed": {"access_event_id": str(uuid4()), "determination": "appropriate"},
    "AuthorizationGranted": {
        "authorization_id": "auth-1",
        "kind": "hipaa_general",
        "granted_by": "client",
        "recipients": [{"name": "Morgan & Lee LLP", "kind": "attorney"}],
        "purposes": ["HLEGAL"],
        "categories": ["progress_notes"],
        "in_writing": True,
    },
    "AuthorizationRevoked": {"authorization_id": "auth-1", "in_writing": True},
    "LegalDemandReceived": {
        "demand_id": "dem-1",
        "kind": "attorney_subpoena",
        "issuer": "Hale & Burke LLP",
        "categories": ["progress_notes"],
    },
    "PrivilegeAsserted": {"demand_id": "dem-1", "holder": "therapist_on_behalf"},
    "PrivilegeWaived": {"demand_id": "dem-1", "categories": ["diagnosis"], "in_writing": True},
    "CourtOrderIssued": {
        "order_id": "ord-1",
        "court": "Suffolk Probate and Family Court",
        "pierces_privilege": True,
        "categories": ["appointments", "diagnosis"],
        "recipients": [{"name": "Suffolk Probate and Family Court", "kind": "court"}],
    },
    "DemandAnswered": {"demand_id": "dem-1", "outcome": "refused_privilege"},
    "MandatedReportFiled": {
        "report_id": "rep-1",
        "kind": "child_abuse",
        "agency": "Department of Children and Families",
        "suspected_at": "2026-03-01T10:00:00-05:00",
        "categories": ["demographics"],
    },
    "DutyToWarnExercised": {
        "warning_id": "warn-1",
        "victim_identified": True,
        "notified": [{"name": "K. Moreau", "kind": "victim"}],
    },
    "DisclosureMade": {
        "disclosure_id": "dis-1",
        "recipient": {"name": "Morgan & Lee LLP", "kind": "attorney"},
        "categories": ["progress_notes"],
        "method": "secure_portal",
        "legal_basis": {"kind": "client_authorization", "reference_id": "auth-1"},
        "purpose_of_use": "HLEGAL",
    },
    "LegalHoldPlaced": {"hold_id": "hold-1", "reason": "pending litigation"},
    "LegalHoldReleased": {"hold_id": "hold-1", "reason": "case closed"},
    "EventCorrected": {
        "corrects_event_id": str(uuid4()),
        "reason": "wrong recipient address",
        "replacement": {"recipient": {"name": "Morgan & Lee LLP", "kind": "attorney"}},
    },
    "FindingAcknowledged": {"finding_id": "f-1", "resolution": "remediated"},
}
"""Minimal valid fields of every event type (beyond the common ones)."""

ENUM_FIELDS: dict[str, list[str]] = {
    "RecordOpened": ["setting"],
    "RecordAccessed": ["action", "purpose_of_use"],
    "BreakGlassReviewed": ["determination"],
    "AuthorizationGranted": ["kind", "granted_by"],
    "AuthorizationRevoked": [],
    "LegalDemandReceived": ["kind"],
    "PrivilegeAsserted": ["holder"],
    "PrivilegeWaived": [],
    "CourtOrderIssued": [],
    "DemandAnswered": ["outcome"],
    "MandatedReportFiled": ["kind"],
    "DutyToWarnExercised": [],
    "DisclosureMade": ["method", "purpose_of_use"],
    "LegalHoldPlaced": [],
    "LegalHoldReleased": [],
    "EventCorrected": [],
    "FindingAcknowledged": ["resolution"],
}
"""Top-level enum fields of each type; every type also has the nested actor.role enum."""


def example(type_: str, **overrides: Any) -> dict[str, Any]:
    """A valid event of ``type_`` with a fresh event_id."""
    body = {"event_id": str(uuid4()), "type": type_, **deepcopy(_COMMON)}
    body.update(deepcopy(EXAMPLES[type_]))
    body.update(overrides)
    return body


def unique_name(prefix: str = "Zebulon Quartermaine") -> str:
    """A name that appears nowhere else, to look for in raw storage."""
    return f"{prefix} {uuid4().hex[:12]}"
