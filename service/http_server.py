"""The HTTP/1.1 protocol ``serve`` runs: uvicorn's httptools protocol, answering what its parser
refuses as problem+json too.

uvicorn answers a request its parser cannot read (a malformed request line or header, a URL of
64 KiB or more, which httptools cannot represent) itself, before the app sees it, with a
``text/plain`` 400. This protocol sends the same refusal as RFC 9457 problem details, with 414
for a URL that is too long, so that every error a client can get from the service has one shape.
"""

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import PROBLEM_JSON, SECURITY_HEADERS

__all__ = ["MAX_PARSED_URL_BYTES", "ProblemHttpToolsProtocol"]

MAX_PARSED_URL_BYTES = 65535
"""httptools stores URL offsets in 16 bits: longer URLs never reach the app."""

_TYPE_BASE = "https://disclosure-audit.example/problems/"


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose parser refusals are problem+json."""

    def send_400_response(self, msg: str) -> None:
        """Refuse an unparsable request as problem+json (414 for an over-long URL)."""
        if len(getattr(self, "url", b"")) > MAX_PARSED_URL_BYTES:
            status, reason, title, slug = 414, b"URI Too Long", "URI too long", "uri-too-long"
            detail = "The request URL is too long; send fewer or shorter filters."
        else:
            status, reason, title = 400, b"Bad Request", "Bad request"
            slug = "malformed-request"
            detail = "The request is not well-formed HTTP/1.1."
        body = json.dumps(
            {
                "type": _TYPE_BASE + slug,
                "title": title,
                "status": status,
                "detail": detail,
            }
        ).encode()
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for default_name, default_value in self.server_state.default_headers:
            lines += [default_name, b": ", default_value, b"\r\n"]
        headers = {
            **SECURITY_HEADERS,
            "Content-Type": PROBLEM_JSON,
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
        for name, text in headers.items():
            lines += [name.encode(), b": ", text.encode(), b"\r\n"]
        lines += [b"\r\n", body]
        self.transport.write(b"".join(lines))
        self.transport.close()
