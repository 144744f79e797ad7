"""Structured logs: JSON lines, exceptions as type and frames, request ids only if opaque."""

import json
import logging
import subprocess
import sys

import pytest

from service.logs import JsonFormatter, TextFormatter, accept_request_id
from tests.e2e.server import ROOT


def _fail(message: str) -> None:
    raise ValueError(f"duplicate key (record_ref)=({message})")


def _record_with_exception(message: str) -> logging.LogRecord:
    try:
        _fail(message)
    except ValueError:
        return logging.LogRecord(
            "disclosure_audit.errors", logging.ERROR, __file__, 1, "unhandled %s", ("X",),
            sys.exc_info(),
        )  # fmt: skip
    raise AssertionError("_fail returned")


def test_a_json_line_has_the_fields_and_an_exception_only_as_type_and_frames() -> None:
    line = JsonFormatter().format(_record_with_exception("Jane Roe"))
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "disclosure_audit.errors"
    assert entry["message"] == "unhandled X"
    assert entry["exc_type"] == "ValueError"
    assert any(frame.endswith(" _fail") for frame in entry["stack"])
    assert "Jane Roe" not in line, "exception messages can quote stored values"
    assert "\n" not in line


def test_the_text_format_is_as_careful() -> None:
    text = TextFormatter().format(_record_with_exception("Jane Roe"))
    assert "unhandled X" in text
    assert "ValueError" in text
    assert "Jane Roe" not in text


@pytest.mark.parametrize(
    ("sent", "accepted"),
    [
        ("3f2a9c1e-6b7d-4e8f-9a0b-1c2d3e4f5a6b", True),
        ("0af7651916cd43dd8448eb211c80319c", True),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", True),
        ("jr-2041", False),  # too short to be an opaque id: looks like a record ref
        ("Jane Roe 2041-01", False),  # spaces: free text
        ("a" * 65, False),
        ("", False),
        (None, False),
    ],
)
def test_only_opaque_request_ids_are_taken_over(sent: str | None, accepted: bool) -> None:
    taken = accept_request_id(sent)
    assert (taken is not None) is accepted
    assert taken in (None, sent), "an accepted id is kept exactly"


def test_a_served_process_logs_json_lines_and_silences_uvicorns_path_log() -> None:
    script = """
import logging
from service.logs import configure_logging
from service.settings import Settings
configure_logging(Settings(log_format="json", _env_file=None))
logging.getLogger("uvicorn.error").info("Application startup complete.")
logging.getLogger("uvicorn.access").info("GET /v1/records/jr-2041/timeline 200")
logging.getLogger("disclosure_audit.access").info("GET /v1/records/{record_ref}/timeline 200")
try:
    raise RuntimeError("Jane Roe")
except RuntimeError:
    logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["logger"] for e in entries] == [
        "uvicorn.error",
        "disclosure_audit.access",
        "uvicorn.error",
    ]
    assert entries[-1]["exc_type"] == "RuntimeError"
    assert "jr-2041" not in result.stderr
    assert "Jane Roe" not in result.stderr
    assert result.stdout == "", "logs go to stderr; stdout is for command output"
