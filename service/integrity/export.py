"""Writes the regulator export bundle that ``service/verify.py`` checks (format described there).

A full export streams every leaf in order, so memory stays flat however long the log is. A
scoped export (records, a date range) carries an inclusion proof per event and nothing of other
records. ``accounting.csv`` lists the accountable disclosures (as judged at ingest) and
``auditevents.ndjson`` the disclosures and accesses as FHIR R4 AuditEvent resources.
"""

import base64
import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import rfc8785

from domain import merkle
from service.integrity.fhir import audit_event
from service.integrity.log import Checkpoint, LogEntry, TenantLog
from service.integrity.signing import sign_note
from service.spreadsheet import safe_row
from service.storage.app import AuditLog
from service.verify import FORMAT, MANIFEST_NOTE

__all__ = ["ExportScope", "ExportSummary", "write_bundle"]

ACCOUNTING_COLUMNS = [
    "date", "recipient_name", "recipient_address", "description", "purpose", "legal_basis",
    "disclosure_id", "record_ref",
]  # fmt: skip


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


def _accounting_row(content: dict[str, Any], judgment: dict[str, Any]) -> list[str] | None:
    event = content.get("event", {})
    if content.get("type") != "DisclosureMade" or judgment.get("accountable") is not True:
        return None
    return [
        event["occurred_at"][:10],
        event["recipient"]["name"],
        event["recipient"].get("address", ""),
        "records: " + ", ".join(event["categories"]),
        event["purpose_of_use"],
        event["legal_basis"]["kind"],
        event["disclosure_id"],
        content["record_ref"],
    ]


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
    key = log.log_keys.current(create=False)
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
        writer.writerow(ACCOUNTING_COLUMNS)
        for entry in _selected(log, tenant_id, checkpoint.size, scope, record_ids):
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
                _derived(content, entry, audit=audit, fhir=fhir, writer=writer, counts=counts)
            if progress is not None:
                progress(entry.position, checkpoint.size)

    (out / "checkpoint.txt").write_text(checkpoint.note)
    (out / "public-key.txt").write_text(log.log_keys.vkeys())
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


def _selected(
    log: TenantLog, tenant_id: str, size: int, scope: ExportScope, records: set[UUID] | None
) -> Iterator[LogEntry]:
    for entry in log.entries(tenant_id, size, records):
        if scope.admits(entry.content):
            yield entry


def _derived(
    content: dict[str, Any],
    entry: LogEntry,
    *,
    audit: AuditLog,
    fhir: TextIO,
    writer: Any,
    counts: dict[str, int],
) -> None:
    resource = audit_event(content)
    if resource is not None:
        fhir.write(json.dumps(resource, sort_keys=True, separators=(",", ":")) + "\n")
        kind = "disclosures" if content["type"] == "DisclosureMade" else "accesses"
        counts[kind] += 1
    if content["type"] == "DisclosureMade" and entry.receipt:
        row = _accounting_row(
            content, audit.open_judgment(entry.record_id, entry.version, entry.receipt)
        )
        if row is not None:
            writer.writerow(safe_row(row))  # names and ids a spreadsheet must not evaluate
            counts["accounting_rows"] += 1


def _write_consistency(
    log: TenantLog, tenant_id: str, checkpoint: Checkpoint, previous: str, out: Path
) -> None:
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
