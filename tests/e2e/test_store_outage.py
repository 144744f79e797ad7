"""PostgreSQL goes down under write load and comes back: 503s only, nothing acknowledged lost.

The database is a private cluster, stopped like a crash (``pg_ctl -m immediate``) while four
clients write through a real two-worker server, and started again a few seconds later.
"""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from domain.record import ClientRecord
from service.auth import Role
from service.container import build_services
from service.settings import Settings
from tests.e2e.private_postgres import PrivatePostgres
from tests.e2e.server import ROOT, ServerProcess, free_port
from tests.factories import example

pytestmark = [pytest.mark.slow, pytest.mark.faults]

TENANT = "outage-test"
WRITERS = 4
OUTAGE_SECONDS = 6.0
RECOVERY_LIMIT_SECONDS = 5.0  # writes must succeed again within this of the database's return
AFTER_SECONDS = 8.0


@dataclass(frozen=True)
class Attempt:
    """One POST as the client saw it."""

    event_id: str
    record_ref: str
    sent: float
    answered: float
    status: int | str  # an HTTP status, or the name of a transport error
    retry_after: str | None
    problem: str | None


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL, removed afterwards whatever happens."""
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


def _writer(base: str, token: str, n: int, stop: threading.Event, out: list[Attempt]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=15) as http:
        while not stop.is_set():
            record_ref = f"outage-{n}"
            body = example("RecordAccessed")
            sent = time.monotonic()
            retry_after = problem = None
            try:
                response = http.post(f"/v1/records/{record_ref}/events", json=body)
                status: int | str = response.status_code
                retry_after = response.headers.get("retry-after")
                if response.status_code >= 400:
                    problem = response.json().get("type", "").rsplit("/", 1)[-1]
            except httpx.HTTPError as error:
                status = type(error).__name__
            out.append(
                Attempt(
                    body["event_id"],
                    record_ref,
                    sent,
                    time.monotonic(),
                    status,
                    retry_after,
                    problem,
                )
            )
            if status == 503:
                time.sleep(0.05)  # a polite client backs off a little (Retry-After is advisory)


def _health(base: str) -> tuple[int, int, dict[str, object], float]:
    started = time.monotonic()
    live = httpx.get(base + "/livez", timeout=10).status_code
    ready = httpx.get(base + "/readyz", timeout=10)
    return live, ready.status_code, ready.json(), time.monotonic() - started


def test_writes_during_a_database_outage_get_503_and_recover_by_themselves(
    cluster: PrivatePostgres, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = Settings(
        home=home, database_url=cluster.url, master_key_file=home / "master.key", _env_file=None
    )
    services = build_services(settings)
    _, token = services.keys.create(TENANT, {Role.INGEST, Role.COMPLIANCE})
    services.close()
    port = free_port()
    server = ServerProcess(
        [str(ROOT / ".venv/bin/disclosure-audit"), "serve", "--port", str(port), "--workers", "2"],
        {
            "DISCLOSURE_AUDIT_HOME": str(home),
            "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(home / "master.key"),
            "DISCLOSURE_AUDIT_DATABASE_URL": cluster.url,
        },
        port,
    )
    attempts: list[Attempt] = []
    stop = threading.Event()
    writers = [
        threading.Thread(target=_writer, args=(server.base, token, n, stop, attempts))
        for n in range(WRITERS)
    ]
    try:
        server.wait_ready()
        assert _health(server.base)[:2] == (200, 200)
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 20
        while sum(a.status == 201 for a in attempts) < 100:
            assert time.monotonic() < deadline, (
                f"no steady writes before the outage: {attempts[-5:]}"
            )
            time.sleep(0.05)

        cluster.stop(mode="immediate")  # like a crash: no chance to flush or say goodbye
        down_at = time.monotonic()
        time.sleep(1.5)
        live, ready, body, took = _health(server.base)
        time.sleep(max(0.0, down_at + OUTAGE_SECONDS - time.monotonic()))
        cluster.start()
        up_at = time.monotonic()
        time.sleep(AFTER_SECONDS)
    finally:
        stop.set()
        for writer in writers:
            if writer.ident is not None:
                writer.join(timeout=30)
        server.kill(15)

    # The outage was visible to health checks, quickly, and without internals.
    assert live == 200, "the process stays alive while its database is down"
    assert ready == 503
    assert body["checks"]["store"] == "unreachable"  # type: ignore[index]
    assert took < 5, f"/readyz took {took:.1f}s during the outage"

    statuses = {a.status for a in attempts}
    assert statuses <= {200, 201, 503}, f"only 2xx and 503, never another 5xx or a hang: {statuses}"
    failed = [a for a in attempts if a.status == 503]
    assert failed, "the outage produced no 503: the test did not test anything"
    assert all(a.retry_after for a in failed), "every 503 says when to retry"
    assert {a.problem for a in failed} <= {"store-unavailable", "contention"}
    slowest = max(a.answered - a.sent for a in attempts)
    assert slowest < 6, f"a request took {slowest:.1f}s: requests must not hang on a dead database"
    during = [a for a in attempts if down_at + 1 < a.sent < up_at]
    assert during, "no request was sent while the database was down"
    assert max(a.answered - a.sent for a in during) < 2.5, "503s come back fast"

    recovered = [a for a in attempts if a.sent >= up_at and a.status in (200, 201)]
    assert recovered, "no write succeeded after the database came back"
    first = min(a.answered for a in recovered) - up_at
    assert first < RECOVERY_LIMIT_SECONDS, f"first successful write {first:.1f}s after recovery"
    late = [a for a in attempts if a.sent >= up_at + RECOVERY_LIMIT_SECONDS]
    assert late, "no request was sent after the recovery window"
    assert all(a.status in (200, 201) for a in late), "writes still fail after recovery"

    print(  # the margins, for whoever reads the test log (pytest -s)
        f"outage: {len(failed)} x 503, slowest {slowest:.2f}s, 503s during the outage within "
        f"{max(a.answered - a.sent for a in during):.2f}s, first write {first:.2f}s after recovery"
    )

    # Nothing acknowledged was lost: every 2xx event is in the store after the crash.
    acknowledged = {a.event_id for a in attempts if a.status in (200, 201)}
    services = build_services(settings)
    try:
        stored = {
            str(item.event.fact.event_id)
            for n in range(WRITERS)
            for item in services.audit.read_record(TENANT, f"outage-{n}")
            if isinstance(item.event, ClientRecord.FactRecorded)
        }
    finally:
        services.close()
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged events lost"
