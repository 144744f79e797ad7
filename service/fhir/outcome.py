"""Errors of the FHIR routes as ``OperationOutcome`` resources (FHIR R4 RESTful API: "an
OperationOutcome resource ... SHOULD be returned" with a 4xx or 5xx).

Every error handler of the app (``service/errors.py``) answers problem+json; for a path under
``/fhir/`` its answer is translated here, so 401, 403, 404, 413, 415, 422 and 5xx keep their
statuses and headers and say the same thing as an OperationOutcome. A FHIR route raises
``FhirError`` for what it finds itself (an unmappable element, an unsupported search
parameter), naming the element by its FHIRPath ``expression``.
"""

import json
from collections.abc import Sequence

from fastapi import Request
from fastapi.responses import JSONResponse, Response

__all__ = [
    "FHIR_JSON",
    "FHIR_PREFIX",
    "FhirError",
    "FhirJSONResponse",
    "Issue",
    "as_outcome",
    "is_fhir",
    "outcome_response",
]

FHIR_JSON = "application/fhir+json"
FHIR_PREFIX = "/fhir/"

# The issue-type code (http://hl7.org/fhir/issue-type) that best names each HTTP status.
_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    413: "too-costly",
    414: "too-costly",
    415: "not-supported",
    422: "processing",
    503: "transient",
}


class FhirJSONResponse(JSONResponse):
    """A FHIR resource as JSON (``application/fhir+json``): the FHIR routes' response class,
    so that the OpenAPI document names the media type they really answer."""

    media_type = FHIR_JSON


class Issue:
    """One issue of an OperationOutcome."""

    def __init__(
        self, diagnostics: str, *, code: str = "processing", expression: str | None = None,
        severity: str = "error",
    ) -> None:  # fmt: skip
        self.diagnostics = diagnostics
        self.code = code
        self.expression = expression
        self.severity = severity

    def as_dict(self) -> dict[str, object]:
        """The ``OperationOutcome.issue`` element."""
        issue: dict[str, object] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


class FhirError(Exception):
    """Raised by a FHIR route: answered as an OperationOutcome with ``status``."""

    def __init__(self, status: int, issues: Sequence[Issue]) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues))
        self.status = status
        self.issues = list(issues)


def is_fhir(request: Request) -> bool:
    """Whether the request is for a FHIR route."""
    return request.url.path.startswith(FHIR_PREFIX)


def outcome_response(
    status: int, issues: Sequence[Issue], headers: dict[str, str] | None = None
) -> JSONResponse:
    """An OperationOutcome response."""
    body = {"resourceType": "OperationOutcome", "issue": [i.as_dict() for i in issues]}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def _expression(loc: Sequence[object]) -> str | None:
    # A pydantic location ("body", "entry", 0, "resource") as a FHIRPath-like expression.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path or None


def as_outcome(response: Response) -> Response:
    """The problem+json ``response`` of an error handler, as an OperationOutcome."""
    try:
        problem = json.loads(bytes(response.body))
    except ValueError:
        return response
    status = response.status_code
    code = _CODES.get(status, "exception" if status >= 500 else "processing")
    issues = [
        Issue(str(e.get("msg", "")), code=code, expression=_expression(e.get("loc", ())))
        for e in problem.get("errors") or []
    ]
    issues.insert(0, Issue(str(problem.get("detail", "")), code=code))
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-type", "content-length")
    }
    return outcome_response(status, issues, headers)
