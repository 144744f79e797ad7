"""The OpenAPI document, rendered the same way for the committed file and the drift test."""

import json
from pathlib import Path

from service.app import create_app
from service.settings import Settings

__all__ = ["COMMITTED", "openapi_json"]

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def openapi_json() -> str:
    """The app's OpenAPI document as stable, indented JSON."""
    schema = create_app(Settings()).openapi()
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
