"""The OpenAPI document: every error declared as it is sent, and every status an operation can
answer; rendered the same way for the committed file, ``/openapi.json`` and the drift test.

The errors are added here, by looking at what each generated operation takes (a key, a JSON
body, a cursor, ``?min_position=``), not route by route: routes added later get them too.
"""

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from service.errors import PROBLEM_JSON
from service.fhir.outcome import FHIR_JSON, FHIR_PREFIX
from service.schemas import Problem
from service.settings import Settings

__all__ = ["COMMITTED", "document_errors", "install_openapi", "openapi_json"]

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_OUTCOME_REF = {"$ref": "#/components/schemas/OperationOutcome"}
_OUTCOME = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome: how the FHIR routes answer every error",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string"},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}
_AUTH = {
    401: "No API key, or an unknown or revoked one",
    403: "The key lacks the role this operation needs",
}
_BODY = {
    400: "The body is not UTF-8 text",
    408: "The body did not arrive in time",
    413: "Request body too large",
    415: "The body is not 'application/json'",
    422: "Malformed body (a key given twice included); nothing stored",
}
_EVERY = {
    414: "The URL is too long",
    503: "The store is unavailable or contended; retry after Retry-After seconds",
}


def _add(responses: dict[str, Any], status: int, description: str) -> None:
    responses.setdefault(str(status), {"description": description})


def _document_operation(operation: dict[str, Any], fhir: bool = False) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    parameters = {p["name"]: p for p in operation.get("parameters", [])}
    if operation.get("security"):
        for status, description in _AUTH.items():
            _add(responses, status, description)
    if "requestBody" in operation:
        for status, description in _BODY.items():
            _add(responses, status, description)
    if parameters:
        _add(responses, 422, "A parameter is malformed or out of range")
    if "cursor" in parameters:
        _add(responses, 400, "The cursor is not one this API returned")
    if any(p["in"] == "path" for p in parameters.values()):
        _add(responses, 404, "Not found in your tenant")
    if "min_position" in parameters:
        _add(responses, 503, "Read models not yet at min_position, or the store unavailable")
    for status, description in _EVERY.items():
        _add(responses, status, description)
    _as_problems(responses, fhir)


def _as_problems(responses: dict[str, Any], fhir: bool = False) -> None:
    for status, response in responses.items():
        if not status.isdigit() or int(status) < 400:
            continue
        # Every error is sent as RFC 9457 problem details, whatever the route declared; under
        # /fhir/ as an OperationOutcome (service/fhir/outcome.py).
        if fhir:
            response["content"] = {FHIR_JSON: {"schema": _OUTCOME_REF}}
        else:
            response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
        if status in ("503", "429"):
            response.setdefault("headers", {}).update(_RETRY_AFTER)
        if status == "401":
            response.setdefault("headers", {})["WWW-Authenticate"] = {
                "description": "How to authenticate: 'Bearer'",
                "schema": {"type": "string"},
            }


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare ``application/problem+json`` for every error and the statuses each operation can
    answer, in a generated OpenAPI ``schema`` (changed in place and returned)."""
    fhir = False
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options"):
                _document_operation(operation, path.startswith(FHIR_PREFIX))
                fhir = fhir or path.startswith(FHIR_PREFIX)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(
        "Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    if fhir:
        components.setdefault("OperationOutcome", _OUTCOME)
    # FastAPI's own 422 models are replaced by Problem above; drop them if nothing else uses them.
    text = json.dumps(schema["paths"])
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}" not in text:
            components.pop(name, None)
    if "HTTPValidationError" not in components:
        components.pop("ValidationError", None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) return the documented errors."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_json() -> str:
    """The app's OpenAPI document as stable, indented JSON."""
    from service.app import create_app  # service.app installs this module's document_errors

    schema = create_app(Settings()).openapi()
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
