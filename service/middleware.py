"""ASGI middleware: request body limit, request ids and a PHI-free access log."""

import logging
import time
import uuid
from typing import Any

from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import problem
from service.logs import REQUEST_ID, accept_request_id

__all__ = ["AccessLogMiddleware", "BodyLimitMiddleware", "RequestIdMiddleware"]

_access = logging.getLogger("disclosure_audit.access")


class _TooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413, whether announced or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLargeError
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLargeError:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "too-large",
            f"The request body exceeds {self.limit} bytes; split a batch into smaller ones.",
        )
        await response(scope, receive, send)


class AccessLogMiddleware:
    """One line per request with the route template, never the path: paths carry record refs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = scope.get("route")
            _access.info(
                "%s %s %s %.1fms",
                scope.get("method", "?"),
                getattr(route, "path", "<unmatched>"),
                status["code"],
                (time.perf_counter() - started) * 1000,
            )


class RequestIdMiddleware:
    """Give every request an id: the caller's ``X-Request-ID`` if opaque, else a new one.

    The id is echoed in the response, set on the request's span and added to every log line
    written while the request runs (threads of sync routes copy the context).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers", [])).get(b"x-request-id")
        request_id = accept_request_id(sent.decode("latin-1") if sent else None)
        request_id = request_id or uuid.uuid4().hex
        trace.get_current_span().set_attribute("request.id", request_id)

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, tagged)
        finally:
            REQUEST_ID.reset(token)
