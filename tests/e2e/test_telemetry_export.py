"""OTLP export happens only when configured, to the configured collector, already redacted."""

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2 as httpx
import pytest
from opentelemetry.trace import SpanKind

from service.auth import Role
from service.container import build_services
from service.settings import Settings
from service.telemetry import build_telemetry
from tests.e2e.server import ROOT, ServerProcess, free_port
from tests.factories import example


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


def _served(settings: Settings, extra: dict[str, str]) -> ServerProcess:
    env = {
        "DISCLOSURE_AUDIT_HOME": str(settings.home),
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path),
        **(
            {"DISCLOSURE_AUDIT_DATABASE_URL": settings.database_url}
            if settings.database_url
            else {}
        ),
        **extra,
    }
    port = free_port()
    server = ServerProcess(
        [str(ROOT / ".venv/bin/disclosure-audit"), "serve", "--port", str(port)], env, port
    )
    server.wait_ready()
    return server


def _ingest_key(settings: Settings) -> dict[str, str]:
    services = build_services(settings)
    _, token = services.keys.create("trace-test", {Role.INGEST})
    services.close()
    return {"Authorization": f"Bearer {token}"}


def _access_lines(server: ServerProcess, route: str) -> list[dict[str, Any]]:
    lines = []
    for line in server.lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("logger") == "disclosure_audit.access" and route in entry["message"]:
                lines.append(entry)
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite"])
def test_a_served_process_without_a_collector_logs_trace_ids_it_continues(
    settings: Settings,
) -> None:
    """No span is recorded without a collector, but every request still has a trace: the
    caller's ``traceparent`` continued (so the caller's trace finds our log lines), or a new one."""
    headers = _ingest_key(settings)
    server = _served(settings, {})
    try:
        caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        traceparent = {"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"}
        for extra in (traceparent, {}, {}):
            answer = httpx.post(
                f"{server.base}/v1/records/jr-2041/events",
                json=example("RecordAccessed"),
                headers={**headers, **extra},
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 10
        while len(_access_lines(server, "/v1/records/{record_ref}/events")) < 3:
            assert time.monotonic() < deadline, "\n".join(server.lines)
            time.sleep(0.1)
    finally:
        server.kill()
    traces = [line["trace_id"] for line in _access_lines(server, "/v1/records/{record_ref}/events")]
    assert traces[0] == caller_trace
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in traces[1:]), traces
    assert len(set(traces)) == 3, "a request without traceparent starts a trace of its own"


@pytest.mark.slow
@pytest.mark.parametrize("store", ["postgres"])
def test_a_served_process_with_a_collector_sends_request_and_statement_spans(
    settings: Settings, collector: FakeCollector
) -> None:
    """With a collector configured, each request is a server span with a client span per SQL
    statement under it (instrumentation is switched on only then)."""
    headers = _ingest_key(settings)
    server = _served(settings, {"DISCLOSURE_AUDIT_OTLP_ENDPOINT": collector.url})
    try:
        answer = httpx.post(
            f"{server.base}/v1/records/jr-2041/events",
            json=example("RecordAccessed"),
            headers=headers,
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
    finally:
        server.kill(signal.SIGTERM)  # a clean stop flushes the batch of spans
    sent = b"".join(body for path, _, body in collector.received if path == "/v1/traces")
    assert b"POST /v1/records/{record_ref}/events" in sent, "the request's server span"
    assert b"db.statement" in sent or b"db.query.text" in sent, "a span per SQL statement"
    assert b"jr-2041" not in sent, "redacted before it left the process"
