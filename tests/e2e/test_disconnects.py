"""Clients that hang up right after sending, then retry: every fact stored exactly once.

A clinical system on a flaky network sends a POST and loses the connection before the answer
comes. It cannot know whether the fact was stored, so it retries with the same body. Through the
group-commit path the abandoned request still commits (or not) as a whole, and the retry answers
201 (not stored yet) or 200 with the original receipt (stored): never a 500, never a second copy.
"""

import json
import socket
import threading

import httpx2 as httpx
import pytest

from service.auth import Role
from service.container import build_services
from service.settings import Settings
from tests.e2e.server import ROOT, ServerProcess, free_port
from tests.factories import example

pytestmark = [pytest.mark.slow, pytest.mark.faults]

CLIENTS = 8
EACH = 25


def _send_and_hang_up(port: int, token: str, record: str, body: dict[str, object]) -> None:
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/records/{record}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + data)
        # Close at once with a reset, not a polite FIN: the answer has nowhere to go.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_clients_that_disconnect_after_sending_and_retry_store_each_fact_once(
    settings: Settings,
) -> None:
    env = {
        "DISCLOSURE_AUDIT_HOME": str(settings.home),
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path),
        "DISCLOSURE_AUDIT_WORKERS": "2" if settings.database_url else "1",
    }
    if settings.database_url:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = settings.database_url
    services = build_services(settings)
    tenant = "disconnect-test"
    _, token = services.keys.create(tenant, {Role.INGEST, Role.COMPLIANCE})
    services.close()
    port = free_port()
    server = ServerProcess(
        [str(ROOT / ".venv/bin/disclosure-audit"), "serve", "--port", str(port)], env, port
    )
    answers: list[int] = []
    sent: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base, headers=headers, timeout=30) as http:
            for i in range(EACH):
                record = f"dc-{(n + i) % 5}"
                body = example("RecordAccessed")
                _send_and_hang_up(port, token, record, body)
                retry = http.post(f"/v1/records/{record}/events", json=body)
                with lock:
                    answers.append(retry.status_code)
                    sent.append(str(body["event_id"]))

    try:
        server.wait_ready()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(answers) == CLIENTS * EACH
        assert set(answers) <= {200, 201}, f"answers other than 200/201: {sorted(set(answers))}"
        # Some abandoned requests committed before their retry came: it found them (200).
        assert 200 in answers, "no retry ever found its abandoned request stored"
        headers = {"Authorization": f"Bearer {token}"}
        stored: list[str] = []
        for record in {f"dc-{k}" for k in range(5)}:
            page = httpx.get(
                f"{server.base}/v1/records/{record}/timeline?limit=1000",
                headers=headers,
                timeout=30,
            )
            assert page.status_code == 200, page.text
            stored += [item["event_id"] for item in page.json()["items"] if item.get("event_id")]
        assert sorted(stored) == sorted(sent), "each fact stored exactly once"
        assert not [line for line in server.lines if '"status": 500' in line or " 500 " in line]
    finally:
        server.kill()
