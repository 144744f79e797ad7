"""Events held back from the read models because their tenant is stalled.

When an event cannot be projected (it does not decrypt, or applying it fails), only its own
tenant waits: the event and every later event of that tenant are held here, in log order, and
the worker moves on for every other tenant. A tenant is stalled while it has held events; its
stall point is the first of them, with the error type that stopped it (a type name only: an
error message may quote stored values). Held events are retried in order, so a fixed release
heals the tenant without a rebuild; a rebuild replays them too. This table is written only in
the worker's transaction that also moves the tracking position, so an event is either applied
or held, exactly once.
"""

from dataclasses import dataclass

from projections.ports import Cursor

__all__ = ["BEHIND", "HeldEvent", "Stall", "held_for", "hold", "release", "stall_of", "stalls"]

BEHIND = "behind a stalled event"
"""The reason of every held event after a tenant's first."""


@dataclass(frozen=True)
class Stall:
    """Where a tenant's read models stopped: its first held event."""

    tenant_id: str
    notification_id: int
    position: int
    reason: str


@dataclass(frozen=True)
class HeldEvent:
    """One held event, identified by its notification id and tenant-log position."""

    notification_id: int
    position: int


def stalls(cursor: Cursor) -> dict[str, Stall]:
    """Every stalled tenant, with its stall point."""
    rows = cursor.fetchall(
        "SELECT h.tenant_id, h.notification_id, h.position, h.reason FROM pv_held h"
        " JOIN (SELECT tenant_id, MIN(notification_id) AS first FROM pv_held GROUP BY tenant_id)"
        " f ON f.tenant_id = h.tenant_id AND f.first = h.notification_id"
    )
    return {
        row["tenant_id"]: Stall(
            row["tenant_id"], int(row["notification_id"]), int(row["position"]), row["reason"]
        )
        for row in rows
    }


def stall_of(cursor: Cursor, tenant_id: str) -> int | None:
    """The tenant-log position where the tenant's read models stopped, if they did."""
    row = cursor.fetchone(
        "SELECT MIN(position) AS position FROM pv_held WHERE tenant_id = %s", (tenant_id,)
    )
    return None if row is None or row["position"] is None else int(row["position"])


def hold(cursor: Cursor, tenant_id: str, notification_id: int, position: int, reason: str) -> None:
    """Hold one event of a stalled tenant (or the event that stalls it)."""
    cursor.execute(
        "INSERT INTO pv_held (notification_id, tenant_id, position, reason)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (notification_id) DO UPDATE"
        " SET reason = excluded.reason",
        (notification_id, tenant_id, position, reason),
    )


def held_for(cursor: Cursor, tenant_id: str, limit: int) -> list[HeldEvent]:
    """The tenant's first ``limit`` held events, in log order."""
    rows = cursor.fetchall(
        "SELECT notification_id, position FROM pv_held WHERE tenant_id = %s"
        " ORDER BY notification_id LIMIT %s",
        (tenant_id, limit),
    )
    return [HeldEvent(int(r["notification_id"]), int(r["position"])) for r in rows]


def release(cursor: Cursor, notification_ids: list[int]) -> None:
    """Forget held events that have now been applied."""
    cursor.executemany(
        "DELETE FROM pv_held WHERE notification_id = %s", [(n,) for n in notification_ids]
    )
