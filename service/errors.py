"""Every error as RFC 9457 problem details; the one place that maps errors to HTTP statuses.

Bodies never carry stack traces, SQL or submitted values: only what is wrong and where.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from domain.errors import (
    EventIdReusedError,
    FactInFutureError,
    RecordErasedError,
    RecordNotFoundError,
)
from service.application.ingest import WriteContentionError
from service.application.lifecycle import DestructionRefusedError
from service.auth import INVALID_KEY, INVALID_KEY_CHALLENGE, KeyRevokedError
from service.fhir.outcome import FhirError, as_outcome, is_fhir, outcome_response
from service.storage.service_keys import ServiceKeyUnavailableError
from service.telemetry import STORE_UNAVAILABLE

__all__ = ["PROBLEM_JSON", "SECURITY_HEADERS", "install_error_handlers", "problem"]

PROBLEM_JSON = "application/problem+json"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
"""Sent with every response (service.middleware) and every problem, including the 500s that
Starlette answers outside the middleware stack."""
_TYPE_BASE = "https://disclosure-audit.example/problems/"
_log = logging.getLogger("disclosure_audit.errors")

_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    408: "Request timeout",
    409: "Conflict",
    413: "Request body too large",
    414: "URI too long",
    415: "Unsupported media type",
    422: "Validation failed",
    500: "Internal error",
    503: "Service unavailable",
}


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + slug,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = list(errors)
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM_JSON,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def _clean_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    # Never echo the submitted value back: it may be PHI. Location, message and type suffice.
    cleaned = []
    for error in raw:
        loc = list(error.get("loc", ()))
        if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("type")
        cleaned.append({"loc": loc, "msg": error.get("msg", ""), "type": error.get("type", "")})
    return cleaned


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    return problem(
        422,
        "validation",
        "The request is malformed; 'errors' lists each field to fix. Nothing was stored.",
        errors=_clean_errors(exc.errors()),
    )


_SLUGS = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    415: "unsupported-media-type",
}


_FASTAPI_BODY_ERROR = "There was an error parsing the body"


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    slug = _SLUGS.get(exc.status_code, "http")
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
    if exc.status_code == 400 and detail == _FASTAPI_BODY_ERROR:
        # FastAPI's words for a body it could not decode (not UTF-8): say what to fix.
        slug, detail = "malformed-body", "The body is not UTF-8 encoded JSON; nothing was stored."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request)
    return problem(exc.status_code, slug, detail, headers=headers)


def _allowed(request: Request) -> str:
    """Every method some route serves at this path (RFC 9110 15.5.6). Starlette names only the
    first route that matched the path, and a FHIR type's search (GET) and create (POST) are two
    routes of two routers."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )


async def _reused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EventIdReusedError)  # noqa: S101
    return problem(
        409,
        "event-id-reused",
        f"event_id {exc.event_id} is already stored with different content. An event is never "
        "changed: post an EventCorrected event that references it, under a new event_id.",
    )


async def _future(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FactInFutureError)  # noqa: S101
    loc: list[str | int] = ["body"]
    if exc.index is not None:
        loc += ["events", exc.index]
    loc.append("occurred_at")
    return problem(
        422,
        "validation",
        "The request is malformed; 'errors' lists each field to fix. Nothing was stored.",
        errors=[
            {
                "loc": loc,
                "msg": str(exc) + "; check the sending system's clock",
                "type": "occurred_in_future",
            }
        ],
    )


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return problem(404, "not-found", "No such record in your tenant.")


async def _erased(request: Request, exc: Exception) -> JSONResponse:
    return problem(
        409,
        "record-erased",
        "This record was crypto-shredded at the end of its retention; it takes no new events.",
    )


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DestructionRefusedError)  # noqa: S101
    return problem(
        409,
        "destruction-refused",
        "The record was not destroyed: 'errors' lists what stops it. Nothing was changed.",
        errors=[
            {"loc": ["path", "record_ref"], "msg": reason, "type": kind}
            for kind, reason in exc.reasons
        ],
    )


async def _revoked(request: Request, exc: Exception) -> JSONResponse:
    # Found out by the writer, after the key was admitted from memory: the same 401.
    return problem(
        401, _SLUGS[401], f"{INVALID_KEY} Nothing was stored.", headers=INVALID_KEY_CHALLENGE
    )


async def _contention(request: Request, exc: Exception) -> JSONResponse:
    return problem(
        503,
        "contention",
        "Too many concurrent writes to the same record; nothing was stored. Retry shortly.",
        headers={"Retry-After": "1"},
    )


async def _store_down(request: Request, exc: Exception) -> JSONResponse:
    _log.warning("store unavailable: %s", type(exc).__name__)
    STORE_UNAVAILABLE.add(1)
    return problem(
        503,
        "store-unavailable",
        "The event store is unreachable; nothing was stored. Retry shortly.",
        headers={"Retry-After": "2"},
    )


async def _rotated(request: Request, exc: Exception) -> JSONResponse:
    # The operator's mistake, not the caller's: log what to do (the message names no record).
    _log.error("%s", exc)
    return problem(
        503,
        "master-key-rotated",
        "The service's master key was rotated and this process still runs on the old one; "
        "nothing was stored. The operator must restart it with the new master key file.",
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Log the type only: messages of driver errors may quote stored values.
    route = getattr(request.scope.get("route"), "path", "<unmatched>")
    _log.error("unhandled %s on %s %s", type(exc).__name__, request.method, route)
    return problem(500, "internal", "An internal error occurred; it has been logged.")


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _fhir_aware(handler: Handler) -> Handler:
    """The same handler, answering an OperationOutcome on the FHIR routes (service/fhir)."""

    async def handle(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        return as_outcome(response) if is_fhir(request) else response

    return handle


async def _fhir(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)  # noqa: S101
    return outcome_response(exc.status, exc.issues, SECURITY_HEADERS)


def install_error_handlers(app: FastAPI) -> None:
    """Register the problem+json handlers (OperationOutcome under /fhir/)."""
    handlers: list[tuple[type[Exception], Handler]] = [
        (RequestValidationError, _validation),
        (StarletteHTTPException, _http),
        (HTTPException, _http),
        (EventIdReusedError, _reused),
        (FactInFutureError, _future),
        (RecordNotFoundError, _not_found),
        (RecordErasedError, _erased),
        (WriteContentionError, _contention),
        (KeyRevokedError, _revoked),
        (DestructionRefusedError, _refused),
    ]
    for kind, handler in handlers:
        app.add_exception_handler(kind, _fhir_aware(handler))
    for kind, handler in ((OperationalError, _store_down), (ServiceKeyUnavailableError, _rotated),
                          (InterfaceError, _store_down), (Exception, _unexpected)):  # fmt: skip
        app.add_exception_handler(kind, _fhir_aware(handler))
    app.add_exception_handler(FhirError, _fhir)
