"""Writes the regulator export bundle that ``service/verify.py`` checks (format described there).

A full export streams every leaf in order, so memory stays flat however long the log is. A
scoped export (records, a date range) carries an inclusion proof per event and nothing of other
records. ``auditevents.ndjson`` holds the disclosures and accesses as FHIR R4 AuditEvent
resources, and ``accounting.csv`` the 164.528 accounting of each record in the bundle, built by
``domain.policy.accounting`` exactly as the API builds it: every fact re-judged against its
record's whole history up to the checkpoint (the verdict the read models hold, not the one
returned at ingest), the rule set's lookback as of the export's day unless the scope has dates.
"""

import base64
import csv
import hashlib
import json
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import rfc8785

from domain import merkle
from domain.policy.accounting import (
    ACCOUNTED,
    COLUMNS,
    Accountable,
    AccountedFact,
    Details,
    details_of,
    judged,
    plan,
    row,
)
from domain.policy.engine import judge_on_record
from domain.policy.state import LEGAL_FACTS
from domain.record import ClientRecord
from service.integrity.fhir import audit_event
from service.integrity.log import Checkpoint, LogEntry, TenantLog
from service.integrity.signing import sign_note
from service.spreadsheet import safe_row
from service.storage.app import AuditLog
from service.verify import FORMAT, MANIFEST_NOTE

__all__ = ["ExportScope", "ExportSummary", "write_bundle"]


@dataclass(frozen=True)
class ExportScope:
    """What to export: everything, or some records and/or a date range of occurred_at."""

    since: date | None = None
    until: date | None = None
    record_refs: tuple[str, ...] = ()

    @property
    def full(self) -> bool:
        """True when the export holds every leaf of the log."""
        return self.since is None and self.until is None and not self.record_refs

    def admits(self, content: dict[str, Any] | None) -> bool:
        """Whether an opened leaf falls in the date range (erased leaves have no date)."""
        if self.since is None and self.until is None:
            return True
        if content is None:
            return False
        moment = content.get("event", {}).get("occurred_at") or content["recorded_at"]
        day = date.fromisoformat(moment[:10])
        return (self.since is None or day >= self.since) and (
            self.until is None or day <= self.until
        )


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    directory: Path
    checkpoint: Checkpoint
    events: int
    erased: int


def _line(entry: LogEntry) -> bytes:
    if entry.data is not None:
        return entry.data
    return rfc8785.dumps(
        {
            "erased": True,
            "leaf_hash": base64.b64encode(entry.leaf_hash).decode(),
            "position": entry.position,
        }
    )


def write_bundle(
    log: TenantLog,
    audit: AuditLog,
    tenant_id: str,
    out: Path,
    *,
    scope: ExportScope,
    previous_checkpoint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write the bundle into ``out`` (created empty) and return what it holds."""
    out.mkdir(parents=True, exist_ok=False, mode=0o700)  # a plaintext copy: owner only
    record_ids = {audit.record_id(tenant_id, ref) for ref in scope.record_refs} or None
    checkpoint = log.checkpoint(tenant_id)
    key = log.signing_key(tenant_id)
    files: dict[str, str] = {}
    counts = {"events": 0, "erased": 0, "disclosures": 0, "accesses": 0, "accounting_rows": 0}
    leaves_needed = not scope.full
    all_leaves = log.leaf_hashes(tenant_id, checkpoint.size) if leaves_needed else []

    with (
        (out / "events.ndjson").open("wb") as events,
        (out / "auditevents.ndjson").open("w") as fhir,
        (out / "accounting.csv").open("w", newline="") as accounting,
        (out / ("leaves.bin" if scope.full else "proofs.ndjson")).open("wb") as side,
    ):
        writer = csv.writer(accounting)
        writer.writerow(COLUMNS)
        book = _Accounting(audit, scope)
        for entry in _selected(log, tenant_id, checkpoint.size, scope, record_ids, book.seen):
            events.write(_line(entry) + b"\n")
            counts["events"] += 1
            if scope.full:
                side.write(entry.leaf_hash)
            else:
                proof = merkle.inclusion_proof(all_leaves, entry.position - 1)
                side.write(json.dumps({"position": entry.position,
                                       "proof": [base64.b64encode(p).decode() for p in proof]},
                                      separators=(",", ":")).encode() + b"\n")  # fmt: skip
            content = entry.content
            if content is None:
                counts["erased"] += 1
            else:
                _fhir(content, fhir, counts)
                book.collect(entry, content)
            if progress is not None:
                progress(entry.position, checkpoint.size)
        for accounting_row in book.rows():
            writer.writerow(safe_row(accounting_row))  # names a spreadsheet must not evaluate
            counts["accounting_rows"] += 1

    (out / "checkpoint.txt").write_text(checkpoint.note)
    # The verifier keys of this tenant's log only (every generation), named by its origin.
    (out / "public-key.txt").write_text(log.vkeys(tenant_id))
    if previous_checkpoint is not None:
        _write_consistency(log, tenant_id, checkpoint, previous_checkpoint, out)
    for path in sorted(out.iterdir()):
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):  # flat memory
                hasher.update(chunk)
        files[path.name] = hasher.hexdigest()
    manifest = {
        "format": FORMAT,
        "origin": checkpoint.origin,
        "tenant": tenant_id,
        "tree_size": checkpoint.size,
        "root": base64.b64encode(checkpoint.root).decode(),
        "key": key.vkey,
        "scope": {
            "kind": "full" if scope.full else "partial",
            "since": scope.since.isoformat() if scope.since else None,
            "until": scope.until.isoformat() if scope.until else None,
            "record_refs": list(scope.record_refs),
        },
        "counts": counts,
        "files": files,
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    (out / "manifest.json").write_bytes(manifest_bytes)
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    (out / "manifest.sig").write_text(sign_note(f"{MANIFEST_NOTE}\n{manifest_digest}\n", key))
    return ExportSummary(out, checkpoint, counts["events"], counts["erased"])


def _selected(  # noqa: PLR0917 - one call site
    log: TenantLog,
    tenant_id: str,
    size: int,
    scope: ExportScope,
    records: set[UUID] | None,
    seen: Callable[[LogEntry], None],
) -> Iterator[LogEntry]:
    for entry in log.entries(tenant_id, size, records):
        seen(entry)
        if scope.admits(entry.content):
            yield entry


def _fhir(content: dict[str, Any], fhir: TextIO, counts: dict[str, int]) -> None:
    resource = audit_event(content)
    if resource is not None:
        fhir.write(json.dumps(resource, sort_keys=True, separators=(",", ":")) + "\n")
        kind = "disclosures" if content["type"] == "DisclosureMade" else "accesses"
        counts[kind] += 1


class _Accounting:
    """Plans each record's accounting once the leaves have streamed.

    Memory stays flat: while streaming it keeps only which records have an accountable fact in
    scope and each record's version at the checkpoint; at the end it reads one record at a time
    and judges its facts against exactly the history the checkpoint covers.
    """

    def __init__(self, audit: AuditLog, scope: ExportScope) -> None:
        self._audit = audit
        self._scope = scope
        self._versions: dict[UUID, int] = {}
        self._refs: dict[UUID, str] = {}

    def seen(self, entry: LogEntry) -> None:
        """Note every leaf up to the checkpoint, in scope or not: the record's version."""
        self._versions[entry.record_id] = max(entry.version, self._versions.get(entry.record_id, 0))

    def collect(self, entry: LogEntry, content: dict[str, Any]) -> None:
        """Note the record of an opened leaf in scope that the accounting lists."""
        if content["type"] in ACCOUNTED:
            self._refs[entry.record_id] = content["record_ref"]

    def rows(self) -> Iterator[list[object]]:
        """Every record's accounting as CSV rows, records in ``record_ref`` order."""
        today = datetime.now(UTC).date()
        rulebook = self._audit.rulebook
        for record in sorted(self._refs, key=self._refs.__getitem__):
            stored = [
                (event.originator_version, event.fact)
                for event in self._audit.events.get(record, lte=self._versions[record])
                if isinstance(event, ClientRecord.FactRecorded)
            ]
            history = [fact for _, fact in stored if isinstance(fact, LEGAL_FACTS)]
            found: list[Accountable] = []
            details: dict[Hashable, Details] = {}
            for version, fact in stored:
                if not isinstance(fact, AccountedFact) or not self._scope.admits(
                    {"event": {"occurred_at": fact.occurred_at.isoformat()}}
                ):
                    continue
                judgment = judge_on_record(rulebook, history, fact)
                if judgment.accountable:
                    found.append(judged(rulebook, version, fact, judgment))
                    details[version] = details_of(fact)
            until = self._scope.until or today
            for entry in plan(found, since=self._scope.since, until=until, today=today):
                yield row(entry.item(details, self._refs[record]))


def _write_consistency(
    log: TenantLog, tenant_id: str, checkpoint: Checkpoint, previous: str, out: Path
) -> None:
    # The log's own note of that checkpoint when it has one: a checkpoint signed before keys
    # were per log then carries the signature by the log's key too (TenantLog._named).
    previous = log.stored_note(tenant_id, previous) or previous
    old_size = int(previous.split("\n", 2)[1])
    leaves = log.leaf_hashes(tenant_id, checkpoint.size)
    proof = merkle.consistency_proof(leaves, old_size) if 0 < old_size < checkpoint.size else []
    link = {
        "previous_checkpoint": previous,
        "proof": [base64.b64encode(p).decode() for p in proof],
        "from_size": old_size,
        "to_size": checkpoint.size,
    }
    (out / "consistency.json").write_text(json.dumps(link, indent=2) + "\n")
