"""/livez and /readyz: unauthenticated, outside the API contract, clear, and free of internals."""

import time

import pytest
from eventsourcing.persistence import OperationalError

import service.health
from service.container import Services
from service.health import CheckResult, ProjectionStatus
from tests.conftest import Api

READY = {
    "status": "ready",
    "checks": {
        "store": "ok",
        "migrations": "ok",
        "projections": "ok (1 projections)",
        "tenants": "ok",
    },
}


def test_livez_and_readyz_answer_without_a_key(api: Api) -> None:
    live = api.client.get("/livez")
    assert live.status_code == 200
    assert live.json() == {"status": "alive"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == READY
    assert ready.headers["cache-control"] == "no-store"


def test_health_routes_are_not_part_of_the_api_contract(api: Api) -> None:
    paths = api.app.openapi()["paths"]
    assert "/livez" not in paths
    assert "/readyz" not in paths
    assert all(path.startswith(("/v1/", "/fhir/R4")) for path in paths)


@pytest.mark.parametrize("store", ["sqlite"])
def test_readyz_fails_while_a_projection_is_stalled(api: Api) -> None:
    def probe(services: Services) -> list[ProjectionStatus]:
        return [
            ProjectionStatus("accounting", lag_positions=1200, lag_seconds=900.0, stalled=True),
            ProjectionStatus("fhir", lag_positions=0, lag_seconds=0.0, stalled=False),
        ]

    api.app.state.readiness.add_projection_probe(probe)
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json() == {
        "status": "not ready",
        "checks": {
            "store": "ok",
            "migrations": "ok",
            "projections": "stalled: accounting",
            "tenants": "ok",
        },
    }


@pytest.mark.parametrize("store", ["sqlite"])
def test_readyz_with_healthy_projections_counts_them(api: Api) -> None:
    api.app.state.readiness.add_projection_probe(
        lambda services: [ProjectionStatus("accounting", 3, 0.4, stalled=False)]
    )
    response = api.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["projections"] == "ok (2 projections)"  # with read-models


@pytest.mark.parametrize("store", ["sqlite"])  # a store of its own: the table is dropped
def test_readyz_reports_a_missing_table_without_naming_it(api: Api) -> None:
    with api.services.audit.db.transaction() as cursor:
        cursor.execute("DROP TABLE da_tenant_log")
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "store": "ok",
        "migrations": "incomplete",
        "projections": "unknown",  # its lag cannot be read without the log table
        "tenants": "ok",
    }
    assert "da_" not in response.text


@pytest.mark.parametrize("store", ["sqlite"])
def test_readyz_says_unreachable_and_skips_the_rest_when_the_store_fails(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise OperationalError('connection to server at "db.internal" (10.0.0.5) failed')

    monkeypatch.setattr(api.services.audit.db, "transaction", failing)
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "checks": {
            "store": "unreachable",
            "migrations": "skipped",
            "projections": "skipped",
            "tenants": "skipped",
        },
    }
    assert "10.0.0.5" not in response.text
    assert api.client.get("/livez").status_code == 200, "liveness does not depend on the store"


@pytest.mark.parametrize("store", ["sqlite"])
def test_readyz_answers_in_bounded_time_even_if_a_check_hangs(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hanging(services: Services) -> CheckResult:
        time.sleep(2)
        return CheckResult(ok=True, state="ok")

    monkeypatch.setattr(service.health, "READY_TIMEOUT_SECONDS", 0.3)
    api.app.state.readiness.checks["slow"] = hanging
    started = time.monotonic()
    response = api.client.get("/readyz")
    assert time.monotonic() - started < 1.5
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"store": "timeout"}}
