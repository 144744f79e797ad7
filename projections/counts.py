"""The overview's counters (table ``pv_counts``), kept by the read model as its rows change.

Counting at read time scanned every disclosure, access and finding of the practice (0.9 s for
the overview at 1M events); these rows are changed in the same transaction as the rows they
count, so they are exactly as current as the read model, and a rebuild recounts them from
nothing. Charts (see projections/schema.py): ``basis``, ``role``, ``rule``, ``open``.
No personal field is counted: months, legal-basis kinds, roles, rules and severities only.
"""

from collections import Counter
from uuid import UUID

from projections.ports import Cursor
from projections.schema import acks_join

__all__ = ["bump", "fact_counts", "finding_counts", "forget_record"]

Key = tuple[str, str, str]
"""(chart, month, key)."""


def bump(cursor: Cursor, tenant: str, changes: Counter[Key]) -> None:
    """Add each change to its counter (a negative one takes away)."""
    for (chart, month, key), delta in sorted(changes.items()):
        if delta:
            cursor.execute(
                "INSERT INTO pv_counts (tenant_id, chart, month, key, n)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, chart, month, key)"
                " DO UPDATE SET n = pv_counts.n + excluded.n",
                (tenant, chart, month, key, delta),
            )


def finding_counts(
    rule: str, severity: str, month: str, *, withdrawn: bool, acknowledged: bool
) -> Counter[Key]:
    """What one finding in this state adds to the counters."""
    if withdrawn:
        return Counter()
    counted = Counter({("rule", month, rule): 1})
    if not acknowledged:
        counted[("open", "", f"{rule} {severity}")] += 1
    return counted


def forget_record(cursor: Cursor, record: UUID) -> dict[str, Counter[Key]]:
    """What a record's rows add to the counters, by tenant, so that a purge takes it away."""
    counted: dict[str, Counter[Key]] = {}
    for row in cursor.fetchall(
        "SELECT tenant_id, type, occurred_day, legal_basis, actor_role FROM pv_facts"
        " WHERE record_id = %s",
        (record,),
    ):
        counted.setdefault(row["tenant_id"], Counter()).update(
            fact_counts(row["type"], row["occurred_day"], row["legal_basis"], row["actor_role"])
        )
    for row in cursor.fetchall(
        "SELECT x.tenant_id, x.rule, x.severity, x.withdrawn, f.occurred_day, a.resolution"  # noqa: S608
        " FROM pv_findings x JOIN pv_facts f ON f.tenant_id = x.tenant_id"
        " AND f.position = x.subject_position" + acks_join(cursor) + " WHERE x.record_id = %s",
        (record,),
    ):
        counted.setdefault(row["tenant_id"], Counter()).update(
            finding_counts(
                row["rule"], row["severity"], str(row["occurred_day"])[:7],
                withdrawn=bool(row["withdrawn"]), acknowledged=row["resolution"] is not None,
            )
        )  # fmt: skip
    return counted


def fact_counts(type_: str, day: str, basis: str | None, role: str) -> Counter[Key]:
    """What one row of ``pv_facts`` adds to the counters."""
    if type_ == "DisclosureMade":
        return Counter({("basis", day[:7], basis or ""): 1})
    if type_ == "RecordAccessed":
        return Counter({("role", "", role): 1})
    return Counter()
