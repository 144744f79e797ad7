"""Traces, metrics and logs as an operator sees them, captured with the SDK's in-memory exporters.

The SDK providers are process-wide and can be installed once, so this module installs them
(with an InMemorySpanExporter and an InMemoryMetricReader) for the rest of the session; each
test uses a tenant of its own to tell its data points apart.
"""

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from service.auth import Role
from service.logs import ContextFilter, JsonFormatter
from service.settings import Settings
from service.telemetry import (
    observe_export,
    record_projection_lag,
    setup_telemetry,
    span,
)
from tests.conftest import Api, new_tenant
from tests.factories import example

EVENTS_ROUTE = "/v1/records/{record_ref}/events"


@dataclass
class Captured:
    """What the in-memory exporters saw."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        """Every finished span so far."""
        return list(self.exporter.get_finished_spans())

    def points(self, metric: str, **match: object) -> list[Any]:
        """Data points of ``metric`` whose attributes include ``match`` (dots as ``__``)."""
        wanted = {key.replace("__", "."): value for key, value in match.items()}
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name != metric:
                        continue
                    for point in item.data.data_points:
                        attributes = dict(point.attributes or {})
                        if all(attributes.get(k) == v for k, v in wanted.items()):
                            found.append(point)
        return found

    def all_metric_attributes(self) -> list[dict[str, Any]]:
        """The attributes of every data point of every metric."""
        data = self.reader.get_metrics_data()
        return [
            {"metric": item.name, **dict(point.attributes or {})}
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for item in scope.metrics
            for point in item.data.data_points
        ]


@pytest.fixture(scope="module")
def otel() -> Iterator[Captured]:
    """The process's telemetry, exporting to memory."""
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    setup_telemetry(
        Settings(otlp_endpoint=None, _env_file=None), span_exporter=exporter, metric_reader=reader
    )
    with span("telemetry.check"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["telemetry.check"], (
        "telemetry was installed earlier in this process without the in-memory exporters"
    )
    exporter.clear()
    yield Captured(exporter, reader)
    exporter.shutdown()  # later tests' spans are dropped, not collected


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line the process writes during the test, formatted as in production."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # The test client (httpx2) logs its own URLs; what matters is what the service logs.
            if not record.name.startswith("httpx"):
                lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


def _ancestors(span_: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    parent = span_.parent
    while parent is not None and parent.span_id in by_id:
        chain.append(by_id[parent.span_id])
        parent = by_id[parent.span_id].parent
    return chain


@pytest.mark.parametrize("store", ["postgres"])
def test_a_request_is_one_server_span_with_a_span_per_database_call(
    api: Api, otel: Captured
) -> None:
    headers = api.writer()
    otel.exporter.clear()
    response = api.client.post(
        "/v1/records/tel-1/events", json=example("RecordAccessed"), headers=headers
    )
    assert response.status_code == 201
    # The writer answers its callers just before its commit span ends: wait for that span,
    # the link between the request and the statements of the commit.
    deadline = time.monotonic() + 10
    while not any(s.name == "ingest.commit" for s in otel.spans()):
        assert time.monotonic() < deadline, "the commit span never ended"
        time.sleep(0.01)
    spans = otel.spans()
    (request,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert request.name == f"POST {EVENTS_ROUTE}"
    assert request.attributes is not None
    assert request.attributes["http.route"] == EVENTS_ROUTE
    assert request.attributes["http.response.status_code"] == 201
    assert request.attributes["request.id"] == response.headers["x-request-id"]

    by_id = {s.context.span_id: s for s in spans}
    in_request = [s for s in spans if request in _ancestors(s, by_id)]
    database = [s for s in in_request if (s.attributes or {}).get("db.system") == "postgresql"]
    statements = [str((s.attributes or {}).get("db.statement", "")).strip() for s in database]
    assert all(s.kind is SpanKind.CLIENT for s in database)
    # The events and their tenant-log rows go with COPY, traced as the instrumentation would.
    assert any(st.startswith('COPY "public"."audit_events"') for st in statements), statements
    assert any(st.startswith("COPY da_tenant_log") for st in statements), statements
    assert any("FROM da_api_keys" in st for st in statements), "authentication is traced too"
    assert all(s.name for s in database), "every database span is named by its statement"

    (ingest,) = [s for s in in_request if s.name == "ingest"]
    assert dict(ingest.attributes or {}) == {
        "tenant.id": api.tenant,
        "events.count": 1,
        "event.type": "RecordAccessed",
        "ingest.outcome": "stored",
    }
    assert any(s.name == "COPY" and ingest in _ancestors(s, by_id) for s in database)


@pytest.mark.parametrize("store", ["sqlite"])
def test_ingest_counts_events_by_type_latency_and_findings_by_rule(
    api: Api, otel: Captured
) -> None:
    from service.demo import scenario_events

    headers = api.writer()
    scenario = next(s for s in scenario_events() if s.record_ref == "cv-5520")
    receipts = []
    for event in scenario.events:
        response = api.client.post("/v1/records/cv-5520/events", json=event, headers=headers)
        assert response.status_code == 201
        receipts.append(response.json())
    repeat = api.client.post(
        "/v1/records/cv-5520/events", json=scenario.events[-1], headers=headers
    )
    assert repeat.status_code == 200
    batch = [{**example("RecordAccessed"), "record_ref": f"tel-{n}"} for n in range(3)]
    assert (
        api.client.post("/v1/events:batch", json={"events": batch}, headers=headers).status_code
        == 201
    )

    ingested = {
        (p.attributes["event.type"], p.attributes["ingest.outcome"]): p.value
        for p in otel.points("disclosure_audit.events.ingested", tenant__id=api.tenant)
    }
    expected = Counter((e["type"], "stored") for e in scenario.events)
    expected[("DisclosureMade", "duplicate")] += 1
    expected[("RecordAccessed", "stored")] += 3
    assert ingested == dict(expected)

    findings = {
        p.attributes["rule.id"]: p.value
        for p in otel.points("disclosure_audit.findings", tenant__id=api.tenant)
    }
    from_receipts = Counter(f["rule"] for r in receipts for f in r["findings"])
    assert from_receipts, "the scenario is chosen because its receipts carry findings"
    assert findings == dict(from_receipts), "a repeat's findings are not counted twice"

    latency: dict[str, HistogramDataPoint] = {
        p.attributes["ingest.outcome"]: p
        for p in otel.points("disclosure_audit.ingest.duration", tenant__id=api.tenant)
    }
    assert latency["stored"].count == len(scenario.events) + 1
    assert latency["duplicate"].count == 1
    assert latency["stored"].explicit_bounds[0] == 0.001, "seconds, with sub-millisecond buckets"
    assert 0 < latency["stored"].sum < 60


@pytest.mark.parametrize("store", ["sqlite"])
def test_http_metrics_name_the_route_template_never_the_path(api: Api, otel: Captured) -> None:
    headers = api.writer()
    api.client.post("/v1/records/mrn-77123/events", json=example("RecordAccessed"), headers=headers)
    api.client.get("/v1/records/mrn-77123/timeline", headers=headers)
    routes = {
        p.attributes.get("http.route")
        for p in otel.points("http.server.request.duration", http__response__status_code=200)
    } | {
        p.attributes.get("http.route")
        for p in otel.points("http.server.request.duration", http__response__status_code=201)
    }
    assert {EVENTS_ROUTE, "/v1/records/{record_ref}/timeline"} <= routes
    assert "mrn-77123" not in json.dumps(otel.all_metric_attributes())


def test_projections_and_exports_get_spans_lag_gauges_and_durations(otel: Captured) -> None:
    tenant = new_tenant()
    otel.exporter.clear()
    with span("projection.process", {"projection.name": "accounting", "tenant.id": tenant}):
        record_projection_lag("accounting", tenant, positions=42, seconds=3.5)
    with observe_export("fhir", tenant):
        pass
    with pytest.raises(RuntimeError), observe_export("fhir", tenant):
        raise RuntimeError("cannot write bundle for Jane Roe, MRN 4471")

    (lag,) = otel.points("disclosure_audit.projection.lag.positions", tenant__id=tenant)
    assert lag.value == 42
    assert lag.attributes["projection.name"] == "accounting"
    (seconds,) = otel.points("disclosure_audit.projection.lag.seconds", tenant__id=tenant)
    assert seconds.value == 3.5
    durations = {
        p.attributes["export.outcome"]: p.count
        for p in otel.points("disclosure_audit.export.duration", tenant__id=tenant)
    }
    assert durations == {"ok": 1, "error": 1}

    spans = otel.spans()
    (projection,) = [s for s in spans if s.name == "projection.process"]
    assert dict(projection.attributes or {}) == {
        "projection.name": "accounting",
        "tenant.id": tenant,
    }
    exports = [s for s in spans if s.name == "export"]
    assert [dict(s.attributes or {}) for s in exports] == [
        {"export.kind": "fhir", "tenant.id": tenant}
    ] * 2
    failed = exports[1]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description is None
    assert [(e.name, dict(e.attributes or {})) for e in failed.events] == [
        ("exception", {"exception.type": "RuntimeError"})
    ]


def test_attributes_outside_the_allowlist_never_leave_the_process(
    otel: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    otel.exporter.clear()
    with span("projection.process", {"projection.name": "accounting", "client.name": "Jane Roe"}):
        pass
    (exported,) = otel.spans()
    assert dict(exported.attributes or {}) == {"projection.name": "accounting"}
    assert "client.name" in caplog.text, "a developer hears about the dropped attribute"
    assert "Jane Roe" not in caplog.text


@pytest.mark.parametrize("store", ["sqlite"])
def test_store_outage_is_503_counted_and_traced_as_unavailable(
    api: Api, otel: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsourcing.persistence import OperationalError

    headers = api.writer()

    def down(*args: object, **kwargs: object) -> None:
        raise OperationalError("connection to server at 10.0.0.5 failed for client Jane Roe")

    before = sum(p.value for p in otel.points("disclosure_audit.store.unavailable"))
    monkeypatch.setattr(api.services.audit, "append", down)  # in the writer thread
    otel.exporter.clear()
    response = api.client.post(
        "/v1/records/tel-x/events", json=example("RecordAccessed"), headers=headers
    )
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["type"].endswith("/store-unavailable")
    after = sum(p.value for p in otel.points("disclosure_audit.store.unavailable"))
    assert after == before + 1
    (ingest,) = [s for s in otel.spans() if s.name == "ingest"]
    assert (ingest.attributes or {})["ingest.outcome"] == "unavailable"
    assert "Jane Roe" not in json.dumps([dict(s.attributes or {}) for s in otel.spans()])
    (point,) = otel.points(
        "disclosure_audit.ingest.duration", tenant__id=api.tenant, ingest__outcome="unavailable"
    )
    assert point.count == 1


@pytest.mark.parametrize("store", ["sqlite"])
def test_log_lines_are_json_with_the_request_and_trace_ids(
    api: Api, otel: Captured, log_lines: list[str]
) -> None:
    headers = {**api.writer(), "X-Request-ID": "gateway-7f3a9c21"}
    otel.exporter.clear()
    response = api.client.post(
        "/v1/records/tel-2/events", json=example("RecordAccessed"), headers=headers
    )
    assert response.headers["x-request-id"] == "gateway-7f3a9c21"
    (request,) = [s for s in otel.spans() if s.kind is SpanKind.SERVER]
    access = [
        entry
        for entry in map(json.loads, log_lines)
        if entry["logger"] == "disclosure_audit.access"
    ]
    (line,) = access
    assert line["message"].startswith(f"POST {EVENTS_ROUTE} 201")
    assert line["level"] == "INFO"
    assert line["request_id"] == "gateway-7f3a9c21"
    assert line["trace_id"] == format(request.context.trace_id, "032x")
    assert line["span_id"] == format(request.context.span_id, "016x")


@pytest.mark.parametrize("store", ["sqlite"])
@pytest.mark.parametrize("sent", ["jr-2041 Jane Roe", "x" * 200, "short"])
def test_a_request_id_that_could_carry_data_is_replaced(
    api: Api, log_lines: list[str], sent: str
) -> None:
    response = api.client.get(
        "/v1/records/tel-3/timeline", headers={**api.writer(), "X-Request-ID": sent}
    )
    replaced = response.headers["x-request-id"]
    assert replaced != sent
    assert len(replaced) == 32
    assert int(replaced, 16) >= 0
    assert sent not in "\n".join(log_lines)


# Values of these fields of the demo events are personal: names, addresses, free text, ids.
PERSONAL_KEYS = {
    "name",
    "address",
    "issuer",
    "court",
    "judge",
    "ground",
    "reviewer",
    "case_number",
    "client_birth_date",
    "agency",
    "reason",
    "justification",
    "note",
    "id",
}


def _personal_values(value: object, key: str | None = None) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _personal_values(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _personal_values(item, key)
    elif isinstance(value, str) and key in PERSONAL_KEYS and len(value) >= 5:
        yield value


def _span_text(spans: Sequence[ReadableSpan]) -> str:
    return json.dumps(
        [
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [(e.name, dict(e.attributes or {})) for e in s.events],
                "status": s.status.description,
                "resource": dict(s.resource.attributes),
            }
            for s in spans
        ],
        default=str,
    )


@pytest.mark.parametrize("store", ["postgres"])
def test_no_phi_in_spans_metrics_or_logs_while_serving_the_demo_data(
    api: Api, otel: Captured, log_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.demo import scenario_events

    headers = api.writer()
    token = headers["Authorization"].split()[1]
    scenarios = scenario_events()
    personal = {token, *(s.record_ref for s in scenarios)}
    otel.exporter.clear()
    for scenario in scenarios:
        personal.update(_personal_values(scenario.events))
        first, *rest = scenario.events
        assert (
            api.client.post(
                f"/v1/records/{scenario.record_ref}/events", json=first, headers=headers
            ).status_code
            == 201
        )
        batch = [{**e, "record_ref": scenario.record_ref} for e in rest]
        assert (
            api.client.post("/v1/events:batch", json={"events": batch}, headers=headers).status_code
            == 201
        )
        assert (
            api.client.get(
                f"/v1/records/{scenario.record_ref}/timeline", headers=headers
            ).status_code
            == 200
        )
    # The error paths, where messages are most tempting to log: a repeat with other content
    # (409), PHI in an unknown field (422), an unknown record (404), an unexpected exception
    # whose message quotes a record ref (500).
    event = scenarios[0].events[1]
    ref = scenarios[0].record_ref
    conflict = {**event, "categories": ["diagnosis"]}
    assert (
        api.client.post(f"/v1/records/{ref}/events", json=conflict, headers=headers).status_code
        == 409
    )
    bogus = {**event, "event_id": example("RecordAccessed")["event_id"], "patient": "Dr. A. Rivera"}
    assert (
        api.client.post(f"/v1/records/{ref}/events", json=bogus, headers=headers).status_code == 422
    )
    assert (
        api.client.get("/v1/records/mi-7781-unknown/timeline", headers=headers).status_code == 404
    )

    def broken(tenant: str, record_ref: str) -> None:
        raise RuntimeError(f"cannot read {record_ref} of R. Novak (parent)")

    monkeypatch.setattr(api.services.audit, "read_record", broken)
    with TestClient(api.app, raise_server_exceptions=False) as client:
        assert client.get(f"/v1/records/{ref}/timeline", headers=headers).status_code == 500
    personal.add("mi-7781-unknown")

    spans = otel.spans()
    span_text = _span_text(spans)
    metric_text = json.dumps(otel.all_metric_attributes(), default=str)
    log_text = "\n".join(log_lines)
    # The scan would pass on nothing, so first check that there was plenty to scan.
    assert len([s for s in spans if s.kind is SpanKind.SERVER]) > 2 * len(scenarios)
    assert any((s.attributes or {}).get("db.system") == "postgresql" for s in spans)
    assert any(s.status.status_code is StatusCode.ERROR for s in spans), "the 500 was traced"
    assert "disclosure_audit.findings" in metric_text
    assert EVENTS_ROUTE in log_text
    assert "RuntimeError" in log_text, "the unexpected error is logged, by type"
    assert len(personal) > 25
    for value in sorted(personal):
        assert value not in span_text, f"{value!r} in a span"
        assert value not in metric_text, f"{value!r} in a metric"
        assert value not in log_text, f"{value!r} in the logs"


def test_the_projector_and_real_exports_report_spans_lag_and_durations(
    api: Api, otel: Captured
) -> None:
    headers = api.key(Role.INGEST, Role.COMPLIANCE, Role.REGULATOR)
    position = api.client.post(
        "/v1/records/tel/events", json=example("RecordAccessed"), headers=headers
    ).json()["position"]
    api.client.get("/v1/access-log", params={"min_position": position}, headers=headers)
    assert any(
        s.name == "projection.process"
        and (s.attributes or {}).get("projection.name") == "read-models"
        for s in otel.spans()
    )
    assert otel.points("disclosure_audit.projection.lag.positions", projection__name="read-models")
    started = api.client.post("/v1/exports", json={"record_refs": ["tel"]}, headers=headers)
    assert started.status_code == 202
    for _ in range(100):
        status = api.client.get(f"/v1/exports/{started.json()['export_id']}", headers=headers)
        if status.json()["status"] == "done":
            break
    points = otel.points("disclosure_audit.export.duration", tenant__id=api.tenant)
    assert [(p.attributes["export.kind"], p.attributes["export.outcome"]) for p in points] == [
        ("partial", "ok")
    ]
