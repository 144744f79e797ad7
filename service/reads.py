"""Self-audit: every query and export of the audit trail is recorded (who, when, what filters).

Recording a read is a plain insert, never a query, so it cannot cause another read record. The
filters may name a record, so they are sealed with the service key "audit-reads"
(``service/storage/service_keys.py``).
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid4

from projections.views import AuditRead
from service.auth import Principal
from service.storage.crypto import open_state, seal_state
from service.storage.service_keys import ServiceKeys
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


def stand_in(record: UUID) -> str:
    """What the self-audit names a destroyed record by: its pseudonymous id, never its ref."""
    return f"[destroyed record {record}]"


def _without(value: Any, record_ref: str, stand_in: str) -> Any:
    if isinstance(value, list):
        return [_without(v, record_ref, stand_in) for v in value]
    if value == f"Patient/{record_ref}":  # FHIR search's patient= (service/routes/fhir_search.py)
        return f"Patient/{stand_in}"
    return stand_in if value == record_ref else value


def _route_without(route: str, record_ref: str, stand_in: str) -> str:
    # A route is a template ("/v1/records/{record_ref}") unless none matched: then a raw path,
    # whose segment may be the ref (percent-encoded as the client sent it).
    segments = route.split("/")
    refs = {record_ref, quote(record_ref, safe="")}
    return "/".join(stand_in if segment in refs else segment for segment in segments)


def _record_of(filters: dict[str, str | list[str]]) -> str | None:
    ref = filters.get("record_ref")
    return ref if isinstance(ref, str) else None


class ReadLog:
    """Records and lists reads of the audit trail."""

    def __init__(self, db: Database, keys: ServiceKeys) -> None:
        self._db = db
        self._key = keys.named("audit-reads")
        # (tenant, record_ref) -> the record's id if it was destroyed; set by the composition
        # root, so that a read naming a destroyed record is recorded with a stand-in.
        self.destroyed: Callable[[str, str], UUID | None] = lambda tenant, ref: None

    def record(self, principal: Principal, route: str, filters: dict[str, Any]) -> None:
        """Record one read by ``principal`` of ``route`` with ``filters`` (None values dropped)."""
        now = datetime.now(UTC)
        tenant = principal.tenant_id
        kept = {k: self._masked(tenant, k, v) for k, v in filters.items() if v is not None}
        sealed = self._seal(kept, now)
        with self._db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO da_audit_reads (tenant_id, read_id, at, key_id, route, filters)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (principal.tenant_id, uuid4(), now, principal.key_id, route, sealed),
            )

    def _seal(self, filters: dict[str, Any], now: datetime | None = None) -> bytes:
        plain = json.dumps(filters, default=str).encode()
        at = now or datetime.now(UTC)
        return seal_state(self._key, plain, record=_NIL, version=0, topic=_TOPIC, recorded_at=at)

    def _open(self, sealed: bytes) -> dict[str, Any]:
        opened: dict[str, Any] = json.loads(
            open_state(self._key, sealed, record=_NIL, version=0, topic=_TOPIC)
        )
        return opened

    def _masked(self, tenant_id: str, name: str, value: Any) -> Any:
        if name == "record_ref" and isinstance(value, str):
            gone = self.destroyed(tenant_id, value)
            return value if gone is None else stand_in(gone)
        if name == "patient" and isinstance(value, str):  # FHIR search: Patient/<ref> or <ref>
            prefix, ref = ("Patient/", value[8:]) if value.startswith("Patient/") else ("", value)
            return prefix + self._masked(tenant_id, "record_ref", ref)
        if name == "record_refs" and isinstance(value, list):
            return [self._masked(tenant_id, "record_ref", v) for v in value]
        return value

    def redact(self, tenant_id: str, record_ref: str, stand_in: str) -> int:
        """Replace a destroyed record's ref by ``stand_in`` in every read that named it (in its
        filters or its route); how many reads changed. The reads stay: that someone looked,
        when, and at which route is still the self-audit's to show."""
        changed = 0
        after = 0
        while True:
            rows = self._db.read(
                "SELECT seq, route, filters FROM da_audit_reads WHERE tenant_id = %s AND seq > %s"
                " ORDER BY seq LIMIT 500",
                (tenant_id, after),
            )
            if not rows:
                return changed
            after = int(rows[-1]["seq"])
            updates = []
            for row in rows:
                filters = self._open(bytes(row["filters"]))
                cleaned = {k: _without(v, record_ref, stand_in) for k, v in filters.items()}
                route = _route_without(str(row["route"]), record_ref, stand_in)
                if cleaned != filters or route != row["route"]:
                    updates.append((route, self._seal(cleaned), tenant_id, int(row["seq"])))
            if updates:
                with self._db.transaction() as cursor:
                    cursor.executemany(
                        "UPDATE da_audit_reads SET route = %s, filters = %s"
                        " WHERE tenant_id = %s AND seq = %s",
                        updates,
                    )
                changed += len(updates)

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
