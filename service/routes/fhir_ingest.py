"""FHIR ingest: BALP AuditEvents and Consents posted by clinical systems (docs/FHIR.md).

The body is read raw and checked here (media type, JSON, repeated keys, ``fhir.resources``),
since a FHIR resource is not one of the API's pydantic models; ``service/fhir/ingest.py`` maps
it to facts, which are stored like the native API's, idempotent on the derived event ids and
all or nothing per request (per entry in a batch Bundle).
"""

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from domain.errors import EventIdReusedError, FactInFutureError, RecordErasedError
from service.application.ingest import Receipt, Submission
from service.auth import Principal, Role
from service.container import Services
from service.deps import ServicesDep, require
from service.errors import SECURITY_HEADERS
from service.fhir import ingest as mapping
from service.fhir.outcome import FHIR_JSON, FhirError, Issue
from service.telemetry import observe_ingest

__all__ = ["router"]

router = APIRouter(prefix="/fhir/R4", tags=["fhir"])

Ingestor = Annotated[Principal, Depends(require(Role.INGEST))]

_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}},
}


def _body_doc(kinds: str) -> dict[str, Any]:
    schema = {"type": "object", "required": ["resourceType"],
              "properties": {"resourceType": {"type": "string"}}}  # fmt: skip
    return {
        "requestBody": {
            "required": True,
            "description": f"A FHIR R4 {kinds} (JSON)",
            "content": {FHIR_JSON: {"schema": schema}, "application/json": {"schema": schema}},
        }
    }


def _answers(what: str) -> dict[int | str, dict[str, Any]]:
    content = {FHIR_JSON: {"schema": _OUTCOME_SCHEMA}}
    return {
        200: {"description": f"{what} already stored: the same answer", "content": content},
        201: {"description": f"{what} stored", "content": content},
        400: {"description": "Not a FHIR resource this endpoint takes, or not valid FHIR R4"},
        409: {"description": "The derived event id is stored with other content"},
        413: {"description": "Request body (or Bundle) too large"},
        415: {"description": "Not 'application/fhir+json' or 'application/json'"},
        422: {"description": "An element cannot be mapped (OperationOutcome names it); "
                             "nothing stored"},
    }  # fmt: skip


async def _read(request: Request, expected: Sequence[str]) -> dict[str, Any]:
    body = await request.body()
    return mapping.parse_resource(body, request.headers.get("content-type"), expected)


def _store(
    services: Services, tenant_id: str, submissions: Sequence[Submission]
) -> tuple[list[Receipt], bool]:
    with observe_ingest(tenant_id, submissions) as observed:
        receipts, created = services.ingest.record_facts(tenant_id, submissions)
        observed.stored(receipts, created)
    return receipts, created


def _issues(
    receipts: Sequence[Receipt], submissions: Sequence[Submission], created: bool
) -> list[Issue]:
    issues = []
    for receipt, submission in zip(receipts, submissions, strict=True):
        issues.append(Issue(
            f"{'Stored' if created else 'Already stored'}: {type(submission.fact).__name__} "
            f"event {receipt.event_id} of record {receipt.record_ref} at log position "
            f"{receipt.position}.", code="informational", severity="information",
        ))  # fmt: skip
        for finding in receipt.findings:
            issues.append(Issue(
                f"Finding {finding.get('rule')} ({finding.get('severity')}): "
                f"{finding.get('message')}", code="business-rule", severity="warning",
            ))  # fmt: skip
    return issues


def _outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_dict() for i in issues]}


def _location(mapped: mapping.Mapped) -> str:
    return f"/fhir/R4/{mapped.resource_type}/{mapped.resource_id}"


async def _ingest(services: Services, principal: Principal, mapped: mapping.Mapped) -> JSONResponse:
    receipts, created = await run_in_threadpool(
        _store, services, principal.tenant_id, mapped.submissions
    )
    return JSONResponse(
        _outcome(_issues(receipts, mapped.submissions, created)),
        status_code=201 if created else 200,
        media_type=FHIR_JSON,
        headers={**SECURITY_HEADERS, "Location": _location(mapped)},
    )


def _rules(services: Services) -> mapping.Rules:
    return mapping.Rules.of(services.settings)


@router.post(
    "/AuditEvent",
    operation_id="fhir_post_audit_event",
    status_code=201,
    responses=_answers("The AuditEvent's facts"),
    openapi_extra=_body_doc("AuditEvent (IHE BALP)"),
    summary="Record a BALP AuditEvent as an access or a disclosure",
)
async def post_audit_event(
    request: Request, principal: Ingestor, services: ServicesDep
) -> JSONResponse:
    """Map a BALP PatientRead/Query/Create/Update/Delete or PrivacyDisclosure AuditEvent to
    RecordAccessed or DisclosureMade facts (one per patient entity) and store them; 201 with an
    OperationOutcome naming each stored event and its log position, 200 for a repeat."""
    resource = await _read(request, ["AuditEvent"])
    return await _ingest(services, principal, mapping.map_audit_event(resource, _rules(services)))


@router.post(
    "/Consent",
    operation_id="fhir_post_consent",
    status_code=201,
    responses=_answers("The Consent's fact"),
    openapi_extra=_body_doc("Consent"),
    summary="Record a Consent as an authorization granted or revoked",
)
async def post_consent(
    request: Request, principal: Ingestor, services: ServicesDep
) -> JSONResponse:
    """An active Consent is AuthorizationGranted; an inactive, rejected or entered-in-error one
    AuthorizationRevoked (of the authorization with its id)."""
    resource = await _read(request, ["Consent"])
    mapped = mapping.map_consent(
        resource, _rules(services), default_source=f"api-key-{principal.key_id}"
    )
    return await _ingest(services, principal, mapped)


@router.put(
    "/Consent/{consent_id}",
    operation_id="fhir_put_consent",
    status_code=201,
    responses=_answers("The Consent's fact"),
    openapi_extra=_body_doc("Consent"),
    summary="Record a Consent (by its id) as an authorization granted or revoked",
)
async def put_consent(
    consent_id: Annotated[
        str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$", description="Consent.id")
    ],
    request: Request,
    principal: Ingestor,
    services: ServicesDep,
) -> JSONResponse:
    """As POST, with the authorization id taken from the URL: PUT the Consent again with
    status inactive to revoke it."""
    resource = await _read(request, ["Consent"])
    mapped = mapping.map_consent(
        resource, _rules(services), default_source=f"api-key-{principal.key_id}",
        path_id=consent_id,
    )  # fmt: skip
    return await _ingest(services, principal, mapped)


def _map_entry(entry: mapping.Entry, rules: mapping.Rules, principal: Principal) -> mapping.Mapped:
    if entry.error is not None:
        raise entry.error
    root = f"Bundle.entry[{entry.index}].resource"
    if entry.resource.get("resourceType") == "AuditEvent":
        return mapping.map_audit_event(entry.resource, rules, root)
    return mapping.map_consent(
        entry.resource, rules, default_source=f"api-key-{principal.key_id}",
        path_id=entry.put_id, root=root,
    )  # fmt: skip


def _response_entry(status: int, outcome: dict[str, Any], location: str | None) -> dict[str, Any]:
    reason = {200: "OK", 201: "Created"}.get(status, "")
    response: dict[str, Any] = {"status": f"{status} {reason}".strip(), "outcome": outcome}
    if location:
        response["location"] = location
    return {"response": response}


_ENTRY_ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    EventIdReusedError: (409, "conflict", "The derived event id is stored with other content"),
    FactInFutureError: (422, "processing", "occurred_at is in the future"),
    RecordErasedError: (409, "conflict", "The record was crypto-shredded; it takes no events"),
}


@router.post(
    "",
    operation_id="fhir_post_bundle",
    responses={
        200: {
            "description": "A batch-response or transaction-response Bundle",
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        },
        400: {"description": "Not a batch or transaction Bundle, or an entry is malformed"},
        409: {"description": "A derived event id is stored with other content (transaction)"},
        413: {"description": "More than 1000 entries, or the body too large"},
        415: {"description": "Not 'application/fhir+json' or 'application/json'"},
        422: {"description": "An entry cannot be mapped (transaction); nothing stored"},
    },
    openapi_extra=_body_doc("Bundle of type batch or transaction"),
    summary="Record a batch or transaction Bundle of AuditEvents and Consents",
)
async def post_bundle(request: Request, principal: Ingestor, services: ServicesDep) -> JSONResponse:
    """A transaction stores every entry or none (the first problem is answered, naming its
    entry); a batch stores each entry on its own and answers each entry's status."""
    bundle = await _read(request, ["Bundle"])
    items = mapping.entries(bundle)
    rules = _rules(services)
    answered: list[dict[str, Any]] = []
    if bundle["type"] == "transaction":
        problems: list[Issue] = []
        mapped_all: list[mapping.Mapped] = []
        statuses: list[int] = []
        for entry in items:
            try:
                mapped_all.append(_map_entry(entry, rules, principal))
            except FhirError as error:
                problems += error.issues
                statuses.append(error.status)
        if problems:
            raise FhirError(statuses[0], problems)  # every problem, the first one's status
        submissions = [s for m in mapped_all for s in m.submissions]
        receipts, created = await run_in_threadpool(
            _store, services, principal.tenant_id, submissions
        )
        by_id = {r.event_id: r for r in receipts}
        for mapped in mapped_all:
            mine = [by_id[s.fact.event_id] for s in mapped.submissions]
            outcome = _outcome(_issues(mine, mapped.submissions, created))
            answered.append(_response_entry(201 if created else 200, outcome, _location(mapped)))
        kind = "transaction-response"
    else:
        for entry in items:
            try:
                mapped = _map_entry(entry, rules, principal)
                receipts, created = await run_in_threadpool(
                    _store, services, principal.tenant_id, mapped.submissions
                )
            except FhirError as error:
                answered.append(_response_entry(error.status, _outcome(error.issues), None))
                continue
            except tuple(_ENTRY_ERRORS) as error:
                status, code, text = _ENTRY_ERRORS[type(error)]
                issue = Issue(text + "; nothing was stored for this entry.", code=code,
                              expression=f"Bundle.entry[{entry.index}].resource")  # fmt: skip
                answered.append(_response_entry(status, _outcome([issue]), None))
                continue
            outcome = _outcome(_issues(receipts, mapped.submissions, created))
            answered.append(_response_entry(201 if created else 200, outcome, _location(mapped)))
        kind = "batch-response"
    return JSONResponse(
        {"resourceType": "Bundle", "type": kind, "entry": answered},
        media_type=FHIR_JSON,
        headers=SECURITY_HEADERS,
    )
