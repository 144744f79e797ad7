"""Export bundles: safe to download at once, private on disk, and gone after their retention."""

import io
import signal
import stat
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import Role
from service.container import Services, build_services
from service.integrity.jobs import BundleStore, ExportJobs
from service.settings import Settings
from service.verify import verify_bundle
from tests.conftest import Api
from tests.e2e.server import ROOT, ServerProcess, free_port
from tests.factories import example


def _post(client: TestClient, headers: dict[str, str], n: int, ref: str) -> None:
    for _ in range(n):
        body = example("RecordAccessed")
        response = client.post(f"/v1/records/{ref}/events", json=body, headers=headers)
        assert response.status_code == 201, response.text


def _export(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    started = client.post("/v1/exports", json={}, headers=headers)
    assert started.status_code == 202, started.text
    export_id = started.json()["export_id"]
    for _ in range(200):
        status: dict[str, Any] = client.get(f"/v1/exports/{export_id}", headers=headers).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["status"] == "done", status
    return status


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_six_concurrent_first_downloads_all_get_the_same_complete_bundle(
    api: Api, tmp_path: Path
) -> None:
    _post(api.client, api.writer(), 5, "rec-dl")
    regulator = api.key(Role.REGULATOR)
    export_id = _export(api.client, regulator)["export_id"]
    start = threading.Barrier(6)

    def download(_: int) -> tuple[int, bytes]:
        start.wait()
        response = api.client.get(f"/v1/exports/{export_id}/bundle", headers=regulator)
        return response.status_code, response.content

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(download, range(6)))
    assert [status for status, _ in results] == [200] * 6
    assert len({content for _, content in results}) == 1, "every download has the same bytes"
    keys = api.client.get("/v1/log/public-key", headers=regulator).text
    for index, (_, content) in enumerate(results):
        target = tmp_path / str(index)
        with tarfile.open(fileobj=io.BytesIO(content)) as archive:  # a truncated one raises
            archive.extractall(target, filter="data")
        result = verify_bundle(target / f"export-{export_id}", keys)
        assert (result.events, result.full) == (6, True)  # the registration and 5 facts


def test_bundles_are_written_for_the_service_user_alone(api: Api) -> None:
    _post(api.client, api.writer(), 2, "rec-perm")
    regulator = api.key(Role.REGULATOR)
    export_id = _export(api.client, regulator)["export_id"]
    folder = api.services.settings.exports_path
    assert _mode(folder) == 0o700
    archive = folder / f"{export_id}.tar.gz"
    assert _mode(archive) == 0o600
    # Only the packed archive stays: no plaintext directory or temporary file beside it.
    assert [p.name for p in folder.iterdir()] == [archive.name]
    with tarfile.open(archive) as packed:
        modes = {member.name: (member.isdir(), member.mode) for member in packed.getmembers()}
    assert modes[f"export-{export_id}"] == (True, 0o700)
    files = [mode for is_dir, mode in modes.values() if not is_dir]
    assert files
    assert set(files) == {0o600}


def test_a_folder_left_too_open_is_tightened(api: Api) -> None:
    folder = api.services.settings.exports_path
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    _post(api.client, api.writer(), 1, "rec-open")
    _export(api.client, api.key(Role.REGULATOR))
    assert _mode(folder) == 0o700


def _backdate(services: Services, export_id: str, hours: float) -> None:
    with services.audit.db.transaction() as cursor:
        cursor.execute(
            "UPDATE da_exports SET updated_at = %s WHERE export_id = %s",
            (datetime.now(UTC) - timedelta(hours=hours), export_id),
        )


def test_an_expired_bundle_is_deleted_and_its_download_answers_410(api: Api) -> None:
    _post(api.client, api.writer(), 2, "rec-old")
    regulator = api.key(Role.REGULATOR)
    done = _export(api.client, regulator)
    export_id = done["export_id"]
    expires_at = datetime.fromisoformat(done["expires_at"])
    assert timedelta(hours=23.9) < expires_at - datetime.now(UTC) <= timedelta(hours=24)
    archive = api.services.settings.exports_path / f"{export_id}.tar.gz"
    assert api.client.get(f"/v1/exports/{export_id}/bundle", headers=regulator).status_code == 200

    _backdate(api.services, export_id, 25)  # made 25 hours ago; the default retention is 24
    gone = api.client.get(f"/v1/exports/{export_id}/bundle", headers=regulator)
    assert gone.status_code == 410
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert "retention" in gone.json()["detail"]
    assert not archive.exists()
    status = api.client.get(f"/v1/exports/{export_id}", headers=regulator).json()
    assert status["status"] == "expired"
    assert status["expires_at"] is None
    again = api.client.get(f"/v1/exports/{export_id}/bundle", headers=regulator)
    assert again.status_code == 410
    other = api.key(Role.REGULATOR, tenant=api.tenant + "-x")
    assert api.client.get(f"/v1/exports/{export_id}/bundle", headers=other).status_code == 404


def test_the_janitor_deletes_bundles_with_no_request_asking(
    settings: Settings, services: Services
) -> None:
    # A retention of two seconds: the janitor sweeps every second.
    short = settings.model_copy(update={"export_retention_hours": 2 / 3600})
    own = build_services(short)
    tenant = f"t-{uuid4().hex[:12]}"
    try:
        with TestClient(create_app(short, own)) as client:
            _, token = own.keys.create(tenant, {Role.INGEST, Role.REGULATOR})
            headers = {"Authorization": f"Bearer {token}"}
            _post(client, headers, 1, "rec-brief")
            export_id = _export(client, headers)["export_id"]
            archive = short.exports_path / f"{export_id}.tar.gz"
            deadline = time.monotonic() + 20
            while archive.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not archive.exists(), "the janitor removed the bundle by itself"
            status = ExportJobs(own.audit.db).find(UUID(export_id), tenant)
            assert status is not None
            assert status.status == "expired"
    finally:
        own.close()


def test_a_build_that_a_crash_interrupted_is_failed_and_swept(api: Api) -> None:
    jobs = ExportJobs(api.services.audit.db, timedelta(hours=24))
    bundles = BundleStore(api.services.settings.exports_path)
    stuck, fresh = uuid4(), uuid4()
    for export_id in (stuck, fresh):
        jobs.create(export_id, api.tenant)
        jobs.update(export_id, "running")
        bundles.directory(export_id).mkdir()  # as write_bundle does, then the server died
        (bundles.directory(export_id) / "events.ndjson").write_text("{}\n")
    _backdate(api.services, str(stuck), 30)
    bundles.sweep(jobs, datetime.now(UTC))
    assert not bundles.directory(stuck).exists()
    assert bundles.directory(fresh).exists(), "a build still in progress is left alone"
    failed = jobs.find(stuck, api.tenant)
    assert failed is not None
    assert (failed.status, failed.detail) == ("failed", "interrupted")


@pytest.mark.slow
def test_a_served_app_gives_concurrent_downloads_one_bundle_then_deletes_it(
    settings: Settings,
) -> None:
    # The real server, two worker processes: the build and each download may land on either.
    env = {
        "DISCLOSURE_AUDIT_HOME": str(settings.home),
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path),
        "DISCLOSURE_AUDIT_EXPORT_RETENTION_HOURS": str(10 / 3600),
    }
    if settings.database_url:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = settings.database_url
    services = build_services(settings)
    tenant = f"t-{uuid4().hex[:12]}"
    _, token = services.keys.create(tenant, {Role.INGEST, Role.REGULATOR})
    services.close()
    headers = {"Authorization": f"Bearer {token}"}
    port = free_port()
    server = ServerProcess(
        [str(ROOT / ".venv/bin/disclosure-audit"), "serve", "--port", str(port), "--workers", "2"],
        env,
        port,
    )
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base, headers=headers, timeout=30) as http:
            for _ in range(3):
                posted = http.post("/v1/records/rec-srv/events", json=example("RecordAccessed"))
                assert posted.status_code == 201, posted.text
            export_id = http.post("/v1/exports", json={}).json()["export_id"]
            deadline = time.monotonic() + 30
            while http.get(f"/v1/exports/{export_id}").json()["status"] != "done":
                assert time.monotonic() < deadline, "the export never finished"
                time.sleep(0.1)
        start = threading.Barrier(6)

        def download(_: int) -> tuple[int, bytes]:
            with httpx.Client(base_url=server.base, headers=headers, timeout=30) as own:
                start.wait()
                response = own.get(f"/v1/exports/{export_id}/bundle")
                return response.status_code, response.content

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(download, range(6)))
        assert [status for status, _ in results] == [200] * 6
        assert len({content for _, content in results}) == 1
        with tarfile.open(fileobj=io.BytesIO(results[0][1])) as archive:
            names = archive.getnames()
        assert f"export-{export_id}/events.ndjson" in names

        # No request asks: the janitor of a worker deletes the bundle once its 10 s are over.
        archive_path = settings.home / "exports" / f"{export_id}.tar.gz"
        deadline = time.monotonic() + 60
        while archive_path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not archive_path.exists()
        gone = httpx.get(f"{server.base}/v1/exports/{export_id}/bundle", headers=headers)
        assert gone.status_code == 410
    finally:
        server.kill(signal.SIGTERM)
