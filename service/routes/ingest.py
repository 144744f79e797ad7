"""Ingest: clinical systems post facts, one at a time or in atomic batches (API.md "Ingest")."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Response
from pydantic import TypeAdapter
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from domain import facts
from service.application.ingest import Submission
from service.auth import Principal, Role
from service.container import Services
from service.deps import ServicesDep, require_writer
from service.middleware import replaying
from service.schemas import (
    BatchReceipts,
    BatchRequest,
    IngestFact,
    Problem,
    ReceiptOut,
    fact_of,
)
from service.strict_json import is_json, loads_unique
from service.telemetry import observe_ingest, spans_recorded

__all__ = ["FastIngestRoute", "router"]

router = APIRouter(prefix="/v1", tags=["ingest"])

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "No or invalid API key, or a key revoked meanwhile"},
    403: {"model": Problem, "description": "The key lacks the ingest role"},
    409: {"model": Problem, "description": "event_id already used with different content"},
    413: {"model": Problem, "description": "Request body too large"},
    422: {
        "model": Problem,
        "description": "Malformed event, or a type this endpoint does not take "
        "(FindingAcknowledged has its own route); nothing stored",
    },
    503: {"model": Problem, "description": "Store unavailable or contended; retry"},
}

Ingestor = Annotated[Principal, Depends(require_writer(Role.INGEST))]


@router.post(
    "/records/{record_ref}/events",
    operation_id="post_event",
    status_code=201,
    response_model=ReceiptOut,
    responses={
        200: {"model": ReceiptOut, "description": "Already stored: the original receipt"},
        **_ERRORS,
    },
    summary="Record one fact about a client record",
)
async def post_event(
    record_ref: Annotated[facts.RecordRef, Path(description="The clinical system's record id")],
    fact: Annotated[IngestFact, Body()],
    principal: Ingestor,
    services: ServicesDep,
    response: Response,
) -> ReceiptOut:
    """Store one fact. 201 once durable; 200 with the original receipt for a repeat."""
    receipt, created = await _store_one(services, principal, record_ref, fact)
    response.status_code = 201 if created else 200
    return receipt


async def _store_one(
    services: Services, principal: Principal, record_ref: str, fact: facts.FactBase
) -> tuple[ReceiptOut, bool]:
    # async: the request waits for its group's commit without holding a thread.
    submissions = [Submission(record_ref=record_ref, fact=fact)]
    with observe_ingest(principal.tenant_id, submissions) as observed:
        receipts, created = await services.ingest.record_facts_async(
            principal.tenant_id, submissions, key_id=principal.key_id
        )
        observed.stored(receipts, created)
    return ReceiptOut.of(receipts[0]), created


_DECLINED = "disclosure_audit.fast_ingest_declined"
_PREFIX, _SUFFIX = "/v1/records/", "/events"
_FACT: TypeAdapter[facts.FactBase] = TypeAdapter(IngestFact)
_REF: TypeAdapter[str] = TypeAdapter(facts.RecordRef)


class FastIngestRoute(BaseRoute):
    """``POST /v1/records/{record_ref}/events`` on its happy path, without FastAPI's work per
    request (dependency solving, routing through every router, response re-validation), which
    was about half of the event loop's time on this, the busiest request of the service.

    It answers only a request it can prove the declared route (``post_event`` above) would
    store: JSON content type, a key this process has already admitted with the ingest role, a
    body without repeated keys that validates as a fact, a valid record ref. Anything else,
    and every request while spans are recorded (OpenTelemetry's instrumentation names spans by
    the matched route), goes to the declared route unchanged, body replayed, so every refusal
    is exactly the declared route's. Once accepted, both do the same (``_store_one``); errors
    raised there reach the app's exception handlers as from the declared route.
    Tested equal to the declared route, on bodies drawn from the schema and on refusals
    (``tests/e2e/test_fast_ingest.py``).
    """

    path = "/v1/records/{record_ref}/events"  # the access log names the route template

    def __init__(self, fallback: ASGIApp) -> None:
        self._fallback = fallback

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or _DECLINED in scope
            or scope.get("root_path")
            or scope.get("query_string")
            or spans_recorded()
        ):
            return Match.NONE, {}
        path: str = scope["path"]
        ref = path[len(_PREFIX) : -len(_SUFFIX)]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)) or not ref or "/" in ref:
            return Match.NONE, {}
        return Match.FULL, {"route": self, "path_params": {"record_ref": ref}}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, more = b"", True
        while more:  # BodyLimitMiddleware has read it already: one message
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
        accepted = _accept(scope, body)
        if accepted is None:
            scope[_DECLINED] = True
            await self._fallback(scope, replaying(body, receive), send)
            return
        receipt, created = await _store_one(*accepted)
        response = JSONResponse(
            receipt.model_dump(mode="json", by_alias=True), status_code=201 if created else 200
        )
        await response(scope, receive, send)


def _accept(scope: Scope, body: bytes) -> tuple[Services, Principal, str, facts.FactBase] | None:
    """What the declared route would take from this request, or None if it might refuse it."""
    content_type = authorization = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"authorization":
            authorization = value.decode("latin-1")
    if content_type is None or authorization is None or not is_json(content_type):
        return None
    scheme, _, token = authorization.partition(" ")
    services: Services = scope["app"].state.services
    principal = services.keys.recall(token) if scheme.lower() == "bearer" else None
    if principal is None or Role.INGEST not in principal.roles:
        return None
    try:
        fact = _FACT.validate_python(loads_unique(body))
        record_ref = _REF.validate_python(scope["path_params"]["record_ref"])
    except ValueError:  # not JSON, a repeated key, or a ValidationError
        return None
    return services, principal, record_ref, fact


@router.post(
    "/events:batch",
    operation_id="post_events_batch",
    status_code=201,
    response_model=BatchReceipts,
    responses={
        200: {"model": BatchReceipts, "description": "Every event was already stored"},
        **_ERRORS,
    },
    summary="Record up to 1000 facts atomically",
)
def post_events_batch(
    batch: BatchRequest, principal: Ingestor, services: ServicesDep, response: Response
) -> BatchReceipts:
    """Store all the facts or none. Repeats keep their original receipts."""
    submissions = [
        Submission(record_ref=item.record_ref, fact=fact_of(item)) for item in batch.events
    ]
    with observe_ingest(principal.tenant_id, submissions) as observed:
        receipts, created = services.ingest.record_facts(
            principal.tenant_id, submissions, key_id=principal.key_id
        )
        observed.stored(receipts, created)
    response.status_code = 201 if created else 200
    return BatchReceipts(receipts=[ReceiptOut.of(r) for r in receipts])
