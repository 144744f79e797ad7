"""The read models: judged facts (access log, disclosures register, accounting) and findings.

Each event is applied inside the caller's transaction, which also advances the tracking
position, so a read model never misses an event nor applies one twice. A legal fact (a
revocation, an order, a waiver…) re-judges every fact of its record already in the model, so a
late revocation recorded after a disclosure turns that disclosure's verdict (findings are added
or withdrawn, never deleted).
"""

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from domain import facts
from domain.policy.accounting import impermissible_rules, instrument_of
from domain.policy.engine import Finding, Judgment, judge_on_record
from domain.policy.rulesets import Rulebook
from domain.policy.state import LEGAL_FACTS, party_key
from domain.record import ClientRecord
from projections.counts import Key, bump, fact_counts, finding_counts, forget_record
from projections.ports import Cursor, History, Sealer
from projections.schema import acks_join

__all__ = [
    "JUDGED",
    "OVERDUE_RULE",
    "ReadModel",
    "finding_id",
    "listed",
    "store_overdue",
    "utc_text",
]

JUDGED = (
    facts.RecordAccessed,
    facts.DisclosureMade,
    facts.MandatedReportFiled,
    facts.DutyToWarnExercised,
)
"""The facts that appear in the access log, the disclosures register and the findings."""


OVERDUE_RULE = "RT-1"
"""A finding about a whole record (kept past its retention), raised and withdrawn by the
retention sweep (``store_overdue``), never by judging a fact."""


def store_overdue(
    cursor: Cursor, tenant: str, record: UUID, finding: Finding | None, at: int
) -> str | None:
    """Raise, update or withdraw a record's RT-1 finding; what changed ("raised", "withdrawn")
    or None. It sits on the record's latest judged fact, so the queue orders it there and a
    purge of the record takes it away with the rest."""
    ident = finding_id(tenant, record, OVERDUE_RULE)
    if cursor.dialect == "postgres":  # two sweeps at once: one at a time per finding
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (ident.int >> 65,))
    rows = cursor.fetchall(
        "SELECT x.finding_id, x.withdrawn, x.message, x.rule, x.severity, f.occurred_day,"  # noqa: S608
        " a.resolution FROM pv_findings x JOIN pv_facts f ON f.tenant_id = x.tenant_id"
        " AND f.position = x.subject_position" + acks_join(cursor) + " WHERE x.finding_id = %s",
        (ident,),
    )
    before = rows[0] if rows else None

    def counts(row: Any, sign: int) -> Counter[Key]:
        found = finding_counts(row["rule"], row["severity"], str(row["occurred_day"])[:7],
                               withdrawn=bool(row["withdrawn"]),
                               acknowledged=row.get("resolution") is not None)  # fmt: skip
        return Counter({key: sign * n for key, n in found.items()})

    if finding is None:
        if before is None or before["withdrawn"]:
            return None
        cursor.execute(
            "UPDATE pv_findings SET withdrawn = 1, changed_position = %s WHERE finding_id = %s",
            (at, ident),
        )
        bump(cursor, tenant, counts(before, -1))
        return "withdrawn"
    latest = cursor.fetchall(
        "SELECT position, event_id, occurred_day FROM pv_facts WHERE tenant_id = %s"
        " AND record_id = %s ORDER BY position DESC LIMIT 1",
        (tenant, record),
    )
    if not latest:
        return None  # nothing of the record is projected yet: the next sweep raises it
    subject = latest[0]
    values = (finding.severity, finding.citation, finding.message,
              json.dumps([str(e) for e in finding.evidence]), finding.ruleset)  # fmt: skip
    if before is None:
        _insert_finding(cursor, (ident, tenant, record, subject["position"],
                                 subject["event_id"], OVERDUE_RULE), values, at)  # fmt: skip
    elif before["withdrawn"] or before["message"] != finding.message:
        bump(cursor, tenant, counts(before, -1))
        cursor.execute(
            "UPDATE pv_findings SET subject_position = %s, subject_event_id = %s,"
            " severity = %s, citation = %s, message = %s, evidence = %s, ruleset = %s,"
            " withdrawn = 0, changed_position = %s WHERE finding_id = %s",
            (subject["position"], subject["event_id"], *values, at, ident),
        )
    else:
        return None
    after = {"rule": OVERDUE_RULE, "severity": finding.severity, "withdrawn": 0,
             "occurred_day": subject["occurred_day"],
             "resolution": before["resolution"] if before else None}  # fmt: skip
    bump(cursor, tenant, counts(after, +1))
    return "raised"


def _insert_finding(
    cursor: Cursor, keys: tuple[object, ...], values: tuple[object, ...], at: int
) -> None:
    """A new finding row: ``keys`` (id, tenant, record, subject position and event, rule) and
    ``values`` (severity, citation, message, evidence, ruleset), raised at position ``at``."""
    cursor.execute(
        "INSERT INTO pv_findings (finding_id, tenant_id, record_id, subject_position,"
        " subject_event_id, rule, severity, citation, message, evidence, ruleset,"
        " withdrawn, raised_position, changed_position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s)",
        (*keys, *values, at, at),
    )


def finding_id(tenant_id: str, subject: UUID, rule: str) -> UUID:
    """A finding's stable id: the same rule on the same fact is the same finding."""
    return uuid5(NAMESPACE_URL, f"disclosure-audit/finding/{tenant_id}/{subject}/{rule}")


def utc_text(moment: datetime) -> str:
    """A timestamp as fixed-width UTC text: it orders correctly as text (SQLite) and parses as
    a timestamp (PostgreSQL)."""
    # isoformat, not strftime: strftime("%Y") does not zero-pad years before 1000 on glibc, and
    # PostgreSQL then refuses the text (a stall on one event, for good).
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC or 9999 west of it, stored before the API's
        # year range existed: the nearest moment UTC can hold keeps the order
        edge = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
        utc = edge[0] if moment.year == 1 else edge[1]
    return utc.isoformat(timespec="microseconds")


def _column(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a fact stored before the API refused NUL in identifiers
    # must still project (facts.STORED), so its clear-text columns get U+FFFD instead.
    return text.replace("\x00", "\ufffd")


def _month(fact: facts.FactBase) -> str:
    """The month of the fact's own day (as ``pv_facts.occurred_day``)."""
    return fact.occurred_at.date().isoformat()[:7]


def listed(values: list[str]) -> str:
    """A list as ``,a,b,`` so that ``LIKE '%,a,%'`` finds one member."""
    return "," + ",".join(sorted(values)) + "," if values else ""


class ReadModel:
    """Applies client-record events to the read-model tables."""

    def __init__(self, rulebook: Rulebook, history: History, sealer: Sealer) -> None:
        self.rulebook = rulebook
        self._history = history
        self._sealer = sealer
        # record -> (complete up to this version, its legal facts with their versions): a long
        # record is read from the store once, then extended as its events arrive.
        self._records: dict[UUID, tuple[int, list[tuple[int, facts.FactBase]]]] = {}

    def legal_history(self, record: UUID, version: int) -> list[facts.FactBase]:
        """The record's legal facts up to ``version``."""
        entry = self._records.get(record)
        if entry is None or entry[0] < version:
            # Read only what is not held yet: re-reading a whole long record for every page
            # that touches it made projecting it quadratic (a 10,000-access record, 50 pages).
            known, held = entry if entry is not None else (0, [])
            loaded = [(v, f) for v, f in self._history.facts(record, version, after=known)
                      if isinstance(f, LEGAL_FACTS)]  # fmt: skip
            entry = (version, held + loaded)
            self._records[record] = entry
            if len(self._records) > 10_000:
                self._records.pop(next(iter(self._records)))
        return [f for v, f in entry[1] if v <= version]

    def _advance(self, record: UUID, version: int, fact: facts.FactBase) -> None:
        entry = self._records.get(record)
        if entry is None or entry[0] >= version:
            return  # not cached, or this event is being applied again after a rollback
        if entry[0] != version - 1:
            del self._records[record]
            return
        legal = [(version, fact)] if isinstance(fact, LEGAL_FACTS) else []
        self._records[record] = (version, entry[1] + legal)

    def forget(self, record: UUID) -> None:
        """Drop what is held in memory of a record (destroyed by another process)."""
        self._records.pop(record, None)

    def purge(self, cursor: Cursor, record: UUID) -> None:
        """Forget a crypto-shredded record: a rebuild would not see its events either."""
        for tenant, counted in forget_record(cursor, record).items():
            bump(cursor, tenant, Counter({key: -n for key, n in counted.items()}))
        cursor.execute("DELETE FROM pv_facts WHERE record_id = %s", (record,))
        cursor.execute("DELETE FROM pv_findings WHERE record_id = %s", (record,))
        self._records.pop(record, None)

    def apply(self, cursor: Cursor, event: object, position: int) -> None:
        """Apply one stored event at its tenant-log position."""
        if not isinstance(event, ClientRecord.FactRecorded):
            return  # registrations and redacted events carry nothing to judge
        fact, tenant, record = event.fact, event.tenant_id, event.originator_id
        if isinstance(fact, facts.FindingAcknowledged):
            self._acknowledge(cursor, tenant, fact, position)
            return
        self.legal_history(record, event.originator_version - 1)
        self._advance(record, event.originator_version, fact)
        history = self.legal_history(record, event.originator_version)
        if isinstance(fact, LEGAL_FACTS):
            # A fact is judged by what occurred up to its own time, so a legal fact can change
            # only the verdicts of facts that occurred at or after it; the jurisdiction (from
            # RecordOpened) can change all of them.
            since = None if isinstance(fact, facts.RecordOpened) else utc_text(fact.occurred_at)
            self._rejudge(cursor, tenant, record, history, position, since)
        if isinstance(fact, JUDGED):
            judgment = judge_on_record(self.rulebook, history, fact)
            self._insert(cursor, event, fact, position, judgment)
            self._store_findings(
                cursor, tenant, record, (fact.event_id, position, _month(fact)), judgment, position,
                fresh=True,
            )  # fmt: skip

    @staticmethod
    def _acknowledge(
        cursor: Cursor, tenant: str, fact: facts.FindingAcknowledged, position: int
    ) -> None:
        # The queries match an acknowledgement to its finding by the id's canonical text, so
        # one naming anything else acknowledges nothing in the counters either.
        try:
            ident: UUID | None = UUID(fact.finding_id)
        except ValueError:
            ident = None
        canonical = ident is not None and str(ident) == fact.finding_id
        first = canonical and cursor.fetchone(
            "SELECT 1 AS found FROM pv_acks WHERE tenant_id = %s AND finding_id = %s",
            (tenant, fact.finding_id),
        ) is None  # fmt: skip
        cursor.execute(
            "INSERT INTO pv_acks (tenant_id, finding_id, resolution, position)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, finding_id) DO UPDATE"
            " SET resolution = excluded.resolution, position = excluded.position",
            (tenant, _column(fact.finding_id), fact.resolution.value, position),
        )
        if not first:
            return
        found = cursor.fetchone(
            "SELECT rule, severity, withdrawn FROM pv_findings"
            " WHERE tenant_id = %s AND finding_id = %s",
            (tenant, ident),
        )
        if found is not None and not found["withdrawn"]:
            opened = ("open", "", f"{found['rule']} {found['severity']}")
            bump(cursor, tenant, Counter({opened: -1}))

    def _insert(
        self,
        cursor: Cursor,
        event: ClientRecord.FactRecorded,
        fact: facts.FactBase,
        position: int,
        judgment: Judgment,
    ) -> None:
        categories = [c.value for c in getattr(fact, "categories", None) or []]
        purpose = getattr(fact, "purpose_of_use", None)
        basis = recipient = None
        # Recipients are blinded by their normalised name: "Morgan & Lee LLP" is "Morgan and
        # Lee, LLP" to the ?recipient= filter too.
        if isinstance(fact, facts.DisclosureMade):
            basis = fact.legal_basis.kind.value
            recipient = self._sealer.blind(party_key(fact.recipient.name))
        elif isinstance(fact, facts.MandatedReportFiled):
            basis, recipient = "mandated_report", self._sealer.blind(party_key(fact.agency))
        elif isinstance(fact, facts.DutyToWarnExercised):
            # Judged like a disclosure (DW-2, MN-2); the first party warned stands for it.
            basis = "duty_to_warn"
            recipient = self._sealer.blind(party_key(fact.notified[0].name))
        day = fact.occurred_at.date().isoformat()
        sealed = self._sealer.seal(
            event.originator_id,
            json.dumps(
                {"record_ref": event.record_ref, "fact": fact.model_dump(mode="json")}
            ).encode(),
        )
        cursor.execute(
            "INSERT INTO pv_facts (tenant_id, position, record_id, version, type, event_id,"
            " occurred_at, occurred_day, actor_id, actor_role, purpose, categories, break_glass,"
            " legal_basis, recipient_key, accountable, excess, impermissible, ruleset, instrument,"
            " sealed, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.tenant_id, position, event.originator_id, event.originator_version,
                type(fact).__name__, fact.event_id, utc_text(fact.occurred_at),
                day, _column(fact.actor.id), fact.actor.role.value,
                purpose.value if purpose else None, listed(categories),
                int(bool(getattr(fact, "break_glass", False))), basis, recipient,
                *self._verdict(fact, judgment), sealed, utc_text(event.timestamp),
            ),
        )  # fmt: skip
        bump(cursor, event.tenant_id, fact_counts(type(fact).__name__, day, basis,
                                                  fact.actor.role.value))  # fmt: skip

    def _verdict(self, fact: facts.FactBase, judgment: Judgment) -> tuple[object, ...]:
        """The judgment's columns: accountable, excess, impermissible, ruleset, instrument."""
        instrument = instrument_of(fact, judgment)
        return (
            None if judgment.accountable is None else int(judgment.accountable),
            listed([c.value for c in judgment.excess_categories]),
            listed(list(impermissible_rules(self.rulebook, judgment))),
            judgment.ruleset,
            None if instrument is None else self._sealer.blind(":".join(instrument)),
        )

    def _rejudge(  # noqa: PLR0917 - one call site
        self,
        cursor: Cursor,
        tenant: str,
        record: UUID,
        history: list[facts.FactBase],
        position: int,
        since: str | None,
    ) -> None:
        query = "SELECT position, sealed FROM pv_facts WHERE tenant_id = %s AND record_id = %s"
        params: tuple[object, ...] = (tenant, record)
        if since is not None:
            query += " AND occurred_at >= %s"
            params = (*params, since)
        rows = cursor.fetchall(query + " ORDER BY position", params)
        for row in rows:
            opened = self._sealer.open(record, bytes(row["sealed"]))
            if opened is None:
                continue  # crypto-shredded: nothing left to judge
            content: dict[str, Any] = json.loads(opened)
            subject = facts.FACT_TYPES_BY_NAME[content["fact"]["type"]].model_validate(
                content["fact"], context=facts.STORED
            )
            judgment = judge_on_record(self.rulebook, history, subject)
            cursor.execute(
                "UPDATE pv_facts SET accountable = %s, excess = %s, impermissible = %s,"
                " ruleset = %s, instrument = %s WHERE tenant_id = %s AND position = %s",
                (*self._verdict(subject, judgment), tenant, row["position"]),
            )
            self._store_findings(
                cursor, tenant, record, (subject.event_id, int(row["position"]), _month(subject)),
                judgment, position,
            )  # fmt: skip

    @staticmethod
    def _store_findings(  # noqa: PLR0917 - one call site, all positional for brevity
        cursor: Cursor,
        tenant: str,
        record: UUID,
        judged: tuple[UUID, int, str],
        judgment: Judgment,
        at: int,
        *,
        fresh: bool = False,
    ) -> None:
        """Store the judged fact's findings; ``judged`` is its event id, position and month.

        ``fresh``: the fact was projected just now for the first time (its pv_facts row, keyed
        by position, was inserted in this transaction, and event ids are unique in a tenant),
        so it has no findings yet and none need reading.
        """
        subject, subject_position, month = judged
        existing = {} if fresh else {
            str(row["finding_id"]): row
            for row in cursor.fetchall(
                "SELECT x.finding_id, x.withdrawn, x.message, x.rule, x.severity, a.resolution"  # noqa: S608
                " FROM pv_findings x"
                + acks_join(cursor)
                + " WHERE x.tenant_id = %s AND x.subject_event_id = %s AND x.rule <> %s",
                (tenant, subject, OVERDUE_RULE),
            )
        }  # fmt: skip
        counted: Counter[Key] = Counter()

        def count(row: Any, sign: int) -> None:
            for key, n in finding_counts(
                row["rule"], row["severity"], month, withdrawn=bool(row["withdrawn"]),
                acknowledged=row.get("resolution") is not None,
            ).items():  # fmt: skip
                counted[key] += sign * n

        current = set()
        for finding in judgment.findings:
            ident = finding_id(tenant, subject, finding.rule)
            current.add(str(ident))
            values = (
                finding.severity, finding.citation, finding.message,
                json.dumps([str(e) for e in finding.evidence]), finding.ruleset,
            )  # fmt: skip
            before = existing.get(str(ident))
            if before is None or before["withdrawn"] or before["message"] != finding.message:
                if before is not None:
                    count(before, -1)
                count({"rule": finding.rule, "severity": finding.severity, "withdrawn": 0,
                       "resolution": before["resolution"] if before else None}, +1)  # fmt: skip
            if before is None:
                _insert_finding(cursor, (ident, tenant, record, subject_position, subject,
                                         finding.rule), values, at)  # fmt: skip
            elif before["withdrawn"] or before["message"] != finding.message:
                cursor.execute(
                    "UPDATE pv_findings SET severity = %s, citation = %s, message = %s,"
                    " evidence = %s, ruleset = %s, withdrawn = 0, changed_position = %s"
                    " WHERE finding_id = %s",
                    (*values, at, ident),
                )
        for stale, row in existing.items():
            if stale not in current and not row["withdrawn"]:
                count(row, -1)
                cursor.execute(
                    "UPDATE pv_findings SET withdrawn = 1, changed_position = %s"
                    " WHERE finding_id = %s",
                    (at, UUID(stale)),
                )
        bump(cursor, tenant, counted)
