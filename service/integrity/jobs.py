"""Export jobs and their bundles.

A job's state lives in the database, so any API worker can answer a poll. Its bundle is a
plaintext copy of the tenant's audit trail (the store encrypts per record; a bundle cannot), so
it is built privately and kept briefly: the job writes the bundle's directory inside a 0700
folder, packs it once into ``<export_id>.tar.gz`` (0600) through a temporary file and an atomic
rename, removes the directory, and only then reports ``done``. Downloads only read that finished
file, so any number of them may run at once. After the retention period the archive is deleted
and the job reports ``expired``.
"""

import contextlib
import gzip
import logging
import os
import shutil
import tarfile
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from service.schemas import ExportOut
from service.storage.sql import Database, Dialect, as_datetime, as_uuid

__all__ = ["EXPORT_TABLES", "BundleStore", "ExportJanitor", "ExportJobs", "make_private"]

_log = logging.getLogger("disclosure_audit.exports")

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

    def __init__(self, db: Database, retention: timedelta | None = None) -> None:
        self._db = db
        self._retention = retention

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
        row = self._db.read_one(
            "SELECT export_id, status, events, tree_size, detail, updated_at FROM da_exports"
            " WHERE export_id = %s AND tenant_id = %s",
            (export_id, tenant_id),
        )
        return None if row is None else self._job(row)

    def recent(self, tenant_id: str, limit: int = 20) -> list[ExportOut]:
        """The tenant's latest jobs, newest first."""
        rows = self._db.read(
            "SELECT export_id, status, events, tree_size, detail, updated_at FROM da_exports"
            " WHERE tenant_id = %s ORDER BY created_at DESC LIMIT %s",
            (tenant_id, limit),
        )
        return [self._job(row) for row in rows]

    def withdraw(self, tenant_id: str, detail: str) -> list[UUID]:
        """Mark every job of a tenant that has or may get a bundle expired; their ids (the
        caller deletes their files). Used when a record they may hold is destroyed."""
        rows = self._db.read(
            "SELECT export_id FROM da_exports WHERE tenant_id = %s AND status <> 'expired'",
            (tenant_id,),
        )
        ids = [as_uuid(r["export_id"]) for r in rows]
        with self._db.transaction() as cursor:
            cursor.execute(
                "UPDATE da_exports SET status = 'expired', detail = %s, updated_at = %s"
                " WHERE tenant_id = %s AND status <> 'expired'",
                (detail, datetime.now(UTC), tenant_id),
            )
        return ids

    def _job(self, row: dict[str, Any]) -> ExportOut:
        export_id = as_uuid(row["export_id"])
        expires_at = None
        if row["status"] == "done" and self._retention is not None:
            expires_at = as_datetime(row["updated_at"]) + self._retention
        return ExportOut(
            export_id=export_id,
            status=row["status"],
            events=row["events"],
            tree_size=row["tree_size"],
            detail=row["detail"],
            expires_at=expires_at,
        )

    def expire(self, now: datetime) -> None:
        """Mark done jobs past retention expired, and jobs that never finished failed.

        A pending or running job older than the retention period belongs to a server that
        stopped mid-build: nothing will finish it, and its files are swept like a failed one's.
        """
        if self._retention is None:
            raise ValueError("ExportJobs needs a retention period to expire jobs")
        cutoff = now - self._retention
        with self._db.transaction() as cursor:
            cursor.execute(
                "UPDATE da_exports SET status = 'expired', detail = %s, updated_at = %s"
                " WHERE status = 'done' AND updated_at < %s",
                (_EXPIRED_DETAIL, now, cutoff),
            )
            cursor.execute(
                "UPDATE da_exports SET status = 'failed', detail = 'interrupted', updated_at = %s"
                " WHERE status IN ('pending', 'running') AND updated_at < %s",
                (now, cutoff),
            )

    def statuses(self, export_ids: list[UUID]) -> dict[UUID, str]:
        """The status of each of these jobs that exists."""
        found: dict[UUID, str] = {}
        with self._db.transaction(commit=False) as cursor:
            for start in range(0, len(export_ids), 500):
                chunk = export_ids[start : start + 500]
                marks = ", ".join(["%s"] * len(chunk))
                rows = cursor.fetchall(
                    f"SELECT export_id, status FROM da_exports WHERE export_id IN ({marks})",  # noqa: S608
                    tuple(chunk),
                )
                found.update({UUID(str(row["export_id"])): str(row["status"]) for row in rows})
        return found


_EXPIRED_DETAIL = "The bundle was deleted at the end of the export retention period."


class BundleStore:
    """The private folder of export bundles: built there, served from there, deleted there."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self) -> Path:
        """The bundles' folder, created 0700 (and tightened if it exists looser)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o777 != 0o700:
            self.root.chmod(0o700)
        return self.root

    def directory(self, export_id: UUID) -> Path:
        """Where the job writes the bundle's files before they are packed."""
        return self.folder() / str(export_id)

    def archive(self, export_id: UUID) -> Path:
        """The finished bundle."""
        return self.root / f"{export_id}.tar.gz"

    def pack(self, export_id: UUID) -> Path:
        """Pack the written directory into the archive, atomically, and remove the directory."""
        directory = self.directory(export_id)
        make_private(directory)
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=f"{export_id}.", suffix=".tmp")
        try:
            # mtime=0 in the gzip header: the same directory always packs to the same bytes.
            with (
                os.fdopen(handle, "wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed,
                tarfile.open(fileobj=compressed, mode="w") as archive,
            ):
                archive.add(directory, arcname=f"export-{export_id}")
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temporary, self.archive(export_id))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        shutil.rmtree(directory)
        return self.archive(export_id)

    def discard(self, export_id: UUID) -> None:
        """Remove whatever the job left: its directory, temporary files and archive."""
        for entry in self._entries().get(export_id, []):
            _remove(entry)

    def sweep(self, jobs: ExportJobs, now: datetime) -> int:
        """Expire jobs past retention and delete every file no live job needs; the count."""
        jobs.expire(now)
        entries = self._entries()
        statuses = jobs.statuses(list(entries))
        removed = 0
        for export_id, paths in entries.items():
            status = statuses.get(export_id)
            if status in ("pending", "running"):
                continue  # being built right now
            for path in paths:
                if status == "done" and path == self.archive(export_id):
                    continue
                _remove(path)
                removed += 1
        return removed

    def _entries(self) -> dict[UUID, list[Path]]:
        found: dict[UUID, list[Path]] = {}
        if not self.root.is_dir():
            return found
        for path in self.root.iterdir():
            with contextlib.suppress(ValueError):
                found.setdefault(UUID(path.name.split(".", 1)[0]), []).append(path)
        return found


def make_private(directory: Path) -> None:
    """Make a bundle directory 0700 and its files 0600: a bundle is a plaintext copy."""
    # The folder above is 0700 throughout, so the files were never readable by others; this
    # makes the modes say so too, and they travel inside the tar.gz to wherever it is unpacked.
    directory.chmod(0o700)
    for parent, folders, files in os.walk(directory):
        for name in folders:
            os.chmod(os.path.join(parent, name), 0o700)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o600)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class ExportJanitor:
    """Sweeps expired bundles at start and then periodically, on a daemon thread."""

    def __init__(self, bundles: BundleStore, jobs: ExportJobs, interval: float) -> None:
        self._bundles = bundles
        self._jobs = jobs
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="export-janitor", daemon=True)

    def start(self) -> None:
        """Start sweeping."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sweeping and wait for a sweep in progress."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._bundles.sweep(self._jobs, datetime.now(UTC))
            except Exception as error:  # a store outage must not end the janitor
                _log.warning("export sweep failed: %s", type(error).__name__)
            self._stop.wait(self._interval)
