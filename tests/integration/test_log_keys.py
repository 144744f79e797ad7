"""Each tenant's log signs under keys named by its origin (C2SP tlog-checkpoint), on both stores.

The signatures are checked here independently of ``service/verify.py`` (stdlib and
``cryptography`` only), then through the verifier and the CLI.
"""

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typer.testing import CliRunner

from domain import facts
from service.application.ingest import Submission
from service.cli import app
from service.container import Services
from service.integrity.export import ExportScope, write_bundle
from service.integrity.log import TenantLog
from service.integrity.signing import LogKey, LogKeyring, sign_note
from service.verify import LEGACY_FORMAT, MANIFEST_NOTE, BundleError, verify_bundle
from tests.conftest import cli_env, new_tenant
from tests.factories import example


def _ingest(services: Services, tenant: str, n: int = 1, ref: str = "rec-key") -> None:
    for _ in range(n):
        fact = facts.RecordAccessed.model_validate(example("RecordAccessed"))
        services.ingest.record_facts(tenant, [Submission(ref, fact)])


def _signs(note: str, vkey: str) -> bool:
    """Whether ``note`` carries a valid signature by the key ``vkey`` (C2SP signed-note)."""
    name, id_hex, encoded = vkey.strip().split("+", 2)
    raw = base64.b64decode(encoded)
    assert raw[0] == 1, "an Ed25519 vkey"
    assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == id_hex
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    text, _, lines = note.rpartition("\n\n")
    for line in lines.splitlines():
        _, signer, signature = line.split(" ")
        blob = base64.b64decode(signature)
        if signer == name and blob[:4].hex() == id_hex:
            try:
                public.verify(blob[4:], (text + "\n").encode())
            except InvalidSignature:
                return False
            return True
    return False


def _relabelled(note: str, vkey: str) -> str:
    """The note with its signatures' bytes put under another key's name and id."""
    name, id_hex, _ = vkey.split("+", 2)
    text, _, lines = note.rpartition("\n\n")
    blob = base64.b64decode(lines.splitlines()[0].split(" ")[2])
    forged = base64.b64encode(bytes.fromhex(id_hex) + blob[4:]).decode()
    return f"{text}\n\n\u2014 {name} {forged}\n"


@pytest.fixture
def own_log(services: Services, tmp_path: Path) -> TenantLog:
    """The store's tenant log with a key directory of this test's own (rotating the session's
    shared PostgreSQL key directory would change every later test's keys)."""
    prefix = services.settings.log_origin
    ring = LogKeyring(tmp_path / "own-log-keys", prefix)
    ring.rotate()
    audit = services.audit
    return TenantLog(audit.db, audit.keyring, ring, prefix, lambda: audit.lifecycle_key)


def test_each_tenants_checkpoint_verifies_under_the_key_named_by_its_origin_only(
    services: Services,
) -> None:
    log = services.log
    one, two = new_tenant(), new_tenant()
    _ingest(services, one, 2)
    _ingest(services, two, 3)
    notes = {t: log.checkpoint(t).note for t in (one, two)}
    vkeys = {t: log.vkeys(t).splitlines() for t in (one, two)}
    for tenant, other in ((one, two), (two, one)):
        origin = log.origin(tenant)
        assert notes[tenant].split("\n", 1)[0] == origin == f"disclosure-audit.local/{tenant}"
        assert vkeys[tenant], "at least one generation"
        assert all(v.startswith(origin + "+") for v in vkeys[tenant]), vkeys[tenant]
        assert _signs(notes[tenant], vkeys[tenant][-1]), "signed by the log's current key"
        assert not any(_signs(notes[tenant], v) for v in vkeys[other])
        # A key pair per log, not one key under two names: the signature's bytes put under the
        # other log's name and id do not verify with the other log's key.
        assert not _signs(_relabelled(notes[tenant], vkeys[other][-1]), vkeys[other][-1])
        assert f"\u2014 {origin} " in notes[tenant]
        assert "\u2014 disclosure-audit.local " not in notes[tenant], "no legacy signature"


def test_an_export_verifies_with_the_bundles_own_key_file(
    services: Services, tmp_path: Path
) -> None:
    tenant = new_tenant()
    _ingest(services, tenant, 3)
    out = tmp_path / "bundle"
    write_bundle(services.log, services.audit, tenant, out, scope=ExportScope())
    key_file = out / "public-key.txt"
    assert key_file.read_text() == services.log.vkeys(tenant)
    origin = services.log.origin(tenant)
    assert all(line.startswith(origin + "+") for line in key_file.read_text().splitlines())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["key"] == services.log.signing_key(tenant).vkey
    result = verify_bundle(out, key_file.read_text())
    assert (result.key_name, result.legacy_key, result.events) == (
        origin,
        False,
        4,
    )  # and the registration
    done = CliRunner().invoke(app, ["verify", str(out), "--public-key", str(key_file)])
    assert done.exit_code == 0, done.output
    assert f"signed by {origin}, the key named by the log's origin" in " ".join(done.output.split())


def _legacy(services: Services) -> LogKey:
    """The key every log signed with before keys were per log (the newest generation's)."""
    return services.log.log_keys.legacy_keys()[-1]


def _resign_as_format_1(bundle: Path, key: LogKey, format_: str) -> None:
    """Re-sign a bundle's checkpoint and manifest with ``key`` alone, as the service did before
    keys were per log, under the manifest format ``format_``."""
    checkpoint = (bundle / "checkpoint.txt").read_text()
    text = checkpoint.rpartition("\n\n")[0] + "\n"
    (bundle / "checkpoint.txt").write_text(sign_note(text, key))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format"] = format_
    manifest["key"] = key.vkey
    digest = hashlib.sha256((bundle / "checkpoint.txt").read_bytes()).hexdigest()
    manifest["files"]["checkpoint.txt"] = digest
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    (bundle / "manifest.json").write_bytes(manifest_bytes)
    signed = f"{MANIFEST_NOTE}\n{hashlib.sha256(manifest_bytes).hexdigest()}\n"
    (bundle / "manifest.sig").write_text(sign_note(signed, key))


def _problem(bundle: Path, keys: str) -> str:
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle, keys)
    return str(caught.value)


def test_a_bundle_checked_with_a_key_of_another_name_fails_and_says_so(
    services: Services, tmp_path: Path
) -> None:
    one, two = new_tenant(), new_tenant()
    _ingest(services, one, 2)
    _ingest(services, two, 1)
    out = tmp_path / "bundle"
    write_bundle(services.log, services.audit, one, out, scope=ExportScope())
    origin, other = services.log.origin(one), services.log.origin(two)
    # Another log's key: nothing verifies; the message names both logs' key names.
    problem = _problem(out, services.log.vkeys(two))
    assert problem.startswith("checkpoint.txt: not signed by any pinned key"), problem
    assert repr(origin) in problem
    assert repr(other) in problem
    pinned = tmp_path / "other.txt"
    pinned.write_text(services.log.vkeys(two))
    done = CliRunner().invoke(app, ["verify", str(out), "--public-key", str(pinned), "--json"])
    assert done.exit_code == 1
    assert repr(other) in json.loads(done.output)["problem"]

    # The only pinned key that signed it is named otherwise (the legacy name): refused, clearly.
    legacy = _legacy(services)
    resigned = tmp_path / "legacy-named"
    shutil.copytree(out, resigned)
    _resign_as_format_1(resigned, legacy, "disclosure-audit-export/2")
    problem = _problem(resigned, legacy.vkey + "\n" + services.log.vkeys(one))
    assert problem.startswith(
        f"checkpoint.txt: signed only by the pinned key(s) named 'disclosure-audit.local', not by"
        f" the key named {origin!r}"
    ), problem
    assert f"'{origin}+'" in problem


def test_a_format_1_bundle_signed_by_the_legacy_key_still_verifies_and_says_so(
    services: Services, tmp_path: Path
) -> None:
    tenant = new_tenant()
    _ingest(services, tenant, 2)
    out = tmp_path / "old"
    write_bundle(services.log, services.audit, tenant, out, scope=ExportScope())
    legacy = _legacy(services)
    _resign_as_format_1(out, legacy, LEGACY_FORMAT)
    result = verify_bundle(out, legacy.vkey + "\n")
    assert (result.key_name, result.legacy_key) == ("disclosure-audit.local", True)
    pinned = tmp_path / "pinned.txt"
    pinned.write_text(legacy.vkey + "\n")
    done = CliRunner().invoke(app, ["verify", str(out), "--public-key", str(pinned)])
    assert done.exit_code == 0, done.output
    assert "format 1 bundle" in " ".join(done.output.split())


def _store_as_legacy(services: Services, tenant: str, size: int, note: str) -> None:
    with services.audit.db.transaction() as cursor:
        cursor.execute(
            "UPDATE da_checkpoints SET note = %s WHERE tenant_id = %s AND tree_size = %s",
            (note, tenant, size),
        )


def _stored(services: Services, tenant: str, size: int) -> str:
    with services.audit.db.transaction(commit=False) as cursor:
        row = cursor.fetchone(
            "SELECT note FROM da_checkpoints WHERE tenant_id = %s AND tree_size = %s",
            (tenant, size),
        )
    assert row is not None
    return str(row["note"])


def test_a_checkpoint_stored_before_keys_were_per_log_gets_the_logs_signature_too(
    services: Services, own_log: TenantLog, tmp_path: Path
) -> None:
    tenant = new_tenant()
    _ingest(services, tenant, 3)
    first = own_log.log_keys.legacy_keys()[0]
    own_log.log_keys.rotate()  # the legacy note was signed by the first generation
    made = own_log.checkpoint(tenant)
    text = made.note.rpartition("\n\n")[0] + "\n"
    legacy_note = sign_note(text, first)  # what the service stored before keys were per log
    _store_as_legacy(services, tenant, made.size, legacy_note)

    named = own_log.checkpoint(tenant).note
    assert named.startswith(legacy_note), "the same text, the legacy signature kept"
    gen_one, gen_two = own_log.vkeys(tenant).splitlines()
    assert _signs(named, first.vkey), "still verifies for whoever pinned the legacy key"
    assert _signs(named, gen_one), "signed by the log's key of the same generation"
    assert not _signs(named, gen_two)
    assert _stored(services, tenant, made.size) == named, "stored: one note per size"
    assert own_log.checkpoint(tenant).note == named
    latest = own_log.latest_checkpoint(tenant)
    assert latest is not None
    assert latest.note == named

    # A regulator kept the legacy note; a later export links to it, and verifies with the
    # log's keys alone (the bundle carries the log's own note of that checkpoint).
    _ingest(services, tenant, 1)
    out = tmp_path / "later"
    write_bundle(own_log, services.audit, tenant, out, scope=ExportScope(),
                 previous_checkpoint=legacy_note)  # fmt: skip
    assert verify_bundle(out, (out / "public-key.txt").read_text()).tree_size == made.size + 1
    link = json.loads((out / "consistency.json").read_text())
    assert link["previous_checkpoint"] == named


def test_a_checkpoint_signed_before_a_rotation_still_verifies(
    services: Services, own_log: TenantLog, tmp_path: Path
) -> None:
    tenant = new_tenant()
    _ingest(services, tenant, 2)
    before = own_log.checkpoint(tenant).note
    (gen_one,) = own_log.vkeys(tenant).splitlines()
    own_log.log_keys.rotate()
    _ingest(services, tenant, 2)
    after = own_log.checkpoint(tenant).note
    assert own_log.vkeys(tenant).splitlines()[0] == gen_one, "old keys stay listed, first"
    gen_two = own_log.vkeys(tenant).splitlines()[1]
    assert _signs(before, gen_one)
    assert not _signs(before, gen_two)
    assert _signs(after, gen_two)
    assert not _signs(after, gen_one)
    out = tmp_path / "after-rotation"
    write_bundle(own_log, services.audit, tenant, out, scope=ExportScope(),
                 previous_checkpoint=before)  # fmt: skip
    keys = (out / "public-key.txt").read_text()
    assert keys.splitlines() == [gen_one, gen_two]
    assert verify_bundle(out, keys).tree_size == 5  # four facts and the registration
    problem = _problem(out, gen_one + "\n")  # only the old key pinned: the new note fails
    assert problem.startswith("checkpoint.txt: not signed by any pinned key"), problem


def test_log_key_lists_each_tenant_logs_vkeys(services: Services) -> None:
    one, two = new_tenant(), new_tenant()
    _ingest(services, one)
    _ingest(services, two)
    services.log.checkpoint(one)  # signing the first checkpoint made the first key
    env = cli_env(services.settings)
    runner = CliRunner()
    listed = runner.invoke(app, ["log-key", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    logs = json.loads(listed.stdout)
    tenants = [entry["tenant"] for entry in logs]
    assert len(tenants) == len(set(tenants)), "one entry per tenant log"
    assert {one, two} <= set(tenants)
    generations = len(services.log.log_keys.generations())
    for entry in logs:
        assert entry["origin"] == services.log.origin(entry["tenant"])
        assert entry["vkey"].startswith(entry["origin"] + "+")
        assert entry["vkey"] == entry["vkeys"][-1]
        assert len(entry["vkeys"]) == generations
        assert entry["vkeys"] == services.log.vkeys(entry["tenant"]).splitlines()
    plain = runner.invoke(app, ["log-key"], env=env)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.splitlines() == [v for entry in logs for v in entry["vkeys"]]
    only = runner.invoke(app, ["log-key", "--tenant", one], env=env)
    assert only.exit_code == 0, only.output
    assert only.stdout == services.log.vkeys(one)
    # Before its first event too: the key of a log is known before it has a leaf.
    fresh = new_tenant()
    ahead = runner.invoke(app, ["log-key", "--tenant", fresh], env=env)
    assert ahead.stdout == services.log.vkeys(fresh)
    _ingest(services, fresh)
    assert _signs(services.log.checkpoint(fresh).note, ahead.stdout.splitlines()[-1])
    bad = runner.invoke(app, ["log-key", "--tenant", "Not A Tenant"], env=env)
    assert bad.exit_code != 0
