"""Destroying records at the end of their retention (issue 14, acceptance 1-3), both stores.

Each record is built from the minimal bodies a clinical system sends (tests/factories.py), with
dates far enough in the past that its retention has ended under the cited rules, or not.
"""

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from typer.testing import CliRunner

from domain.facts import Fact
from domain.record import ClientRecord
from service.app import create_app
from service.auth import Role
from service.cli import app as cli
from service.container import Services, build_services
from service.integrity.export import ExportScope, write_bundle
from service.settings import Settings
from service.storage.sql import as_uuid
from service.verify import verify_bundle
from tests.conftest import Api, cli_env
from tests.factories import example, unique_name

OLD = "2012-05-04T10:00:00Z"  # every record below last saw its therapist in May 2012


def _opened(**overrides: Any) -> dict[str, Any]:
    given = {
        "occurred_at": "2010-01-04T09:00:00Z",
        "jurisdiction": "US-CA",
        "client_birth_date": "1980-02-01",
    }
    return example("RecordOpened", **(given | overrides))


def _post(api: Api, headers: dict[str, str], ref: str, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        response = api.client.post(f"/v1/records/{ref}/events", json=body, headers=headers)
        assert response.status_code == 201, response.text


def _old_record(api: Api, headers: dict[str, str], ref: str, *extra: dict[str, Any]) -> str:
    """A CA adult's record last served in 2012 (kept until 2019: B&P 4980.49), with a
    disclosure to a uniquely named recipient; the recipient's name."""
    recipient = unique_name("Recipient")
    _post(
        api,
        headers,
        ref,
        _opened(),
        example("RecordAccessed", occurred_at=OLD),
        example(
            "DisclosureMade",
            occurred_at="2012-05-05T10:00:00Z",
            recipient={"name": recipient, "kind": "attorney"},
        ),
        *extra,
    )
    return recipient


def _refs(prefix: str) -> dict[str, str]:
    tag = unique_name("").replace(" ", "").lower()
    return {name: f"{prefix}-{name}-{tag}" for name in ("due", "held", "demand", "young", "kid")}


@pytest.fixture
def admin(api: Api) -> dict[str, str]:
    return api.key(Role.ADMIN, Role.COMPLIANCE)


def _records_under_every_rule(api: Api, headers: dict[str, str]) -> dict[str, str]:
    refs = _refs("r")
    _old_record(api, headers, refs["due"])
    _old_record(
        api, headers, refs["held"], example("LegalHoldPlaced", hold_id="h-1", reason="litigation")
    )
    _old_record(
        api, headers, refs["demand"], example("LegalDemandReceived", occurred_at=OLD)
    )  # never answered: an implicit hold
    _post(api, headers, refs["young"], _opened(), example("RecordAccessed"))  # served in 2026
    # A minor in CA: born 2000, last seen 2012: kept 7 years after turning 18 (until 2025-02-01).
    _post(
        api,
        headers,
        refs["kid"],
        _opened(client_birth_date="2000-02-01"),
        example("RecordAccessed", occurred_at=OLD),
    )
    return refs


def test_only_due_records_are_destroyed_and_the_others_say_why(
    api: Api, admin: dict[str, str]
) -> None:
    refs = _records_under_every_rule(api, api.writer())
    status = api.client.get(f"/v1/records/{refs['held']}", headers=admin).json()["retention"]
    assert status["status"] == "blocked"
    assert status["keep_until"] == "2019-05-04"  # 7 years from the last service (B&P 4980.49)
    assert [b["kind"] for b in status["blocks"]] == ["legal_hold"]
    young = api.client.get(f"/v1/records/{refs['young']}", headers=admin).json()["retention"]
    assert young["status"] == "kept"
    assert young["keep_until"] > "2032-12-31"  # served in 2026: 7 years on
    # The minimal RecordOpened a clinical system sends (no birth date): never due on its own.
    bare = refs["due"] + "-bare"
    _post(api, api.writer(), bare,
          example("RecordOpened", occurred_at="2010-01-04T09:00:00Z", jurisdiction="US-CA"),
          example("RecordAccessed", occurred_at=OLD))  # fmt: skip
    refs["bare"] = bare
    expected = {"held": "legal_hold", "demand": "open_demand", "young": "not_yet_due",
                "bare": "birth_date_unknown"}  # fmt: skip
    for name, kind in expected.items():
        refused = api.client.post(f"/v1/records/{refs[name]}/destruction", headers=admin)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert kind in [e["type"] for e in refused.json()["errors"]], refused.json()
        assert refused.json()["errors"][0]["msg"]  # says what stops it
    intruder = api.key(Role.ADMIN, tenant=api.tenant + "-other")
    elsewhere = api.client.post(f"/v1/records/{refs['due']}/destruction", headers=intruder)
    assert elsewhere.status_code == 404, "another tenant's admin cannot reach the record"
    ingest_only = api.key(Role.INGEST, Role.COMPLIANCE)
    denied = api.client.post(f"/v1/records/{refs['due']}/destruction", headers=ingest_only)
    assert denied.status_code == 403
    dry = api.client.post(
        f"/v1/records/{refs['due']}/destruction", json={"dry_run": True}, headers=admin
    )
    assert dry.status_code == 200
    assert dry.json()["destroyed"] is False
    assert dry.json()["retention"]["status"] == "due"
    done = api.client.post(f"/v1/records/{refs['due']}/destruction", headers=admin)
    assert done.status_code == 201, done.text
    assert done.json()["retention"]["status"] == "destroyed"
    again = api.client.post(f"/v1/records/{refs['due']}/destruction", headers=admin)
    assert again.status_code == 200
    assert again.json()["destroyed"] is True
    # The others are untouched: still readable in full.
    timeline = api.client.get(f"/v1/records/{refs['held']}/timeline", headers=admin).json()
    assert not any(item["redacted"] for item in timeline["items"])
    # The destroyed record takes no new facts.
    late = api.client.post(
        f"/v1/records/{refs['due']}/events", json=example("RecordAccessed"), headers=api.writer()
    )
    assert late.status_code == 409
    assert late.json()["type"].endswith("/record-erased")


def test_the_dry_run_lists_exactly_the_due_records_and_the_command_destroys_them(
    api: Api,
) -> None:
    refs = _records_under_every_rule(api, api.writer())
    env = cli_env(api.services.settings)
    runner = CliRunner()
    dry = runner.invoke(cli, ["records", "destroy", "--tenant", api.tenant, "--dry-run", "--json"],
                        env=env)  # fmt: skip
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert sorted(d["record_ref"] for d in plan["due"]) == sorted([refs["due"], refs["kid"]])
    kid = next(d for d in plan["due"] if d["record_ref"] == refs["kid"])
    assert kid["rule"] == "minor"
    assert kid["keep_until"] == "2025-02-01"  # 18th birthday + 7 years (B&P 4980.49)
    assert "4980.49" in kid["citation"]
    assert plan["blocked_count"] == 2
    assert plan["kept_count"] == 1
    human = runner.invoke(cli, ["records", "destroy", "--tenant", api.tenant, "--dry-run"],
                          env=env)  # fmt: skip
    assert human.exit_code == 0
    assert "2 records" in " ".join(human.stdout.split())
    assert "Nothing was changed" in " ".join(human.stdout.split())
    unconfirmed = runner.invoke(cli, ["records", "destroy", "--tenant", api.tenant], env=env)
    assert unconfirmed.exit_code != 0
    assert "--yes" in unconfirmed.output
    admin = api.key(Role.COMPLIANCE)
    before = api.client.get(f"/v1/records/{refs['kid']}", headers=admin).json()["retention"]
    assert before["status"] == "due", "declining to confirm changed nothing"
    done = runner.invoke(cli, ["records", "destroy", "--tenant", api.tenant, "--yes", "--json"],
                         env=env)  # fmt: skip
    assert done.exit_code == 0, done.output
    destroyed = json.loads(done.stdout)["destroyed"]
    assert sorted(d["record_ref"] for d in destroyed) == sorted([refs["due"], refs["kid"]])
    for name in ("due", "kid"):
        status = api.client.get(f"/v1/records/{refs[name]}", headers=admin).json()
        assert status["retention"]["status"] == "destroyed"
    rerun = runner.invoke(cli, ["records", "destroy", "--tenant", api.tenant, "--dry-run",
                                "--json"], env=env)  # fmt: skip
    assert json.loads(rerun.stdout)["due"] == []
    assert json.loads(rerun.stdout)["destroyed_count"] == 2


# Acceptance 2: nothing personal of a destroyed record is left anywhere ---------------------


def _raw_tables(settings: Settings) -> Iterator[bytes]:
    """Every byte the store holds, table by table (SQLite files, or every PostgreSQL row)."""
    if settings.database_url is None:
        for path in sorted(Path(settings.home).glob("audit.sqlite3*")):
            yield path.read_bytes()
        return
    with psycopg.connect(settings.database_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        for (table,) in tables:
            for (row,) in conn.execute(f'SELECT t::text FROM "{table}" t'):  # noqa: S608
                yield row.encode()


def _decrypted(services: Services, tenant: str) -> Iterator[str]:
    """Everything of the tenant the master key can still open: events, snapshots, leaves,
    judgments, read-model rows, self-audit filters."""
    audit = services.audit
    for notification in audit.notifications(1, 10**9):
        yield audit.to_event(notification).model_dump_json()
    for rid in audit.tenant_log.records(tenant):
        if audit.snapshots is not None:
            for snapshot in audit.snapshots.get(rid):
                yield cast(ClientRecord.Event, snapshot).model_dump_json()
    for entry in services.log.entries(tenant, audit.last_position(tenant)):
        if entry.data is not None:
            yield entry.data.decode()
        if entry.receipt is not None:
            judgment = audit.open_judgment(entry.record_id, entry.version, entry.receipt)
            yield json.dumps(judgment)
    with audit.db.transaction(commit=False) as cursor:
        rows = cursor.fetchall(
            "SELECT record_id, sealed FROM pv_facts WHERE tenant_id = %s", (tenant,)
        )
    for row in rows:
        opened = services.projector.sealer.open(as_uuid(row["record_id"]), bytes(row["sealed"]))
        if opened is not None:
            yield opened.decode()
    after = 0
    while True:
        reads, more = services.reads.page(tenant, limit=500, after=after)
        yield from (read.model_dump_json() for read in reads)
        if more is None:
            break
        after = more


def _exports(folder: Path) -> Iterator[str]:
    for path in folder.rglob("*") if folder.exists() else ():
        if path.is_file() and path.name.endswith(".tar.gz"):
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(path.read_bytes()))) as tar:
                for member in tar.getmembers():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield handle.read().decode(errors="replace")
        elif path.is_file():
            yield path.read_bytes().decode(errors="replace")


def test_after_destruction_nothing_personal_of_the_record_remains_anywhere(
    api: Api, admin: dict[str, str], settings: Settings
) -> None:
    writer = api.writer()
    gone, kept = f"mrn-gone-{unique_name('').strip()}", f"mrn-kept-{unique_name('').strip()}"
    gone, kept = gone.replace(" ", ""), kept.replace(" ", "")
    justification = unique_name("Client disclosed plan to")
    gone_recipient = _old_record(
        api, writer, gone,
        example("RecordAccessed", occurred_at=OLD, break_glass=True, justification=justification),
    )  # fmt: skip
    # Over a hundred events: the record has a snapshot to purge too.
    batch = [{**example("RecordAccessed", occurred_at=OLD), "record_ref": gone} for _ in range(110)]
    stored = api.client.post("/v1/events:batch", json={"events": batch}, headers=writer)
    assert stored.status_code == 201, stored.text
    gone_id = api.services.audit.record_id(api.tenant, gone)
    assert api.services.audit.snapshots is not None
    assert list(api.services.audit.snapshots.get(gone_id)), "a snapshot was taken"
    kept_recipient = _old_record(api, writer, kept, example("LegalHoldPlaced", hold_id="h",
                                                             reason="litigation"))  # fmt: skip
    # Read it every way a compliance officer would: each read is in the self-audit.
    for path in (f"/v1/records/{gone}", f"/v1/records/{gone}/timeline",
                 f"/v1/records/{gone}/accounting", f"/v1/disclosures?record_ref={gone}",
                 f"/v1/access-log?record_ref={gone}", f"/v1/records/{kept}/timeline"):  # fmt: skip
        assert api.client.get(path, headers=admin).status_code == 200, path
    api.services.projector.catch_up()
    export = api.client.post("/v1/exports", json={"record_refs": [gone]}, headers=admin)
    assert export.status_code == 202
    export_id = export.json()["export_id"]
    for _ in range(200):
        if api.client.get(f"/v1/exports/{export_id}", headers=admin).json()["status"] == "done":
            break
    assert any(gone_recipient in text for text in _exports(settings.exports_path))
    # A second API process, which has served the record and holds its key in memory.
    second = build_services(settings)
    try:
        with TestClient(create_app(settings, second)) as other:
            seen = other.get(f"/v1/records/{gone}/timeline?limit=1000", headers=admin).json()
            assert gone_recipient in json.dumps(seen)

            assert (
                api.client.post(f"/v1/records/{gone}/destruction", headers=admin).status_code == 201
            )

            served = other.get(f"/v1/records/{gone}/timeline?limit=1000", headers=admin).json()
            assert gone_recipient not in json.dumps(served)
            certificate = [i for i in served["items"] if i["type"] == "RecordDestroyed"]
            assert len(certificate) == 1
            assert not certificate[0]["redacted"]
            assert certificate[0]["event"]["rule"] == "adult"
            assert certificate[0]["event"]["documentation"][0]["legal_basis"] == (
                "client_authorization"
            )
            assert all(i["redacted"] for i in served["items"] if i["type"] != "RecordDestroyed")
            late = other.post(f"/v1/records/{gone}/events", json=example("RecordAccessed"),
                              headers=writer)  # fmt: skip
            assert late.status_code == 409
    finally:
        second.close()
    assert list(api.services.audit.snapshots.get(gone_id)) == [], "its snapshots are gone"
    secrets = (gone, gone_recipient, justification)
    for chunk in _raw_tables(settings):
        for secret in secrets:
            assert secret.encode() not in chunk
    opened = "\n".join(_decrypted(api.services, api.tenant))
    for secret in secrets:
        assert secret not in opened, f"{secret!r} is still readable with the master key"
    assert kept in opened, "the other record is untouched"
    assert kept_recipient in opened, "the other record is untouched"
    exported = "\n".join(_exports(settings.exports_path))
    for secret in secrets:
        assert secret not in exported
    job = api.client.get(f"/v1/exports/{export_id}", headers=admin).json()
    assert job["status"] == "expired"
    assert "destroyed" in job["detail"]


# Acceptance 3: exports verify after destruction, and older ones against the newer ----------


def test_exports_before_and_after_destruction_verify_and_link(
    api: Api, admin: dict[str, str], tmp_path: Path
) -> None:
    writer = api.writer()
    refs = _refs("x")
    recipient = _old_record(api, writer, refs["due"])
    _old_record(api, writer, refs["held"], example("LegalHoldPlaced", hold_id="h", reason="x"))
    services = api.services
    before = tmp_path / "before"
    write_bundle(services.log, services.audit, api.tenant, before, scope=ExportScope())
    keys = services.log.vkeys(api.tenant)
    assert verify_bundle(before, keys).erased == 0
    assert (
        api.client.post(f"/v1/records/{refs['due']}/destruction", headers=admin).status_code == 201
    )
    after = tmp_path / "after"
    write_bundle(services.log, services.audit, api.tenant, after, scope=ExportScope(),
                 previous_checkpoint=(before / "checkpoint.txt").read_text())  # fmt: skip
    result = verify_bundle(after, keys)
    assert result.erased == 4  # the registration, opening, access and disclosure
    assert result.events == verify_bundle(before, keys).events + 1  # and the certificate
    consistency = json.loads((after / "consistency.json").read_text())
    assert consistency["from_size"] == verify_bundle(before, keys).tree_size
    lines = [json.loads(line) for line in (after / "events.ndjson").read_text().splitlines()]
    certificate = next(line for line in lines if line.get("type") == "RecordDestroyed")
    assert certificate["event"]["documentation"] == [
        {
            "type": "DisclosureMade",
            "occurred_on": "2012-05-05",
            "legal_basis": "client_authorization",
        }
    ]
    text = (after / "events.ndjson").read_text() + (after / "auditevents.ndjson").read_text()
    assert recipient not in text
    assert refs["due"] not in text


# RT-1: records kept past their retention are findings until destroyed or held ---------------


def _rt1(api: Api, headers: dict[str, str], ref: str) -> list[dict[str, Any]]:
    found = api.client.get("/v1/findings", params={"rule": "RT-1", "status": "open"},
                           headers=headers).json()["items"]  # fmt: skip
    return [f for f in found if f["record_ref"] == ref]


def test_the_sweep_raises_rt1_on_overdue_records_and_withdraws_it_when_resolved(
    api: Api, admin: dict[str, str]
) -> None:
    from tests.integration.test_overview_counts import counted, scanned

    writer = api.writer()
    refs = _records_under_every_rule(api, writer)
    api.services.projector.catch_up()
    lifecycle = api.services.lifecycle
    today = datetime.now(UTC).date()
    assert lifecycle.sweep(api.tenant, today) == {"raised": 2, "withdrawn": 0}
    assert lifecycle.sweep(api.tenant, today) == {"raised": 0, "withdrawn": 0}, "idempotent"
    overdue = _rt1(api, admin, refs["due"])
    assert len(overdue) == 1
    assert overdue[0]["severity"] == "low"
    assert "4980.49" in overdue[0]["citation"]
    assert "2019-05-05" in overdue[0]["message"]
    for name in ("held", "demand", "young"):
        assert _rt1(api, admin, refs[name]) == [], name
    assert counted(api.services, api.tenant) == scanned(api.services, api.tenant)
    # A hold keeps the record lawfully: the finding goes at the next sweep.
    _post(api, writer, refs["kid"], example("LegalHoldPlaced", hold_id="h-2", reason="audit"))
    api.services.projector.catch_up()
    assert lifecycle.sweep(api.tenant, today) == {"raised": 0, "withdrawn": 1}
    assert _rt1(api, admin, refs["kid"]) == []
    # Destroyed: the finding goes with the record's read-model rows.
    assert (
        api.client.post(f"/v1/records/{refs['due']}/destruction", headers=admin).status_code == 201
    )
    assert _rt1(api, admin, refs["due"]) == []
    assert counted(api.services, api.tenant) == scanned(api.services, api.tenant)
    env = cli_env(api.services.settings)
    result = CliRunner().invoke(
        cli, ["records", "sweep", "--tenant", api.tenant, "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"tenants": 1, "raised": 0, "withdrawn": 0}


def test_a_record_destroyed_while_its_events_are_projected_stalls_nothing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.application.ingest import Submission
    from tests.conftest import new_tenant

    tenant = new_tenant()
    services.projector.catch_up()
    facts_ = [example("RecordAccessed"), example("DisclosureMade")]
    for body in facts_:
        fact = TypeAdapter(Fact).validate_python(body)
        services.ingest.record_facts(tenant, [Submission("racing", fact)])
    services.ingest.record_facts(tenant, [Submission("bystander", TypeAdapter(Fact).validate_python(
        example("RecordAccessed")))])  # fmt: skip
    opened = services.audit.to_event
    shredded: list[bool] = []

    racing = services.audit.record_id(tenant, "racing")

    def read_then_destroy(notification: Any) -> Any:
        event = opened(notification)  # read with the key ...
        if event.originator_id == racing and hasattr(event, "fact") and not shredded:
            shredded.append(services.shred_record(tenant, "racing"))  # ... then it is gone
        return event

    monkeypatch.setattr(services.audit, "to_event", read_then_destroy)
    services.projector.catch_up()
    assert shredded == [True]
    assert services.projector.stalls() == []
    rid = racing
    with services.audit.db.transaction(commit=False) as cursor:
        left = cursor.fetchall("SELECT type FROM pv_facts WHERE record_id = %s", (rid,))
        other = cursor.fetchall(
            "SELECT type FROM pv_facts WHERE tenant_id = %s AND record_id <> %s", (tenant, rid)
        )
    assert left == []
    assert [r["type"] for r in other] == ["RecordAccessed"], "the tenant goes on"
