"""Self-audit: every query and export of the audit trail is recorded (who, when, what filters).

Recording a read is a plain insert, never a query, so it cannot cause another read record. The
filters may name a record, so they are sealed with a key derived from the master key.
"""

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from projections.views import AuditRead
from service.auth import Principal
from service.storage.crypto import MasterKey, open_state, seal_state
from service.storage.sql import Database, Dialect, as_datetime

__all__ = ["READ_TABLES", "ReadLog"]

_TOPIC = "audit-read"
_NIL = UUID(int=0)

READ_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_audit_reads (tenant_id TEXT NOT NULL, seq BIGSERIAL,"
        " read_id UUID NOT NULL, at TIMESTAMPTZ NOT NULL, key_id TEXT NOT NULL,"
        " route TEXT NOT NULL, filters BYTEA NOT NULL, PRIMARY KEY (tenant_id, seq))",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_audit_reads (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " tenant_id TEXT NOT NULL, read_id TEXT NOT NULL, at TEXT NOT NULL,"
        " key_id TEXT NOT NULL, route TEXT NOT NULL, filters BLOB NOT NULL)",
    ],
}


def _record_of(filters: dict[str, str | list[str]]) -> str | None:
    ref = filters.get("record_ref")
    return ref if isinstance(ref, str) else None


class ReadLog:
    """Records and lists reads of the audit trail."""

    def __init__(self, db: Database, master: MasterKey) -> None:
        self._db = db
        self._key = master.derive("audit-reads")

    def record(self, principal: Principal, route: str, filters: dict[str, Any]) -> None:
        """Record one read by ``principal`` of ``route`` with ``filters`` (None values dropped)."""
        now = datetime.now(UTC)
        kept = {k: v for k, v in filters.items() if v is not None}
        sealed = seal_state(self._key, json.dumps(kept, default=str).encode(), record=_NIL,
                            version=0, topic=_TOPIC, recorded_at=now)  # fmt: skip
        with self._db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO da_audit_reads (tenant_id, read_id, at, key_id, route, filters)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (principal.tenant_id, uuid4(), now, principal.key_id, route, sealed),
            )

    def _open(self, sealed: bytes) -> dict[str, Any]:
        opened: dict[str, Any] = json.loads(
            open_state(self._key, sealed, record=_NIL, version=0, topic=_TOPIC)
        )
        return opened

    def page(self, tenant_id: str, *, limit: int, after: int) -> tuple[list[AuditRead], int | None]:
        """A page of the tenant's reads, oldest first."""
        with self._db.transaction(commit=False) as cursor:
            rows = cursor.fetchall(
                "SELECT seq, read_id, at, key_id, route, filters FROM da_audit_reads"
                " WHERE tenant_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (tenant_id, after, limit + 1),
            )
        more = len(rows) > limit
        items = []
        for row in rows[:limit]:
            filters = {
                k: [str(i) for i in v] if isinstance(v, list) else str(v)
                for k, v in self._open(bytes(row["filters"])).items()
            }
            items.append(
                AuditRead(
                    read_id=row["read_id"],
                    at=as_datetime(row["at"]),
                    key_id=row["key_id"],
                    route=row["route"],
                    record_ref=_record_of(filters),
                    filters=filters,
                )
            )
        return items, int(rows[limit - 1]["seq"]) if more else None
