"""Queries over the read models. They read tables only (never aggregates) and page by position.

Each returns view models (``projections.views``); personal fields are opened with the record
key, and a crypto-shredded record's rows come back with ``redacted=True`` instead.
"""

import json
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

from domain import facts
from domain.policy.accounting import (
    ACCOUNTED,
    Accountable,
    AccountedFact,
    Details,
    accountable_of,
    details_of,
    lookback_of,
    plan,
    window_start,
)
from domain.policy.rulesets import Rulebook
from projections.model import utc_text
from projections.ports import Cursor, Sealer
from projections.schema import acks_join
from projections.views import (
    AccessEntry,
    AccountingEntry,
    DisclosureEntry,
    FindingStatus,
    FindingView,
)

__all__ = [
    "AuditEventFilter",
    "FactFilter",
    "FindingFilter",
    "Page",
    "access_page",
    "accounting",
    "audit_event_page",
    "disclosure_page",
    "finding_page",
    "recent_disclosures",
]


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of items and the position to continue after (None at the end)."""

    items: list[T]
    next_after: str | None


@dataclass(frozen=True)
class FactFilter:
    """Filters of the access log and the disclosures register (None means any)."""

    type: str
    record_id: UUID | None = None
    actor_id: str | None = None
    role: str | None = None
    category: str | None = None
    purpose_of_use: str | None = None
    break_glass: bool | None = None
    recipient_key: bytes | None = None
    legal_basis: str | None = None
    accountable: bool | None = None
    rule: str | None = None
    since: date | None = None
    until: date | None = None


def _where(tenant: str, f: FactFilter) -> tuple[str, list[object]]:
    clauses = ["f.tenant_id = %s", "f.type = %s"]
    params: list[object] = [tenant, f.type]
    simple = [
        ("f.record_id = %s", f.record_id), ("f.actor_id = %s", f.actor_id),
        ("f.actor_role = %s", f.role), ("f.purpose = %s", f.purpose_of_use),
        ("f.recipient_key = %s", f.recipient_key), ("f.legal_basis = %s", f.legal_basis),
        ("f.occurred_day >= %s", f.since.isoformat() if f.since else None),
        ("f.occurred_day <= %s", f.until.isoformat() if f.until else None),
    ]  # fmt: skip
    for clause, value in simple:
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if f.category is not None:
        clauses.append("f.categories LIKE %s")
        params.append(f"%,{f.category},%")
    if f.break_glass is not None:
        clauses.append("f.break_glass = %s")
        params.append(int(f.break_glass))
    if f.accountable is not None:
        clauses.append("f.accountable = %s")
        params.append(int(f.accountable))
    return " AND ".join(clauses), params


def _opened(sealer: Sealer, row: dict[str, Any]) -> dict[str, Any] | None:
    record = row["record_id"] if isinstance(row["record_id"], UUID) else UUID(row["record_id"])
    data = sealer.open(record, bytes(row["sealed"]))
    return None if data is None else dict(json.loads(data))


def _split(listed: str) -> list[str]:
    return [v for v in listed.split(",") if v]


def _findings_of(
    cursor: Cursor, tenant: str, subjects: dict[str, str | None]
) -> dict[str, list[FindingView]]:
    """The open and acknowledged findings of facts, by event id (``subjects``: event id to its
    record_ref)."""
    if not subjects:
        return {}
    marks = ", ".join(["%s"] * len(subjects))
    # Withdrawn findings are skipped here, not in SQL: with "withdrawn = 0" the planner, on a
    # table without statistics, preferred the (tenant, withdrawn) index and read every finding
    # of the practice (145 ms at 1M events, against 1.7 ms by the subject index).
    rows = cursor.fetchall(
        "SELECT x.*, a.resolution FROM pv_findings x" + acks_join(cursor) +  # noqa: S608
        f" WHERE x.tenant_id = %s AND x.subject_event_id IN ({marks}) ORDER BY x.rule",
        (tenant, *subjects),
    )  # fmt: skip
    found: dict[str, list[FindingView]] = {}
    for row in rows:
        if row["withdrawn"]:
            continue
        event_id = str(row["subject_event_id"])
        found.setdefault(event_id, []).append(
            _finding_view(row, row["resolution"], subjects[event_id])
        )
    return found


def _with_rule(
    cursor: Cursor,
    tenant: str,
    rule: str,
    where: tuple[str, list[object]],
    *,
    limit: int,
    after: int,
) -> list[dict[str, Any]]:
    """Up to ``limit + 1`` facts after ``after`` with an open finding of ``rule``.

    Driven by the rule's findings in position order (index pv_findings_rule; one finding per
    fact and rule), then their facts by primary key, in batches. As an EXISTS filter or a
    join, tables without statistics got plans that compared every disclosure with every
    finding of the rule (1.9 s at 1M events; 75 ms at 3,000).
    """
    clause, params = where
    rows: list[dict[str, Any]] = []
    batch = max(limit + 1, 200)
    while len(rows) <= limit:
        found = cursor.fetchall(
            "SELECT subject_position FROM pv_findings WHERE tenant_id = %s AND rule = %s"
            " AND withdrawn = 0 AND subject_position > %s ORDER BY subject_position LIMIT %s",
            (tenant, rule, after, batch),
        )
        positions = [int(r["subject_position"]) for r in found]
        if not positions:
            break
        marks = ", ".join(["%s"] * len(positions))
        # The LIMIT keeps the planner from merging the inner query into the outer one, where
        # without statistics it scanned every disclosure by (tenant, type) instead (1.1 s).
        rows += cursor.fetchall(
            "SELECT f.* FROM (SELECT * FROM pv_facts WHERE tenant_id = %s"  # noqa: S608
            f" AND position IN ({marks}) LIMIT %s) f WHERE {clause} ORDER BY f.position",
            (tenant, *positions, len(positions), *params),
        )
        after = positions[-1]
        if len(positions) < batch:
            break
    return rows[: limit + 1]


def _entry(f: FactFilter, row: dict[str, Any], content: dict[str, Any] | None) -> dict[str, Any]:
    base: dict[str, Any] = {"position": int(row["position"]), "event_id": row["event_id"]}
    if content is None:
        return base | {"occurred_at": row["occurred_at"], "redacted": True}
    fact = facts.FACT_TYPES_BY_NAME[f.type].model_validate(content["fact"], context=facts.STORED)
    fields = {name: getattr(fact, name) for name in type(fact).model_fields}
    return base | fields | {"redacted": False, "record_ref": content["record_ref"]}


def _fact_rows(
    cursor: Cursor, sealer: Sealer, tenant: str, f: FactFilter, *, limit: int, after: int
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], str | None]:
    """Up to ``limit`` (row, entry fields) of ``f.type`` after ``after``, and where to go on."""
    where, params = _where(tenant, f)
    if f.rule is None:
        rows = cursor.fetchall(
            f"SELECT f.* FROM pv_facts f WHERE {where} AND f.position > %s"  # noqa: S608
            " ORDER BY f.position LIMIT %s",
            (*params, after, limit + 1),
        )
    else:
        rows = _with_rule(cursor, tenant, f.rule, (where, params), limit=limit, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    next_after = str(rows[-1]["position"]) if more and rows else None
    return [(row, _entry(f, row, _opened(sealer, row))) for row in rows], next_after


def access_page(
    cursor: Cursor, sealer: Sealer, tenant: str, f: FactFilter, *, limit: int, after: int
) -> Page[AccessEntry]:
    """A page of the access log, oldest position first."""
    found, next_after = _fact_rows(cursor, sealer, tenant, f, limit=limit, after=after)
    return Page([AccessEntry.model_validate(entry) for _, entry in found], next_after)


def disclosure_page(
    cursor: Cursor, sealer: Sealer, tenant: str, f: FactFilter, *, limit: int, after: int
) -> Page[DisclosureEntry]:
    """A page of the disclosures register with each one's findings, oldest position first."""
    found, next_after = _fact_rows(cursor, sealer, tenant, f, limit=limit, after=after)
    findings = _findings_of(
        cursor, tenant, {str(entry["event_id"]): entry.get("record_ref") for _, entry in found}
    )
    disclosures = [
        DisclosureEntry.model_validate(
            entry | {
                "findings": findings.get(str(entry["event_id"]), []),
                "excess_categories": _split(row["excess"]),
                "accountable": None if row["accountable"] is None else bool(row["accountable"]),
            }
        )
        for row, entry in found
    ]  # fmt: skip
    return Page(disclosures, next_after)


@dataclass(frozen=True)
class FindingFilter:
    """Filters of the findings queue."""

    rule: str | None = None
    severity: str | None = None
    status: str | None = None
    record_id: UUID | None = None


def _finding_view(
    row: dict[str, Any], resolution: str | None, record_ref: str | None
) -> FindingView:
    status: FindingStatus = (
        "withdrawn" if row["withdrawn"] else ("acknowledged" if resolution else "open")
    )
    return FindingView(
        finding_id=row["finding_id"],
        rule=row["rule"],
        severity=row["severity"],
        citation=row["citation"],
        message=row["message"],
        evidence=json.loads(row["evidence"]),
        ruleset=row["ruleset"],
        event_id=row["subject_event_id"],
        position=int(row["subject_position"]),
        record_ref=record_ref,
        status=status,
        resolution=resolution,
        changed_at_position=int(row["changed_position"]),
    )


def _record_refs(
    cursor: Cursor, sealer: Sealer, tenant: str, positions: list[int]
) -> dict[int, str]:
    """The record_ref of the facts at ``positions`` (absent where crypto-shredded)."""
    if not positions:
        return {}
    marks = ", ".join(["%s"] * len(positions))
    rows = cursor.fetchall(
        "SELECT position, record_id, sealed FROM pv_facts"  # noqa: S608
        f" WHERE tenant_id = %s AND position IN ({marks})",
        (tenant, *positions),
    )
    refs: dict[int, str] = {}
    for row in rows:
        content = _opened(sealer, row)
        if content is not None:
            refs[int(row["position"])] = content["record_ref"]
    return refs


def finding_page(
    cursor: Cursor,
    sealer: Sealer,
    tenant: str,
    f: FindingFilter,
    *,
    limit: int,
    after: tuple[int, str],
) -> Page[FindingView]:
    """A page of the findings queue, ordered by the judged fact's position, then rule."""
    clauses = [
        "x.tenant_id = %s",
        # The first term bounds the index range; the second skips the rules already served.
        "x.subject_position >= %s AND (x.subject_position > %s OR x.rule > %s)",
    ]
    params: list[object] = [tenant, after[0], after[0], after[1]]
    for clause, value in (("x.rule = %s", f.rule), ("x.severity = %s", f.severity),
                          ("x.record_id = %s", f.record_id)):  # fmt: skip
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if f.status == "withdrawn":
        clauses.append("x.withdrawn = 1")
    elif f.status in ("open", "acknowledged"):
        clauses.append("x.withdrawn = 0")
        clauses.append("a.resolution IS NULL" if f.status == "open" else "a.resolution IS NOT NULL")
    rows = cursor.fetchall(
        "SELECT x.*, a.resolution FROM pv_findings x" + acks_join(cursor) +  # noqa: S608
        f" WHERE {' AND '.join(clauses)} ORDER BY x.subject_position, x.rule LIMIT %s",
        (*params, limit + 1),
    )  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    refs = _record_refs(cursor, sealer, tenant, sorted({int(r["subject_position"]) for r in rows}))
    items = [
        _finding_view(row, row["resolution"], refs.get(int(row["subject_position"])))
        for row in rows
    ]
    last = f"{rows[-1]['subject_position']}:{rows[-1]['rule']}" if more and rows else None
    return Page(items, last)


def accounting(
    cursor: Cursor,
    sealer: Sealer,
    rulebook: Rulebook,
    tenant: str,
    record: tuple[UUID, str],
    *,
    since: date | None,
    until: date,
    today: date,
) -> list[AccountingEntry]:
    """The 164.528 accounting of one record, as ``domain.policy.accounting`` builds it from the
    read model's latest judgments (re-judged when a later fact changed them).

    Every accountable fact of the record in the window is opened: a client's accounting holds
    tens of entries, and grouping needs normalised names, which only the sealed fact holds.
    """
    margin = timedelta(days=1)  # occurred_day is the local day; the plan cuts on the UTC day
    lookback = max(r.accounting.lookback_years.value for r in rulebook.rulesets.values())
    start = since if since is not None else window_start(today, lookback)
    rows = cursor.fetchall(
        "SELECT position, record_id, sealed, impermissible, ruleset, instrument FROM pv_facts"
        " WHERE tenant_id = %s AND record_id = %s AND type IN (%s, %s, %s) AND accountable = 1"
        " AND occurred_day >= %s AND occurred_day <= %s",
        (tenant, record[0], *ACCOUNTED, (start - margin).isoformat(), (until + margin).isoformat()),
    )
    found: list[Accountable] = []
    details: dict[Hashable, Details] = {}
    for row in rows:
        content = _opened(sealer, row)
        if content is None:
            continue  # crypto-shredded
        fact = facts.FACT_TYPES_BY_NAME[content["fact"]["type"]].model_validate(
            content["fact"], context=facts.STORED
        )
        if not isinstance(fact, AccountedFact):
            continue  # the query selects only these types
        position = int(row["position"])
        details[position] = details_of(fact)
        found.append(
            accountable_of(
                position, fact,
                impermissible=tuple(_split(row["impermissible"])),
                instrument=None if row["instrument"] is None else bytes(row["instrument"]).hex(),
                lookback_years=lookback_of(rulebook, row["ruleset"]),
            )
        )  # fmt: skip
    entries = plan(found, since=since, until=until, today=today)
    return [AccountingEntry.model_validate(entry.item(details, record[1])) for entry in entries]


def recent_disclosures(
    cursor: Cursor, sealer: Sealer, tenant: str, count: int
) -> list[DisclosureEntry]:
    """The tenant's latest ``count`` disclosures with their findings, newest first."""
    rows = cursor.fetchall(
        "SELECT position FROM pv_facts WHERE tenant_id = %s AND type = 'DisclosureMade'"
        " ORDER BY position DESC LIMIT %s",
        (tenant, count),
    )
    if not rows:
        return []
    oldest = min(int(r["position"]) for r in rows)
    f = FactFilter(type="DisclosureMade")
    page = disclosure_page(cursor, sealer, tenant, f, limit=count, after=oldest - 1)
    return list(reversed(page.items))


@dataclass(frozen=True)
class AuditEventFilter:
    """Filters of FHIR AuditEvent search (``service/routes/fhir_search.py``).

    ``kinds`` are the fact types searched, each with the access actions it admits (None: any);
    ``recorded`` are bounds on when the service recorded the fact, each ``(">=" or "<", t)``.
    """

    kinds: dict[str, frozenset[str] | None]
    record_id: UUID | None = None
    actor_id: str | None = None
    recorded: tuple[tuple[str, datetime], ...] = ()
    position: int | None = None


def audit_event_page(
    cursor: Cursor, sealer: Sealer, tenant: str, f: AuditEventFilter, *, limit: int, after: int
) -> Page[dict[str, Any]]:
    """Accesses and disclosures as the log entries their AuditEvents are rendered from
    (``type``, ``record_ref``, ``recorded_at``, ``event``: the fact as its leaf holds it),
    oldest position first. Facts of crypto-shredded records are left out (nothing to render).

    ``recorded_at`` is the tenant log's, copied into pv_facts when the fact is projected. No
    index leads with it, so a narrow ``recorded`` range walks the tenant's facts in position
    order up to the first match (positions and recorded times rise together).
    An action filter is applied once a row is opened (the action is sealed), in batches, until
    the page is full.
    """
    if not f.kinds:
        return Page([], None)
    marks = ", ".join(["%s"] * len(f.kinds))
    clauses = ["f.tenant_id = %s", f"f.type IN ({marks})"]
    params: list[object] = [tenant, *sorted(f.kinds)]
    simple = [("f.record_id = %s", f.record_id), ("f.actor_id = %s", f.actor_id),
              ("f.position = %s", f.position)]  # fmt: skip
    for clause, value in simple:
        if value is not None:
            clauses.append(clause)
            params.append(value)
    for op, moment in f.recorded:
        if op not in (">=", "<"):
            raise ValueError(f"unknown bound {op!r}")
        clauses.append(f"f.recorded_at {op} %s")
        params.append(utc_text(moment))
    sql = (
        "SELECT f.position, f.record_id, f.type, f.sealed, f.recorded_at FROM pv_facts f"  # noqa: S608
        f" WHERE {' AND '.join(clauses)} AND f.position > %s ORDER BY f.position LIMIT %s"
    )
    found: list[dict[str, Any]] = []
    batch = max(limit + 1, 200) if any(f.kinds.values()) else limit + 1
    position = after
    while len(found) <= limit:
        rows = cursor.fetchall(sql, (*params, position, batch))
        for row in rows:
            position = int(row["position"])
            entry = _audit_entry(sealer, row, f.kinds[row["type"]])
            if entry is not None:
                found.append(entry)
                if len(found) > limit:
                    break
        if len(rows) < batch:
            break
    more = len(found) > limit
    found = found[:limit]
    return Page(found, str(found[-1]["position"]) if more and found else None)


def _audit_entry(
    sealer: Sealer, row: dict[str, Any], actions: frozenset[str] | None
) -> dict[str, Any] | None:
    content = _opened(sealer, row)
    if content is None:
        return None
    fact = facts.FACT_TYPES_BY_NAME[row["type"]].model_validate(
        content["fact"], context=facts.STORED
    )
    if actions is not None and str(getattr(fact, "action", "")) not in actions:
        return None
    recorded = row["recorded_at"]
    moment = recorded if isinstance(recorded, datetime) else datetime.fromisoformat(recorded)
    return {
        "position": int(row["position"]),
        "type": row["type"],
        "record_ref": content["record_ref"],
        "recorded_at": moment.isoformat(),
        # As the leaf holds it (service/application/ingest.py, leaf_content).
        "event": fact.model_dump(mode="json", exclude_none=True),
    }
