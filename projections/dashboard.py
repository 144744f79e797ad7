"""Counts for the console's overview: open findings, disclosures by month and basis, accesses by
role, findings by month. Plain aggregates over the read models' plaintext columns: no personal
field is opened, so these never need a record key."""

from collections import defaultdict
from dataclasses import dataclass

from projections.ports import Cursor

__all__ = ["Overview", "overview"]

MONTHS = 12
"""The charts show the latest this many months that have any data."""


@dataclass(frozen=True)
class Overview:
    """What the overview page draws."""

    open_by_severity: dict[str, int]
    open_by_rule: list[tuple[str, int]]
    months: list[str]
    disclosures_by_basis: dict[str, dict[str, int]]
    findings_by_rule: dict[str, dict[str, int]]
    accesses_by_role: list[tuple[str, int]]


def _ack_join(cursor: Cursor) -> str:
    text_id = "CAST(x.finding_id AS TEXT)" if cursor.dialect == "postgres" else "x.finding_id"
    return f"LEFT JOIN pv_acks a ON a.tenant_id = x.tenant_id AND a.finding_id = {text_id}"


def overview(cursor: Cursor, tenant: str) -> Overview:
    """The tenant's overview counts."""
    open_rows = cursor.fetchall(
        "SELECT x.rule, x.severity, COUNT(*) AS n FROM pv_findings x "  # noqa: S608
        + _ack_join(cursor)
        + " WHERE x.tenant_id = %s AND x.withdrawn = 0 AND a.resolution IS NULL"
        " GROUP BY x.rule, x.severity",
        (tenant,),
    )
    by_severity = {"high": 0, "medium": 0, "low": 0}
    by_rule: dict[str, int] = defaultdict(int)
    for row in open_rows:
        by_severity[row["severity"]] = by_severity.get(row["severity"], 0) + int(row["n"])
        by_rule[row["rule"]] += int(row["n"])
    disclosures = cursor.fetchall(
        "SELECT SUBSTR(occurred_day, 1, 7) AS month, legal_basis, COUNT(*) AS n FROM pv_facts"
        " WHERE tenant_id = %s AND type = 'DisclosureMade'"
        " GROUP BY SUBSTR(occurred_day, 1, 7), legal_basis",
        (tenant,),
    )
    findings = cursor.fetchall(
        "SELECT SUBSTR(f.occurred_day, 1, 7) AS month, x.rule, COUNT(*) AS n FROM pv_findings x"
        " JOIN pv_facts f ON f.tenant_id = x.tenant_id AND f.position = x.subject_position"
        " WHERE x.tenant_id = %s AND x.withdrawn = 0"
        " GROUP BY SUBSTR(f.occurred_day, 1, 7), x.rule",
        (tenant,),
    )
    roles = cursor.fetchall(
        "SELECT actor_role, COUNT(*) AS n FROM pv_facts"
        " WHERE tenant_id = %s AND type = 'RecordAccessed' GROUP BY actor_role",
        (tenant,),
    )
    months = sorted({str(r["month"]) for r in (*disclosures, *findings)})[-MONTHS:]
    shown = set(months)
    by_basis: dict[str, dict[str, int]] = defaultdict(dict)
    for row in disclosures:
        if row["month"] in shown:
            by_basis[str(row["legal_basis"] or "none given")][str(row["month"])] = int(row["n"])
    findings_by_rule: dict[str, dict[str, int]] = defaultdict(dict)
    for row in findings:
        if row["month"] in shown:
            findings_by_rule[str(row["rule"])][str(row["month"])] = int(row["n"])
    return Overview(
        open_by_severity=by_severity,
        open_by_rule=sorted(by_rule.items(), key=lambda item: (-item[1], item[0])),
        months=months,
        disclosures_by_basis=dict(by_basis),
        findings_by_rule=dict(findings_by_rule),
        accesses_by_role=sorted(
            ((str(r["actor_role"]), int(r["n"])) for r in roles), key=lambda i: (-i[1], i[0])
        ),
    )
