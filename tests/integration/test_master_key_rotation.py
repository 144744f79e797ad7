"""Master-key rotation (issue 14, acceptance 5): with the old key file deleted every record still
reads, an interrupted rotation resumes, the old key opens nothing new, and a service running on
the old key keeps working while the rotation runs.

Each test has a store of its own (its own PostgreSQL database): a rotation moves every tenant of
a store, and the session's shared database belongs to the session's master key.
"""

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.app import create_app
from service.auth import Role
from service.cli import app as cli
from service.container import Services, build_services
from service.settings import Settings
from service.storage.crypto import MasterKey, MasterKeyError, SealedStateError, unwrap_record_key
from service.storage.rotation import RotationStep, rotate_master_key
from service.storage.service_keys import KEK, label
from tests.conftest import ADMIN_URL, _with_database, new_tenant
from tests.factories import example, unique_name


class RotationInterruptedError(Exception):
    """Stands for a crash, a Ctrl-C or a lost connection in the middle of a rotation."""


@pytest.fixture
def settings(store: str, tmp_path: Path) -> Iterator[Settings]:
    """A new store on the old master key ``keys/old.key`` (its own database on PostgreSQL)."""
    keys = tmp_path / "keys"
    if store == "sqlite":
        yield Settings(home=tmp_path / "home", master_key_file=keys / "old.key", _env_file=None)
        return
    name = f"da_rot_{uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield Settings(
        home=tmp_path / "home",
        database_url=_with_database(ADMIN_URL, name),
        master_key_file=keys / "old.key",
        log_key_dir=keys / "log-keys",
        _env_file=None,
    )
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def on_key(settings: Settings, path: Path) -> Settings:
    """The same store, opened with another master key file."""
    return settings.model_copy(update={"master_key_file": path})


@dataclass
class Client:
    """A running service (in-process) and a key of one tenant."""

    services: Services
    http: TestClient
    tenant: str
    headers: dict[str, str]

    def post(self, record_ref: str, body: dict[str, Any], status: int = 201) -> int:
        response = self.http.post(
            f"/v1/records/{record_ref}/events", json=body, headers=self.headers
        )
        assert response.status_code == status, response.text
        return int(response.json().get("position", 0))

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()


@contextmanager
def serving(settings: Settings, tenant: str, token: str | None = None) -> Iterator[Client]:
    """Services and the HTTP API on ``settings``; a new API key unless ``token`` is given."""
    services = build_services(settings, create=False)
    try:
        if token is None:
            _, token = services.keys.create(tenant, {Role.INGEST, Role.COMPLIANCE})
        with TestClient(create_app(settings, services)) as http:
            yield Client(services, http, tenant, {"Authorization": f"Bearer {token}"})
    finally:
        services.close()


@dataclass
class Posted:
    """What a store held before the rotation, to compare with what it reads after."""

    tenant: str
    token: str
    disclosures: dict[str, dict[str, Any]] = field(default_factory=dict)  # record_ref: body
    record_ids: dict[str, UUID] = field(default_factory=dict)
    shredded: str = "shredded-1"
    searched: str = ""  # a recipient searched for, so an audit read names it
    last: int = 0


def populate(settings: Settings, records: int = 5) -> Posted:
    """A store with several records, one of them crypto-shredded, and one audit read."""
    build_services(settings).close()  # creates the store and the old key file
    tenant = new_tenant()
    services = build_services(settings, create=False)
    _, token = services.keys.create(tenant, {Role.INGEST, Role.COMPLIANCE})
    services.close()
    posted = Posted(tenant, token)
    with serving(settings, tenant, token) as client:
        for n in range(records):
            ref = f"rec-{n}"
            body = example("DisclosureMade", recipient={"name": unique_name(), "kind": "attorney"})
            posted.disclosures[ref] = body
            client.post(ref, body)
            posted.last = client.post(ref, example("RecordAccessed"))
        posted.searched = posted.disclosures["rec-1"]["recipient"]["name"]
        shredded_at = client.post(posted.shredded, example("DisclosureMade"))
        # Projected first (min_position waits): the test is about keys, not about a projector
        # that meets a record destroyed before it got to it.
        found = client.get("/v1/disclosures", recipient=posted.searched, min_position=shredded_at)
        assert len(found["items"]) == 1
        assert client.services.audit.shred_record(tenant, posted.shredded)
        for ref in [*posted.disclosures, posted.shredded]:
            posted.record_ids[ref] = client.services.audit.record_id(tenant, ref)
    return posted


def assert_every_record_reads(client: Client, posted: Posted) -> None:
    """What a user of the store would check: nothing became unreadable or different."""
    audit = client.services.audit
    for ref, body in posted.disclosures.items():
        assert audit.record_id(posted.tenant, ref) == posted.record_ids[ref], "record id changed"
        items = client.get(f"/v1/records/{ref}/timeline")["items"]
        assert not any(i["redacted"] for i in items)
        by_id = {i["event_id"]: i for i in items}
        assert by_id[body["event_id"]]["event"]["recipient"]["name"] == body["recipient"]["name"]
        # The same fact posted again is recognised (its content digest is unchanged): 200.
        client.post(ref, body, status=200)
    shredded = client.get(f"/v1/records/{posted.shredded}/timeline")["items"]
    assert shredded
    assert all(i["redacted"] and i["event"] is None for i in shredded)
    found = client.get("/v1/disclosures", recipient=posted.searched, min_position=posted.last)
    assert [i["event_id"] for i in found["items"]] == [posted.disclosures["rec-1"]["event_id"]], (
        "the blind index no longer finds the recipient"
    )
    reads = client.get("/v1/audit-reads")["items"]
    assert any(r["filters"].get("recipient") == posted.searched for r in reads)


def rotate(settings: Settings, new_path: Path, *, batch_size: int = 2, progress: Any = None) -> Any:
    """Run a rotation the way the command does: a process opened on the old key."""
    new = MasterKey.load_or_create(new_path, create=True)
    services = build_services(settings, create=False)
    try:
        audit = services.audit
        return rotate_master_key(
            audit.db, audit.service_keys, audit.keyring, new,
            batch_size=batch_size, progress=progress,
        )  # fmt: skip
    finally:
        services.close()


def assert_old_key_opens_nothing(settings: Settings, old: MasterKey) -> None:
    """No stored key unwraps under the old master key, and a service cannot start with it."""
    services = build_services(settings, create=False)
    try:
        with services.audit.db.transaction(commit=False) as cursor:
            rows = cursor.fetchall(
                "SELECT name, generation, master_id, wrapped FROM da_service_keys"
            )
            record_keys = cursor.fetchall(
                "SELECT record_id, wrapped_key FROM da_record_keys WHERE wrapped_key IS NOT NULL"
            )
    finally:
        services.close()
    assert rows
    assert record_keys
    for row in rows:
        assert row["master_id"] != old.key_id
        with pytest.raises(SealedStateError):
            old.unwrap_key(bytes(row["wrapped"]), label(row["name"], row["generation"]))
    legacy_kek = old.derive(KEK)  # what wrapped every record key before the rotation
    for row in record_keys:
        with pytest.raises(SealedStateError):
            unwrap_record_key(legacy_kek, bytes(row["wrapped_key"]), UUID(str(row["record_id"])))
    restored = settings.master_key_path.parent / "old-restored.key"
    restored.write_bytes(base64.b64encode(old.secret) + b"\n")
    restored.chmod(0o600)
    with pytest.raises(MasterKeyError, match="opens none of this store's keys"):
        build_services(on_key(settings, restored), create=False)


def test_after_a_rotation_with_the_old_key_file_deleted_every_record_still_reads(
    settings: Settings,
) -> None:
    posted = populate(settings)
    old_path = settings.master_key_path
    old = MasterKey.load_or_create(old_path, create=False)
    new_path = old_path.parent / "new.key"

    result = rotate(settings, new_path)

    assert result.rewrapped == len(posted.disclosures)  # the shredded key stays NULL
    assert result.kek_generation == 2
    old_path.unlink()
    new_settings = on_key(settings, new_path)
    with serving(new_settings, posted.tenant, posted.token) as client:
        assert_every_record_reads(client, posted)
        client.post("after-rotation", example("DisclosureMade"))
        assert client.get("/v1/records/after-rotation/timeline")["items"]
    assert_old_key_opens_nothing(new_settings, old)


def test_an_interrupted_rotation_resumes_and_every_record_reads(settings: Settings) -> None:
    posted = populate(settings, records=7)
    new_path = settings.master_key_path.parent / "new.key"
    batches: list[int] = []

    def crash_after_two_batches(step: RotationStep) -> None:
        if step.step == "rewrapped":
            batches.append(step.done)
            if len(batches) == 2:
                raise RotationInterruptedError

    with pytest.raises(RotationInterruptedError):
        rotate(settings, new_path, batch_size=2, progress=crash_after_two_batches)
    assert batches == [2, 4]
    # Half-way, both key files open the store: the service may restart on either meanwhile.
    for key_file in (settings.master_key_path, new_path):
        with serving(on_key(settings, key_file), posted.tenant, posted.token) as client:
            assert_every_record_reads(client, posted)

    result = rotate(settings, new_path, batch_size=2)

    assert result.resumed
    assert result.rewrapped == 3  # what the interrupted run left
    assert result.kek_generation == 2, "the resumed run made no further generation"
    old = MasterKey.load_or_create(settings.master_key_path, create=False)
    settings.master_key_path.unlink()
    new_settings = on_key(settings, new_path)
    with serving(new_settings, posted.tenant, posted.token) as client:
        assert_every_record_reads(client, posted)
    assert_old_key_opens_nothing(new_settings, old)


def test_a_service_on_the_old_key_keeps_writing_while_the_rotation_runs(
    settings: Settings,
) -> None:
    posted = populate(settings, records=4)
    new_path = settings.master_key_path.parent / "new.key"
    during: dict[str, dict[str, Any]] = {}
    # A process that serves nothing during the rotation (and projects nothing: that would
    # load the new generation as it reads the new records' keys).
    quiet = settings.model_copy(update={"projections": "external"})
    with (
        serving(settings, posted.tenant, posted.token) as running,
        serving(quiet, posted.tenant, posted.token) as idle,
    ):
        idle.get("/v1/records/rec-0/timeline")

        def post_a_new_record(step: RotationStep) -> None:
            ref = f"online-{len(during)}"
            during[ref] = example("DisclosureMade")
            running.post(ref, during[ref])

        rotate(settings, new_path, batch_size=1, progress=post_a_new_record)
        assert len(during) >= 6  # after (a), (b), every batch and (d)

        # It holds the newest generation, loaded while the old key still wrapped it.
        running.post("online-after", example("RecordAccessed"))
        # A process that never loaded it cannot: it says so instead of using a retired key.
        refused = idle.http.post(
            "/v1/records/new-on-idle/events", json=example("RecordAccessed"), headers=idle.headers
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"].endswith("/master-key-rotated")

    settings.master_key_path.unlink()
    with serving(on_key(settings, new_path), posted.tenant, posted.token) as client:
        assert_every_record_reads(client, posted)
        for ref, body in during.items():
            items = client.get(f"/v1/records/{ref}/timeline")["items"]
            assert [i["event_id"] for i in items] == [body["event_id"]]
            assert items[0]["event"]["recipient"]["name"] == body["recipient"]["name"]
        assert client.get("/v1/records/online-after/timeline")["items"]


def test_a_store_from_before_stored_keys_keeps_its_keys_and_refuses_a_wrong_master_key(
    settings: Settings, tmp_path: Path
) -> None:
    posted = populate(settings, records=2)
    services = build_services(settings, create=False)
    try:  # as an earlier version left it: no stored service key, no generation column
        with services.audit.db.transaction() as cursor:
            cursor.execute("DELETE FROM da_service_keys")
            cursor.execute("ALTER TABLE da_record_keys DROP COLUMN kek_generation")
    finally:
        services.close()
    wrong = tmp_path / "wrong.key"
    with pytest.raises(MasterKeyError, match="not the key the store was created with"):
        build_services(on_key(settings, wrong), create=True)
    with serving(settings, posted.tenant, posted.token) as client:
        assert_every_record_reads(client, posted)


def _cli(settings: Settings, *args: str, key_file: Path | None = None) -> Any:
    env = {
        "DISCLOSURE_AUDIT_HOME": str(settings.home),
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(key_file or settings.master_key_path),
    }
    if settings.database_url:
        env |= {
            "DISCLOSURE_AUDIT_DATABASE_URL": settings.database_url,
            "DISCLOSURE_AUDIT_LOG_KEY_DIR": str(settings.log_keys_path),
        }
    return CliRunner().invoke(cli, list(args), env=env)


def test_the_command_rotates_says_what_to_do_next_and_refuses_mistakes(
    settings: Settings,
) -> None:
    posted = populate(settings, records=3)
    old_path = settings.master_key_path
    new_path = old_path.parent / "new.key"

    same = _cli(settings, "master-key", "rotate", "--new-key-file", str(old_path))
    assert same.exit_code == 2
    assert "is the master key file in use" in " ".join(same.stderr.split())

    done = _cli(settings, "master-key", "rotate", "--new-key-file", str(new_path), "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["new_key_created"]
    assert not report["resumed"]
    assert report["record_keys_rewrapped"] == 3
    assert report["kek_generation"] == 2
    assert new_path.stat().st_mode & 0o777 == 0o600
    assert report["new_key_id"] == MasterKey.load_or_create(new_path, create=False).key_id

    again = _cli(settings, "master-key", "rotate", "--new-key-file", str(new_path), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["already_rotated"]

    stale = _cli(settings, "keys", "list")  # still configured with the old key
    assert stale.exit_code == 2
    assert "opens none of this store's keys" in " ".join(stale.stderr.split())

    old_path.unlink()
    newer = old_path.parent / "newer.key"
    human = _cli(settings, "master-key", "rotate", "--new-key-file", str(newer), key_file=new_path)
    assert human.exit_code == 0, human.output
    text = " ".join(human.stdout.split())
    assert "3 record keys re-wrapped under key-encryption key generation 3" in text
    assert f"DISCLOSURE_AUDIT_MASTER_KEY_FILE={newer}" in text
    assert "Created the new master key" in " ".join(human.stderr.split())
    new_path.unlink()
    with serving(on_key(settings, newer), posted.tenant, posted.token) as client:
        assert_every_record_reads(client, posted)
