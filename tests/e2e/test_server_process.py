"""The real server process: the README quick start, and restarts that lose nothing."""

import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import httpx2 as httpx
import pytest

from service.auth import Role
from service.container import build_services
from service.settings import Settings
from tests.e2e.server import ROOT, ServerProcess, free_port
from tests.factories import example

pytestmark = pytest.mark.slow


def test_the_readme_quick_start_serves_the_demo_and_takes_the_example_event(
    tmp_path: Path,
) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./scripts/start" in readme.split("##")[0], "the quick start opens the README"
    port = free_port()
    server = ServerProcess(
        ["./scripts/start", "--port", str(port)],
        {"DISCLOSURE_AUDIT_HOME": str(tmp_path / "home")},
        port,
    )
    try:
        server.wait_ready()
        keys = [line for line in server.lines if re.fullmatch(r"da_[0-9a-f]{16}_\S{43}", line)]
        assert keys, "the start command prints a ready API key:\n" + "\n".join(server.lines)
        assert any(f"http://127.0.0.1:{port}" in line for line in server.lines)
        curl = shutil.which("curl")
        assert curl, "curl is needed for this test (apt-get install curl)"
        answer = subprocess.run(
            [
                curl,
                "-s",
                "-w",
                "\n%{http_code}",
                "-X",
                "POST",
                "-H",
                f"Authorization: Bearer {keys[-1]}",
                "-H",
                "Content-Type: application/json",
                "--data",
                "@docs/example-event.json",
                f"{server.base}/v1/records/jr-2041/events",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        body, status = answer.stdout.rsplit("\n", 1)
        assert status == "201", answer.stdout
        receipt = json.loads(body)
        example_event = json.loads((ROOT / "docs/example-event.json").read_text())
        assert receipt["event_id"] == example_event["event_id"]
        assert receipt["record_ref"] == "jr-2041"
        assert receipt["position"] > 1, "the demo record already had events"
        demo = httpx.get(
            f"{server.base}/v1/records/cr-1187/timeline",
            headers={"Authorization": f"Bearer {keys[-1]}"},
        )
        assert demo.status_code == 200
        assert len(demo.json()["items"]) >= 3
    finally:
        server.kill()


def _serve(settings_env: dict[str, str], port: int) -> ServerProcess:
    server = ServerProcess(
        [str(ROOT / ".venv/bin/disclosure-audit"), "serve", "--port", str(port)],
        settings_env,
        port,
    )
    server.wait_ready()
    return server


@pytest.mark.faults
def test_a_killed_server_loses_nothing_it_acknowledged(settings: Settings) -> None:
    env = {
        "DISCLOSURE_AUDIT_HOME": str(settings.home),
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path),
    }
    if settings.database_url:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = settings.database_url
    services = build_services(settings)  # creates the master key and tables; makes a key
    tenant = "restart-test"
    _, token = services.keys.create(tenant, {Role.INGEST, Role.COMPLIANCE})
    services.close()
    headers = {"Authorization": f"Bearer {token}"}

    port = free_port()
    server = _serve(env, port)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.base, headers=headers, timeout=10) as http:
            while not stop.is_set():
                body = example("RecordAccessed")
                try:
                    response = http.post(f"/v1/records/restart-{n % 3}/events", json=body)
                except httpx.HTTPError:
                    return  # the server died under us: this event was never acknowledged
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(body["event_id"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 150:
        threading.Event().wait(0.05)
    server.kill()  # SIGKILL mid-stream: no chance to flush anything
    stop.set()
    for thread in threads:
        thread.join()

    server = _serve(env, port)
    try:
        stored: set[str] = set()
        for n in range(3):
            page = httpx.get(
                f"{server.base}/v1/records/restart-{n}/timeline",
                headers=headers,
                params={"limit": 1000},
            )
            assert page.status_code == 200
            stored |= {item["event_id"] for item in page.json()["items"]}
        assert set(acknowledged) <= stored, (
            f"{len(set(acknowledged) - stored)} acknowledged events lost"
        )
    finally:
        server.kill()
