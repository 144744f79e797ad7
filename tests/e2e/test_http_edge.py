"""HTTP at the edge: media types, duplicated keys, body and URL limits, security headers, query
bounds and the documented errors, in-process and against a real server process."""

import asyncio
import base64
import json
import socket
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.auth import Role
from service.middleware import BodyLimitMiddleware
from service.openapi_doc import document_errors
from service.settings import Settings
from tests.conftest import Api
from tests.e2e.server import ROOT, ServerProcess, free_port
from tests.factories import example, unique_name

# Media types, bodies and headers are decided before the store is touched: the embedded store
# suffices for those; anything that reaches the store runs on both.
sqlite_only = pytest.mark.parametrize("store", ["sqlite"])
MAX_POSITION = 2**63 - 1


def _is_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _post(api: Api, body: str, content_type: str | None) -> Any:
    headers = api.writer()
    if content_type is not None:
        headers["Content-Type"] = content_type
    return api.client.post("/v1/records/edge-1/events", content=body, headers=headers)


@sqlite_only
def test_a_key_given_twice_is_a_422_naming_where_without_the_value(api: Api) -> None:
    name = unique_name()
    event = example("RecordAccessed")
    text = json.dumps(event)
    # The same key twice at the top level and inside the actor object, the second value PHI.
    twice = text[:-1] + f', "type": "RecordAccessed", "event_id": "{event["event_id"]}"}}'
    problem = _is_problem(_post(api, twice, "application/json"), 422)
    locs = [error["loc"] for error in problem["errors"]]
    assert ["body", "type"] in locs
    assert ["body", "event_id"] in locs
    assert all(error["type"] == "json_duplicate_key" for error in problem["errors"])

    batch = {"events": [{"record_ref": "edge-2", **example("RecordAccessed")}]}
    nested = json.dumps(batch).replace('"actor": {', f'"actor": {{"name": "{name}", ', 1)
    response = api.client.post(
        "/v1/events:batch",
        content=nested,
        headers={**api.writer(), "Content-Type": "application/json"},
    )
    problem = _is_problem(response, 422)
    assert [e["loc"] for e in problem["errors"]] == [["body", "events", 0, "actor", "name"]]
    assert name not in response.text, "the submitted value is never echoed"
    timeline = api.client.get("/v1/records/edge-2/timeline", headers=api.key(Role.COMPLIANCE))
    assert timeline.status_code == 404, "nothing of the refused batch was stored"


@sqlite_only
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/json; charset=latin-1",
        "application/merge-patch+json",
        None,
    ],
)
def test_a_body_that_is_not_declared_json_is_a_415(api: Api, content_type: str | None) -> None:
    problem = _is_problem(_post(api, json.dumps(example("RecordAccessed")), content_type), 415)
    assert "application/json" in problem["detail"]
    batch = json.dumps({"events": [{"record_ref": "edge-3", **example("RecordAccessed")}]})
    headers = api.writer() | ({"Content-Type": content_type} if content_type else {})
    response = api.client.post("/v1/events:batch", content=batch, headers=headers)
    _is_problem(response, 415)


@sqlite_only
@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_with_or_without_a_utf8_charset_is_taken(api: Api, content_type: str) -> None:
    assert _post(api, json.dumps(example("RecordAccessed")), content_type).status_code == 201


@sqlite_only
def test_a_bodyless_post_still_says_the_body_is_missing(api: Api) -> None:
    response = api.client.post("/v1/records/edge-1/events", headers=api.writer())
    problem = _is_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body"]


@sqlite_only
def test_unknown_paths_and_methods_answer_problem_json(api: Api) -> None:
    _is_problem(api.client.get("/v1/no-such-thing", headers=api.writer()), 404)
    _is_problem(api.client.get("/nothing-here"), 404)
    response = api.client.put("/v1/access-log", headers=api.writer())
    _is_problem(response, 405)
    assert response.headers["allow"] == "GET"


@sqlite_only
def test_a_url_over_8_kib_is_a_414(api: Api) -> None:
    response = api.client.get("/v1/access-log?actor_id=" + "a" * 9000, headers=api.writer())
    problem = _is_problem(response, 414)
    assert "8192" in problem["detail"]
    # Just under the limit the route answers for itself (here: actor_id is too long, 422).
    response = api.client.get("/v1/access-log?actor_id=" + "a" * 8000, headers=api.writer())
    assert response.status_code == 422


@sqlite_only
def test_every_response_forbids_sniffing_and_caching(api: Api) -> None:
    headers = api.writer()
    answers = [
        _post(api, json.dumps(example("RecordAccessed")), "application/json"),  # 201
        api.client.get("/v1/records/edge-1/timeline", headers=headers),  # 200 with PHI
        api.client.get("/v1/records/edge-1/timeline"),  # 401
        api.client.get("/v1/records/none-such/timeline", headers=headers),  # 404
        _post(api, "{}", "text/plain"),  # 415
        api.client.get("/v1/access-log?limit=0", headers=headers),  # 422
        api.client.get("/livez"),
    ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff", response.status_code
        assert response.headers["cache-control"] == "no-store", response.status_code


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("/v1/access-log?min_position=9223372036854775808", "min_position"),
        ("/v1/access-log?min_position=" + "9" * 40, "min_position"),
        (
            "/v1/log/proofs/inclusion?event_id=00000000-0000-4000-8000-000000000000"
            "&tree_size=9223372036854775808",
            "tree_size",
        ),
        ("/v1/log/proofs/consistency?from_size=9223372036854775808", "from_size"),
        ("/v1/log/proofs/consistency?from_size=1&to_size=9223372036854775808", "to_size"),
    ],
)
def test_integers_beyond_64_bits_are_a_422_naming_the_parameter(
    api: Api, query: str, name: str
) -> None:
    headers = api.key(Role.COMPLIANCE)
    problem = _is_problem(api.client.get(query, headers=headers), 422)
    assert problem["errors"][0]["loc"] == ["query", name]
    assert "9223372036854775808" not in json.dumps(problem)


def test_the_largest_position_is_a_wait_not_an_error(api: Api) -> None:
    response = api.client.get(
        f"/v1/access-log?min_position={MAX_POSITION}", headers=api.key(Role.COMPLIANCE)
    )
    _is_problem(response, 503)
    assert response.headers["retry-after"]


@pytest.mark.parametrize("route", ["/v1/access-log", "/v1/findings", "/v1/audit-reads"])
def test_a_cursor_past_64_bits_is_a_400_not_a_500(api: Api, route: str) -> None:
    cursor = base64.urlsafe_b64encode(b"99999999999999999999999").decode()
    response = api.client.get(f"{route}?cursor={cursor}", headers=api.key(Role.COMPLIANCE))
    assert "cursor" in _is_problem(response, 400)["detail"]


def test_every_error_in_the_contract_is_problem_json_and_complete() -> None:
    document = create_app(Settings(_env_file=None)).openapi()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            label = f"{method.upper()} {path}"
            fhir = path.startswith("/fhir/")  # errors there are OperationOutcomes
            form = ["application/fhir+json"] if fhir else ["application/problem+json"]
            for status, response in responses.items():
                if int(status) >= 400:
                    assert list(response["content"]) == form, label
            names = {p["name"] for p in operation.get("parameters", [])}
            must = {"401", "403", "414", "503"} if "security" in operation else {"414", "503"}
            if "requestBody" in operation:
                must |= {"400", "413", "415", "422"}
            if "cursor" in names:
                must.add("400")
            if "min_position" in names:
                must |= {"422", "503"}
            assert must <= set(responses), (label, sorted(must - set(responses)))
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_routes_added_later_get_the_errors_too() -> None:
    schema = {
        "paths": {
            "/v1/new": {
                "post": {
                    "security": [{"HTTPBearer": []}],
                    "requestBody": {"content": {"application/json": {}}},
                    "responses": {"200": {"description": "ok"}},
                }
            }
        }
    }
    responses = document_errors(schema)["paths"]["/v1/new"]["post"]["responses"]
    assert {"401", "403", "413", "415", "422", "503"} <= set(responses)
    assert "Retry-After" in responses["503"]["headers"]


# --- against a real server process: what only the HTTP server itself sees --------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``disclosure-audit serve`` on SQLite with a 4 KiB body limit."""
    home: Path = tmp_path_factory.mktemp("edge") / "home"
    port = free_port()
    process = ServerProcess(
        [str(ROOT / ".venv/bin/disclosure-audit"), "serve", "--port", str(port)],
        {"DISCLOSURE_AUDIT_HOME": str(home), "DISCLOSURE_AUDIT_MAX_BODY_BYTES": "4096"},
        port,
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        headers = {name.lower(): value for name, value in headers.items()}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.mark.slow
def test_a_chunked_body_over_the_limit_is_a_413(server: ServerProcess) -> None:
    piece = b"x" * 1500
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(4)) + b"0\r\n\r\n"
    status, headers, body = _exchange(
        server.port,
        b"POST /v1/events:batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks,
    )
    assert status == 413, body
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["type"].endswith("/too-large")
    # Announced with Content-Length, the same answer without reading the body.
    status, _, _ = _exchange(
        server.port,
        b"POST /v1/events:batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999\r\n\r\n",
    )
    assert status == 413


@pytest.mark.slow
@pytest.mark.parametrize("length", [20_000, 65_536, 200_000])
def test_a_long_url_is_a_414_problem_whatever_its_length(
    server: ServerProcess, length: int
) -> None:
    target = b"/v1/access-log?actor_id=" + b"a" * length
    status, headers, body = _exchange(
        server.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert status == 414, body
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert b"aaaa" not in body


@pytest.mark.slow
def test_a_request_the_parser_cannot_read_is_a_400_problem(server: ServerProcess) -> None:
    status, headers, body = _exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["type"].endswith("/malformed-request")


@sqlite_only
@pytest.mark.parametrize(
    "query",
    [
        "/v1/access-log?until=0",
        "/v1/disclosures?since=1767607200",
        "/v1/disclosures?since=2026-W01-1",
        "/v1/records/edge-1/accounting?until=20260101",
        "/v1/records/edge-1?as_of=0.5",
        "/v1/records/edge-1?as_of=1767607200",
        "/v1/records/edge-1?as_of=2026-01-01T00:00:00",
    ],
)
def test_query_dates_are_written_dates_not_numbers(api: Api, query: str) -> None:
    _post(api, json.dumps(example("RecordAccessed")), "application/json")
    problem = _is_problem(api.client.get(query, headers=api.key(Role.COMPLIANCE)), 422)
    name = query.split("?")[1].split("=", maxsplit=1)[0]
    assert problem["errors"][0]["loc"] == ["query", name]


def test_a_body_that_stalls_is_a_408_and_never_reaches_the_app() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    sent: list[dict[str, Any]] = []

    async def stalling_receive() -> dict[str, Any]:
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(60)  # the client never sends the rest
        raise AssertionError("unreachable")

    messages: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    middleware = BodyLimitMiddleware(app, limit=1024, timeout=0.2)
    scope = {"type": "http", "method": "POST", "path": "/v1/events:batch", "headers": []}
    asyncio.run(asyncio.wait_for(middleware(scope, stalling_receive, send), timeout=5))
    assert not reached
    assert messages[0]["status"] == 408
    body = json.loads(messages[1]["body"])
    assert body["type"].endswith("/body-timeout")


@sqlite_only
def test_a_body_that_is_not_utf8_is_a_400_saying_so(api: Api) -> None:
    response = api.client.post(
        "/v1/records/edge-1/events",
        content=b'{"type": "\xff\xfe"}',
        headers={**api.writer(), "Content-Type": "application/json"},
    )
    problem = _is_problem(response, 400)
    assert problem["type"].endswith("/malformed-body")
    assert "UTF-8" in problem["detail"]
