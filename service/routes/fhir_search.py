"""FHIR R4 search out: ``GET /fhir/R4/AuditEvent``, ``/AuditEvent/{id}`` and ``/metadata``.

Served from the read models (``projections.queries.audit_event_page``) and rendered by the
export's own ``service.integrity.fhir.audit_event``, so a search answers the very resources a
bundle's ``auditevents.ndjson`` holds. Role ``compliance``; every search and read is recorded in
the self-audit (``audited``) and sees only the caller's tenant. ``metadata`` is public, as FHIR
clients expect to read it before they authenticate; it says nothing about any tenant.

Search parameters (docs/FHIR.md): ``patient`` (``Patient/<record_ref>`` or the bare ref),
``date`` (``AuditEvent.recorded``; repeatable; prefixes ``eq ge le gt lt``), ``agent`` (the
actor's id; ``agent:identifier`` takes ``[system|]id``), ``type`` and ``subtype`` (tokens,
comma-separated values are alternatives), ``_count`` (1..1000, default 50), ``_cursor`` (the
opaque position the ``next`` link carries) and ``min_position`` (read-your-writes, as on
``/v1``). Any other parameter is refused with 400: this server is strict, it never ignores one.
"""

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from projections.queries import AuditEventFilter, audit_event_page
from service.auth import Principal, Role
from service.deps import MAX_POSITION, ServicesDep, audited
from service.fhir.outcome import FHIR_JSON, FhirError, FhirJSONResponse, Issue
from service.integrity.fhir import (
    ACTOR_SYSTEM,
    AUDIT_EVENT_TYPE,
    DCM,
    LIFECYCLE,
    PROFILES,
    RESTFUL,
    access_actions,
    audit_event,
)

__all__ = ["router"]

router = APIRouter(prefix="/fhir/R4", tags=["fhir"])
Reader = Annotated[Principal, Depends(audited(Role.COMPLIANCE))]

DEFAULT_COUNT = 50
MAX_COUNT = 1000
PARAMETERS = ("patient", "date", "agent", "agent:identifier", "type", "subtype")
_CONTROL = ("_count", "_cursor", "min_position")

Kinds = dict[str, frozenset[str] | None]
_ALL: Kinds = {"DisclosureMade": None, "RecordAccessed": None}
# (system, code) of each AuditEvent.type and .subtype this service writes, and what it selects.
_TYPES: dict[tuple[str, str], Kinds] = {
    (DCM, "110106"): {"DisclosureMade": None},
    (AUDIT_EVENT_TYPE, "rest"): {"RecordAccessed": None},
}
_SUBTYPES: dict[tuple[str, str], Kinds] = {
    (LIFECYCLE, "disclose"): {"DisclosureMade": None},
    **{(RESTFUL, code): {"RecordAccessed": access_actions(code)}
       for code in ("read", "create", "update", "delete")},
}  # fmt: skip
_PREFIXES = ("eq", "ge", "le", "gt", "lt")
_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})(?:T(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?P<fraction>\.\d{1,6})?)?(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


_DATE_FORM = (
    "Search parameter 'date' takes an optional prefix (eq, ge, le, gt or lt) and a FHIR dateTime:"
    " YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.ffffff]][Z|+hh:mm|-hh:mm]."
)


def _invalid(diagnostics: str, code: str = "invalid") -> FhirError:
    return FhirError(400, [Issue(diagnostics, code=code)])


def _fhir(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _union(values: Iterable[Kinds]) -> Kinds:
    merged: Kinds = {}
    for kinds in values:
        for kind, actions in kinds.items():
            if kind in merged:
                before = merged[kind]
                merged[kind] = None if before is None or actions is None else before | actions
            else:
                merged[kind] = actions
    return merged


def _intersection(a: Kinds, b: Kinds) -> Kinds:
    both: Kinds = {}
    for kind in a.keys() & b.keys():
        left, right = a[kind], b[kind]
        actions = right if left is None else left if right is None else left & right
        if actions is None or actions:
            both[kind] = actions
    return both


def _token(name: str, value: str, table: dict[tuple[str, str], Kinds]) -> Kinds:
    """What one token value (``code``, ``system|code``, ``system|``, ``|code``) selects."""
    if not value:
        raise _invalid(f"Search parameter '{name}' has an empty value.")
    system, bar, code = value.rpartition("|")
    chosen = [
        kinds for (s, c), kinds in table.items()
        if (not bar or s == system) and (c == code or (bar and system and not code))
    ]  # fmt: skip
    if bar and not system:
        chosen = []  # "|code": a code without a system, which this service never writes
    return _union(chosen)


def _bounds(value: str) -> list[tuple[str, datetime]]:
    """The bounds on ``recorded`` of one ``date`` value (FHIR search on a dateTime: the value is
    the range its precision spans, [start, end); an instant matches by where it falls)."""
    prefix = value[:2] if value[:2].isalpha() else "eq"
    text = value[2:] if value[:2].isalpha() else value
    match = _DATE.fullmatch(text)
    if prefix not in _PREFIXES or match is None:
        # Submitted values are not echoed (ARCHITECTURE.md "Errors"); the form is.
        raise _invalid(_DATE_FORM, code="not-supported" if match else "invalid")
    parts = match.groupdict()
    try:
        start, end = _range(parts)
    except (ValueError, OverflowError):
        raise _invalid(_DATE_FORM) from None
    return {
        "eq": [(">=", start), ("<", end)], "ge": [(">=", start)], "lt": [("<", start)],
        "le": [("<", end)], "gt": [(">=", end)],
    }[prefix]  # fmt: skip


def _range(parts: dict[str, str | None]) -> tuple[datetime, datetime]:
    year = int(parts["year"] or 0)
    if parts["month"] is None:
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    month = int(parts["month"])
    if parts["day"] is None:
        start = datetime(year, month, 1, tzinfo=UTC)
        nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return start, nxt
    day = int(parts["day"])
    if parts["hour"] is None:
        start = datetime(year, month, day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    # A time without an offset is read as UTC (FHIR leaves it to the server; docs/FHIR.md).
    zone = parts["zone"] or "Z"
    text = f"{parts['year']}-{parts['month']}-{parts['day']}T{parts['hour']}:{parts['minute']}"
    if parts["second"] is None:
        step = timedelta(minutes=1)
    else:
        text += f":{parts['second']}{parts['fraction'] or ''}"
        digits = len(parts["fraction"] or ".") - 1
        step = timedelta(microseconds=10 ** (6 - digits))
    start = datetime.fromisoformat(text + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)
    return start, start + step


def _record_ref(value: str) -> str:
    ref = value.removeprefix("Patient/")
    if not ref or "/" in ref or "," in ref or len(ref) > 200:
        raise _invalid(
            "Search parameter 'patient' takes one record: Patient/<record_ref> or <record_ref>."
        )
    return ref


def _actor(name: str, value: str) -> str | None:
    if name == "agent:identifier":
        system, bar, value = value.rpartition("|")
        if bar and system != ACTOR_SYSTEM:
            return None  # an identifier of another system: no actor id of ours matches
    if not value or "," in value or len(value) > 200:
        raise _invalid(f"Search parameter '{name}' takes one actor id.")
    return value


def _cursor(value: str | None) -> int:
    if value is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(value.encode()).decode()
    except (ValueError, binascii.Error):
        text = ""
    if not text.startswith("p") or not text[1:].isdigit() or int(text[1:]) > MAX_POSITION:
        raise _invalid("The _cursor is not one this server returned.")
    return int(text[1:])


def _count(values: list[str]) -> int:
    if not values:
        return DEFAULT_COUNT
    if len(values) > 1 or not values[-1].isdigit() or not 1 <= int(values[-1]) <= MAX_COUNT:
        raise _invalid(f"_count must be one whole number from 1 to {MAX_COUNT}.")
    return int(values[-1])


def _params(request: Request) -> dict[str, list[str]]:
    given: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name not in PARAMETERS and name not in _CONTROL:
            raise FhirError(400, [Issue(
                f"Unknown or unsupported search parameter '{name}'; AuditEvent supports "
                + ", ".join((*PARAMETERS, "_count")) + " (see /fhir/R4/metadata).",
                code="not-supported",
            )])  # fmt: skip
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise _invalid(f"Search parameter '{name}' holds a control character.")
        given.setdefault(name, []).append(value)
    return given


def _filter(services: ServicesDep, tenant: str, given: dict[str, list[str]]) -> AuditEventFilter:
    kinds = dict(_ALL)
    for name, table in (("type", _TYPES), ("subtype", _SUBTYPES)):
        for value in given.get(name, []):
            kinds = _intersection(kinds, _union(_token(name, v, table) for v in value.split(",")))
    refs = {_record_ref(v) for v in given.get("patient", [])}
    actors = {_actor(n, v) for n in ("agent", "agent:identifier") for v in given.get(n, [])}
    if len(refs) > 1 or len(actors) > 1 or None in actors:
        kinds = {}  # one fact has one record and one actor: two of either match nothing
    bounds = tuple(b for value in given.get("date", []) for b in _bounds(value))
    return AuditEventFilter(
        kinds=kinds,
        record_id=services.audit.record_id(tenant, next(iter(refs))) if refs else None,
        actor_id=next(iter(actors)) if actors and None not in actors else None,
        recorded=bounds,
    )


@router.get(
    "/AuditEvent",
    operation_id="fhir_search_audit_events",
    summary="FHIR search: the accesses and disclosures as BALP AuditEvents (a searchset Bundle)",
    response_class=FhirJSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}}, 400: {}, 401: {}, 403: {}, 503: {}},
)
def search_audit_events(principal: Reader, services: ServicesDep, request: Request) -> JSONResponse:
    """AuditEvents of the caller's tenant, oldest first, ``_count`` at a time."""
    given = _params(request)
    count = _count(given.get("_count", []))
    cursors = given.get("_cursor", [])
    after = _cursor(cursors[-1] if cursors else None)
    f = _filter(services, principal.tenant_id, given)
    with services.audit.db.transaction(commit=False) as cur:
        page = audit_event_page(cur, services.projector.sealer, principal.tenant_id, f,
                                limit=count, after=after)  # fmt: skip
    base = _base(request)
    entries = []
    for item in page.items:
        resource = audit_event(item)
        if resource is not None:
            entries.append({
                "fullUrl": f"{base}/AuditEvent/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            })  # fmt: skip
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
    links = [{"relation": "self", "url": str(request.url)}]
    if page.next_after is not None:
        token = base64.urlsafe_b64encode(f"p{page.next_after}".encode()).decode()
        links.append(
            {
                "relation": "next",
                "url": f"{base}/AuditEvent?{urlencode([*kept, ('_cursor', token)])}",
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links,
                              "entry": entries}  # fmt: skip
    if page.next_after is None and after == 0:
        bundle["total"] = len(entries)  # the whole result is this page: the total is exact
    return _fhir(bundle)


@router.get(
    "/AuditEvent/{event_id}",
    operation_id="fhir_read_audit_event",
    summary="FHIR read: one access or disclosure as a BALP AuditEvent (id = its event_id)",
    response_class=FhirJSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}}, 400: {}, 401: {}, 403: {}, 404: {}, 503: {}},
)
def read_audit_event(
    principal: Reader, services: ServicesDep, request: Request, event_id: str
) -> JSONResponse:
    """The AuditEvent of the caller's fact with this event_id; 404 for anything else."""
    unknown = FhirError(404, [Issue(f"AuditEvent/{event_id} is not known.", code="not-found")])
    _params_none(request)
    try:
        ident = UUID(event_id)
    except ValueError:
        raise unknown from None
    tenant = principal.tenant_id
    position = services.audit.tenant_log.position_of_event(tenant, ident)
    if position is None:
        raise unknown
    f = AuditEventFilter(kinds=dict(_ALL), position=position)
    with services.audit.db.transaction(commit=False) as cur:
        page = audit_event_page(cur, services.projector.sealer, tenant, f, limit=1,
                                after=position - 1)  # fmt: skip
    resource = audit_event(page.items[0]) if page.items else None
    if resource is None:
        raise unknown
    return _fhir(resource)


def _params_none(request: Request) -> None:
    for name in request.query_params:
        if name != "min_position":
            raise _invalid(f"AuditEvent read takes no parameter '{name}'.", code="not-supported")


@router.get(
    "/metadata",
    operation_id="fhir_capability_statement",
    summary="FHIR capabilities: what this server supports (public, like every FHIR server's)",
    response_class=FhirJSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
def capability_statement(request: Request) -> JSONResponse:
    """The CapabilityStatement: exactly the interactions and search parameters served."""
    return _fhir(capabilities(_base(request)))


def _param(name: str, kind: str, doc: str) -> dict[str, str]:
    return {"name": name, "type": kind, "documentation": doc,
            "definition": f"http://hl7.org/fhir/SearchParameter/AuditEvent-{name}"}  # fmt: skip


def capabilities(base: str) -> dict[str, Any]:
    """This server's CapabilityStatement (FHIR R4 4.0.1)."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-03",
        "publisher": "disclosure-audit",
        "kind": "instance",
        "software": {"name": "disclosure-audit"},
        "implementation": {"description": "disclosure-audit FHIR R4 endpoint", "url": base},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON],
        "rest": [{
            "mode": "server",
            "documentation": "AuditEvents are served from the audit trail: every access and "
                             "disclosure recorded, in BALP form (docs/FHIR.md).",
            "security": {
                "cors": False,
                "description": "An API key as 'Authorization: Bearer <key>' on every "
                               "interaction but this statement: role 'compliance' to search "
                               "and read, 'ingest' to create and update. Each key sees only "
                               "its own practice.",
            },
            "resource": [
                {
                    "type": "AuditEvent",
                    "supportedProfile": list(PROFILES.values()),
                    "interaction": [{"code": "read"}, {"code": "search-type"},
                                    {"code": "create"}],
                    "versioning": "no-version",
                    "readHistory": False,
                    "updateCreate": False,
                    "searchParam": [
                        _param("patient", "reference",
                               "The record: Patient/<record_ref> or the bare record_ref"),
                        _param("date", "date", "AuditEvent.recorded; prefixes eq ge le gt lt"),
                        _param("agent", "reference",
                               "The actor's id (agent.who.identifier of the user or "
                               "custodian); agent:identifier takes [system|]id"),
                        _param("type", "token", "AuditEvent.type, system|code or code"),
                        _param("subtype", "token", "AuditEvent.subtype, system|code or code"),
                    ],
                },
                {
                    "type": "Consent",
                    "interaction": [{"code": "create"}, {"code": "update"}],
                    "versioning": "no-version",
                },
            ],
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
        }],
    }  # fmt: skip
