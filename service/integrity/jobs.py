"""Export jobs: their state lives in the database, so any API worker can answer a poll."""

from datetime import UTC, datetime
from uuid import UUID

from service.schemas import ExportOut
from service.storage.sql import Database, Dialect

__all__ = ["EXPORT_TABLES", "ExportJobs"]

EXPORT_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_exports (export_id UUID PRIMARY KEY,"
        " tenant_id TEXT NOT NULL, status TEXT NOT NULL, events BIGINT, tree_size BIGINT,"
        " detail TEXT, created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_exports (export_id TEXT PRIMARY KEY,"
        " tenant_id TEXT NOT NULL, status TEXT NOT NULL, events INTEGER, tree_size INTEGER,"
        " detail TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    ],
}


class ExportJobs:
    """Create, update and find export jobs."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, export_id: UUID, tenant_id: str) -> None:
        """Record a pending job."""
        now = datetime.now(UTC)
        with self._db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO da_exports (export_id, tenant_id, status, created_at, updated_at)"
                " VALUES (%s, %s, 'pending', %s, %s)",
                (export_id, tenant_id, now, now),
            )

    def update(
        self,
        export_id: UUID,
        status: str,
        *,
        events: int | None = None,
        tree_size: int | None = None,
        detail: str | None = None,
    ) -> None:
        """Move a job on."""
        with self._db.transaction() as cursor:
            cursor.execute(
                "UPDATE da_exports SET status = %s, events = %s, tree_size = %s, detail = %s,"
                " updated_at = %s WHERE export_id = %s",
                (status, events, tree_size, detail, datetime.now(UTC), export_id),
            )

    def find(self, export_id: UUID, tenant_id: str) -> ExportOut | None:
        """A tenant's job (another tenant's is simply not found)."""
        with self._db.transaction(commit=False) as cursor:
            row = cursor.fetchone(
                "SELECT status, events, tree_size, detail FROM da_exports"
                " WHERE export_id = %s AND tenant_id = %s",
                (export_id, tenant_id),
            )
        if row is None:
            return None
        return ExportOut(
            export_id=export_id,
            status=row["status"],
            events=row["events"],
            tree_size=row["tree_size"],
            detail=row["detail"],
        )
