"""OpenTelemetry: providers, the named instruments, a span helper, and the guard that keeps PHI out.

Nothing leaves the process unless ``DISCLOSURE_AUDIT_OTLP_ENDPOINT`` is set. Every span and every
metric passes an attribute allowlist on its way out: instrumentation libraries record raw URL
paths (which carry record refs), client addresses, exception messages and SQL error text, and
none of that may reach a collector. Our own attributes are limited to the same allowlist:
tenant ids, event types, rule ids, route templates, status codes, projection and export names.
"""

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import asgi_getter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Link, Span, SpanKind, Status
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

    from service.application.ingest import Receipt, Submission
    from service.settings import Settings

__all__ = [
    "EXPORT_DURATION",
    "FINDINGS",
    "INGESTED",
    "INGEST_DURATION",
    "PROJECTION_LAG_POSITIONS",
    "PROJECTION_LAG_SECONDS",
    "PROJECTION_STALLED_POSITION",
    "SAFE_ATTRIBUTES",
    "STORE_UNAVAILABLE",
    "IngestObservation",
    "RedactingSpanProcessor",
    "TelemetryHandle",
    "TraceContextMiddleware",
    "build_telemetry",
    "instrument_app",
    "observe_export",
    "observe_ingest",
    "record_projection_lag",
    "record_projection_stall",
    "safe_attributes",
    "setup_telemetry",
    "span",
    "spans_recorded",
]

_log = logging.getLogger("disclosure_audit.telemetry")

SERVICE_NAME = "disclosure-audit"
_SCOPE = "disclosure_audit"

# Stable HTTP conventions: their request-duration metric carries http.route (the template),
# where the legacy one carries only method and status. Read once, when instrumentation starts.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

# The only attribute keys that may leave the process, on spans and on metrics. Everything an
# instrumentation library adds beyond these (url.path, http.target, url.query, client.address,
# user_agent.original, exception messages ...) is dropped on export.
SAFE_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # HTTP server spans and metrics: the route template, never the path.
        "http.route",
        "http.method",
        "http.request.method",
        "http.status_code",
        "http.response.status_code",
        "http.scheme",
        "url.scheme",
        "http.flavor",
        "network.protocol.version",
        "error.type",
        # Database client spans: SQL text uses bound parameters only, never values.
        "db.system",
        "db.system.name",
        "db.name",
        "db.namespace",
        "db.statement",
        "db.query.text",
        "db.operation",
        "db.operation.name",
        # Ours.
        "request.id",
        "tenant.id",
        "event.type",
        "events.count",
        "requests.count",
        "ingest.outcome",
        "rule.id",
        "finding.severity",
        "projection.name",
        "export.kind",
        "export.outcome",
        "exception.type",
    }
)
_MAX_TEXT = 1024  # SQL of a 500-id lookup is long; nothing useful is past this

# Seconds; the SDK's default buckets are meant for milliseconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_EXPORT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

# Instruments bind to whichever MeterProvider is installed, now or later (API proxies), so
# modules can import them at any time; with no SDK installed they cost a no-op call.
_meter = metrics.get_meter(_SCOPE)
_tracer = trace.get_tracer(_SCOPE)

INGESTED = _meter.create_counter(
    "disclosure_audit.events.ingested",
    unit="{event}",
    description="Events accepted by ingest, by tenant, event type and outcome (stored or "
    "duplicate; a batch that stored anything counts all its events as stored).",
)
INGEST_DURATION = _meter.create_histogram(
    "disclosure_audit.ingest.duration",
    unit="s",
    description="Time to judge and durably store one ingest request (single or batch).",
    explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS,
)
FINDINGS = _meter.create_counter(
    "disclosure_audit.findings",
    unit="{finding}",
    description="Policy findings on newly stored events, by tenant, rule and severity.",
)
PROJECTION_LAG_POSITIONS = _meter.create_gauge(
    "disclosure_audit.projection.lag.positions",
    unit="{event}",
    description="Tenant-log positions a projection has not processed yet.",
)
PROJECTION_LAG_SECONDS = _meter.create_gauge(
    "disclosure_audit.projection.lag.seconds",
    unit="s",
    description="Age of the oldest event a projection has not processed yet.",
)
PROJECTION_STALLED_POSITION = _meter.create_gauge(
    "disclosure_audit.projection.stalled.position",
    unit="{position}",
    description="Tenant-log position where a tenant's read models stopped on an event they "
    "cannot project (0 once its held events applied); other tenants go on.",
)
EXPORT_DURATION = _meter.create_histogram(
    "disclosure_audit.export.duration",
    unit="s",
    description="Time to produce one export bundle, by kind and outcome.",
    explicit_bucket_boundaries_advisory=_EXPORT_BUCKETS,
)
STORE_UNAVAILABLE = _meter.create_counter(
    "disclosure_audit.store.unavailable",
    unit="{request}",
    description="Requests answered 503 because the event store was unreachable.",
)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _clip(value: AttributeValue) -> AttributeValue:
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return value[:_MAX_TEXT]
    return value


def safe_attributes(
    attributes: Mapping[str, AttributeValue] | None, *, ours: bool = True
) -> dict[str, AttributeValue]:
    """The allowlisted subset of ``attributes``; other keys are dropped.

    Libraries' extra attributes are dropped silently; one of ``ours`` is a programming error,
    named (never its value) once in the log.
    """
    kept: dict[str, AttributeValue] = {}
    for key, value in (attributes or {}).items():
        if key in SAFE_ATTRIBUTES:
            kept[key] = _clip(value)
        elif ours:
            with _warned_lock:
                first = key not in _warned
                _warned.add(key)
            if first:
                _log.warning("telemetry attribute %s is not allowlisted; dropped", key)
    return kept


class RedactingSpanProcessor(SpanProcessor):
    """Passes each ended span on to ``inner`` with only allowlisted attributes and no free text.

    Exception events keep their type and lose message and stack trace; status descriptions are
    dropped; server spans are renamed to ``METHOD route-template`` (or the method alone).
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """Nothing to redact yet: attributes are checked when the span ends."""
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Forward a redacted copy of the span."""
        self._inner.on_end(redact(span))

    def shutdown(self) -> None:
        """Shut the inner processor down (flushing its exporter)."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner processor."""
        return self._inner.force_flush(timeout_millis)


def redact(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` fit to leave the process."""
    attributes = safe_attributes(span.attributes, ours=False)
    name = span.name
    if span.kind is SpanKind.SERVER:
        method = attributes.get("http.request.method") or attributes.get("http.method") or "HTTP"
        route = attributes.get("http.route")
        name = f"{method} {route}" if route else str(method)
    events = [
        Event(
            event.name,
            safe_attributes(event.attributes, ours=False),
            timestamp=event.timestamp,
        )
        for event in span.events
    ]
    links = [
        Link(link.context, safe_attributes(link.attributes, ours=False)) for link in span.links
    ]
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


@dataclass
class TelemetryHandle:
    """The process's tracer and meter providers, installed once by :func:`setup_telemetry`."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporting: bool
    records_spans: bool = False
    """Whether spans go anywhere (an OTLP endpoint or a test's exporter): only then are HTTP
    requests and SQL statements instrumented."""
    _closed: bool = field(default=False, repr=False)

    def force_flush(self) -> None:
        """Push buffered spans and metrics to the exporters now."""
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()

    def shutdown(self) -> None:
        """Flush and stop the exporters (at process shutdown)."""
        if self._closed:
            return
        self._closed = True
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


_installed: TelemetryHandle | None = None
_install_lock = threading.Lock()


def build_telemetry(
    settings: "Settings",
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> TelemetryHandle:
    """SDK providers for ``settings``, not installed (see :func:`setup_telemetry`).

    Spans leave the process only for the OTLP endpoint of the settings (never for a stray
    ``OTEL_EXPORTER_OTLP_ENDPOINT``), and for ``span_exporter`` / ``metric_reader`` (tests),
    always through the redaction above. With neither, spans are not recorded at all (a sampler
    that keeps none): nobody would receive them, and every request paid for building them.
    Every request still gets a trace id (an unsampled span keeps its context), so logs carry
    trace ids either way.
    """
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.version": _version(),
            "service.instance.id": uuid.uuid4().hex,
        }
    )
    # No SDK length limit: it warns in the log for every stack trace, which redaction drops
    # anyway; allowlisted values are clipped there.
    endpoint = settings.otlp_endpoint
    exporting_spans = bool(endpoint) or span_exporter is not None
    # Exporting: the SDK's sampler, which OTEL_TRACES_SAMPLER / _ARG configure (every trace by
    # default). Not exporting: none.
    tracer_provider = TracerProvider(
        resource=resource, sampler=None if exporting_spans else ALWAYS_OFF
    )
    readers: list[MetricReader] = []
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = endpoint.rstrip("/")
        tracer_provider.add_span_processor(
            RedactingSpanProcessor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"))
            )
        )
        readers.append(
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
        )
    if span_exporter is not None:
        tracer_provider.add_span_processor(
            RedactingSpanProcessor(SimpleSpanProcessor(span_exporter))
        )
    if metric_reader is not None:
        readers.append(metric_reader)
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=readers,
        # One view for every instrument: the same allowlist as spans, for metric attributes.
        views=[View(instrument_name="*", attribute_keys=set(SAFE_ATTRIBUTES))],
    )
    return TelemetryHandle(
        tracer_provider, meter_provider, exporting=bool(endpoint), records_spans=exporting_spans
    )


def setup_telemetry(
    settings: "Settings",
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> TelemetryHandle:
    """Install the providers for this process (once; later calls return the same handle)."""
    global _installed  # noqa: PLW0603 - OpenTelemetry providers are process-wide by design
    with _install_lock:
        if _installed is None:
            handle = build_telemetry(
                settings, span_exporter=span_exporter, metric_reader=metric_reader
            )
            trace.set_tracer_provider(handle.tracer_provider)
            metrics.set_meter_provider(handle.meter_provider)
            _installed = handle
            _log.info(
                "telemetry ready; exporting %s",
                "over OTLP/HTTP" if handle.exporting else "nothing (no OTLP endpoint configured)",
            )
        return _installed


def spans_recorded() -> bool:
    """Whether this process records spans for anyone (:attr:`TelemetryHandle.records_spans`)."""
    return _installed is not None and _installed.records_spans


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("disclosure-audit")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def instrument_app(app: "FastAPI") -> None:
    """Trace every request: one server span per request, named by its route template, while
    spans are recorded (:func:`spans_recorded`); otherwise only the trace context.

    OpenTelemetry's ASGI middleware costs about a fifth of the event loop's time on a small
    request (attributes, route lookup, a wrapped ``send``, duration metrics), all of it thrown
    away when no span is recorded. Without a recorder, :class:`TraceContextMiddleware` gives the
    request what logs need: the caller's ``traceparent`` continued, or a new trace id.
    The choice is made per request, since telemetry is installed in the lifespan, after this.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # The per-message receive/send spans add nothing but volume.
    FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])
    traced_stack = app.build_middleware_stack
    plain_stack = app._original_build_middleware_stack  # type: ignore[attr-defined]

    def build_middleware_stack() -> "ASGIApp":
        traced = traced_stack()
        plain = TraceContextMiddleware(plain_stack())

        async def either(scope: "Scope", receive: "Receive", send: "Send") -> None:
            if spans_recorded():
                await traced(scope, receive, send)
            else:
                await plain(scope, receive, send)

        return either

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


class TraceContextMiddleware:
    """The request's trace context without a recorded span: continues the caller's W3C
    ``traceparent`` or starts a new trace, so every log line of the request quotes a trace id."""

    def __init__(self, app: "ASGIApp") -> None:
        self.app = app

    async def __call__(self, scope: "Scope", receive: "Receive", send: "Send") -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent = propagate.extract(cast("dict[Any, Any]", scope), getter=asgi_getter)
        request = _tracer.start_span("HTTP", context=parent, kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(request, parent))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    parent: Context | None = None,
    links: Sequence[Link] = (),
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span around internal work (a projection batch, an export), with allowlisted attributes.

    An exception ends the span with status ERROR and an event naming only the exception type.
    """
    with _tracer.start_as_current_span(
        name,
        context=parent,
        links=links,
        kind=kind,
        attributes=safe_attributes(attributes),
        record_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as error:
            current.add_event("exception", {"exception.type": type(error).__name__})
            raise


def current_context() -> Context:
    """The calling thread's trace context, to carry work over to another thread."""
    return otel_context.get_current()


@contextmanager
def group_span(
    name: str, contexts: Sequence[Context], attributes: Mapping[str, AttributeValue]
) -> Iterator[Span]:
    """A span for work done once for many requests (a group commit): a child of the first
    request's span, and linked to every request's span, so each trace shows its commit."""
    linked = [trace.get_current_span(c).get_span_context() for c in contexts]
    links = [Link(context) for context in linked if context.is_valid]
    with span(name, attributes, parent=contexts[0] if contexts else None, links=links) as current:
        yield current


def record_projection_lag(
    projection: str, tenant_id: str | None, positions: int, seconds: float
) -> None:
    """Report how far a projection is behind the tenant log (positions and seconds)."""
    attributes: dict[str, AttributeValue] = {"projection.name": projection}
    if tenant_id is not None:
        attributes["tenant.id"] = tenant_id
    PROJECTION_LAG_POSITIONS.set(positions, attributes)
    PROJECTION_LAG_SECONDS.set(seconds, attributes)


def record_projection_stall(projection: str, tenant_id: str, position: int) -> None:
    """Report that a tenant's read models stopped at ``position`` (0: they resumed)."""
    PROJECTION_STALLED_POSITION.set(
        position, {"projection.name": projection, "tenant.id": tenant_id}
    )


@contextmanager
def observe_export(kind: str, tenant_id: str | None = None) -> Iterator[Span]:
    """Trace and time one export: a span ``export`` and the export duration histogram."""
    attributes: dict[str, AttributeValue] = {"export.kind": kind}
    if tenant_id is not None:
        attributes["tenant.id"] = tenant_id
    started = time.perf_counter()
    outcome = "error"
    try:
        with span("export", attributes) as current:
            yield current
        outcome = "ok"
    finally:
        EXPORT_DURATION.record(
            time.perf_counter() - started, {**attributes, "export.outcome": outcome}
        )


@dataclass
class IngestObservation:
    """What :func:`observe_ingest` needs to hear back from the write."""

    tenant_id: str
    types: Sequence[str]
    outcome: str = "error"
    receipts: Sequence["Receipt"] = ()

    def stored(self, receipts: Sequence["Receipt"], created: bool) -> None:
        """The write returned: ``created`` when anything was new (201), else all repeats (200)."""
        self.outcome = "stored" if created else "duplicate"
        self.receipts = receipts


# Exception type names of the ingest path mapped to an outcome; anything else is "error".
_INGEST_FAILURES = {
    "EventIdReusedError": "conflict",
    "RecordErasedError": "conflict",
    "FactInFutureError": "rejected",
    "WriteContentionError": "contention",
    "OperationalError": "unavailable",
    "InterfaceError": "unavailable",
}


@contextmanager
def observe_ingest(
    tenant_id: str, submissions: Sequence["Submission"]
) -> Iterator[IngestObservation]:
    """Trace and measure one ingest request: span, latency, events by type, findings by rule."""
    types = [type(s.fact).__name__ for s in submissions]
    observation = IngestObservation(tenant_id=tenant_id, types=types)
    traced: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)
    if spans_recorded():  # else the span would be dropped: not even built
        attributes: dict[str, AttributeValue] = {"tenant.id": tenant_id, "events.count": len(types)}
        if len(set(types)) == 1:
            attributes["event.type"] = types[0]
        traced = span("ingest", attributes)
    started = time.perf_counter()
    try:
        with traced as current:
            try:
                yield observation
            except Exception as error:
                observation.outcome = _INGEST_FAILURES.get(type(error).__name__, "error")
                raise
            finally:
                current.set_attribute("ingest.outcome", observation.outcome)
    finally:
        INGEST_DURATION.record(
            time.perf_counter() - started,
            {"tenant.id": tenant_id, "ingest.outcome": observation.outcome},
        )
        _count_ingested(observation)


def _count_ingested(observation: IngestObservation) -> None:
    if observation.outcome not in ("stored", "duplicate"):
        return
    for event_type in observation.types:
        INGESTED.add(
            1,
            {
                "tenant.id": observation.tenant_id,
                "event.type": event_type,
                "ingest.outcome": observation.outcome,
            },
        )
    if observation.outcome != "stored":
        return  # a repeat's findings were counted when it was first stored
    for receipt in observation.receipts:
        for finding in receipt.findings:
            FINDINGS.add(
                1,
                {
                    "tenant.id": observation.tenant_id,
                    "rule.id": str(finding.get("rule", "unknown")),
                    "finding.severity": str(finding.get("severity", "unknown")),
                },
            )
