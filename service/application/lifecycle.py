"""The records-lifecycle use case: how long each record is kept, and its destruction.

Destruction is crypto-shredding (PRODUCT.md 2.2). In order, each step safe to repeat:

1. read the record's whole history and compute its retention (``domain/policy/retention.py``):
   a record is destroyed only when it is due and nothing blocks it (a legal hold, an open legal
   demand, a birth date not on record);
2. append its certificate of destruction (``ClientRecord.Destroyed``: who, when, the rule and
   citation, the method, and what the 6-year documentation duty still needs of its
   disclosures, naming no client) in one transaction with its tenant-log leaf; a concurrent
   write to the record fails the append on the record's version and the check is made again;
3. destroy the record's data key, which also tells every other process (``RecordKeyring.sync``);
4. purge every plaintext copy: snapshots, read models, the writer's and projector's memory,
   the self-audit's mentions of the record_ref, and every export bundle of the tenant.

A run interrupted after step 2 is finished by running it again: the certificate is found and
the remaining steps are redone.
"""

import base64
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain import canonical, facts
from domain.errors import RecordNotFoundError
from domain.policy.engine import Finding
from domain.policy.retention import Retention, retention_of
from domain.policy.rulesets import Rulebook
from domain.record import ClientRecord, DocumentedDisclosure
from projections.model import OVERDUE_RULE, store_overdue
from projections.views import RetentionBlock, RetentionView
from service.application.ingest import Ingest, leaf_content
from service.storage.app import AuditLog, StoredEvent
from service.storage.tenant_log import LogRow, LogWrite

__all__ = [
    "Certificate",
    "DestructionRefusedError",
    "Lifecycle",
    "RecordRetention",
    "retention_status",
    "retention_view",
]


@dataclass(frozen=True)
class Certificate:
    """A record's certificate of destruction, as stored, with when and where."""

    record_id: UUID
    position: int
    destroyed_at: datetime
    event: ClientRecord.Destroyed


@dataclass(frozen=True)
class RecordRetention:
    """One record's retention now, or its certificate if it was destroyed."""

    record_ref: str | None  # None once destroyed: the certificate names no client
    record_id: UUID
    retention: Retention | None
    certificate: Certificate | None

    def due(self, today: date) -> bool:
        """Whether the record may be destroyed today."""
        return (
            self.certificate is None
            and self.retention is not None
            and (self.retention.destroyable(today))
        )


class DestructionRefusedError(Exception):
    """Raised when a record is not due or something blocks its destruction."""

    def __init__(self, record_ref: str, reasons: list[tuple[str, str]]) -> None:
        super().__init__(
            f"record {record_ref} cannot be destroyed: " + "; ".join(r for _, r in reasons)
        )
        self.record_ref = record_ref
        self.reasons = reasons  # (kind, what stops it and what to do)


def _history(stored: list[StoredEvent]) -> list[facts.FactBase]:
    return [s.event.fact for s in stored if isinstance(s.event, ClientRecord.FactRecorded)]


def _certificate(record: UUID, stored: list[StoredEvent]) -> Certificate | None:
    for item in reversed(stored):
        if isinstance(item.event, ClientRecord.Destroyed):
            return Certificate(record, item.position, item.recorded_at, item.event)
    return None


def documented(history: list[facts.FactBase]) -> tuple[DocumentedDisclosure, ...]:
    """What 45 CFR 164.530(j) still needs of a record's disclosures once it is gone."""
    kept: list[DocumentedDisclosure] = []
    for fact in sorted(history, key=lambda f: f.occurred_at):
        if isinstance(fact, facts.DisclosureMade):
            basis = fact.legal_basis.kind.value
        elif isinstance(fact, facts.MandatedReportFiled):
            basis = "mandated_report"
        elif isinstance(fact, facts.DutyToWarnExercised):
            basis = "duty_to_warn"
        else:
            continue
        kept.append(
            DocumentedDisclosure(
                type=type(fact).__name__, occurred_on=fact.occurred_at.date(), legal_basis=basis
            )
        )
    return tuple(kept)


class Lifecycle:
    """Retention reports and destruction of one tenant's records."""

    def __init__(
        self, audit: AuditLog, ingest: Ingest, purge: Callable[[str, str, UUID], None]
    ) -> None:
        self._audit = audit
        self._ingest = ingest
        self._purge = purge  # (tenant, record_ref, record id): every plaintext copy elsewhere

    def retention(self, tenant_id: str, record_ref: str, today: date) -> RecordRetention:
        """A record's retention (raises RecordNotFoundError if the tenant has no such record)."""
        stored = self._audit.read_record(tenant_id, record_ref)
        return self.report(record_ref, stored, today)

    def report(
        self, record_ref: str | None, stored: list[StoredEvent], today: date
    ) -> RecordRetention:
        rid = stored[0].event.originator_id
        certificate = _certificate(rid, stored)
        retention = None
        if certificate is None:
            retention = retention_of(_history(stored), self._audit.rulebook, today=today)
        return RecordRetention(
            record_ref if certificate is None else None, rid, retention, certificate
        )

    def records(
        self, tenant_id: str, today: date, ids: Sequence[UUID] | None = None
    ) -> Iterator[RecordRetention]:
        """Every record of the tenant (or those of ``ids``, as ``tenant_log.records`` lists
        them) with its retention, in the order of first appearance."""
        for rid in self._audit.tenant_log.records(tenant_id) if ids is None else ids:
            stored = self._audit.read_stream(tenant_id, rid)
            if not stored:
                continue
            ref = getattr(stored[0].event, "record_ref", None)
            yield self.report(ref, stored, today)

    def sweep(self, tenant_id: str, today: date) -> dict[str, int]:
        """Raise the findings rule RT-1 on every record kept past its retention with nothing
        holding it, and withdraw it where that no longer holds (destroyed, held again, a later
        service): how many were raised and withdrawn. Run daily by ``serve`` and by
        ``disclosure-audit records sweep``."""
        changed = {"raised": 0, "withdrawn": 0}
        at = self._audit.last_position(tenant_id)
        for report in self.records(tenant_id, today):
            finding = None
            retention = report.retention
            if retention is not None and report.due(today):
                finding = _overdue(self._audit.rulebook, retention)
            with self._audit.db.transaction() as cursor:
                outcome = store_overdue(cursor, tenant_id, report.record_id, finding, at)
            if outcome is not None:
                changed[outcome] += 1
        return changed

    def destroy(
        self, tenant_id: str, record_ref: str, destroyed_by: str, today: date
    ) -> Certificate:
        """Destroy a due record (see the module's steps); its certificate.

        Raises DestructionRefusedError with the reasons when it is not due or is blocked, and
        RecordNotFoundError when the tenant has no such record. A record destroyed already
        answers its certificate (and the purge is redone).
        """
        rid = self._audit.record_id(tenant_id, record_ref)
        for _attempt in range(5):
            stored = self._audit.read_record(tenant_id, record_ref)
            certificate = _certificate(rid, stored)
            if certificate is not None:
                break
            history = _history(stored)
            if not history and self._audit.key_of(rid) is None:
                raise DestructionRefusedError(
                    record_ref,
                    [("destroyed", "its key was destroyed already, without a certificate")],
                )
            retention = retention_of(history, self._audit.rulebook, today=today)
            if not retention.destroyable(today):
                raise DestructionRefusedError(record_ref, _reasons(retention, today))
            try:
                certificate = self._append(tenant_id, rid, retention, history, destroyed_by)
            except IntegrityError:
                continue  # the record changed meanwhile: judge it again
            break
        else:
            raise DestructionRefusedError(
                record_ref,
                [("contention", "the record kept changing while it was judged; try again")],
            )
        self._ingest.forget(rid)
        self._audit.shred(rid)
        self._purge(tenant_id, record_ref, rid)
        return certificate

    def _append(
        self,
        tenant_id: str,
        rid: UUID,
        retention: Retention,
        history: list[facts.FactBase],
        destroyed_by: str,
    ) -> Certificate:
        record = self._audit.load(rid)
        if record is None:
            raise RecordNotFoundError(str(rid))
        if retention.due_on is None:  # destroyable() said otherwise; keep mypy and us honest
            raise DestructionRefusedError(str(rid), [("no_due_date", "no due date")])
        now = datetime.now(UTC)
        record.destroy(
            now,
            destroyed_by=destroyed_by,
            ruleset=retention.ruleset,
            rule=retention.rule,
            citation=retention.citation,
            last_service=retention.last_service,
            due_on=retention.due_on,
            method=retention.method,
            method_citation=retention.method_citation,
            documentation=documented(history),
        )
        event = cast(ClientRecord.Destroyed, record.pending_events[-1])
        salt = base64.b64encode(secrets.token_bytes(16)).decode()
        content = leaf_content(event, salt)
        content["event"]["record_id"] = str(rid)
        row = LogRow(
            tenant_id=tenant_id,
            leaf=canonical.Splice(content, "position"),
            key=self._audit.lifecycle_key,
            recorded_at=now,
            fact=None,
        )
        placed = self._audit.append([record], LogWrite({(rid, event.originator_version): row}))
        position = placed[(rid, event.originator_version)].position
        return Certificate(rid, position, now, event)


def _overdue(rulebook: Rulebook, retention: Retention) -> Finding:
    ruleset = next(r for r in rulebook.rulesets.values() if r.label == retention.ruleset)
    meta = ruleset.rules[OVERDUE_RULE]
    return Finding(
        rule=OVERDUE_RULE,
        severity=meta.severity,
        citation=f"{retention.citation}; {meta.citation}",
        message=(
            f"Kept past its retention: due for destruction since {retention.due_on} "
            f"({retention.ruleset}, {retention.rule} rule, last service "
            f"{retention.last_service}). Destroy it with 'disclosure-audit records destroy', "
            "or record the legal hold that keeps it."
        ),
        evidence=(),
        ruleset=retention.ruleset,
    )


def _reasons(retention: Retention, today: date) -> list[tuple[str, str]]:
    reasons: list[tuple[str, str]] = [(block.kind, block.reason) for block in retention.blocks]
    if retention.due_on is not None and today < retention.due_on:
        reasons.append(
            (
                "not_yet_due",
                f"it is kept until {retention.keep_until} ({retention.citation}); "
                f"destruction is due from {retention.due_on}",
            )
        )
    if retention.due_on is None and not reasons:
        reasons.append(("no_due_date", "no service is on record to count the retention from"))
    return reasons


def retention_status(retention: Retention, today: date) -> str:
    """kept (not yet due, or no due date), due, or blocked (due, but something stops it)."""
    if retention.due_on is None or today < retention.due_on:
        return "kept"
    return "blocked" if retention.blocks else "due"


def retention_view(report: RecordRetention, today: date) -> RetentionView:
    """The ``retention`` block of a record's status."""
    certificate = report.certificate
    if certificate is not None:
        return RetentionView(
            status="destroyed",
            ruleset=certificate.event.ruleset,
            rule=certificate.event.rule,
            citation=certificate.event.citation,
            last_service=certificate.event.last_service,
            due_on=certificate.event.due_on,
            destroyed_at=certificate.destroyed_at,
            certificate_position=certificate.position,
        )
    retention = report.retention
    if retention is None:  # pragma: no cover - a report has one or the other
        raise ValueError("a retention report without retention or certificate")
    blocks = [
        RetentionBlock(kind=b.kind, ref=b.ref, since=b.since, reason=b.reason)
        for b in retention.blocks
    ]
    status = retention_status(retention, today)
    return RetentionView(
        status=status,
        ruleset=retention.ruleset,
        rule=retention.rule,
        citation=retention.citation,
        last_service=retention.last_service,
        keep_until=retention.keep_until,
        due_on=retention.due_on,
        blocks=blocks,
    )
