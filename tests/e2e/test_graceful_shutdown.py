"""SIGTERM under load: in-flight requests finish, nothing acknowledged is lost, exit in time."""

import json
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx2 as httpx
import pytest

from domain.record import ClientRecord
from service.auth import Role
from service.container import build_services
from service.settings import Settings
from tests.e2e.server import ROOT, ServerProcess, free_port
from tests.factories import example

pytestmark = [pytest.mark.slow, pytest.mark.faults]

GRACE_SECONDS = 10
TENANT = "sigterm-test"
RECORDS = [f"sigterm-{n}" for n in range(4)]


@dataclass
class Ledger:
    """What clients were told: acknowledged event ids, and when each answer arrived."""

    acknowledged: set[str] = field(default_factory=set)
    answered_at: list[float] = field(default_factory=list)
    refusals: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: httpx.Response, event_ids: list[str]) -> None:
        """Note one answer."""
        with self.lock:
            if response.status_code in (200, 201):
                self.acknowledged.update(event_ids)
                self.answered_at.append(time.monotonic())
            else:
                slug = response.json().get("type", "").rsplit("/", 1)[-1]
                retry = "retry" if response.headers.get("retry-after") else "no-retry"
                self.refusals.add(f"{response.status_code} {slug} {retry}")


def _single_writer(base: str, headers: dict[str, str], n: int, ledger: Ledger) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=GRACE_SECONDS + 10) as http:
        while True:
            body = example("RecordAccessed")
            try:
                response = http.post(f"/v1/records/{RECORDS[n % 2]}/events", json=body)
            except httpx.HTTPError:
                return  # refused or cut after SIGTERM: never acknowledged
            ledger.record(response, [body["event_id"]])


def _batch_writer(base: str, headers: dict[str, str], n: int, ledger: Ledger) -> None:
    # Batches of 1000 take a good part of a second: some are always in flight at SIGTERM.
    with httpx.Client(base_url=base, headers=headers, timeout=GRACE_SECONDS + 10) as http:
        while True:
            events = [
                {**example("RecordAccessed"), "record_ref": RECORDS[2 + (n + i) % 2]}
                for i in range(1000)
            ]
            try:
                response = http.post("/v1/events:batch", json={"events": events})
            except httpx.HTTPError:
                return
            ledger.record(response, [e["event_id"] for e in events])


@pytest.mark.parametrize(("store", "workers"), [("postgres", 2), ("sqlite", 1)])
def test_sigterm_drains_in_flight_requests_and_loses_nothing_acknowledged(
    settings: Settings, workers: int
) -> None:
    services = build_services(settings)
    _, token = services.keys.create(TENANT, {Role.INGEST, Role.COMPLIANCE})
    services.close()
    env = {
        "DISCLOSURE_AUDIT_HOME": str(settings.home),
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path),
        "DISCLOSURE_AUDIT_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "DISCLOSURE_AUDIT_LOG_FORMAT": "json",
    }
    if settings.database_url:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = settings.database_url
    port = free_port()
    command = [str(ROOT / ".venv/bin/disclosure-audit"), "serve", "--port", str(port)]
    server = ServerProcess([*command, "--workers", str(workers)], env, port)
    headers = {"Authorization": f"Bearer {token}"}
    ledger = Ledger()
    clients = [
        threading.Thread(target=_single_writer, args=(server.base, headers, n, ledger))
        for n in range(4)
    ] + [
        threading.Thread(target=_batch_writer, args=(server.base, headers, n, ledger))
        for n in range(3)
    ]
    try:
        server.wait_ready()
        for client in clients:
            client.start()
        deadline = time.monotonic() + 30
        while len(ledger.acknowledged) < 3000:
            assert time.monotonic() < deadline, f"too few writes before SIGTERM: {ledger.refusals}"
            time.sleep(0.05)
        sent_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)  # what docker stop sends to PID 1
        returncode = server.process.wait(timeout=GRACE_SECONDS + 20)
        exited_after = time.monotonic() - sent_at
    finally:
        server.kill()
        for client in clients:
            if client.ident is not None:
                client.join(timeout=GRACE_SECONDS + 20)

    # A single uvicorn process re-raises SIGTERM once it has shut down cleanly (exit 143 in a
    # container); the multi-worker supervisor exits 0. The log lines below prove the cleanliness.
    assert returncode in (0, -signal.SIGTERM), "\n".join(server.lines[-20:])
    assert exited_after < GRACE_SECONDS, f"exit took {exited_after:.1f}s"
    # A refusal is not an acknowledgement, so it cannot lose anything; it must be a proper one.
    assert all(r.startswith("503 ") and r.endswith(" retry") for r in ledger.refusals), (
        f"answers other than 2xx and 503 + Retry-After: {ledger.refusals}"
    )
    drained = [t for t in ledger.answered_at if t > sent_at]
    print(  # the margins, for whoever reads the test log (pytest -s)
        f"SIGTERM: exit after {exited_after:.2f}s, {len(drained)} answers after the signal, "
        f"{len(ledger.acknowledged)} events acknowledged"
    )
    assert drained, "no request in flight at SIGTERM was answered: they were cut, not drained"
    logged = [json.loads(line) for line in server.lines if line.startswith("{")]
    messages = [entry["message"] for entry in logged]
    lifecycle = [e["message"] for e in logged if e["logger"] != "disclosure_audit.access"]
    assert messages.count("Application shutdown complete.") == workers, lifecycle
    assert not [m for m in messages if "timeout graceful shutdown exceeded" in m]

    services = build_services(settings)
    try:
        stored = {
            str(item.event.fact.event_id)
            for record_ref in RECORDS
            for item in services.audit.read_record(TENANT, record_ref)
            if isinstance(item.event, ClientRecord.FactRecorded)
        }
    finally:
        services.close()
    lost = ledger.acknowledged - stored
    assert not lost, f"{len(lost)} of {len(ledger.acknowledged)} acknowledged events lost"
