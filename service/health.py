"""Health for orchestrators: ``/livez`` (the process answers) and ``/readyz`` (it can serve).

Both are unauthenticated, outside ``/v1`` and outside the OpenAPI contract. Their bodies name
each check and its state in fixed words: never an error message, a version, a host or SQL.
Readiness checks are pluggable: projections register a probe, and ``/readyz`` fails while one
is stalled.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.container import Services

__all__ = [
    "CheckResult",
    "ProjectionStatus",
    "Readiness",
    "ReadinessCheck",
    "check_migrations",
    "check_store",
    "check_tenants",
    "router",
]

READY_TIMEOUT_SECONDS = 3.0
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict, in words safe to show anyone."""

    ok: bool
    state: str


ReadinessCheck = Callable[[Services], CheckResult]


@dataclass(frozen=True)
class ProjectionStatus:
    """What a projection reports about itself to readiness."""

    name: str
    lag_positions: int
    lag_seconds: float
    stalled: bool


ProjectionProbe = Callable[[Services], Sequence[ProjectionStatus]]


def check_store(services: Services) -> CheckResult:
    """The store answers a query (through the same pool as requests)."""
    try:
        with services.audit.db.transaction(commit=False) as cursor:
            cursor.fetchone("SELECT 1 AS one")
    except Exception:
        return CheckResult(ok=False, state="unreachable")
    return CheckResult(ok=True, state="ok")


def _required_tables(services: Services) -> set[str]:
    tables = set(services.audit.db.tables)
    events = getattr(services.audit.recorder, "events_table_name", None)
    if isinstance(events, str):
        tables.add(events)
    return tables


def check_migrations(services: Services) -> CheckResult:
    """Every table this process created or relies on exists (none dropped or not yet made)."""
    db = services.audit.db
    required = sorted(_required_tables(services))
    if not required:
        return CheckResult(ok=False, state="not run")
    marks = ", ".join(["%s"] * len(required))
    if db.dialect == "postgres":
        query = (
            "SELECT table_name AS name FROM information_schema.tables"  # noqa: S608 - marks only
            f" WHERE table_schema = current_schema() AND table_name IN ({marks})"
        )
    else:
        query = f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})"  # noqa: S608
    try:
        with db.transaction(commit=False) as cursor:
            found = {row["name"] for row in cursor.fetchall(query, required)}
    except Exception:
        return CheckResult(ok=False, state="unknown")
    return (
        CheckResult(ok=True, state="ok")
        if found >= set(required)
        else CheckResult(False, "incomplete")
    )


def check_tenants(services: Services) -> CheckResult:
    """Names each tenant whose read models stopped on an event they cannot project.

    Still ready: this process serves every other tenant, and neither a restart nor taking it
    out of a load balancer would help the stalled one (its event is immutable). Operators
    alert on the ``projection.stalled.position`` gauge; tenant ids and error type names are
    fixed words, never data.
    """
    try:
        stalls = services.projector.stalls()
    except Exception:
        return CheckResult(ok=False, state="unknown")
    if not stalls:
        return CheckResult(ok=True, state="ok")
    named = ", ".join(f"{s.tenant_id} at position {s.position} ({s.reason})" for s in stalls)
    return CheckResult(ok=True, state="stalled: " + named)


@dataclass
class ProjectionsCheck:
    """Ready unless a registered projection reports itself stalled."""

    probes: list[ProjectionProbe] = field(default_factory=list)

    def __call__(self, services: Services) -> CheckResult:
        """Ask every probe; name the stalled projections (names are fixed, never data)."""
        if not self.probes:
            return CheckResult(ok=True, state="no projections configured")
        try:
            statuses = [status for probe in self.probes for status in probe(services)]
        except Exception:
            return CheckResult(ok=False, state="unknown")
        stalled = sorted(s.name for s in statuses if s.stalled)
        if stalled:
            return CheckResult(ok=False, state="stalled: " + ", ".join(stalled))
        return CheckResult(ok=True, state=f"ok ({len(statuses)} projections)")


@dataclass
class Readiness:
    """The checks behind ``/readyz``, in order; an app keeps one in ``app.state.readiness``."""

    projections: ProjectionsCheck = field(default_factory=ProjectionsCheck)
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.checks = {
            "store": check_store,
            "migrations": check_migrations,
            "projections": self.projections,
            "tenants": check_tenants,
            **self.checks,
        }

    def add_projection_probe(self, probe: ProjectionProbe) -> None:
        """Let ``/readyz`` fail while a projection the probe reports is stalled."""
        self.projections.probes.append(probe)

    def run(self, services: Services) -> dict[str, CheckResult]:
        """Run the checks in order; once the store is unreachable, the rest are skipped."""
        results: dict[str, CheckResult] = {}
        for name, check in self.checks.items():
            if results.get("store", CheckResult(ok=True, state="")).ok:
                results[name] = check(services)
            else:
                results[name] = CheckResult(ok=False, state="skipped")
        return results


router = APIRouter(include_in_schema=False)


@router.get("/livez")
async def livez() -> JSONResponse:
    """The process is up and its event loop answers; no dependency is consulted."""
    return JSONResponse({"status": "alive"}, headers=_NO_STORE)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Whether this process can serve: store reachable, tables present, projections moving."""
    services: Services = request.app.state.services
    readiness: Readiness = request.app.state.readiness
    results: dict[str, CheckResult] | None = None
    with anyio.move_on_after(READY_TIMEOUT_SECONDS):
        # Store calls block; a hung one is abandoned (its thread ends on the driver timeouts).
        results = await anyio.to_thread.run_sync(readiness.run, services, abandon_on_cancel=True)
    if results is None:
        body: dict[str, Any] = {"status": "not ready", "checks": {"store": "timeout"}}
        return JSONResponse(body, status_code=503, headers={**_NO_STORE, "Retry-After": "5"})
    ready = all(result.ok for result in results.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {name: result.state for name, result in results.items()},
    }
    headers = _NO_STORE if ready else {**_NO_STORE, "Retry-After": "5"}
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)
