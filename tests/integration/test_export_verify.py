"""The regulator export verifies offline, and every kind of tampering is caught and named."""

import base64
import csv
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from pydantic import TypeAdapter
from typer.testing import CliRunner

from domain import facts, merkle
from domain.policy.accounting import COLUMNS, row
from projections.queries import accounting
from service.application.ingest import Submission
from service.cli import app
from service.container import Services
from service.demo import demo_submissions
from service.integrity.export import ExportScope, write_bundle
from service.integrity.fhir import check_codes
from service.integrity.log import SplitViewError
from service.spreadsheet import safe_row
from service.storage.tenant_log import leaf_bytes, seal_leaf
from service.verify import BundleError, verify_bundle
from tests.conftest import new_tenant
from tests.factories import example

TENANT = "export-test"
FACT = TypeAdapter(facts.Fact)


@pytest.fixture
def services(services: Services) -> Services:
    """The store under test, for a tenant of this test's own (the PostgreSQL database is shared
    by the whole session, and every test has its own master key)."""
    global TENANT  # noqa: PLW0603 - the helpers below read it
    TENANT = new_tenant()
    return services


def _load_demo(services: Services) -> None:
    for record_ref, fact in demo_submissions():
        services.ingest.record_facts(TENANT, [Submission(record_ref, fact)])


def _export(services: Services, out: Path, scope: ExportScope | None = None,
            previous: str | None = None) -> Path:  # fmt: skip
    write_bundle(services.log, services.audit, TENANT, out, scope=scope or ExportScope(),
                 previous_checkpoint=previous)  # fmt: skip
    return out


@pytest.fixture
def bundle(services: Services, tmp_path: Path) -> Path:
    """A full export of the PRODUCT.md scenarios."""
    _load_demo(services)
    return _export(services, tmp_path / "bundle")


def _keys(services: Services) -> str:
    return services.log.vkeys(TENANT)


def _problem(directory: Path, keys: str) -> str:
    with pytest.raises(BundleError) as caught:
        verify_bundle(directory, keys)
    return str(caught.value)


def _mutated(bundle: Path, tmp_path: Path, name: str) -> Iterator[Path]:
    counter = 0

    def fresh() -> Path:
        nonlocal counter
        counter += 1
        copy = tmp_path / f"{name}-{counter}"
        shutil.copytree(bundle, copy)
        return copy

    while True:
        yield fresh()


def test_the_untouched_bundle_verifies(bundle: Path, services: Services) -> None:
    result = verify_bundle(bundle, _keys(services))
    assert result.full
    assert result.events == result.tree_size == 47
    lines = (bundle / "events.ndjson").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["position"] == 1
    assert first["type"] == "RecordRegistered"
    assert len(base64.b64decode(first["salt"])) == 16


def test_flipping_any_byte_of_any_event_line_fails_and_names_the_line(
    bundle: Path, services: Services, tmp_path: Path
) -> None:
    keys = _keys(services)
    original = (bundle / "events.ndjson").read_bytes()
    lines = original.split(b"\n")[:-1]
    copies = _mutated(bundle, tmp_path, "flip")
    offset = 0
    for number, line in enumerate(lines, start=1):
        for column in sorted({0, len(line) // 3, len(line) // 2, len(line) - 1}):
            copy = next(copies)
            data = bytearray(original)
            data[offset + column] ^= 0x01
            (copy / "events.ndjson").write_bytes(bytes(data))
            assert f"line {number}" in _problem(copy, keys), (number, column)
            shutil.rmtree(copy)
        offset += len(line) + 1


@pytest.mark.parametrize("operation", ["delete", "swap", "insert", "duplicate"])
def test_removing_moving_or_adding_a_line_fails_and_names_the_line(
    bundle: Path, services: Services, tmp_path: Path, operation: str
) -> None:
    copy = next(_mutated(bundle, tmp_path, operation))
    lines = (bundle / "events.ndjson").read_bytes().splitlines(keepends=True)
    if operation == "delete":
        del lines[10]
    elif operation == "swap":
        lines[10], lines[11] = lines[11], lines[10]
    elif operation == "insert":
        lines.insert(10, json.dumps({"position": 11, "type": "DisclosureMade"}).encode() + b"\n")
    else:
        lines.insert(10, lines[9])
    (copy / "events.ndjson").write_bytes(b"".join(lines))
    assert "line 11" in _problem(copy, _keys(services))


@pytest.mark.parametrize(
    ("file", "change"),
    [
        ("manifest.json", lambda b: b.replace(b'"kind": "full"', b'"kind": "fulL"')),
        ("manifest.json", lambda b: b.replace(b'"events": 47', b'"events": 46')),
        ("checkpoint.txt", lambda b: b.replace(b"\n47\n", b"\n46\n")),
        ("checkpoint.txt", lambda b: b[:-20] + bytes([b[-20] ^ 1]) + b[-19:]),
        ("leaves.bin", lambda b: b[:-1] + bytes([b[-1] ^ 1])),
        ("accounting.csv", lambda b: b.replace(b"Oakland", b"Oaklane")),
        ("auditevents.ndjson", lambda b: b[:-2] + b" \n"),
    ],
    ids=["manifest-scope", "manifest-count", "checkpoint-size", "checkpoint-signature",
         "leaves", "accounting", "fhir"],
)  # fmt: skip
def test_changing_the_manifest_checkpoint_or_any_file_fails(
    bundle: Path, services: Services, tmp_path: Path, file: str, change: Callable[[bytes], bytes]
) -> None:
    copy = next(_mutated(bundle, tmp_path, "file"))
    before = (copy / file).read_bytes()
    (copy / file).write_bytes(change(before))
    assert (copy / file).read_bytes() != before
    assert _problem(copy, _keys(services))


def test_an_unpinned_key_or_an_extra_file_fails(
    bundle: Path, services: Services, tmp_path: Path
) -> None:
    from service.integrity.signing import LogKeyring

    strangers = LogKeyring(tmp_path / "other-keys", "disclosure-audit.local")
    strangers.rotate()
    stranger = strangers.vkeys(services.log.origin(TENANT))  # the right name, another key
    assert "not signed by any pinned key" in _problem(bundle, stranger)
    copy = next(_mutated(bundle, tmp_path, "extra"))
    (copy / "notes.txt").write_text("hello")
    assert "unexpected file" in _problem(copy, _keys(services))


def test_the_cli_exits_non_zero_on_failure_and_zero_on_success(
    bundle: Path, services: Services, tmp_path: Path
) -> None:
    keys = tmp_path / "pinned.txt"
    keys.write_text(_keys(services))
    ok = CliRunner().invoke(app, ["verify", str(bundle), "--public-key", str(keys)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output
    copy = next(_mutated(bundle, tmp_path, "cli"))
    events = (copy / "events.ndjson").read_bytes()
    (copy / "events.ndjson").write_bytes(events.replace(b"HLEGAL", b"HLEGAX", 1))
    failed = CliRunner().invoke(app, ["verify", str(copy), "--public-key", str(keys), "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.output)["problem"].startswith("events.ndjson line")


def test_exports_before_and_after_more_ingest_are_linked_by_a_consistency_proof(
    bundle: Path, services: Services, tmp_path: Path
) -> None:
    earlier = (bundle / "checkpoint.txt").read_text()
    services.ingest.record_facts(TENANT, [Submission("cv-5520", _fact())])
    later = _export(services, tmp_path / "later", previous=earlier)
    assert verify_bundle(later, _keys(services)).tree_size == 48
    assert json.loads((later / "consistency.json").read_text())["from_size"] == 47


def test_a_rewritten_history_is_detected(bundle: Path, services: Services, tmp_path: Path) -> None:
    earlier = (bundle / "checkpoint.txt").read_text()
    # Someone with database and key access rewrites the event at an old index, consistently:
    # new content, re-sealed, with its matching leaf hash.
    entry = next(e for e in services.log.entries(TENANT, 5) if e.position == 5)
    assert entry.content is not None
    forged = leaf_bytes({**entry.content, "recorded_at": "2020-01-01T00:00:00+00:00"}, 5)
    key = services.audit.keyring.find(entry.record_id)
    assert key is not None
    sealed = seal_leaf(key, forged, entry.record_id, entry.version, datetime.now(UTC))
    with services.audit.db.transaction() as cursor:
        cursor.execute(
            "UPDATE da_tenant_log SET leaf_hash = %s, leaf_entry = %s"
            " WHERE tenant_id = %s AND position = 5",
            (merkle.leaf_hash(forged), sealed, TENANT),
        )
    with pytest.raises(SplitViewError):
        services.log.checkpoint(TENANT)  # the log refuses to re-sign size 47 differently
    services.ingest.record_facts(TENANT, [Submission("cv-5520", _fact())])
    rewritten = _export(services, tmp_path / "rewritten", previous=earlier)
    assert "history was rewritten" in _problem(rewritten, _keys(services))


def _fact() -> facts.FactBase:
    return facts.RecordAccessed.model_validate(example("RecordAccessed"))


def test_a_scoped_export_verifies_and_leaks_no_other_record(
    bundle: Path, services: Services, tmp_path: Path
) -> None:
    scope = ExportScope(record_refs=("cv-5520",), since=None, until=None)
    scoped = _export(services, tmp_path / "scoped", scope)
    result = verify_bundle(scoped, _keys(services))
    assert not result.full
    assert result.events == 6  # its registration and five facts
    text = "".join(p.read_text() for p in scoped.iterdir() if p.suffix in (".ndjson", ".csv"))
    for other in ("jr-2041", "mr-3310", "Morgan & Lee", "Suffolk", "K. Moreau", "R. Novak"):
        assert other not in text
    assert "Harbor Life Insurance" in text
    assert not (scoped / "leaves.bin").exists()
    dated = _export(services, tmp_path / "dated",
                    ExportScope(since=_date("2026-03-01"), until=_date("2026-03-31")))  # fmt: skip
    assert verify_bundle(dated, _keys(services)).events > 0
    for line in (dated / "events.ndjson").read_text().splitlines():
        assert json.loads(line)["event"]["occurred_at"].startswith("2026-03")


def _date(text: str) -> date:
    return date.fromisoformat(text)


def test_a_shredded_record_keeps_its_leaves_and_the_export_still_verifies(
    bundle: Path, services: Services, tmp_path: Path
) -> None:
    services.shred_record(TENANT, "mi-7781")
    after = _export(services, tmp_path / "after")
    result = verify_bundle(after, _keys(services))
    assert result.erased == 4  # registration, opening, authorization, disclosure
    text = (after / "events.ndjson").read_text()
    assert "R. Novak" not in text
    assert "mi-7781" not in text


def test_fhir_audit_events_validate_and_carry_the_right_codes(bundle: Path) -> None:
    resources = [
        json.loads(line) for line in (bundle / "auditevents.ndjson").read_text().splitlines()
    ]
    disclosures = [r for r in resources if r["type"]["code"] == "110106"]
    accesses = [r for r in resources if r["type"]["code"] == "rest"]
    assert len(disclosures) == 15
    assert len(accesses) == 3
    for resource in resources:
        AuditEvent.model_validate(resource)
        check_codes(resource)
    court = next(
        r for r in disclosures if r["entity"][1]["what"]["identifier"]["value"] == "dis-jr-3"
    )
    assert court["subtype"][0]["code"] == "disclose"
    assert court["purposeOfEvent"][0]["coding"][0]["code"] == "HLEGAL"
    assert court["entity"][1]["securityLabel"][0]["code"] == "PSYTHPN"
    # PrivacyDisclosure.Source: source, recipient and custodian; no authorizer for an order.
    assert {a["type"]["coding"][0]["code"] for a in court["agent"]} == {
        "110152", "110153", "159541003"}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value"),
    [(("type", "code"), "110999"), (("action",), "X"), (("outcome",), "3")],
)
def test_our_code_checks_catch_what_the_library_accepts(
    bundle: Path, path: tuple[str, ...], value: str
) -> None:
    resource = json.loads((bundle / "auditevents.ndjson").read_text().splitlines()[0])
    target = resource
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    if path != ("action",):
        AuditEvent.model_validate(resource)  # fhir.resources does not check code bindings
    with pytest.raises(ValueError):  # noqa: PT011
        check_codes(resource)


def _api_accounting(services: Services, record_refs: set[str]) -> list[list[str]]:
    """What the API's CSV says of each record, records in ``record_ref`` order."""
    services.projector.catch_up()
    today = datetime.now(UTC).date()
    rows = []
    for ref in sorted(record_refs):
        with services.audit.db.transaction(commit=False) as cursor:
            items = accounting(cursor, services.projector.sealer, services.audit.rulebook, TENANT,
                               (services.audit.record_id(TENANT, ref), ref), since=None,
                               until=today, today=today)  # fmt: skip
        rows += [[str(cell) for cell in safe_row(row(i.model_dump(mode="json")))] for i in items]
    return rows


def _bundle_accounting(bundle: Path) -> list[list[str]]:
    with (bundle / "accounting.csv").open(newline="") as handle:
        header, *rows = csv.reader(handle)
    assert header == COLUMNS
    return rows


def test_the_bundle_accounting_is_the_apis_court_agency_and_warning_not_tpo_or_authorized(
    bundle: Path, services: Services
) -> None:
    rows = _bundle_accounting(bundle)
    assert rows == _api_accounting(services, {ref for ref, _ in demo_submissions()})
    ids = {r[COLUMNS.index("disclosure_id")] for r in rows}
    assert {"dis-jr-2", "rep-mr-1", "warn-dw-1"} <= ids
    # dis-mr-1 documents rep-mr-1 (one disclosure, listed once); TPO and the authorized release
    # before the revocation are not accountable (164.528(a)(1)(i), (iv)).
    assert not {"dis-mr-1", "dis-jr-1", "dis-cr-1", "dis-cv-1"} & ids


def test_a_late_revocation_re_judges_the_bundle_accounting_as_the_api(
    services: Services, tmp_path: Path
) -> None:
    opened = example("RecordOpened", occurred_at="2026-01-01T10:00:00Z")
    grant = example("AuthorizationGranted", occurred_at="2026-01-10T10:00:00Z")
    release = example("DisclosureMade", occurred_at="2026-01-20T10:00:00Z")
    for fact in (opened, grant, release):
        services.ingest.record_facts(TENANT, [Submission("late", FACT.validate_python(fact))])
    assert _bundle_accounting(_export(services, tmp_path / "before")) == []
    # Posted last, but it occurred before the release: the release was not authorized after all.
    revoked = example("AuthorizationRevoked", occurred_at="2026-01-15T10:00:00Z")
    services.ingest.record_facts(TENANT, [Submission("late", FACT.validate_python(revoked))])
    rows = _bundle_accounting(_export(services, tmp_path / "after"))
    assert [(r[COLUMNS.index("disclosure_id")], r[COLUMNS.index("rules")]) for r in rows] == [
        (release["disclosure_id"], "AU-1")]  # fmt: skip
    assert rows == _api_accounting(services, {"late"})
