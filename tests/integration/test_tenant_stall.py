"""An event the read models cannot project stalls only its own tenant: the others keep being
projected and answered, /readyz and a gauge name the tenant and position, and the tenant heals
once its events can be applied again."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from domain.record import ClientRecord
from projections.model import ReadModel
from service import telemetry
from service.app import create_app
from service.auth import Role
from service.container import Services
from service.settings import Settings
from tests.conftest import new_tenant
from tests.factories import example


class Tenant:
    """A tenant with a writer key, posting through the API."""

    def __init__(self, client: TestClient, services: Services) -> None:
        self.id = new_tenant()
        _, token = services.keys.create(self.id, {Role.INGEST, Role.COMPLIANCE})
        self.headers = {"Authorization": f"Bearer {token}"}
        self._client = client

    def post(self, record_ref: str, type_: str, **fields: Any) -> int:
        response = self._client.post(
            f"/v1/records/{record_ref}/events", json=example(type_, **fields), headers=self.headers
        )
        assert response.status_code == 201, response.text
        return int(response.json()["position"])

    def access_log(self, min_position: int) -> Any:
        return self._client.get(
            "/v1/access-log", params={"min_position": min_position}, headers=self.headers
        )


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The API with no projector running: the test steps the worker itself."""
    app = create_app(settings.model_copy(update={"projections": "external"}), services)
    with TestClient(app) as client:
        yield client


def _corrupt(services: Services, tenant: str, position: int) -> Callable[[], None]:
    """Overwrite one stored event's ciphertext, as a bad write straight into the store would;
    returns a function that puts the original bytes back."""
    table = services.audit.recorder.events_table_name  # type: ignore[attr-defined]
    with services.audit.db.transaction() as cursor:
        row = cursor.fetchone(
            "SELECT notification_id FROM da_tenant_log WHERE tenant_id = %s AND position = %s",
            (tenant, position),
        )
        assert row is not None
        key = "rowid" if cursor.dialect == "sqlite" else "notification_id"
        where = f" WHERE {key} = %s"
        select = f"SELECT state FROM {table}" + where  # noqa: S608 - fixed names only
        original = cursor.fetchone(select, (row["notification_id"],))
        assert original is not None
        cursor.execute(
            f"UPDATE {table} SET state = %s" + where,  # noqa: S608
            (b"\x01not a sealed event", row["notification_id"]),
        )

    def restore() -> None:
        with services.audit.db.transaction() as cursor:
            cursor.execute(
                f"UPDATE {table} SET state = %s" + where,  # noqa: S608
                (original["state"], row["notification_id"]),
            )

    return restore


def _stalled_state(client: TestClient) -> str:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text  # every other tenant is still served
    return str(ready.json()["checks"]["tenants"])


def test_an_event_that_does_not_decrypt_stalls_only_its_tenant(
    client: TestClient, services: Services
) -> None:
    victim, bystander = Tenant(client, services), Tenant(client, services)
    victim.post("r-1", "RecordOpened")
    bad = victim.post("r-1", "RecordAccessed")
    bystander.post("r-2", "RecordOpened")
    seen = bystander.post("r-2", "RecordAccessed")
    behind = victim.post("r-3", "RecordAccessed")  # another record: the tenant waits anyway
    restore = _corrupt(services, victim.id, bad)
    try:
        services.projector.catch_up()  # returns: the page went on past the bad event

        assert bystander.access_log(seen).status_code == 200
        assert len(bystander.access_log(seen).json()["items"]) == 1
        refused = victim.access_log(bad)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        assert f"held at log position {bad}" in refused.json()["detail"]
        assert victim.access_log(bad - 1).status_code == 200  # what came before still answers
        assert f"{victim.id} at position {bad} (" in _stalled_state(client)
        assert bystander.id not in _stalled_state(client)

        # Later events: the bystander's are projected, the victim's wait behind the bad one.
        later = bystander.post("r-2", "RecordAccessed")
        victim.post("r-4", "RecordAccessed")
        services.projector.catch_up()
        assert len(bystander.access_log(later).json()["items"]) == 2
        assert victim.access_log(behind).status_code == 503
        assert services.projector.retry_stalled() == 0  # still undecryptable: still held
    finally:
        restore()  # a fixed store (or release) heals the tenant without a rebuild
    assert services.projector.retry_stalled() == 5  # the bad event and the 4 behind it
    healed = victim.access_log(behind + 2)
    assert healed.status_code == 200
    assert len(healed.json()["items"]) == 3
    assert victim.id not in _stalled_state(client)


def test_an_event_that_fails_to_apply_is_undone_and_held(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim, bystander = Tenant(client, services), Tenant(client, services)
    original = ReadModel.apply

    def failing(model: ReadModel, cursor: Any, event: Any, position: int) -> None:
        original(model, cursor, event, position)  # writes rows, which the savepoint undoes
        if isinstance(event, ClientRecord.FactRecorded) and event.tenant_id == victim.id:
            raise ValueError("a projection bug")

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(
        telemetry, "PROJECTION_STALLED_POSITION",
        provider.get_meter("test").create_gauge("disclosure_audit.projection.stalled.position"),
    )  # fmt: skip
    monkeypatch.setattr(ReadModel, "apply", failing)
    bad = victim.post("r-1", "RecordAccessed")
    seen = bystander.post("r-2", "RecordAccessed")
    services.projector.catch_up()

    assert len(bystander.access_log(seen).json()["items"]) == 1
    assert victim.access_log(bad).status_code == 503
    assert f"{victim.id} at position {bad} (ValueError)" in _stalled_state(client)
    data = reader.get_metrics_data()
    assert data is not None
    gauges = [
        point
        for metric in data.resource_metrics[0].scope_metrics[0].metrics
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint)
    ]
    assert any(
        p.attributes is not None and p.attributes["tenant.id"] == victim.id and p.value == bad
        for p in gauges
    )

    monkeypatch.setattr(ReadModel, "apply", original)  # the fixed release
    assert services.projector.retry_stalled() == 1
    (item,) = victim.access_log(bad).json()["items"]  # applied once: the savepoint undid it
    assert item["position"] == bad
