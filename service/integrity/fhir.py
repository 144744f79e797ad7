"""FHIR R4 AuditEvent resources for the export, per IHE BALP.

Disclosures follow BALP PrivacyDisclosure.Source: type DICOM 110106 (Export), action R, subtype
ISO 21089 ``disclose``, agents for the source (110153) and the recipient (110152), the patient
entity and the disclosed data entity. Accesses are patient-record read/write audit events (type
DICOM 110110, Patient Record). ``fhir.resources`` checks the structure; it does not check code
bindings (reference/domain.md B4), so ``check_codes`` does.

Every value taken from a fact goes through ``_string``, ``_uri`` or ``_date_time``, so a fact
stored before the API's edge checks existed (``domain.facts.STORED``) still exports as valid
FHIR: no control characters in strings, uris percent-encoded, dateTimes in UTC.
"""

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.auditevent import AuditEvent

from domain import facts

__all__ = ["audit_event", "check_codes"]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RESTFUL = "http://hl7.org/fhir/restful-interaction"

POLICY_URN = "urn:disclosure-audit:legal-basis:"
"""Prefix of ``agent.policy``: the authorization, order, demand or report a disclosure relies on,
named by its ``legal_basis.reference_id`` (an informal URN namespace: a name, not a locator)."""

_UNSAFE = re.compile(f"[{facts.NEVER_IN_TEXT}]")

_ACTIONS = {"view": "R", "print": "R", "download": "R", "export": "R", "create": "C",
            "update": "U"}  # fmt: skip
_INTERACTIONS = {"C": "create", "U": "update", "R": "read"}


def _string(value: str) -> str:
    """A FHIR string: what FHIR forbids (controls but tab, CR, LF) and what breaks lines or
    display (U+2028, bidi overrides) becomes U+FFFD; the API refuses them all, so only facts
    accepted before it did carry any."""
    return _UNSAFE.sub("\ufffd", value) or "\ufffd"


def _uri(reference_id: str) -> str:
    """A valid absolute URI naming a reference id, whatever characters the id holds."""
    return POLICY_URN + quote(reference_id, safe="")


def _date_time(value: str) -> str:
    """A FHIR dateTime in UTC: FHIR allows offsets up to +-14:00 only, and years from 0001.
    A moment UTC cannot represent (year 1 or 9999 at the edge of an offset) keeps its date."""
    moment = datetime.fromisoformat(value)
    try:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return moment.date().isoformat()


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _patient(record_ref: str) -> dict[str, Any]:
    return {
        "what": {"identifier": {"value": _string(record_ref)}},
        "type": _coding(ENTITY_TYPE, "1", "Person"),
        "role": _coding(OBJECT_ROLE, "1", "Patient"),
    }


def _user(actor: dict[str, str], requestor: bool) -> dict[str, Any]:
    return {
        "type": {"text": actor["role"]},
        "who": {"identifier": {"value": _string(actor["id"])}, "display": _string(actor["name"])},
        "requestor": requestor,
    }


def audit_event(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The AuditEvent of a log entry, or None for events that are neither disclosures nor
    accesses. The result is validated by ``fhir.resources`` (R4B, which equals R4 here)."""
    event, kind = entry.get("event", {}), entry.get("type")
    if kind not in ("DisclosureMade", "RecordAccessed"):
        return None
    labels = [_coding(ACT_CODE, "PSYTHPN", "psychotherapy note")] if (
        "psychotherapy_notes" in event["categories"]
    ) else []  # fmt: skip
    data: dict[str, Any] = {
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "3", "Report"),
        "detail": [{"type": "categories", "valueString": ",".join(event["categories"])}],
    }
    if labels:
        data["securityLabel"] = labels
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event["event_id"],
        "recorded": entry["recorded_at"],
        "period": {
            "start": _date_time(event["occurred_at"]),
            "end": _date_time(event["occurred_at"]),
        },
        "outcome": "0",
        "purposeOfEvent": [{"coding": [_coding(ACT_REASON, event["purpose_of_use"])]}],
        "source": {
            "observer": {"identifier": {"value": _string(event["source"]["system"])}},
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
    }
    if kind == "DisclosureMade":
        basis = event["legal_basis"]
        data["what"] = {"identifier": {"value": _string(event["disclosure_id"])}}
        data["detail"].append({"type": "legal_basis", "valueString": basis["kind"]})
        resource |= {
            "type": _coding(DCM, "110106", "Export"),
            "subtype": [_coding(LIFECYCLE, "disclose", "Disclose Record Lifecycle Event")],
            "action": "R",
            "agent": [
                {"type": {"coding": [_coding(DCM, "110153", "Source Role ID")]},
                 "who": {"identifier": {"value": _string(event["source"]["system"])}},
                 "requestor": False},
                {"type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
                 "who": {"display": _string(event["recipient"]["name"])},
                 "requestor": True,
                 **({"policy": [_uri(basis["reference_id"])]} if basis.get("reference_id")
                    else {})},
                _user(event["actor"], requestor=False),
            ],
            "entity": [_patient(entry["record_ref"]), data],
        }  # fmt: skip
    else:
        action = _ACTIONS[event["action"]]
        resource |= {
            "type": _coding(DCM, "110110", "Patient Record"),
            "subtype": [_coding(RESTFUL, _INTERACTIONS[action])],
            "action": action,
            "agent": [_user(event["actor"], requestor=True)],
            "entity": [_patient(entry["record_ref"]), data],
        }
    AuditEvent.model_validate(resource)
    check_codes(resource)
    return resource


def check_codes(resource: dict[str, Any]) -> None:
    """Check the code bindings ``fhir.resources`` does not: raise ValueError on the first."""
    type_ = resource["type"]
    if type_["system"] != DCM or type_["code"] not in ("110106", "110110"):
        raise ValueError(f"AuditEvent.type {type_['code']} is not DICOM 110106 or 110110")
    if resource["action"] not in ("C", "R", "U", "D", "E"):
        raise ValueError(f"AuditEvent.action {resource['action']!r} is not C, R, U, D or E")
    if resource["outcome"] not in ("0", "4", "8", "12"):
        raise ValueError(f"AuditEvent.outcome {resource['outcome']!r} is not 0, 4, 8 or 12")
    for purpose in resource["purposeOfEvent"]:
        for coding in purpose["coding"]:
            if coding["system"] != ACT_REASON:
                raise ValueError("purposeOfEvent must use the v3 ActReason code system")
    if type_["code"] == "110106":
        subtype = resource["subtype"][0]
        if (subtype["system"], subtype["code"]) != (LIFECYCLE, "disclose"):
            raise ValueError("a disclosure's subtype is iso-21089-lifecycle#disclose")
        roles = {a["type"]["coding"][0]["code"] for a in resource["agent"] if "coding" in a["type"]}
        if not {"110152", "110153"} <= roles:
            raise ValueError("a disclosure needs source (110153) and recipient (110152) agents")
    roles = {e["role"]["code"] for e in resource["entity"]}
    if "1" not in roles:
        raise ValueError("an AuditEvent names the patient entity (object-role 1)")
