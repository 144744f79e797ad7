"""ASGI middleware: request body and URL limits; request ids, security headers and a PHI-free
access log."""

import asyncio
import logging
import random
import time

from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import SECURITY_HEADERS, problem
from service.logs import REQUEST_ID, accept_request_id

__all__ = ["BodyLimitMiddleware", "EdgeMiddleware", "UrlLimitMiddleware", "replaying"]

_access = logging.getLogger("disclosure_audit.access")

MAX_URL_BYTES = 8192
"""Longest request target (path and query) the app takes; longer ones get 414. The server's own
parser refuses targets of 64 KiB and more before the app sees them."""

BODY_TIMEOUT_SECONDS = 30.0
"""How long a request body may take to arrive, whatever its size, before 408."""


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413, whether announced or streamed (chunked), and
    bodies that take longer than ``timeout`` seconds to arrive with 408.

    The body is read here, up to the limit, before the app runs, then replayed to it: a limit hit
    while the app is reading would surface inside the framework's body parsing (which turns any
    error there into a 400) instead of as a 413.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float = BODY_TIMEOUT_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, send)
            return
        chunks: list[bytes] = []
        seen = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        return
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.limit:
                        await self._too_large(scope, send)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            response = problem(
                408, "body-timeout", f"The request body did not arrive within {self.timeout:g} s."
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        response = problem(
            413,
            "too-large",
            f"The request body exceeds {self.limit} bytes; split a batch into smaller ones.",
        )
        await response(scope, _no_body, send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` whole once, then waits on the server's (disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:  # later calls wait for the disconnect, as the server's receive does
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class UrlLimitMiddleware:
    """Refuse request targets longer than ``limit`` bytes with 414 problem+json."""

    def __init__(self, app: ASGIApp, limit: int = MAX_URL_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = len(scope.get("raw_path") or scope["path"].encode()) + len(
                scope.get("query_string", b"")
            )
            if target > self.limit:
                response = problem(
                    414,
                    "uri-too-long",
                    f"The request URL exceeds {self.limit} bytes; send fewer or shorter filters.",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class EdgeMiddleware:
    """What every request gets on its way in and out, in one wrapper of ``send``:

    - an id: the caller's ``X-Request-ID`` if opaque, else a new one, echoed in the response,
      set on the request's span and added to every log line written while the request runs
      (threads of sync routes copy the context);
    - ``X-Content-Type-Options: nosniff`` and ``Cache-Control: no-store`` on every response:
      nearly every response carries tenant data (PHI), so no browser may guess its type and no
      cache between the caller and us may keep a copy;
    - one access-log line with the route template, never the path (paths carry record refs).

    One middleware rather than three: each layer of ASGI middleware is a coroutine frame that
    every resumption of the request passes through, and a ``send`` wrapper called twice per
    response; on a small POST the three cost about a twentieth of the event loop.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = dict(scope.get("headers", [])).get(b"x-request-id")
        request_id = accept_request_id(sent.decode("latin-1") if sent else None)
        # Not uuid4: os.urandom gives up the GIL for its syscall, and on a busy process the
        # event loop then waits for the writer to hand it back. A request id needs to be
        # unique, not secret (the process's Mersenne Twister is seeded from urandom).
        request_id = request_id or f"{random.getrandbits(128):032x}"
        trace.get_current_span().set_attribute("request.id", request_id)
        status = 500

        async def edge_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["X-Request-ID"] = request_id
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, edge_send)
        finally:
            route = scope.get("route")
            _access.info(
                "%s %s %s %.1fms",
                scope.get("method", "?"),
                getattr(route, "path", "<unmatched>"),
                status,
                (time.perf_counter() - started) * 1000,
            )
            REQUEST_ID.reset(token)
