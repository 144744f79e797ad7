"""FHIR R4 AuditEvent resources, per IHE Basic Audit Log Patterns (BALP) 1.1.3.

Used by the export (``auditevents.ndjson``) and by FHIR search (``service/routes/fhir_search.py``)
alike, so a bundle and a search answer the same resource for the same fact. Each resource names
the BALP profile it follows in ``meta.profile``; the profiles and slices are those of the IG's
FSH sources (``IHE/ITI.BasicAudit``, ``input/fsh/``), cited beside the code that fills them:

- a disclosure follows PrivacyDisclosure.Source (``Disclose.fsh``): type DICOM 110106 (Export),
  action R, subtype ISO 21089 ``disclose``; agents source (110153), recipient (110152), both with
  ``who`` and ``network`` (1..1), custodian (SNOMED 159541003) and, when an authorization is the
  legal basis, authorizer (SNOMED 429577009); the patient entity and the disclosed data entity;
- an access follows the RESTful profiles (``PatientRead.fsh``, ``PatientCreate.fsh``,
  ``PatientUpdate.fsh``): type ``audit-event-type#rest``, subtype a ``restful-interaction``
  code, agents client, server and user, the patient entity and the data entity.

``fhir.resources`` checks the structure; it does not check code bindings or profiles
(reference/domain.md B4), so ``check_codes`` checks the codes and the slices.

A native fact names one clinical system (``source.system``) and no network address: that system
is ``source.observer`` and every system agent, and each ``network`` the profiles require but the
fact cannot give carries the ``data-absent-reason`` extension (``unknown``), FHIR's way to fill a
required element whose value is not known. A recipient's network is its address when the method
says what kind of address it is (e-mail, fax or phone).

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

__all__ = [
    "ACTOR_SYSTEM",
    "AUDIT_EVENT_TYPE",
    "PROFILES",
    "RECORD_SYSTEM",
    "SYSTEM_SYSTEM",
    "access_actions",
    "audit_event",
    "check_codes",
    "patient_reference",
]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SCT = "http://snomed.info/sct"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
PROFILES = {
    "disclosure": BALP + "PrivacyDisclosure.Source",
    "read": BALP + "PatientRead",
    "create": BALP + "PatientCreate",
    "update": BALP + "PatientUpdate",
    "delete": BALP + "PatientDelete",
}
"""The BALP profile of each kind of AuditEvent written here (its ``meta.profile``)."""

# Identifier systems: informal URN namespaces of this service (names, not locators), one per
# kind of id a fact carries. The record is also ``Patient/<record_ref>`` where the ref is a
# FHIR id, as the FHIR ingest maps it (docs/FHIR.md).
RECORD_SYSTEM = "urn:disclosure-audit:record-ref"
ACTOR_SYSTEM = "urn:disclosure-audit:actor-id"
SYSTEM_SYSTEM = "urn:disclosure-audit:source-system"
RECIPIENT_SYSTEM = "urn:disclosure-audit:recipient-id"
DISCLOSURE_SYSTEM = "urn:disclosure-audit:disclosure-id"
ROLE_SYSTEM = "urn:disclosure-audit:actor-role"

POLICY_URN = "urn:disclosure-audit:legal-basis:"
"""Prefix of ``agent.policy``: the authorization, order, demand or report a disclosure relies on,
named by its ``legal_basis.reference_id`` (an informal URN namespace: a name, not a locator)."""

_UNSAFE = re.compile(f"[{facts.NEVER_IN_TEXT}]")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

# An access's action: (AuditEvent.action, restful-interaction subtype, profile, user type).
# The user's type is the slice's: IRCP (information recipient) for reads, Author (from the
# DataSources value set) for writes.
_READ = ("R", "read", "read", "IRCP")
_ACTIONS = {
    "view": _READ, "print": _READ, "download": _READ, "export": _READ,
    "create": ("C", "create", "create", "AUT"),
    "update": ("U", "update", "update", "AUT"),
    "delete": ("D", "delete", "delete", "AUT"),
}  # fmt: skip
_PARTICIPATION = {"IRCP": "information recipient", "AUT": "author (originator)"}
# The network type (http://hl7.org/fhir/network-type) of a recipient's address, by method.
_NETWORK = {"email": "4", "fax": "3", "phone": "3"}
_AUTHORIZATIONS = {"client_authorization", "psychotherapy_notes_authorization", "part2_consent"}


def access_actions(interaction: str) -> frozenset[str]:
    """The access actions rendered with a ``restful-interaction`` code (search by subtype)."""
    return frozenset(action for action, row in _ACTIONS.items() if row[1] == interaction)


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


def _identifier(system: str, value: str) -> dict[str, str]:
    return {"system": system, "value": _string(value)}


def patient_reference(record_ref: str) -> dict[str, Any]:
    """The record as a ``Reference(Patient)``: ``Patient/<record_ref>`` when the ref is a FHIR
    id (``[A-Za-z0-9-.]{1,64}``), and always typed and identified by ``RECORD_SYSTEM``."""
    reference: dict[str, Any] = {"type": "Patient"}
    if _FHIR_ID.fullmatch(record_ref):
        reference["reference"] = f"Patient/{record_ref}"
    reference["identifier"] = _identifier(RECORD_SYSTEM, record_ref)
    return reference


def _patient(record_ref: str) -> dict[str, Any]:
    # entity[patient] of every profile here: audit-entity-type#1, object-role#1, and
    # "what only Reference(Patient)".
    return {
        "what": patient_reference(record_ref),
        "type": _coding(ENTITY_TYPE, "1", "Person"),
        "role": _coding(OBJECT_ROLE, "1", "Patient"),
    }


def _system(system: str) -> dict[str, Any]:
    """The clinical system that reported the fact, as a ``Reference(Device)``."""
    return {"type": "Device", "identifier": _identifier(SYSTEM_SYSTEM, system)}


def _unknown_network() -> dict[str, Any]:
    return {"extension": [{"url": ABSENT, "valueCode": "unknown"}]}


def _agent_type(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _person(actor: dict[str, str], type_: dict[str, Any], requestor: bool) -> dict[str, Any]:
    """An agent for the fact's actor: identified by ``ACTOR_SYSTEM``, named, with its role."""
    return {
        "type": type_,
        "role": [{"coding": [_coding(ROLE_SYSTEM, actor["role"])], "text": actor["role"]}],
        "who": {"identifier": _identifier(ACTOR_SYSTEM, actor["id"]),
                "display": _string(actor["name"])},
        "name": _string(actor["name"]),
        "requestor": requestor,
    }  # fmt: skip


def _recipient_network(event: dict[str, Any]) -> dict[str, Any]:
    address, kind = event["recipient"].get("address"), _NETWORK.get(event["method"])
    if address and kind:
        return {"address": _string(address), "type": kind}
    return _unknown_network()


def _instant(value: str) -> str:
    """``recorded`` as an instant in UTC (the leaf's text and the database's value agree)."""
    return datetime.fromisoformat(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def audit_event(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The AuditEvent of a log entry (``type``, ``record_ref``, ``recorded_at``, ``event``), or
    None for events that are neither disclosures nor accesses. The result is validated by
    ``fhir.resources`` (R4B, which equals R4 here) and by ``check_codes``."""
    event, kind = entry.get("event", {}), entry.get("type")
    if kind not in ("DisclosureMade", "RecordAccessed"):
        return None
    labels = [_coding(ACT_CODE, "PSYTHPN", "psychotherapy note")] if (
        "psychotherapy_notes" in event["categories"]
    ) else []  # fmt: skip
    data: dict[str, Any] = {
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "detail": [{"type": "categories", "valueString": ",".join(event["categories"])}],
    }
    if labels:
        data["securityLabel"] = labels
    system = event["source"]["system"]
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event["event_id"],
        "recorded": _instant(entry["recorded_at"]),
        "period": {
            "start": _date_time(event["occurred_at"]),
            "end": _date_time(event["occurred_at"]),
        },
        "outcome": "0",
        "outcomeDesc": "Success",
        "purposeOfEvent": [{"coding": [_coding(ACT_REASON, event["purpose_of_use"])]}],
        # val-audit-source (Disclose.fsh): agent[source].who = source.observer.
        "source": {
            "observer": _system(system),
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
    }
    if kind == "DisclosureMade":
        _disclosure(resource, entry, data)
    else:
        _access(resource, entry, data)
    AuditEvent.model_validate(resource)
    check_codes(resource)
    return resource


def _disclosure(resource: dict[str, Any], entry: dict[str, Any], data: dict[str, Any]) -> None:
    """PrivacyDisclosure.Source (Disclose.fsh, IHE.BasicAudit.PrivacyDisclosure.Source)."""
    event = entry["event"]
    basis = event["legal_basis"]
    recipient = event["recipient"]
    who: dict[str, Any] = {"display": _string(recipient["name"])}
    if recipient.get("identifier"):
        who["identifier"] = _identifier(RECIPIENT_SYSTEM, recipient["identifier"])
    agents: list[dict[str, Any]] = [
        # agent[source]: DCM#110153, who 1..1 (= source.observer), network 1..1.
        {"type": _agent_type(DCM, "110153", "Source Role ID"),
         "who": _system(event["source"]["system"]), "requestor": False,
         "network": _unknown_network()},
        # agent[recipient]: DCM#110152, who 1..1, network 1..1; policy: the legal basis.
        {"type": _agent_type(DCM, "110152", "Destination Role ID"), "who": who,
         "requestor": True, "network": _recipient_network(event),
         **({"policy": [_uri(basis["reference_id"])]} if basis.get("reference_id") else {})},
        # agent[custodian]: SCT#159541003, who 1..1: the practice's person who released it.
        _person(event["actor"], _agent_type(SCT, "159541003", "Record keeping/library clerk"),
                requestor=False),
    ]  # fmt: skip
    if basis["kind"] in _AUTHORIZATIONS:
        # agent[authorizer]: SCT#429577009 "Patient Advocate", who 1..1: the client (or the
        # representative acting for them) whose authorization the release relies on.
        agents.append({
            "type": _agent_type(SCT, "429577009", "Patient Advocate"),
            "who": patient_reference(entry["record_ref"]), "requestor": False,
            **({"policy": [_uri(basis["reference_id"])]} if basis.get("reference_id") else {}),
        })  # fmt: skip
    data["role"] = _coding(OBJECT_ROLE, "3", "Report")
    data["what"] = {"identifier": _identifier(DISCLOSURE_SYSTEM, event["disclosure_id"])}
    data["detail"].append({"type": "legal_basis", "valueString": basis["kind"]})
    resource["meta"] = {"profile": [PROFILES["disclosure"]]}
    resource |= {
        "type": _coding(DCM, "110106", "Export"),
        # subtype[disclosure] (requireAtLeastOneMatch): iso-21089-lifecycle#disclose.
        "subtype": [_coding(LIFECYCLE, "disclose", "Disclose Record Lifecycle Event")],
        "action": "R",
        "agent": agents,
        # entity[patient] 1..1 and the disclosed data (entity 2..*).
        "entity": [_patient(entry["record_ref"]), data],
    }


def _access(resource: dict[str, Any], entry: dict[str, Any], data: dict[str, Any]) -> None:
    """PatientRead, PatientCreate or PatientUpdate (PatientRead.fsh, PatientCreate.fsh,
    PatientUpdate.fsh: IHE.BasicAudit.PatientRead/PatientCreate/PatientUpdate)."""
    event = entry["event"]
    action, interaction, profile, user = _ACTIONS[event["action"]]
    system = _system(event["source"]["system"])
    # Read: the client is the Destination (110152), the server the Source (110153); the write
    # profiles have them the other way round (data flows from the client).
    client, server = ("110152", "110153") if action == "R" else ("110153", "110152")
    names = {"110152": "Destination Role ID", "110153": "Source Role ID"}
    agent_user = _person(
        event["actor"], _agent_type(PARTICIPATION, user, _PARTICIPATION[user]), requestor=True
    )
    # agent[user].purposeOfUse MS; agent[user].network 0..0 (users are not network devices).
    agent_user["purposeOfUse"] = resource["purposeOfEvent"]
    data["role"] = _coding(OBJECT_ROLE, "4", "Domain Resource")  # from RestObjectRoles
    # entity[data].what 1..1: the parts of the record that were used.
    data["what"] = {"identifier": _identifier(RECORD_SYSTEM, entry["record_ref"]),
                    "display": "record " + _string(entry["record_ref"]) + ": "
                               + ", ".join(event["categories"])}  # fmt: skip
    resource["meta"] = {"profile": [PROFILES[profile]]}
    resource |= {
        "type": _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": [_coding(RESTFUL, interaction, interaction)],
        "action": action,
        "agent": [
            agent_user,  # the user first: who accessed is what a reader looks for
            # agent[client] and agent[server]: who 1..1, network 1..1, no media.
            {
                "type": _agent_type(DCM, client, names[client]),
                "who": system,
                "requestor": False,
                "network": _unknown_network(),
            },
            {
                "type": _agent_type(DCM, server, names[server]),
                "who": system,
                "requestor": False,
                "network": _unknown_network(),
            },
        ],
        # entity[patient] 1..1 (entity 2..) and entity[data] 1..1.
        "entity": [_patient(entry["record_ref"]), data],
    }


def _codes(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c.get("system", ""), c.get("code", "")) for c in concept.get("coding", [])}


def _one(items: list[dict[str, Any]], system: str, code: str, what: str) -> dict[str, Any]:
    found = [a for a in items if (system, code) in _codes(a["type"])]
    if len(found) != 1:
        raise ValueError(f"an AuditEvent needs exactly one {what} ({code}), not {len(found)}")
    return found[0]


def check_codes(resource: dict[str, Any]) -> None:
    """Check the code bindings and BALP slices ``fhir.resources`` does not: raise ValueError
    on the first that fails."""
    type_ = resource["type"]
    kinds = {(DCM, "110106"): "disclosure", (AUDIT_EVENT_TYPE, "rest"): "rest"}
    kind = kinds.get((type_.get("system", ""), type_.get("code", "")))
    if kind is None:
        raise ValueError(f"AuditEvent.type {type_.get('code')} is not DICOM 110106 or rest")
    if resource["action"] not in ("C", "R", "U", "D", "E"):
        raise ValueError(f"AuditEvent.action {resource['action']!r} is not C, R, U, D or E")
    if resource["outcome"] not in ("0", "4", "8", "12"):
        raise ValueError(f"AuditEvent.outcome {resource['outcome']!r} is not 0, 4, 8 or 12")
    for purpose in resource["purposeOfEvent"]:
        for coding in purpose["coding"]:
            if coding["system"] != ACT_REASON:
                raise ValueError("purposeOfEvent must use the v3 ActReason code system")
    profiles = resource.get("meta", {}).get("profile", [])
    for agent in resource["agent"]:
        if "network" in agent and not agent["network"]:
            raise ValueError("an agent's network is empty")
    if kind == "disclosure":
        _check_disclosure(resource, profiles)
    else:
        _check_rest(resource, profiles)
    roles = [e for e in resource["entity"] if e["role"]["code"] == "1"]
    if len(roles) != 1 or roles[0]["what"].get("type") != "Patient":
        raise ValueError("an AuditEvent names one patient entity, a Reference(Patient)")


def _check_disclosure(resource: dict[str, Any], profiles: list[str]) -> None:
    subtypes = {(s["system"], s["code"]) for s in resource["subtype"]}
    if (LIFECYCLE, "disclose") not in subtypes or resource["action"] != "R":
        raise ValueError("a disclosure's subtype is iso-21089-lifecycle#disclose, action R")
    if profiles != [PROFILES["disclosure"]]:
        raise ValueError("a disclosure claims the PrivacyDisclosure.Source profile")
    source = _one(resource["agent"], DCM, "110153", "source agent")
    recipient = _one(resource["agent"], DCM, "110152", "recipient agent")
    for agent in (source, recipient):
        if "who" not in agent or "network" not in agent:
            raise ValueError("the source and recipient agents need who and network")
    if source["who"] != resource["source"]["observer"]:
        raise ValueError("val-audit-source: agent[source].who is source.observer")


def _check_rest(resource: dict[str, Any], profiles: list[str]) -> None:
    (subtype,) = resource["subtype"]
    profile = {"read": "read", "vread": "read", "create": "create", "update": "update",
               "delete": "delete"}.get(subtype["code"])  # fmt: skip
    if subtype["system"] != RESTFUL or profile is None:
        raise ValueError("a RESTful event's subtype is a restful-interaction code")
    if profiles != [PROFILES[profile]]:
        raise ValueError(f"a {subtype['code']} event claims the {profile} profile")
    for code in ("110152", "110153"):
        agent = _one(resource["agent"], DCM, code, "client or server agent")
        if "who" not in agent or "network" not in agent:
            raise ValueError("the client and server agents need who and network")
