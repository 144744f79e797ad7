"""The FastAPI application factory (``create_app``) with its lifespan."""

import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from service import health
from service.console.pages import install_console
from service.container import Services, build_services
from service.errors import install_error_handlers
from service.health import ProjectionStatus, Readiness
from service.logs import configure_logging
from service.middleware import BodyLimitMiddleware, EdgeMiddleware, UrlLimitMiddleware
from service.openapi_doc import install_openapi
from service.routes import (
    exports,
    fhir_ingest,
    fhir_search,
    findings,
    ingest,
    lifecycle,
    log,
    queries,
    records,
)
from service.settings import Settings
from service.strict_json import strict_json_body
from service.telemetry import instrument_app, setup_telemetry

__all__ = ["create_app", "create_app_from_env"]

API_VERSION = "1.0.0"


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the API. Given ``services`` are used (and left open); otherwise the lifespan
    opens them from ``settings`` and closes them at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = services is None
        if own:  # a served process: it owns logging and telemetry too
            configure_logging(settings)
            telemetry = setup_telemetry(settings)
        app.state.services = build_services(settings) if own else services
        stop = threading.Event()
        worker = None
        if settings.projections == "in-process":
            # The embedded default keeps every view current with 'serve' alone.
            worker = threading.Thread(
                target=app.state.services.projector.run, args=(stop,), name="projector",
                daemon=True,
            )  # fmt: skip
            worker.start()
        if own:
            # Everything built so far (modules, schemas, the services) lives as long as the
            # process: take it out of the collector's sight. Full collections then walk only
            # what requests and the record cache created; they had doubled ingest p99 under
            # load (bench/RESULTS.md). Python's gc docs recommend this pattern.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=10)
            # Runs after uvicorn drained in-flight requests (SIGTERM): close pools, then flush.
            if own:
                app.state.services.close()
                telemetry.shutdown()

    # FastAPIOffline: /docs and /redoc from assets in the package, never from a CDN.
    app = FastAPIOffline(
        title="disclosure-audit",
        version=API_VERSION,
        summary="Who saw what, when, under which legal basis: an audit trail for therapy records.",
        lifespan=lifespan,
        # Every JSON-body route, present and future: 415 for another media type, 422 for a
        # duplicated key (service/strict_json.py).
        dependencies=[Depends(strict_json_body)],
        # One HTTP instrumentation: OpenTelemetry's (instrument_app below, one span per
        # request). FastAPI's own would add spans for every dependency and serialisation, and
        # logs with exception messages (which can quote PHI) of its own.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.include_router(ingest.router)
    app.include_router(records.router)
    app.include_router(log.router)
    app.include_router(exports.router)
    app.include_router(queries.router)
    app.include_router(findings.router)
    app.include_router(lifecycle.router)
    app.include_router(fhir_search.router)
    app.include_router(fhir_ingest.router)
    # In front of every route: the happy path of the busiest request, without FastAPI's work
    # per request; anything else goes on to the routes as declared (service/routes/ingest.py).
    app.router.routes.insert(0, ingest.FastIngestRoute(app.router))
    install_console(app)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(UrlLimitMiddleware)
    # Operations: health outside /v1; request ids, security headers and the access log around
    # everything, a span (or a trace context) per request outside that.
    app.state.readiness = Readiness()

    def projection_probe(services: Services) -> list[ProjectionStatus]:
        positions, seconds = services.projector.lag()
        stalled = seconds > settings.projection_stall_seconds
        return [ProjectionStatus("read-models", positions, seconds, stalled)]

    app.state.readiness.add_projection_probe(projection_probe)
    app.include_router(health.router)
    app.add_middleware(EdgeMiddleware)
    instrument_app(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (every worker process reads the environment)."""
    return create_app(Settings())
