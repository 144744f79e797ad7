"""schemathesis `--checks all` against the live service, on each store: the contract holds.

The real server process answers (as a client meets it: uvicorn, middleware, the store); the
fuzzer reads the OpenAPI document the server serves, so a route that is not documented as it
behaves fails here. schemathesis.toml says which statuses two checks also expect, and why.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from service.auth import Role
from service.container import build_services
from service.settings import Settings
from tests.conftest import new_tenant
from tests.e2e.server import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.slow

# Bounded so that one store's run takes about a minute on two busy cores: the coverage phase
# adds its own boundary cases for every parameter on top of these examples.
MAX_EXAMPLES = 25
SEED = 20260  # a fixed seed: the same cases every run, so a red run reproduces


def test_schemathesis_finds_no_failure_on_the_live_app(settings: Settings, tmp_path: Path) -> None:
    services = build_services(settings)  # creates the store and master key the server will use
    try:
        _, token = services.keys.create(new_tenant(), set(Role), "contract fuzz")
    finally:
        services.close()
    env = {
        "DISCLOSURE_AUDIT_HOME": str(settings.home),
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path),
        "DISCLOSURE_AUDIT_LOG_KEY_DIR": str(settings.log_keys_path),
        "DISCLOSURE_AUDIT_READ_WAIT_SECONDS": "1",
        "DISCLOSURE_AUDIT_LOG_LEVEL": "WARNING",
    }
    if settings.database_url:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = settings.database_url
    port = free_port()
    server = ServerProcess(
        [str(ROOT / ".venv/bin/disclosure-audit"), "serve", "--port", str(port)], env, port
    )
    try:
        server.wait_ready()
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "--no-color",
                "--config-file",
                str(ROOT / "schemathesis.toml"),
                "run",
                f"{server.base}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "1",
                "--continue-on-failure",
                "--request-timeout",
                "15",
                "--header",
                f"Authorization: Bearer {token}",
            ],
            cwd=tmp_path,  # whatever schemathesis writes stays out of the repository
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        server.kill()
    report = run.stdout + run.stderr
    print(report)  # the per-check summary, in the test log for the issue note
    assert run.returncode == 0, report[-20000:]
    assert "Tested: " in report, "schemathesis tested no operation"
    assert "No issues found" in report or " passed" in report, report[-2000:]
