"""The compliance officer's console (API.md "Console"): server-rendered pages on the same read
models and view models as the API, with no build step, no CDN and no script but a few lines.

Security: a login with an API key of the ``compliance`` role starts a session (service/console/
sessions.py) held in an HttpOnly, SameSite=Strict cookie (Secure over TLS); every form carries
the session's CSRF token and every POST must come from this origin; a logged-out visit is sent
to the login form; another tenant's record is a 404 like an unknown one; every page view is
recorded in the self-audit like an API query. URLs name no more than the record ref a route
needs, and the access log records route templates only.
"""

import urllib.parse
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from domain import facts
from domain.errors import RecordErasedError, RecordNotFoundError
from domain.policy.accounting import COLUMNS, row
from domain.vocabulary import (
    ActorRole,
    DataCategory,
    FindingResolution,
    PurposeOfUse,
)
from projections.dashboard import overview
from projections.queries import (
    FactFilter,
    FindingFilter,
    access_page,
    accounting,
    finding_page,
    recent_disclosures,
)
from projections.status import record_status
from projections.views import AccountingEntry, FindingView
from service.application.lifecycle import retention_view
from service.auth import Principal, Role
from service.console import charts
from service.console.sessions import MAX_SESSION, ConsoleSession, ConsoleSessions
from service.container import Services
from service.findings import FindingNotFoundError, acknowledge_finding
from service.projector import StaleReadError, TenantStalledError
from service.routes.exports import bundle_response, recent_exports, start_export
from service.schemas import ExportRequest, TimelineItem
from service.spreadsheet import safe_row

__all__ = ["COOKIE", "install_console"]

COOKIE = "da_console"
_HERE = Path(__file__).parent
_templates = Jinja2Templates(directory=str(_HERE / "templates"))
_REF = TypeAdapter(facts.RecordRef)
_DAY = TypeAdapter(date)
_PAGE_SIZE = 50
PAGE_HEADERS = {
    # Only our own stylesheet and script; no frames, no foreign form targets; no referrer to
    # other sites (console URLs name a record). "same-origin", not "no-referrer": under the
    # latter browsers send "Origin: null" with our own forms, which _same_origin refuses.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self';"
    " img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

router = APIRouter(prefix="/console", include_in_schema=False)


class LoginRequiredError(Exception):
    """No live session: the visitor goes to the login form, then back to ``target``."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class PageError(Exception):
    """An error the console shows as a page (never JSON, never internals)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _sessions(services: Services) -> ConsoleSessions:
    return ConsoleSessions(
        services.audit.db, timedelta(minutes=services.settings.console_session_minutes)
    )


def _session(request: Request) -> ConsoleSession:
    services = _services(request)
    session = _sessions(services).find(request.cookies.get(COOKIE))
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(target)
    services.audit.sync_keys()  # as every API read does (service/deps.py)
    return session


Session = Annotated[ConsoleSession, Depends(_session)]


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded body of a console form (the last value of each field)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "Unsupported form", "Send the form from the console's own page.")
    try:
        text = (await request.body()).decode()
        fields = urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise PageError(
            400, "Unreadable form", "Send the form from the console's own page."
        ) from None
    return {name: values[-1] for name, values in fields.items()}


Form = Annotated[dict[str, str], Depends(_form)]


def _same_origin(request: Request) -> None:
    """Refuse a cross-site POST (the SameSite cookie already keeps the session out of it)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    foreign_origin = origin is not None and urllib.parse.urlsplit(
        origin
    ).netloc != request.headers.get("host", "")
    if (site is not None and site not in ("same-origin", "none")) or foreign_origin:
        raise PageError(403, "Refused", "This form was sent from another site; nothing was done.")


def _posted(request: Request, session: ConsoleSession, form: Mapping[str, str]) -> None:
    _same_origin(request)
    if not session.csrf_ok(form.get("csrf_token")):
        raise PageError(
            403, "Refused", "This form is stale or was not sent from the console; reload it."
        )


def _zone(services: Services) -> ZoneInfo:
    return ZoneInfo(services.settings.timezone)


def _local(value: datetime | str | None, zone: ZoneInfo, *, with_time: bool = True) -> Markup:
    """A <time> in the practice's zone, with UTC in its tooltip."""
    if value is None:
        return Markup("")
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    shown = moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z" if with_time else "%Y-%m-%d")
    return Markup('<time datetime="{0}" title="UTC: {1}">{2}</time>').format(
        utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M"), shown
    )


def _words(value: object) -> str:
    """An enum value in plain words: progress_notes -> progress notes."""
    text = str(getattr(value, "value", value))
    return text.replace("_", " ")


def _audit(
    services: Services, principal: Principal, route: str, filters: Mapping[str, Any]
) -> None:
    services.reads.record(principal, f"GET /console{route}", dict(filters))


def _render(
    request: Request,
    template: str,
    session: ConsoleSession | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    services = _services(request)
    zone = _zone(services)
    # Rendered to text here: a TemplateResponse keeps its context (every row of the page) on
    # the response object, alive for as long as anything refers to the response.
    html = _templates.get_template(template).render(
        request=request,
        session=session,
        zone=services.settings.timezone,
        local=lambda v, with_time=True: _local(v, zone, with_time=with_time),
        words=_words,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _ref(value: str) -> str:
    try:
        return str(_REF.validate_python(value))
    except ValidationError:
        raise PageError(404, "No such record", "There is no record with this reference.") from None


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return _DAY.validate_python(value)
    except ValidationError:
        raise PageError(400, "Check the form", f"{name} must be a date like 2026-03-01.") from None


def _choice(kind: Any, value: str | None, name: str) -> Any:
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise PageError(
            400, "Check the form", f"{value!r} is not a {name} this console knows."
        ) from None


# --- login ------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a console path: never another site (no open redirect)."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/"


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    """The login form: one field, the API key."""
    return _render(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login")
def login(request: Request, form: Form) -> Response:
    """Start a session for a valid key with the compliance role."""
    _same_origin(request)
    services = _services(request)
    principal = services.keys.authenticate(form.get("api_key", "").strip())
    target = _safe_next(form.get("next"))
    if principal is None or Role.COMPLIANCE not in principal.roles:
        error = (
            "This key is unknown or revoked."
            if principal is None
            else "This key lacks the compliance role; ask an operator for one that has it."
        )
        return _render(request, "login.html", None, status=401, next=target, error=error)
    token = _sessions(services).start(principal)
    _audit(services, principal, "/login", {})
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(MAX_SESSION.total_seconds()),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request, session: Session, form: Form) -> Response:
    """End the session."""
    _posted(request, session, form)
    _sessions(_services(request)).end(request.cookies.get(COOKIE))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


# --- overview ---------------------------------------------------------------------------------


@router.get("/")
def overview_page(request: Request, session: Session) -> HTMLResponse:
    """Open findings by severity and rule, recent disclosures, and the charts."""
    services = _services(request)
    tenant = session.principal.tenant_id
    with services.audit.db.transaction(commit=False) as cursor:
        counts = overview(cursor, tenant)
        recent = recent_disclosures(cursor, services.projector.sealer, tenant, 10)
    _audit(services, session.principal, "/", {})
    return _render(
        request,
        "overview.html",
        session,
        counts=counts,
        recent=recent,
        rule_chart=charts.bars("open-rules", "Open findings by rule", counts.open_by_rule),
        basis_chart=charts.stacked(
            "basis", "Disclosures per month by legal basis", counts.months,
            {_words(k): v for k, v in counts.disclosures_by_basis.items()},
        ),
        findings_chart=charts.stacked(
            "rules", "Findings per month by rule", counts.months, counts.findings_by_rule
        ),
        role_chart=charts.bars(
            "roles", "Accesses by role", [(_words(r), n) for r, n in counts.accesses_by_role]
        ),
    )  # fmt: skip


# --- findings ---------------------------------------------------------------------------------


@router.get("/findings")
def findings_page(
    request: Request,
    session: Session,
    rule: str | None = None,
    severity: str | None = None,
    status: str | None = "open",
    record_ref: str | None = None,
    after: str | None = None,
    done: str | None = None,
) -> HTMLResponse:
    """The queue, filtered; each open finding has its acknowledgement form."""
    services = _services(request)
    tenant = session.principal.tenant_id
    if rule and not (len(rule) == 4 and rule[:2].isalpha() and rule[2] == "-"):
        raise PageError(400, "Check the form", "A rule looks like PN-1.")
    if severity not in (None, "", "low", "medium", "high"):
        raise PageError(400, "Check the form", "Severity is low, medium or high.")
    if status not in (None, "", "open", "acknowledged", "withdrawn"):
        raise PageError(400, "Check the form", "Status is open, acknowledged or withdrawn.")
    ref = _ref(record_ref) if record_ref else None
    position, _, rule_after = (after or "0:").partition(":")
    if not position.isdigit():
        raise PageError(400, "Check the link", "This page link is not one the console made.")
    f = FindingFilter(
        rule=rule or None, severity=severity or None, status=status or None,
        record_id=services.audit.record_id(tenant, ref) if ref else None,
    )  # fmt: skip
    with services.audit.db.transaction(commit=False) as cursor:
        page = finding_page(
            cursor, services.projector.sealer, tenant, f, limit=_PAGE_SIZE,
            after=(int(position), rule_after),
        )  # fmt: skip
    filters = {"rule": rule, "severity": severity, "status": status, "record_ref": ref}
    _audit(services, session.principal, "/findings", {k: v for k, v in filters.items() if v})
    more = {k: v for k, v in filters.items() if v} | (
        {"after": page.next_after} if page.next_after else {}
    )
    return _render(
        request, "findings.html", session, page=page, filters=filters, done=done,
        next_link=f"?{urllib.parse.urlencode(more)}" if page.next_after else None,
        resolutions=list(FindingResolution),
    )  # fmt: skip


@router.post("/findings/{finding_id}/acknowledgement")
def acknowledge(request: Request, session: Session, form: Form, finding_id: str) -> Response:
    """Acknowledge a finding, wait until the queue shows it, and go back to the queue."""
    _posted(request, session, form)
    services = _services(request)
    try:
        ident = UUID(finding_id)
    except ValueError:
        raise PageError(
            404, "No such finding", "There is no such finding in your practice."
        ) from None
    resolution = _choice(FindingResolution, form.get("resolution"), "resolution")
    if resolution is None:
        raise PageError(400, "Check the form", "Choose how the finding was resolved.")
    note = form.get("note", "").strip() or None
    if note is not None and len(note) > 2000:
        raise PageError(400, "Check the form", "Keep the note under 2,000 characters.")
    try:
        stored = acknowledge_finding(services, session.principal, ident, resolution, note)
    except FindingNotFoundError:
        raise PageError(
            404, "No such finding", "There is no such finding in your practice."
        ) from None
    except RecordErasedError:
        raise PageError(409, "Record destroyed", "The finding's record was destroyed.") from None
    # Stored; if the read models lag, the queue shows it acknowledged once they catch up.
    with suppress(StaleReadError, TenantStalledError):
        services.projector.wait_for(
            session.principal.tenant_id,
            stored.receipt.position,
            services.settings.read_wait_seconds,
        )
    back = _safe_next(form.get("back"))
    joiner = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{joiner}done={ident}", status_code=303)


# --- records ----------------------------------------------------------------------------------


def _summary(item: TimelineItem) -> str:
    """One plain-language line for a timeline entry."""
    event = item.event or {}
    if item.type == "RecordDestroyed":
        return (
            f"destroyed by {event.get('destroyed_by')} under {event.get('ruleset')} "
            f"({_words(str(event.get('rule')))} rule: {event.get('citation')}); "
            f"{len(event.get('documentation', []))} disclosures kept as documentation"
        )
    who = event.get("actor", {})
    parts = [f"{who.get('name', '')} ({_words(who.get('role', ''))})"] if who else []
    if "recipient" in event:
        parts.append("to " + str(event["recipient"].get("name", "")))
    if "legal_basis" in event:
        parts.append("basis: " + _words(event["legal_basis"].get("kind", "")))
    for key in ("action", "purpose_of_use", "kind", "outcome", "resolution", "determination"):
        if key in event:
            parts.append(f"{_words(key)}: {_words(event[key])}")
    if "categories" in event:
        parts.append("categories: " + ", ".join(_words(c) for c in event["categories"]))
    if event.get("break_glass"):
        parts.append("BREAK-GLASS")
    return "; ".join(p for p in parts if p)


def _record_findings(services: Services, tenant: str, ref: str) -> dict[str, list[FindingView]]:
    f = FindingFilter(record_id=services.audit.record_id(tenant, ref))
    found: dict[str, list[FindingView]] = {}
    with services.audit.db.transaction(commit=False) as cursor:
        page = finding_page(cursor, services.projector.sealer, tenant, f, limit=1000, after=(0, ""))
    for finding in page.items:
        found.setdefault(str(finding.event_id), []).append(finding)
    return found


_TIMELINE_PAGE = 200
"""Timeline entries on one record page (a 1,000-event record's page was 1.25 MB of HTML)."""


@router.get("/records/{record_ref}")
def record_page(
    request: Request,
    session: Session,
    record_ref: str,
    as_of: str | None = None,
    upto: str | None = None,
) -> HTMLResponse:
    """Status now or at the end of a day, and the timeline with each event's findings: its
    latest page, or the page that ends before entry ``upto`` (entries counted from 0)."""
    services = _services(request)
    tenant = session.principal.tenant_id
    ref = _ref(record_ref)
    day = _day(as_of, "As of")
    if upto is not None and not (upto.isdigit() and len(upto) <= 9):
        raise PageError(400, "Check the link", "This page link is not one the console made.")
    try:
        stored = services.audit.read_record(tenant, ref)
    except RecordNotFoundError:
        raise PageError(404, "No such record", "There is no record with this reference.") from None
    zone = _zone(services)
    moment = datetime.combine(day, time.max, zone).astimezone(UTC) if day else datetime.now(UTC)
    history = [s.event.fact for s in stored if hasattr(s.event, "fact")]
    standing = record_status(ref, history, moment)
    retention = None
    if day is None:  # retention is a fact of today, not of an earlier day
        today = moment.date()
        retention = retention_view(services.lifecycle.report(ref, stored, today), today)
    items = sorted(
        (TimelineItem.of(s) for s in stored if s.event.originator_version > 1),
        key=lambda i: (i.occurred_at or i.recorded_at, i.position),
    )
    end = len(items) if upto is None else min(int(upto), len(items))
    first = max(0, end - _TIMELINE_PAGE)
    shown = items[first:end]
    findings = _record_findings(services, tenant, ref)
    given = {"as_of": day.isoformat()} if day else {}
    paged = {"upto": str(end)} if upto is not None else {}
    _audit(services, session.principal, "/records/{record_ref}",
           {"record_ref": ref} | given | paged)  # fmt: skip

    def link(at: int) -> str:
        return "?" + urllib.parse.urlencode(given | {"upto": at})

    return _render(
        request, "record.html", session, ref=ref, standing=standing, day=day, items=shown,
        retention=retention,
        findings=findings, summary=_summary, total=len(items), first=first,
        earlier=link(first) if first > 0 else None,
        later=link(min(len(items), end + _TIMELINE_PAGE)) if end < len(items) else None,
    )  # fmt: skip


@dataclass(frozen=True)
class _Accounting:
    ref: str
    since: date | None
    until: date | None
    window: dict[str, str]
    entries: list[AccountingEntry]


def _accounting(
    request: Request, session: ConsoleSession, route: str, record_ref: str,
    since: str | None, until: str | None,
) -> _Accounting:  # fmt: skip
    """A record's accounting for a page or its CSV, recorded in the self-audit."""
    services = _services(request)
    tenant = session.principal.tenant_id
    ref = _ref(record_ref)
    start, end = _day(since, "From"), _day(until, "Until")
    if not services.audit.has_record(tenant, ref):
        raise PageError(404, "No such record", "There is no record with this reference.")
    today = datetime.now(UTC).date()
    record = services.audit.record_id(tenant, ref)
    with services.audit.db.transaction(commit=False) as cursor:
        entries = list(
            accounting(cursor, services.projector.sealer, services.audit.rulebook, tenant,
                       (record, ref), since=start, until=end or today, today=today)
        )  # fmt: skip
    window = {k: v.isoformat() for k, v in (("since", start), ("until", end)) if v}
    _audit(services, session.principal, route, {"record_ref": ref} | window)
    return _Accounting(ref, start, end, window, entries)


@router.get("/records/{record_ref}/accounting")
def accounting_page(
    request: Request,
    session: Session,
    record_ref: str,
    since: str | None = None,
    until: str | None = None,
) -> HTMLResponse:
    """The 164.528 accounting in plain language; printable."""
    found = _accounting(request, session, "/records/{record_ref}/accounting", record_ref,
                        since, until)  # fmt: skip
    return _render(
        request, "accounting.html", session, ref=found.ref, entries=found.entries,
        since=found.since, until=found.until, csv_query=urllib.parse.urlencode(found.window),
        today=datetime.now(_zone(_services(request))).date(),
    )  # fmt: skip


@router.get("/records/{record_ref}/accounting.csv")
def accounting_csv(
    request: Request,
    session: Session,
    record_ref: str,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    """The same accounting as CSV (cells guarded against spreadsheet formulas)."""
    import csv
    import io

    entries = _accounting(request, session, "/records/{record_ref}/accounting.csv", record_ref,
                          since, until).entries  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for entry in entries:
        writer.writerow(safe_row(row(entry.model_dump(mode="json"))))
    return Response(
        buffer.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="accounting.csv"', **PAGE_HEADERS},
    )


# --- access log -------------------------------------------------------------------------------


@router.get("/access-log")
def access_log_page(
    request: Request,
    session: Session,
    record_ref: str | None = None,
    actor_id: str | None = None,
    role: str | None = None,
    category: str | None = None,
    purpose_of_use: str | None = None,
    break_glass: str | None = None,
    since: str | None = None,
    until: str | None = None,
    after: str | None = None,
) -> HTMLResponse:
    """Who saw what, with every filter of GET /v1/access-log."""
    services = _services(request)
    tenant = session.principal.tenant_id
    ref = _ref(record_ref) if record_ref else None
    if actor_id and len(actor_id) > 200:
        raise PageError(400, "Check the form", "An actor id has at most 200 characters.")
    if break_glass not in (None, "", "true", "false"):
        raise PageError(400, "Check the form", "Break-glass is yes, no or any.")
    if after is not None and not after.isdigit():
        raise PageError(400, "Check the link", "This page link is not one the console made.")
    f = FactFilter(
        type="RecordAccessed",
        record_id=services.audit.record_id(tenant, ref) if ref else None,
        actor_id=actor_id or None,
        role=_choice(ActorRole, role, "role"),
        category=_choice(DataCategory, category, "category"),
        purpose_of_use=_choice(PurposeOfUse, purpose_of_use, "purpose of use"),
        break_glass=None if not break_glass else break_glass == "true",
        since=_day(since, "From"), until=_day(until, "Until"),
    )  # fmt: skip
    with services.audit.db.transaction(commit=False) as cursor:
        page = access_page(
            cursor, services.projector.sealer, tenant, f, limit=_PAGE_SIZE, after=int(after or 0)
        )
    filters = {
        "record_ref": ref, "actor_id": actor_id, "role": role, "category": category,
        "purpose_of_use": purpose_of_use, "break_glass": break_glass, "since": since,
        "until": until,
    }  # fmt: skip
    given = {k: v for k, v in filters.items() if v}
    _audit(services, session.principal, "/access-log", given)
    more = given | ({"after": page.next_after} if page.next_after else {})
    return _render(
        request, "access_log.html", session, page=page, filters=filters,
        roles=list(ActorRole), categories=list(DataCategory), purposes=list(PurposeOfUse),
        next_link=f"?{urllib.parse.urlencode(more)}" if page.next_after else None,
    )  # fmt: skip


# --- exports ----------------------------------------------------------------------------------


@router.get("/exports")
def exports_page(request: Request, session: Session, started: str | None = None) -> HTMLResponse:
    """Start an export, follow it, download it; the checkpoint and the key to pin."""
    services = _services(request)
    tenant = session.principal.tenant_id
    jobs = recent_exports(services, session.principal)
    # The latest signed one, as stored: signing a fresh one re-hashes the whole log (linear in
    # its size: 46 ms at 20k events), which an export does anyway.
    latest = services.log.latest_checkpoint(tenant)
    checkpoint = (
        latest.note if latest else "None signed yet: the first export (or proof request) signs one."
    )
    _audit(services, session.principal, "/exports", {})
    return _render(
        request, "exports.html", session, jobs=jobs, started=started, checkpoint=checkpoint,
        vkeys=services.log.vkeys(tenant),
        busy=any(j.status in ("pending", "running") for j in jobs),
    )  # fmt: skip


@router.post("/exports")
def start_export_page(
    request: Request, session: Session, form: Form, tasks: BackgroundTasks
) -> Response:
    """Start an export of the whole trail, or of a window and some records."""
    _posted(request, session, form)
    refs = [r for r in form.get("record_refs", "").replace(",", " ").split() if r]
    try:
        body = ExportRequest.model_validate(
            {"since": form.get("since") or None, "until": form.get("until") or None,
             "record_refs": refs or None}
        )  # fmt: skip
    except ValidationError:
        raise PageError(
            400, "Check the form",
            "Dates look like 2026-03-01; record refs are separated by spaces or commas.",
        ) from None  # fmt: skip
    try:
        job = start_export(_services(request), session.principal, body, tasks)
    except HTTPException as refused:
        raise PageError(refused.status_code, "Export refused", str(refused.detail)) from None
    return RedirectResponse(f"/console/exports?started={job.export_id}", status_code=303)


@router.get("/exports/{export_id}/bundle")
def export_bundle(request: Request, session: Session, export_id: str) -> StreamingResponse:
    """Download a finished bundle."""
    try:
        ident = UUID(export_id)
    except ValueError:
        raise PageError(
            404, "No such export", "There is no such export in your practice."
        ) from None
    services = _services(request)
    services.reads.record(session.principal, "GET /console/exports/{export_id}/bundle",
                          {"export_id": str(ident)})  # fmt: skip
    try:
        return bundle_response(services, session.principal, ident)
    except HTTPException as refused:
        raise PageError(refused.status_code, "No bundle", str(refused.detail)) from None


# --- wiring -----------------------------------------------------------------------------------


def install_console(app: FastAPI) -> None:
    """Mount the console, its assets, the redirect from ``/`` and its error pages."""
    app.mount(
        "/console/static", StaticFiles(directory=str(_HERE / "static")), name="console-static"
    )
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    @app.get("/console", include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    @app.exception_handler(LoginRequiredError)
    async def to_login(request: Request, error: LoginRequiredError) -> Response:
        query = urllib.parse.urlencode({"next": error.target})
        return RedirectResponse(f"/console/login?{query}", status_code=303)

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> Response:
        sessions = _sessions(_services(request))
        session = await run_in_threadpool(sessions.find, request.cookies.get(COOKIE))
        return _render(
            request, "error.html", session, status=error.status, title=error.title,
            detail=error.detail,
        )  # fmt: skip
