"""The console's overview: open findings, disclosures by month and basis, accesses by role,
findings by month, read from the counters the read model keeps (projections/counts.py), so the
page costs the same at any size of log. No personal field is counted or opened."""

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


def overview(cursor: Cursor, tenant: str) -> Overview:
    """The tenant's overview, from its counters (projections/counts.py): one indexed read."""
    rows = cursor.fetchall(
        "SELECT chart, month, key, n FROM pv_counts WHERE tenant_id = %s AND n <> 0",
        (tenant,),
    )
    by_severity = {"high": 0, "medium": 0, "low": 0}
    by_rule: dict[str, int] = defaultdict(int)
    per_month: dict[str, dict[str, dict[str, int]]] = {"basis": defaultdict(dict),
                                                       "rule": defaultdict(dict)}  # fmt: skip
    roles: list[tuple[str, int]] = []
    for row in rows:
        chart, month, key, n = row["chart"], str(row["month"]), str(row["key"]), int(row["n"])
        if chart == "open":
            rule, _, severity = key.partition(" ")
            by_severity[severity] = by_severity.get(severity, 0) + n
            by_rule[rule] += n
        elif chart == "role":
            roles.append((key, n))
        elif chart in per_month:
            per_month[chart][key or "none given"][month] = n
    months = sorted({m for chart in per_month.values() for c in chart.values() for m in c})
    shown = set(months[-MONTHS:])

    def recent(chart: str) -> dict[str, dict[str, int]]:
        kept = {k: {m: n for m, n in c.items() if m in shown} for k, c in per_month[chart].items()}
        return {k: c for k, c in kept.items() if c}

    return Overview(
        open_by_severity=by_severity,
        open_by_rule=sorted(by_rule.items(), key=lambda item: (-item[1], item[0])),
        months=months[-MONTHS:],
        disclosures_by_basis=recent("basis"),
        findings_by_rule=recent("rule"),
        accesses_by_role=sorted(roles, key=lambda i: (-i[1], i[0])),
    )
