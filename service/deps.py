"""Request dependencies: the services, and the authenticated, role-checked caller."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import INVALID_KEY, INVALID_KEY_CHALLENGE, Principal, Role
from service.container import Services
from service.projector import StaleReadError, TenantStalledError

__all__ = [
    "MAX_POSITION",
    "ServicesDep",
    "audited",
    "require",
    "require_any",
    "require_writer",
]

MAX_POSITION = 2**63 - 1
"""The largest log position or tree size a query may name: positions are 64-bit integers in
both stores, and a larger number reaching SQLite would overflow (a 500) instead of a 422."""

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer da_…`")


async def _services(request: Request) -> Services:
    # async: FastAPI runs a sync dependency in the thread pool, a hop per request for nothing.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits only callers whose key has ``role`` (401 / 403 otherwise)."""
    return require_any(role)


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise HTTPException(
            401,
            "Send an API key as 'Authorization: Bearer <key>'; "
            "an operator creates one with 'disclosure-audit keys create'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credentials.credentials


def _admit(principal: Principal | None, roles: tuple[Role, ...]) -> Principal:
    if principal is None:
        raise HTTPException(401, INVALID_KEY, headers=INVALID_KEY_CHALLENGE)
    if not principal.roles & set(roles):
        needed = "' or '".join(r.value for r in roles)
        raise HTTPException(403, f"This API key lacks the '{needed}' role.")
    return principal


def require_any(*roles: Role) -> Callable[..., Principal]:
    """A dependency that admits callers whose key has any of ``roles`` (401 / 403 otherwise)."""

    def dependency(services: ServicesDep, credentials: Credentials) -> Principal:
        return _admit(services.keys.authenticate(_token(credentials)), roles)

    dependency.__name__ = "require_" + "_or_".join(r.value for r in roles)
    return dependency


def require_writer(role: Role) -> Callable[..., Awaitable[Principal]]:
    """``require`` for the ingest routes: a key this process knows is admitted from memory,
    with no query and no thread; the writer confirms it is still unrevoked once per group
    commit, before it saves anything of the request (service/auth.py ``ApiKeyStore``)."""

    async def dependency(services: ServicesDep, credentials: Credentials) -> Principal:
        token = _token(credentials)
        principal = services.keys.recall(token)
        if principal is None:
            principal = await asyncio.to_thread(services.keys.authenticate, token)
        return _admit(principal, (role,))

    dependency.__name__ = f"require_{role.value}_writer"
    return dependency


def audited(*roles: Role) -> Callable[..., Principal]:
    """Like ``require_any``, and also: wait for ``?min_position=`` (read-your-writes; 503 with
    Retry-After if the read models do not get there in time) and record the read in the
    self-audit log (PRODUCT.md 2.7) before answering."""
    check = require_any(*roles)

    def dependency(
        principal: Annotated[Principal, Depends(check)],
        services: ServicesDep,
        request: Request,
        min_position: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_POSITION,
                description="Answer only once the log position is applied",
            ),
        ] = None,
    ) -> Principal:
        if min_position is not None:
            try:
                services.projector.wait_for(
                    principal.tenant_id, min_position, services.settings.read_wait_seconds
                )
            except TenantStalledError as stalled:
                raise HTTPException(
                    503,
                    f"Your read models are held at log position {stalled.position}: an event "
                    "there cannot be projected yet. Queries without min_position answer what "
                    "came before it; the operator sees this in /readyz and is alerted.",
                    headers={"Retry-After": "30"},
                ) from None
            except StaleReadError:
                raise HTTPException(
                    503,
                    "The read models have not caught up with min_position yet; retry shortly.",
                    headers={"Retry-After": "1"},
                ) from None
        route = getattr(request.scope.get("route"), "path", request.url.path)
        # Path parameters too: a read of /v1/records/{record_ref} names the record it was about.
        filters = dict(request.query_params) | dict(request.path_params)
        # Before anything is decrypted or recorded: a record another process destroyed is not
        # served from a key this process still holds, and a read naming it is recorded without
        # its ref (service/reads.py).
        services.audit.sync_keys()
        services.reads.record(principal, f"{request.method} {route}", filters)
        return principal

    dependency.__name__ = "audited_" + "_or_".join(r.value for r in roles)
    return dependency
