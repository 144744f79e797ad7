"""OTLP export happens only when configured, to the configured collector, already redacted."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.trace import SpanKind

from service.settings import Settings
from service.telemetry import build_telemetry
from tests.e2e.server import free_port


@dataclass
class FakeCollector:
    """An OTLP/HTTP endpoint on the loopback that keeps what it is sent."""

    url: str
    received: list[tuple[str, str, bytes]] = field(default_factory=list)


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    """A collector for the duration of one test."""
    fake = FakeCollector(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            fake.received.append((self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the test reads what was received, not an access log

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _emit(settings: Settings) -> bool:
    handle = build_telemetry(settings)
    tracer = handle.tracer_provider.get_tracer("test")
    attributes = {
        "http.request.method": "GET",
        "http.route": "/v1/records/{record_ref}/timeline",
        "url.path": "/v1/records/jr-2041/timeline",
        "client.address": "10.1.2.3",
    }
    with tracer.start_as_current_span(
        "GET /v1/records/jr-2041/timeline", kind=SpanKind.SERVER
    ) as s:
        s.set_attributes(attributes)
    counter = handle.meter_provider.get_meter("test").create_counter("disclosure_audit.findings")
    counter.add(1, {"rule.id": "AU-1", "client.address": "10.1.2.3"})
    handle.force_flush()
    handle.shutdown()
    return handle.exporting


def test_spans_and_metrics_reach_the_configured_collector_redacted(
    collector: FakeCollector,
) -> None:
    assert _emit(Settings(otlp_endpoint=collector.url, _env_file=None))
    paths = {path for path, _, _ in collector.received}
    assert paths == {"/v1/traces", "/v1/metrics"}
    assert {kind for _, kind, _ in collector.received} == {"application/x-protobuf"}
    sent = b"".join(body for _, _, body in collector.received)
    assert b"GET /v1/records/{record_ref}/timeline" in sent, "span named by its route"
    assert b"AU-1" in sent
    assert b"disclosure-audit" in sent, "service.name"
    assert b"jr-2041" not in sent
    assert b"10.1.2.3" not in sent


def test_nothing_is_exported_without_an_endpoint_even_with_the_standard_variables(
    collector: FakeCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url + "/v1/traces")
    assert not _emit(Settings(otlp_endpoint=None, _env_file=None))
    assert collector.received == []


def test_without_an_exporter_spans_are_not_recorded_but_keep_their_trace_ids(
    collector: FakeCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording spans nobody receives cost CPU on every request: they are sampled out, and
    a log line written inside one still gets a trace id to quote."""
    quiet = build_telemetry(Settings(otlp_endpoint=None, _env_file=None))
    with quiet.tracer_provider.get_tracer("test").start_as_current_span("ingest") as unsampled:
        assert not unsampled.is_recording()
        assert unsampled.get_span_context().is_valid
    quiet.shutdown()

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    sampled_out = build_telemetry(Settings(otlp_endpoint=collector.url, _env_file=None))
    with sampled_out.tracer_provider.get_tracer("test").start_as_current_span("ingest") as span:
        assert not span.is_recording(), "an exporting process honours OTEL_TRACES_SAMPLER"
    sampled_out.shutdown()

    monkeypatch.delenv("OTEL_TRACES_SAMPLER")
    exporting = build_telemetry(Settings(otlp_endpoint=collector.url, _env_file=None))
    with exporting.tracer_provider.get_tracer("test").start_as_current_span("ingest") as kept:
        assert kept.is_recording(), "every trace by default once something exports"
    exporting.shutdown()
