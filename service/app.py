"""The FastAPI application factory (``create_app``) with its lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.container import Services, build_services
from service.errors import install_error_handlers
from service.middleware import AccessLogMiddleware, BodyLimitMiddleware
from service.routes import exports, ingest, log, records
from service.settings import Settings

__all__ = ["create_app", "create_app_from_env"]

API_VERSION = "1.0.0"


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the API. Given ``services`` are used (and left open); otherwise the lifespan
    opens them from ``settings`` and closes them at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = services is None
        app.state.services = build_services(settings) if own else services
        try:
            yield
        finally:
            if own:
                app.state.services.close()

    app = FastAPI(
        title="disclosure-audit",
        version=API_VERSION,
        summary="Who saw what, when, under which legal basis: an audit trail for therapy records.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(ingest.router)
    app.include_router(records.router)
    app.include_router(log.router)
    app.include_router(exports.router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(AccessLogMiddleware)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (every worker process reads the environment)."""
    return create_app(Settings())
