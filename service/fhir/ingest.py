"""FHIR R4 resources in, facts out: BALP AuditEvents and Consents mapped to this service's facts.

Pure functions (no I/O): ``parse_resource`` checks the body of a request (media type, JSON, keys
given twice, the resource type, ``fhir.resources`` structure); ``map_audit_event`` and
``map_consent`` turn one resource into the submissions to store, or raise ``FhirError`` naming
the element that cannot be mapped by a FHIRPath expression, before anything is stored.
docs/FHIR.md is the mapping table, element by element; keep the two in step.

``fhir.resources.R4B`` validates the structure: the library ships R5 (its default package),
R4B and STU3, and no R4 package. BALP is written against R4 (4.0.1); R4B (4.3.0) changed
neither ``AuditEvent`` nor ``Consent`` nor ``Bundle``, so its models are the R4 ones. They do
not check code bindings or profiles; the BALP slices this mapping relies on are checked here.
"""

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any, Final, Literal
from urllib.parse import unquote
from uuid import UUID, uuid5

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.consent import Consent
from pydantic import ValidationError

from domain import canonical, facts
from domain.vocabulary import (
    ActorRole,
    AuthorizationKind,
    DataCategory,
    DisclosureMethod,
    Grantor,
    LegalBasisKind,
    PurposeOfUse,
    RecipientKind,
)
from service.application.ingest import Submission
from service.fhir.outcome import FHIR_JSON, FhirError, Issue
from service.settings import Settings
from service.strict_json import duplicate_key_paths

__all__ = [
    "EVENT_NAMESPACE",
    "Entry",
    "Mapped",
    "Rules",
    "consent_event_id",
    "entries",
    "map_audit_event",
    "map_consent",
    "parse_resource",
    "validate_structure",
]

EVENT_NAMESPACE: Final = UUID("6f1d3c1e-4b0a-5d7e-9c58-2f3a7e0b9d41")
"""The uuid5 namespace of every event id derived from a FHIR resource (docs/FHIR.md)."""

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SCT = "http://snomed.info/sct"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ACT_REASON_OID = "urn:oid:2.16.840.1.113883.5.8"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
POLICY_URN = "urn:disclosure-audit:legal-basis:"
"""``agent.policy`` naming the authorization, order, demand or report a disclosure relies on (the
same URN the export writes)."""

_SOURCE_ROLE, _DESTINATION_ROLE = "110153", "110152"
_CUSTODIAN, _AUTHORIZER = "159541003", "429577009"  # SNOMED CT, as BALP's agent slices

MAX_ENTRIES: Final = 1000
"""The most entries a Bundle may hold (as ``POST /v1/events:batch``)."""

# What a RESTful interaction did to the record (AccessAction has no delete: a deletion changes it).
_INTERACTIONS: Final = {
    "read": "view", "vread": "view", "search": "view", "search-type": "view",
    "search-system": "view", "search-compartment": "view", "history": "view",
    "history-instance": "view", "history-type": "view", "history-system": "view",
    "create": "create", "update": "update", "patch": "update", "delete": "update",
}  # fmt: skip
_ACTIONS: Final = {"C": "create", "R": "view", "U": "update", "D": "update", "E": "view"}

RESOURCE_CATEGORIES: Final[Mapping[str, DataCategory]] = {
    **dict.fromkeys(["Patient", "Person", "RelatedPerson"], DataCategory.DEMOGRAPHICS),
    **dict.fromkeys(
        ["Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse", "Claim",
         "ClaimResponse", "ExplanationOfBenefit", "Account", "ChargeItem", "Invoice",
         "PaymentNotice", "PaymentReconciliation", "EnrollmentRequest", "EnrollmentResponse"],
        DataCategory.INSURANCE_BILLING,
    ),
    **dict.fromkeys(
        ["Appointment", "AppointmentResponse", "Encounter", "EpisodeOfCare", "Schedule", "Slot"],
        DataCategory.APPOINTMENTS,
    ),
    "Condition": DataCategory.DIAGNOSIS,
    **dict.fromkeys(
        ["CarePlan", "CareTeam", "Goal", "ServiceRequest", "RequestGroup"],
        DataCategory.TREATMENT_PLAN,
    ),
    **dict.fromkeys(
        ["Medication", "MedicationRequest", "MedicationStatement", "MedicationAdministration",
         "MedicationDispense"],
        DataCategory.MEDICATIONS,
    ),
    **dict.fromkeys(
        ["Observation", "QuestionnaireResponse", "DiagnosticReport", "ClinicalImpression"],
        DataCategory.ASSESSMENTS,
    ),
    **dict.fromkeys(["RiskAssessment", "DetectedIssue"], DataCategory.RISK_ASSESSMENT),
    **dict.fromkeys(["Communication", "CommunicationRequest"], DataCategory.CORRESPONDENCE),
}  # fmt: skip
"""The data category of the FHIR resource types a practice's record is made of. Any other type
(DocumentReference, List, Binary, Composition ...) says nothing of its content: it takes the
security labels it carries, else ``Settings.fhir_other_category``."""

# Security labels (v3-ActCode sensitivity and privacy-law codes) that say what data is touched.
_LABELS: Final[Mapping[str, DataCategory]] = {
    "PSYTHPN": DataCategory.PSYCHOTHERAPY_NOTES,
    "ETH": DataCategory.SUD_RECORDS,
    "SUD": DataCategory.SUD_RECORDS,
    "42CFRPart2": DataCategory.SUD_RECORDS,
    "PSY": DataCategory.DIAGNOSIS,
}

# Purposes that name their own HIPAA basis (45 CFR 164.506): treatment, payment, operations.
_PURPOSE_BASES: Final[Mapping[PurposeOfUse, LegalBasisKind]] = {
    PurposeOfUse.TREAT: LegalBasisKind.TREATMENT,
    PurposeOfUse.COC: LegalBasisKind.TREATMENT,
    PurposeOfUse.CAREMGT: LegalBasisKind.TREATMENT,
    PurposeOfUse.HPAYMT: LegalBasisKind.PAYMENT,
    PurposeOfUse.CLMATTCH: LegalBasisKind.PAYMENT,
    PurposeOfUse.COVAUTH: LegalBasisKind.PAYMENT,
    PurposeOfUse.ELIGVER: LegalBasisKind.PAYMENT,
    PurposeOfUse.HOPERAT: LegalBasisKind.OPERATIONS,
}

# Roles said by codes: our own vocabulary in any system, and BALP's custodian slice.
_ROLE_CODES: Final[Mapping[str, ActorRole]] = {
    **{r.value: r for r in ActorRole},
    _CUSTODIAN: ActorRole.RECORDS_CUSTODIAN,
}
_ROLE_BY_TYPE: Final = {
    "Patient": ActorRole.CLIENT,
    "RelatedPerson": ActorRole.PERSONAL_REPRESENTATIVE,
}
_RECIPIENT_BY_TYPE: Final = {
    "Patient": RecipientKind.CLIENT,
    "RelatedPerson": RecipientKind.PERSONAL_REPRESENTATIVE,
    "Practitioner": RecipientKind.HEALTH_PROVIDER,
    "PractitionerRole": RecipientKind.HEALTH_PROVIDER,
}
_AUTHORIZATION_CODES: Final[Mapping[tuple[str | None, str], AuthorizationKind]] = {
    (LOINC, "59284-0"): AuthorizationKind.HIPAA_GENERAL,  # Patient Consent
    (LOINC, "64292-6"): AuthorizationKind.HIPAA_GENERAL,  # Release of information consent
    (ACT_CODE, "IDSCL"): AuthorizationKind.HIPAA_GENERAL,  # information disclosure
    (ACT_CODE, "INFA"): AuthorizationKind.HIPAA_GENERAL,  # information access
}

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._:@~-]+")
_QUERY_TYPE = re.compile(r"/([A-Z][A-Za-z]+)(?=[?/\s#]|$)")
_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9.-]{1,64})(?:/_history/[^/]+)?$")


@dataclass(frozen=True)
class Rules:
    """The configurable part of the mapping (``Settings.fhir_*``; docs/FHIR.md)."""

    record_ref: Literal["reference", "identifier"] = "reference"
    identifier_system: str | None = None
    default_purpose: PurposeOfUse | None = PurposeOfUse.TREAT
    default_actor_role: ActorRole | None = ActorRole.TREATING_CLINICIAN
    other_category: DataCategory | None = DataCategory.PROGRESS_NOTES

    @classmethod
    def of(cls, settings: Settings) -> "Rules":
        """The rules a deployment configured."""
        return cls(
            record_ref=settings.fhir_record_ref,
            identifier_system=settings.fhir_patient_identifier_system,
            default_purpose=settings.fhir_default_purpose,
            default_actor_role=settings.fhir_default_actor_role,
            other_category=settings.fhir_other_category,
        )


@dataclass(frozen=True)
class Mapped:
    """What one resource becomes: the submissions to store (all or none) and its location."""

    resource_type: str
    resource_id: str
    """The id the resource is found under: the (first) event id of an AuditEvent, the
    authorization id of a Consent."""
    submissions: tuple[Submission, ...]


# --------------------------------------------------------------------------------------------
# The request body


def _is_fhir_json(content_type: str) -> bool:
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() not in (FHIR_JSON, "application/json"):
        return False
    charset = message.get_param("charset")
    return charset is None or str(charset).lower() in ("utf-8", "utf8")


def _path_expression(root: str, path: Sequence[str | int]) -> str:
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def parse_resource(
    body: bytes, content_type: str | None, expected: Sequence[str]
) -> dict[str, Any]:
    """The JSON resource of a request body, or ``FhirError``: 415 for another media type, 400
    for what is not a JSON object, repeats a key or is not one of the ``expected`` types."""
    if content_type is None or not _is_fhir_json(content_type):
        raise FhirError(415, [Issue(
            "Send the resource as FHIR JSON with 'Content-Type: application/fhir+json' "
            "(application/json is accepted too); nothing was stored.", code="not-supported",
        )])  # fmt: skip
    try:
        duplicated = duplicate_key_paths(body)
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FhirError(400, [Issue(
            "The body is not UTF-8 encoded JSON; nothing was stored.", code="structure"
        )]) from None  # fmt: skip
    if not isinstance(data, dict):
        raise FhirError(400, [Issue("The body is not a JSON object (a FHIR resource).",
                                    code="structure")])  # fmt: skip
    kind = data.get("resourceType")
    root = kind if isinstance(kind, str) and kind.isalpha() else "Resource"
    if duplicated:
        raise FhirError(400, [
            Issue("This key appears more than once in its object; send it once.",
                  code="structure", expression=_path_expression(root, path))
            for path in duplicated
        ])  # fmt: skip
    if kind not in expected:
        raise FhirError(400, [Issue(
            f"This endpoint takes {' or '.join(expected)} resources; nothing was stored.",
            code="not-supported", expression=f"{root}.resourceType",
        )])  # fmt: skip
    return data


_MODELS: Final = {"AuditEvent": AuditEvent, "Consent": Consent}


def validate_structure(resource: Mapping[str, Any], root: str) -> None:
    """Check ``resource`` against the FHIR R4 structure (``fhir.resources.R4B``): 400 naming
    every element that is not as FHIR defines it."""
    model: Any = _MODELS[str(resource["resourceType"])]
    try:
        model.model_validate(resource)
    except ValidationError as error:
        issues = []
        for item in error.errors():
            loc = [p for p in item.get("loc", ()) if isinstance(p, str | int)]
            issues.append(Issue(
                f"Not valid FHIR R4 here: {item.get('msg', '')}; nothing was stored.",
                code="structure", expression=_path_expression(root, loc),
            ))  # fmt: skip
        raise FhirError(400, issues) from None
    except (ValueError, TypeError) as error:
        raise FhirError(400, [Issue(
            f"Not valid FHIR R4: {type(error).__name__}; nothing was stored.", code="structure",
            expression=root,
        )]) from None  # fmt: skip


# --------------------------------------------------------------------------------------------
# Small readers of FHIR datatypes


def _refuse(expression: str, message: str, status: int = 422) -> FhirError:
    return FhirError(status, [Issue(message + "; nothing was stored.", code="processing",
                                    expression=expression)])  # fmt: skip


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _codings(concept: object) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept, or a Coding itself."""
    concept = _dict(concept)
    if "coding" in concept:
        return [_dict(c) for c in _list(concept["coding"])]
    return [concept] if "code" in concept else []


def _has(concept: object, system: str, code: str) -> bool:
    return any(c.get("system") == system and c.get("code") == code for c in _codings(concept))


def _is_identifier(value: object) -> bool:
    if not isinstance(value, str) or len(value) > 200:
        return False
    return re.fullmatch(facts.IDENTIFIER_PATTERN, value) is not None


def _as_identifier(text: str) -> str:
    """Any text as a valid fact identifier: kept when it is one, else its unsafe characters
    become '-' ("Device/ex-device" -> "Device-ex-device"); a digest when nothing is left."""
    if _is_identifier(text):
        return text
    slug = _UNSAFE_ID.sub("-", text).strip("-._:@~")[:180]
    if slug and _is_identifier(slug):
        return slug
    return "sha256-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _reference_target(reference: object) -> tuple[str, str] | None:
    """(type, id) of a literal reference (relative or absolute, with or without _history)."""
    if not isinstance(reference, str):
        return None
    match = _REFERENCE.search(reference)
    return (match[1], match[2]) if match else None


def _moment(value: object, expression: str) -> str:
    """An instant or dateTime that is a moment (RFC 3339 with an offset), else 422."""
    if not isinstance(value, str) or not re.fullmatch(facts.TIMESTAMP_PATTERN, value):
        raise _refuse(expression, "This needs a date and time with a UTC offset")
    return value


def _day(value: object, expression: str) -> str:
    """The calendar date of a FHIR date or dateTime (a record date)."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value[:10]):
        return value[:10]
    raise _refuse(expression, "This needs a full date (YYYY-MM-DD)")


def _person(who: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(identifier value, reference, display) of a Reference."""
    ident = _dict(who.get("identifier")).get("value")
    reference = who.get("reference")
    display = who.get("display")
    return (
        ident if isinstance(ident, str) and ident.strip() else None,
        reference if isinstance(reference, str) and reference.strip() else None,
        display if isinstance(display, str) and display.strip() else None,
    )


def _record_ref(what: object, rules: Rules, expression: str) -> str:
    """The record a patient Reference names, by the configured rule."""
    what = _dict(what)
    if rules.record_ref == "reference":
        target = _reference_target(what.get("reference"))
        if target is None or target[0] != "Patient" or not _is_identifier(target[1]):
            raise _refuse(f"{expression}.reference", "The patient must be a Patient/<id> "
                          "reference (DISCLOSURE_AUDIT_FHIR_RECORD_REF=reference)")  # fmt: skip
        return target[1]
    identifier = _dict(what.get("identifier"))
    value = identifier.get("value")
    if rules.identifier_system is not None and identifier.get("system") != rules.identifier_system:
        raise _refuse(f"{expression}.identifier.system", "The patient must be named by an "
                      f"identifier of system {rules.identifier_system}")  # fmt: skip
    if not _is_identifier(value):
        raise _refuse(
            f"{expression}.identifier.value",
            "The patient identifier must be 1-200 "
            "letters, digits and . _ : @ ~ - (DISCLOSURE_AUDIT_FHIR_RECORD_REF=identifier)",
        )
    return str(value)


def _purpose_codes(concepts: Sequence[object], expression: str) -> list[PurposeOfUse]:
    """The v3 ActReason purposes of a list of CodeableConcepts; 422 for an ActReason code this
    service does not know, or a list that holds no ActReason code at all."""
    found: list[PurposeOfUse] = []
    for i, concept in enumerate(concepts):
        for j, coding in enumerate(_codings(concept)):
            if coding.get("system") not in (ACT_REASON, ACT_REASON_OID):
                continue
            try:
                found.append(PurposeOfUse(str(coding.get("code"))))
            except ValueError:
                raise _refuse(
                    f"{expression}[{i}].coding[{j}].code",
                    "Not a v3 ActReason purpose of use this service knows (domain/vocabulary.py)",
                ) from None
    if concepts and not found:
        raise _refuse(expression, f"No coding of system {ACT_REASON}: the purpose cannot be mapped")
    return found


def _purpose_codings(codings: Sequence[object], expression: str) -> list[PurposeOfUse]:
    """The purposes of a list of Codings (Consent.provision.purpose)."""
    return _purpose_codes([{"coding": [c]} for c in codings], expression)


def _category_of_type(resource_type: str, rules: Rules, expression: str) -> DataCategory:
    category = RESOURCE_CATEGORIES.get(resource_type) or rules.other_category
    if category is None:
        raise _refuse(
            expression,
            f"Which data category a {resource_type} holds is not "
            "mapped (DISCLOSURE_AUDIT_FHIR_OTHER_CATEGORY is unset); label it",
        )
    return category


def _label_categories(labels: Sequence[object]) -> list[DataCategory]:
    found = []
    for label in labels:
        code = _dict(label).get("code")
        if str(code) in _LABELS:
            found.append(_LABELS[str(code)])
        elif code in DataCategory.__members__.values():
            found.append(DataCategory(str(code)))
    return found


def _ordered(categories: Sequence[DataCategory]) -> list[DataCategory]:
    return list(dict.fromkeys(categories))


# --------------------------------------------------------------------------------------------
# AuditEvent


def _query_type(entity: Mapping[str, Any]) -> str | None:
    """The resource type a query entity searched, from its query (base64) or description."""
    texts = []
    query = entity.get("query")
    if isinstance(query, str):
        with contextlib.suppress(binascii.Error, ValueError):
            texts.append(base64.b64decode(query, validate=True).decode("utf-8", "replace"))
    if isinstance(entity.get("description"), str):
        texts.append(entity["description"])
    for text in texts:
        match = _QUERY_TYPE.search(text.split("\n", 1)[0])
        if match:
            return match[1]
    return None


def _entity_categories(
    entities: Sequence[tuple[int, dict[str, Any]]], rules: Rules, root: str
) -> list[DataCategory]:
    """Categories of the data entities: resource types touched, their security labels, or the
    categories this service's own export names in ``entity.detail``."""
    found: list[DataCategory] = []
    for i, entity in entities:
        expression = f"{root}.entity[{i}]"
        found += _label_categories(_list(entity.get("securityLabel")))
        stated = [d for d in _list(entity.get("detail")) if _dict(d).get("type") == "categories"]
        for detail in stated:
            for value in str(_dict(detail).get("valueString", "")).split(","):
                try:
                    found.append(DataCategory(value.strip()))
                except ValueError:
                    raise _refuse(
                        f"{expression}.detail",
                        "Not a data category of this service (domain/vocabulary.py)",
                    ) from None
        if stated:
            continue
        target = _reference_target(_dict(entity.get("what")).get("reference"))
        entity_type = _dict(entity.get("type"))
        if target is not None:
            found.append(_category_of_type(target[0], rules, f"{expression}.what"))
        elif _has(entity.get("role"), OBJECT_ROLE, "24"):
            searched = _query_type(entity) or "a query"
            found.append(_category_of_type(searched, rules, f"{expression}.query"))
        elif entity_type.get("system") == "http://hl7.org/fhir/resource-types":
            found.append(
                _category_of_type(str(entity_type.get("code")), rules, f"{expression}.type")
            )
        elif not found and rules.other_category is not None:
            found.append(rules.other_category)
    return _ordered(found)


def _split_entities(
    resource: Mapping[str, Any], root: str
) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, dict[str, Any]]]]:
    """(patient entities, data entities). A patient entity is BALP's slice (role object-role#1
    'Patient'); failing any, an entity whose what is a Patient reference (Medplum's way), which
    is then also a data entity: the Patient resource itself was touched."""
    entities = [(i, _dict(e)) for i, e in enumerate(_list(resource.get("entity")))]
    patients = [(i, e) for i, e in entities if _has(e.get("role"), OBJECT_ROLE, "1")]
    touched = bool(patients)
    if not patients:
        patients = [
            (i, e) for i, e in entities
            if (_reference_target(_dict(e.get("what")).get("reference")) or ("",))[0] == "Patient"
        ]  # fmt: skip
    if not patients:
        raise _refuse(
            f"{root}.entity",
            "No patient entity (an entity with role object-role#1 "
            "'Patient' whose what is the patient); the record cannot be named",
        )
    # Without BALP's slice the Patient entity is itself what was touched (demographics).
    ids = {i for i, _ in patients} if touched else set()
    data = [
        (i, e) for i, e in entities
        if i not in ids and not _has(e.get("type"), BALP_ENTITY_TYPE, "XrequestId")
    ]  # fmt: skip
    return patients, data


def _agent_type(agent: Mapping[str, Any], system: str, code: str) -> bool:
    return _has(agent.get("type"), system, code)


def _role_of(agent: Mapping[str, Any]) -> ActorRole | None:
    for concept in [agent.get("type"), *_list(agent.get("role"))]:
        for coding in _codings(concept):
            if coding.get("code") in _ROLE_CODES:
                return _ROLE_CODES[str(coding["code"])]
    target = _reference_target(_dict(agent.get("who")).get("reference"))
    return _ROLE_BY_TYPE.get(target[0]) if target else None


def _actor(
    agent: Mapping[str, Any], expression: str, fallback: ActorRole | None, setting: str
) -> dict[str, str]:
    ident, reference, display = _person(_dict(agent.get("who")))
    name = agent.get("name") if isinstance(agent.get("name"), str) else None
    raw = ident or reference or display or name
    if raw is None:
        raise _refuse(f"{expression}.who", "The agent names nobody (who.identifier, "
                      "who.reference or who.display)")  # fmt: skip
    role = _role_of(agent) or fallback
    if role is None:
        raise _refuse(f"{expression}.role", f"No role this service maps ({setting} is unset)")
    return {"id": _as_identifier(raw), "name": display or name or raw, "role": role.value}


def _source(resource: Mapping[str, Any], root: str) -> dict[str, str]:
    ident, reference, display = _person(_dict(_dict(resource.get("source")).get("observer")))
    raw = ident or reference or display
    if raw is None:
        raise _refuse(f"{root}.source.observer", "The source names no system")
    return {"system": _as_identifier(raw)}


def _occurred_at(resource: Mapping[str, Any], root: str) -> str:
    start = _dict(resource.get("period")).get("start")
    if start is not None:
        return _moment(start, f"{root}.period.start")
    return _moment(resource.get("recorded"), f"{root}.recorded")


def _purpose(
    resource: Mapping[str, Any], requestor: tuple[int, dict[str, Any]] | None, rules: Rules,
    root: str,
) -> tuple[PurposeOfUse, bool]:  # fmt: skip
    """The purpose, and whether the event stated it (defaults state nothing)."""
    stated = _purpose_codes(_list(resource.get("purposeOfEvent")), f"{root}.purposeOfEvent")
    if not stated and requestor is not None:
        i, agent = requestor
        stated = _purpose_codes(_list(agent.get("purposeOfUse")), f"{root}.agent[{i}].purposeOfUse")
    if stated:
        return stated[0], True
    if rules.default_purpose is None:
        raise _refuse(f"{root}.purposeOfEvent", "No purpose of use stated "
                      "(DISCLOSURE_AUDIT_FHIR_DEFAULT_PURPOSE is unset)")  # fmt: skip
    return rules.default_purpose, False


def _audit_event_id(resource: Mapping[str, Any]) -> UUID:
    """The event id of an AuditEvent: from its id (with the observer that wrote it), else a
    digest of its canonical JSON, so a retried POST names the same event."""
    if isinstance(resource.get("id"), str):
        key = {"id": resource["id"], "observer": _dict(resource.get("source")).get("observer")}
        return uuid5(EVENT_NAMESPACE, "AuditEvent/" + canonical.dumps(key).decode())
    digest = hashlib.sha256(canonical.dumps(resource)).hexdigest()
    return uuid5(EVENT_NAMESPACE, "AuditEvent#" + digest)


def _build(
    model: type[facts.FactBase], body: dict[str, Any], origins: Mapping[str, str], root: str
) -> facts.FactBase:
    """The fact, or 422 naming the FHIR element each malformed field came from."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        issues = []
        for item in error.errors():
            loc = [str(p) for p in item.get("loc", ())]
            field = loc[0] if loc else ""
            issues.append(Issue(
                f"Maps to {'.'.join(loc) or model.__name__}, which {item.get('msg', 'is invalid')}"
                "; nothing was stored.", code="processing", expression=origins.get(field, root),
            ))  # fmt: skip
        raise FhirError(422, issues) from None


def _access_action(resource: Mapping[str, Any], root: str) -> str:
    for item in _list(resource.get("subtype")):
        coding = _dict(item)
        if coding.get("system") == RESTFUL and coding.get("code") in _INTERACTIONS:
            return _INTERACTIONS[str(coding["code"])]
    action = resource.get("action")
    if action in _ACTIONS:
        return _ACTIONS[str(action)]
    raise _refuse(f"{root}.subtype", "No restful-interaction subtype or action this service maps")


def map_audit_event(resource: dict[str, Any], rules: Rules, root: str = "AuditEvent") -> Mapped:
    """The facts a BALP AuditEvent reports (one per patient entity), or ``FhirError``."""
    validate_structure(resource, root)
    outcome = resource.get("outcome")
    if outcome not in (None, "0"):
        raise _refuse(f"{root}.outcome", "Only successful events (outcome 0) are recorded: a "
                      "failed attempt neither used nor disclosed the record")  # fmt: skip
    event_type = _dict(resource.get("type"))
    disclose = any(_has(s, LIFECYCLE, "disclose") for s in _list(resource.get("subtype")))
    rest = event_type.get("system") == AUDIT_EVENT_TYPE and event_type.get("code") == "rest"
    record_event = event_type.get("system") == DCM and event_type.get("code") == "110110"
    if not (disclose or rest or record_event):
        raise _refuse(
            f"{root}.type",
            "Not a BALP pattern this service maps: a RESTful "
            "operation (audit-event-type#rest), a PrivacyDisclosure (subtype "
            "iso-21089-lifecycle#disclose) or DICOM 110110 Patient Record",
        )
    patients, data = _split_entities(resource, root)
    agents = [(i, _dict(a)) for i, a in enumerate(_list(resource.get("agent")))]
    requestors = [(i, a) for i, a in agents if a.get("requestor") is True]
    base = _audit_event_id(resource)
    common: dict[str, Any] = {
        "occurred_at": _occurred_at(resource, root),
        "source": _source(resource, root),
    }
    origins = {
        "occurred_at": f"{root}.period.start" if "period" in resource else f"{root}.recorded",
        "source": f"{root}.source.observer",
        "categories": f"{root}.entity",
        "purpose_of_use": f"{root}.purposeOfEvent",
    }
    if disclose:
        model: type[facts.FactBase] = facts.DisclosureMade
        body = _disclosure(
            resource,
            agents=agents,
            requestors=requestors,
            data=data,
            rules=rules,
            root=root,
            origins=origins,
        )
    else:
        model = facts.RecordAccessed
        body = _access(
            resource, requestors=requestors, data=data, rules=rules, root=root, origins=origins
        )
    submissions = []
    refs = list(dict.fromkeys(
        _record_ref(e.get("what"), rules, f"{root}.entity[{i}].what") for i, e in patients
    ))  # fmt: skip
    for ref in refs:
        event_id = base if len(refs) == 1 else uuid5(base, ref)
        fact = _build(model, {**body, **common, "event_id": str(event_id)}, origins, root)
        submissions.append(Submission(record_ref=ref, fact=fact))
    return Mapped("AuditEvent", str(submissions[0].fact.event_id), tuple(submissions))


def _access(
    resource: Mapping[str, Any], *, requestors: list[tuple[int, dict[str, Any]]],
    data: list[tuple[int, dict[str, Any]]], rules: Rules, root: str, origins: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    if not requestors:
        raise _refuse(f"{root}.agent", "No requesting agent (agent.requestor = true): who "
                      "used the record cannot be named")  # fmt: skip
    i, agent = requestors[0]
    origins["actor"] = f"{root}.agent[{i}]"
    purpose, _ = _purpose(resource, requestors[0], rules, root)
    categories = _entity_categories(data, rules, root)
    if not categories:
        raise _refuse(f"{root}.entity", "No data entity: what part of the record was used "
                      "cannot be told")  # fmt: skip
    body: dict[str, Any] = {
        "type": "RecordAccessed",
        "actor": _actor(agent, f"{root}.agent[{i}]", rules.default_actor_role,
                        "DISCLOSURE_AUDIT_FHIR_DEFAULT_ACTOR_ROLE"),
        "categories": [c.value for c in categories],
        "action": _access_action(resource, root),
        "purpose_of_use": purpose.value,
    }  # fmt: skip
    if purpose is PurposeOfUse.BTG:
        body["break_glass"] = True
        text = next((_dict(c).get("text") for c in _list(resource.get("purposeOfEvent"))
                     if isinstance(_dict(c).get("text"), str)), None)  # fmt: skip
        if text:
            body["justification"] = text
            origins["justification"] = f"{root}.purposeOfEvent.text"
    return body


def _disclosure(
    resource: Mapping[str, Any], *, agents: list[tuple[int, dict[str, Any]]],
    requestors: list[tuple[int, dict[str, Any]]], data: list[tuple[int, dict[str, Any]]],
    rules: Rules, root: str, origins: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    recipients = [(i, a) for i, a in agents if _agent_type(a, DCM, _DESTINATION_ROLE)]
    if not recipients:
        raise _refuse(f"{root}.agent.where(type.coding.code = '{_DESTINATION_ROLE}')",
                      "No recipient agent (DCM 110152 Destination Role ID)")  # fmt: skip
    r, recipient_agent = recipients[0]
    ident, reference, display = _person(_dict(recipient_agent.get("who")))
    name = display or ident or reference
    if name is None:
        raise _refuse(f"{root}.agent[{r}].who", "The recipient names nobody")
    target = _reference_target(reference)
    kind = next(
        (RecipientKind(str(c["code"])) for concept in _list(recipient_agent.get("role"))
         for c in _codings(concept) if c.get("code") in RecipientKind.__members__.values()),
        _RECIPIENT_BY_TYPE.get(target[0], RecipientKind.OTHER) if target else RecipientKind.OTHER,
    )  # fmt: skip
    recipient: dict[str, Any] = {"name": name, "kind": kind.value}
    if ident is not None and _is_identifier(ident):
        recipient["identifier"] = ident
    origins["recipient"] = f"{root}.agent[{r}].who"
    # Who released it: BALP's custodian; else a requestor that is neither the authorizer nor the
    # recipient; else the source agent (the releasing system, as the records custodian).
    custodians = [(i, a) for i, a in agents if _agent_type(a, SCT, _CUSTODIAN)]
    others = [(i, a) for i, a in requestors
              if not _agent_type(a, SCT, _AUTHORIZER) and i != r]  # fmt: skip
    sources = [(i, a) for i, a in agents if _agent_type(a, DCM, _SOURCE_ROLE)]
    candidates = custodians or others or sources
    if not candidates:
        raise _refuse(f"{root}.agent", "No agent released the data (custodian, requestor or "
                      "DCM 110153 Source Role ID)")  # fmt: skip
    a_i, a = chosen = candidates[0]
    fallback = ActorRole.RECORDS_CUSTODIAN if chosen in sources + custodians else (
        rules.default_actor_role
    )  # fmt: skip
    origins["actor"] = f"{root}.agent[{a_i}]"
    purpose, stated = _purpose(resource, None, rules, root)
    categories = _entity_categories(data, rules, root)
    if not categories:
        raise _refuse(f"{root}.entity", "No data entity: what was disclosed cannot be told")
    basis = _basis(agents, data, purpose if stated else None)
    origins["legal_basis"] = f"{root}.agent.policy"
    disclosure_id = next(
        (v for _, e in data if _is_identifier(v := _dict(_dict(e.get("what")).get("identifier"))
                                              .get("value"))), None,
    ) or (resource["id"] if _is_identifier(resource.get("id")) else None)  # fmt: skip
    method = (DisclosureMethod.ELECTRONIC_EXCHANGE if recipient_agent.get("network")
              else DisclosureMethod.OTHER)  # fmt: skip
    body: dict[str, Any] = {
        "type": "DisclosureMade",
        "actor": _actor(a, f"{root}.agent[{a_i}]", fallback,
                        "DISCLOSURE_AUDIT_FHIR_DEFAULT_ACTOR_ROLE"),
        "recipient": recipient,
        "categories": [c.value for c in categories],
        "method": method.value,
        "legal_basis": basis,
        "purpose_of_use": purpose.value,
    }  # fmt: skip
    body["disclosure_id"] = disclosure_id or str(_audit_event_id(resource))
    return body


def _basis(
    agents: Sequence[tuple[int, dict[str, Any]]],
    data: Sequence[tuple[int, dict[str, Any]]],
    stated_purpose: PurposeOfUse | None,
) -> dict[str, str]:
    """The legal basis a disclosure states, never guessed: this service's own detail or policy
    URN, a Consent the disclosure relies on, a treatment/payment/operations purpose; else
    ``none_stated``, which the policy engine judges as such."""
    kind: LegalBasisKind | None = None
    reference_id: str | None = None
    for _, entity in data:
        for detail in _list(entity.get("detail")):
            if _dict(detail).get("type") == "legal_basis":
                value = _dict(detail).get("valueString")
                if value in LegalBasisKind.__members__.values():
                    kind = LegalBasisKind(str(value))
    for _, agent in agents:
        for policy in _list(agent.get("policy")):
            if not isinstance(policy, str):
                continue
            if policy.startswith(POLICY_URN) and _is_identifier(unquote(policy[len(POLICY_URN) :])):
                reference_id = unquote(policy[len(POLICY_URN) :])
            elif (target := _reference_target(policy)) and target[0] == "Consent":
                kind = kind or LegalBasisKind.CLIENT_AUTHORIZATION
                reference_id = target[1]
    if kind is None and stated_purpose is not None:
        kind = _PURPOSE_BASES.get(stated_purpose)
    if kind is None or kind is LegalBasisKind.NONE_STATED:
        return {"kind": LegalBasisKind.NONE_STATED.value}
    return {"kind": kind.value, **({"reference_id": reference_id} if reference_id else {})}


# --------------------------------------------------------------------------------------------
# Consent

_ACTIVE: Final = "active"
_ENDED: Final = ("inactive", "rejected", "entered-in-error")


def consent_event_id(resource: Mapping[str, Any]) -> UUID:
    """The event id of a Consent: a digest of its canonical JSON (its id included), so a
    retried request names the same event and a changed Consent a new one."""
    digest = hashlib.sha256(canonical.dumps(resource)).hexdigest()
    return uuid5(EVENT_NAMESPACE, "Consent#" + digest)


def _grantor(resource: Mapping[str, Any], root: str) -> tuple[Grantor, dict[str, str]]:
    performers = [_dict(p) for p in _list(resource.get("performer"))]
    for i, performer in enumerate(performers):
        target = _reference_target(performer.get("reference"))
        grantor = {"Patient": Grantor.CLIENT, "RelatedPerson": Grantor.PERSONAL_REPRESENTATIVE}.get(
            target[0] if target else ""
        )
        if grantor is None:
            continue
        ident, reference, display = _person(performer)
        raw = ident or reference or display or ""
        role = ActorRole.CLIENT if grantor is Grantor.CLIENT else ActorRole.PERSONAL_REPRESENTATIVE
        del i
        return grantor, {"id": _as_identifier(raw), "name": display or raw, "role": role.value}
    raise _refuse(f"{root}.performer", "Who agreed must be a performer referencing the "
                  "Patient or a RelatedPerson (the personal representative)")  # fmt: skip


def _in_writing(resource: Mapping[str, Any], root: str) -> bool:
    if any(k in resource for k in ("sourceAttachment", "sourceReference")):
        return True
    raise _refuse(f"{root}.source[x]", "Whether it was given in writing cannot be told: "
                  "send the signed form as sourceAttachment or sourceReference")  # fmt: skip


def _authorization_kind(resource: Mapping[str, Any], root: str) -> AuthorizationKind:
    concepts = [*_list(resource.get("category")), resource.get("policyRule")]
    for concept in concepts:
        for coding in _codings(concept):
            code = coding.get("code")
            if code in AuthorizationKind.__members__.values():
                return AuthorizationKind(str(code))
            kind = _AUTHORIZATION_CODES.get((coding.get("system"), str(code)))
            if kind is not None:
                return kind
    raise _refuse(f"{root}.category", "No category says what kind of authorization this is "
                  "(LOINC 59284-0 or 64292-6, v3-ActCode IDSCL or INFA, or a kind of "
                  "domain/vocabulary.py AuthorizationKind)")  # fmt: skip


def _recipients(provision: Mapping[str, Any], root: str) -> list[dict[str, str]]:
    recipients = []
    for i, actor in enumerate(_list(provision.get("actor"))):
        reference = _dict(_dict(actor).get("reference"))
        ident, ref, display = _person(reference)
        name = display or ident or ref
        if name is None:
            raise _refuse(f"{root}.provision.actor[{i}].reference", "The actor names nobody")
        target = _reference_target(ref)
        kind = _RECIPIENT_BY_TYPE.get(target[0], RecipientKind.OTHER) if target else (
            RecipientKind.OTHER
        )  # fmt: skip
        recipient = {"name": name, "kind": kind.value}
        if ident is not None and _is_identifier(ident):
            recipient["identifier"] = ident
        recipients.append(recipient)
    if not recipients:
        raise _refuse(f"{root}.provision.actor", "No actor: who may receive the records is "
                      "not stated")  # fmt: skip
    return recipients


def _consent_categories(
    provision: Mapping[str, Any], rules: Rules, root: str
) -> list[DataCategory]:
    found = _label_categories(_list(provision.get("securityLabel")))
    for i, coding in enumerate(_list(provision.get("class"))):
        code = _dict(coding).get("code")
        if code in DataCategory.__members__.values():
            found.append(DataCategory(str(code)))
        elif isinstance(code, str):
            found.append(_category_of_type(code, rules, f"{root}.provision.class[{i}]"))
    if not found:
        raise _refuse(f"{root}.provision.class", "No class or security label: which data "
                      "may be released is not stated")  # fmt: skip
    return _ordered(found)


def map_consent(
    resource: dict[str, Any], rules: Rules, *, default_source: str, path_id: str | None = None,
    root: str = "Consent",
) -> Mapped:  # fmt: skip
    """``AuthorizationGranted`` of an active Consent, ``AuthorizationRevoked`` of an inactive,
    rejected or entered-in-error one; or ``FhirError``."""
    validate_structure(resource, root)
    if path_id is not None:
        if resource.get("id", path_id) != path_id:
            raise _refuse(f"{root}.id", "The id differs from the one in the URL", 400)
        resource = {**resource, "id": path_id}
    status = resource.get("status")
    if status != _ACTIVE and status not in _ENDED:
        raise _refuse(
            f"{root}.status",
            "Only an active Consent (an authorization) or an "
            "inactive, rejected or entered-in-error one (its revocation) is recorded",
        )
    scope = resource.get("scope")
    if not _has(scope, CONSENT_SCOPE, "patient-privacy"):
        raise _refuse(f"{root}.scope", "Only patient-privacy consents are authorizations to "
                      "disclose (consentscope#patient-privacy)")  # fmt: skip
    record_ref = _record_ref(resource.get("patient"), rules, f"{root}.patient")
    event_id = consent_event_id(resource)
    identifiers = [_dict(i).get("value") for i in _list(resource.get("identifier"))]
    authorization_id = next(
        (str(v) for v in [resource.get("id"), *identifiers] if _is_identifier(v)), str(event_id)
    )
    grantor, actor = _grantor(resource, root)
    meta_source = _dict(resource.get("meta")).get("source")
    organizations = [_person(_dict(o)) for o in _list(resource.get("organization"))]
    source = next((x for x in [meta_source, *(y for o in organizations for y in o)] if x),
                  default_source)  # fmt: skip
    common: dict[str, Any] = {
        "event_id": str(event_id),
        "actor": actor,
        "source": {"system": _as_identifier(str(source))},
        "authorization_id": authorization_id,
        "in_writing": _in_writing(resource, root),
    }
    origins = {"actor": f"{root}.performer", "source": f"{root}.meta.source",
               "authorization_id": f"{root}.id", "in_writing": f"{root}.source[x]"}  # fmt: skip
    if status in _ENDED:
        updated = _dict(resource.get("meta")).get("lastUpdated")
        if updated is None:
            raise _refuse(f"{root}.meta.lastUpdated", "When it was revoked is not stated")
        body = {**common, "type": "AuthorizationRevoked",
                "occurred_at": _moment(updated, f"{root}.meta.lastUpdated")}  # fmt: skip
        origins["occurred_at"] = f"{root}.meta.lastUpdated"
        fact = _build(facts.AuthorizationRevoked, body, origins, root)
        return Mapped("Consent", authorization_id, (Submission(record_ref, fact),))
    provision = _dict(resource.get("provision"))
    if provision.get("type", "permit") != "permit":
        raise _refuse(f"{root}.provision.type", "A deny provision authorizes nothing")
    if provision.get("provision"):
        raise _refuse(f"{root}.provision.provision", "Nested provisions are not mapped: send "
                      "one permit provision")  # fmt: skip
    body = {
        **common,
        "type": "AuthorizationGranted",
        "occurred_at": _moment(resource.get("dateTime"), f"{root}.dateTime"),
        "kind": _authorization_kind(resource, root).value,
        "granted_by": grantor.value,
        "recipients": _recipients(provision, root),
        "purposes": [p.value for p in dict.fromkeys(
            _purpose_codings(_list(provision.get("purpose")), f"{root}.provision.purpose"))],
        "categories": [c.value for c in _consent_categories(provision, rules, root)],
    }  # fmt: skip
    if not body["purposes"]:
        raise _refuse(f"{root}.provision.purpose", "No purpose: what the records may be used "
                      "for is not stated")  # fmt: skip
    data_period = _dict(provision.get("dataPeriod"))
    if "start" in data_period:
        body["records_from"] = _day(data_period["start"], f"{root}.provision.dataPeriod.start")
    if "end" in data_period:
        body["records_until"] = _day(data_period["end"], f"{root}.provision.dataPeriod.end")
    end = _dict(provision.get("period")).get("end")
    if end is not None:
        body["expires_at"] = _moment(end, f"{root}.provision.period.end")
    origins |= {
        "occurred_at": f"{root}.dateTime", "kind": f"{root}.category",
        "granted_by": f"{root}.performer", "recipients": f"{root}.provision.actor",
        "purposes": f"{root}.provision.purpose", "categories": f"{root}.provision.class",
        "records_from": f"{root}.provision.dataPeriod.start",
        "records_until": f"{root}.provision.dataPeriod.end",
        "expires_at": f"{root}.provision.period.end",
    }  # fmt: skip
    fact = _build(facts.AuthorizationGranted, body, origins, root)
    return Mapped("Consent", authorization_id, (Submission(record_ref, fact),))


@dataclass(frozen=True)
class Entry:
    """One entry of a Bundle: its resource and what to do with it, or why it cannot be done."""

    index: int
    resource: dict[str, Any]
    put_id: str | None
    """The id of a ``PUT Consent/<id>``."""
    error: FhirError | None = None


def entries(bundle: Mapping[str, Any]) -> list[Entry]:
    """The entries of a batch or transaction Bundle; 400 if it has none, 413 over the limit."""
    if bundle.get("type") not in ("batch", "transaction"):
        raise _refuse("Bundle.type", "Only batch and transaction Bundles are processed", 400)
    items = _list(bundle.get("entry"))
    if not items:
        raise _refuse("Bundle.entry", "The Bundle has no entries", 400)
    if len(items) > MAX_ENTRIES:
        raise _refuse("Bundle.entry", f"At most {MAX_ENTRIES} entries per Bundle", 413)
    found = []
    for i, item in enumerate(items):
        resource = _dict(_dict(item).get("resource"))
        request = _dict(_dict(item).get("request"))
        method = request.get("method", "POST")
        url = request.get("url", resource.get("resourceType", ""))
        kind = resource.get("resourceType")
        put = (
            re.fullmatch(r"Consent/([A-Za-z0-9][A-Za-z0-9.-]{0,63})", url)
            if isinstance(url, str)
            else None
        )
        if kind in ("AuditEvent", "Consent") and method == "POST" and url == kind:
            found.append(Entry(i, resource, None))
        elif kind == "Consent" and method == "PUT" and put:
            found.append(Entry(i, resource, put[1]))
        else:
            error = _refuse(f"Bundle.entry[{i}]", "Each entry must POST an AuditEvent or a "
                            "Consent, or PUT Consent/<id>", 400)  # fmt: skip
            found.append(Entry(i, resource, None, error))
    return found
