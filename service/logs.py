"""Structured logs with the standard library: one JSON object per line, with request and trace ids.

Log lines never carry request paths, bodies, keys or exception messages (driver and validation
messages can quote submitted values): an exception is logged as its type and a stack of
``file:line function`` frames, enough to find the code without the data.
"""

import json
import logging
import logging.config
import re
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = [
    "REQUEST_ID",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "accept_request_id",
    "configure_logging",
    "logging_config",
]

REQUEST_ID: ContextVar[str | None] = ContextVar("disclosure_audit_request_id", default=None)

# A caller's X-Request-ID is logged and traced, so only opaque tokens are taken over; anything
# else (spaces, long text, a bare record number) is replaced by an id of our own.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+=/-]{7,63}$")


def accept_request_id(value: str | None) -> str | None:
    """The caller's request id if it is an opaque token we may log, else None."""
    if value is not None and _REQUEST_ID.match(value):
        return value
    return None


class ContextFilter(logging.Filter):
    """Adds ``request_id``, ``trace_id`` and ``span_id`` of the current request to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops one."""
        record.request_id = REQUEST_ID.get()
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = None
            record.span_id = None
        return True


def _frames(error: BaseException) -> list[str]:
    return [
        f"{frame.filename.rsplit('/site-packages/', 1)[-1]}:{frame.lineno} {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
    ]


def _exception_fields(record: logging.LogRecord) -> dict[str, Any]:
    if not record.exc_info or record.exc_info[1] is None:
        return {}
    error = record.exc_info[1]
    return {"exc_type": type(error).__name__, "stack": _frames(error)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, exception type and frames."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key in ("request_id", "trace_id", "span_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        entry.update(_exception_fields(record))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines for local development, with the same fields and the same care."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as one line."""
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        ids = [
            f"{key}={value}"
            for key in ("request_id", "trace_id")
            if (value := getattr(record, key, None))
        ]
        if ids:
            line += "  [" + " ".join(ids) + "]"
        fields = _exception_fields(record)
        if fields:
            line += f"\n  {fields['exc_type']} at " + " <- ".join(reversed(fields["stack"]))
        return line


LogFormat = Literal["json", "text"]


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service and uvicorn (also passed to uvicorn)."""
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": log_format,
        "filters": ["context"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}, "text": {"()": TextFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            # uvicorn's own handlers would print unstructured lines beside ours.
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            # uvicorn's access log names raw paths (record refs); ours names route templates.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["default"], "level": level.upper()},
    }


def configure_logging(settings: "Settings") -> None:
    """Route every logger of the process through one handler in the configured format."""
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
