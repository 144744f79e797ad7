"""The projection worker: applies the event log to the read models, exactly once.

It reads notifications after its tracked position, maps them to events, and applies a page of
them plus the new tracking position in one transaction. On SQLite (the embedded default) it runs
as a thread inside ``serve`` and is woken by every write; on PostgreSQL it can run there too, or
as the separate ``disclosure-audit project`` process, woken by the NOTIFY the event store sends
on every insert (LISTEN on the events table's channel). Two workers never apply the same page:
the tracking row is locked (PostgreSQL ``FOR UPDATE``; SQLite serialises writers) and
re-checked.
"""

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, Notification, OperationalError

from domain import facts
from domain.errors import RecordErasedError
from domain.policy.rulesets import Rulebook
from domain.record import ClientRecord
from projections import held
from projections.model import ReadModel
from projections.schema import SCHEMA_VERSION, TABLES, create, drop
from service.storage.crypto import open_state, seal_state
from service.storage.sql import Database, SqlCursor
from service.storage.tenant_log import TenantLogTable
from service.telemetry import record_projection_lag, record_projection_stall, span

__all__ = ["IDLE_POLL", "EventFeed", "Projector", "StaleReadError", "TenantStalledError"]

IDLE_POLL = 0.05
# Refresh the planner's statistics of the read models once this many events were applied
# since the last refresh, and after a rebuild. ANALYZE samples a bounded number of rows per
# table (PostgreSQL: 300 x default_statistics_target), so a refresh does not grow with the log.
ANALYZE_AFTER = 50_000
LISTEN_TIMEOUT = 0.5
# After a page that was not full (the worker has caught up), wait this long before the next:
# under steady ingest the next transaction then applies many groups' events, not one group's.
# On SQLite every projection transaction holds the one write lock that ingest needs too.
COALESCE_SECONDS = 0.05
# How often a worker tries the held events of stalled tenants again (and once at start).
RETRY_STALLED_SECONDS = 30.0
NAME = "read-models"
_TOPIC = "client-record/read-model"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_log = logging.getLogger("disclosure_audit.projector")


# The store failing (an outage, a lock) is not the event's fault: the page is retried whole.
_STORE_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)


class _ApplyError(Exception):
    """Raised when applying an event (not the store) failed, so the page is redone guarded."""


class StaleReadError(Exception):
    """Raised when the read models have not reached a position within the wait allowed."""


class TenantStalledError(StaleReadError):
    """Raised when the tenant's read models stopped at or before the position asked for."""

    def __init__(self, position: int) -> None:
        super().__init__(f"the tenant's read models are stalled at position {position}")
        self.position = position


class EventFeed(Protocol):
    """What the projector needs from the event store (``AuditLog`` implements it): the log in
    notification order, events opened, records' keys and histories, and where events sit."""

    db: Database
    tenant_log: TenantLogTable

    def notifications(
        self, start: int, limit: int, stop: int | None = None
    ) -> Sequence[Notification]: ...

    def last_notification_id(self) -> int: ...

    def to_event(self, notification: Notification) -> ClientRecord.Event: ...

    def history(
        self, record: UUID, up_to_version: int, after: int = 0
    ) -> Sequence[ClientRecord.Event]: ...

    def key_of(self, record: UUID) -> bytes | None: ...

    def sync_keys(self) -> None: ...

    def blind(self, value: str) -> bytes: ...

    def listening(self) -> AbstractContextManager[Any]: ...


@dataclass
class _Planned:
    """One event of a page: where it sits in the log, and the event once it mapped."""

    id: int
    tenant: str
    position: int
    event: Any = None


class _History:
    def __init__(self, feed: EventFeed) -> None:
        self._feed = feed

    def facts(
        self, record: UUID, up_to_version: int, after: int = 0
    ) -> list[tuple[int, facts.FactBase]]:
        events = self._feed.history(record, up_to_version, after)
        return [
            (e.originator_version, e.fact)
            for e in events
            if isinstance(e, ClientRecord.FactRecorded)
        ]


class _Sealer:
    def __init__(self, feed: EventFeed) -> None:
        self._feed = feed

    def seal(self, record: UUID, data: bytes) -> bytes:
        key = self._feed.key_of(record)
        if key is None:  # destroyed since its event was read: nothing of it is projected
            raise RecordErasedError(f"record {record} has no key")
        return seal_state(key, data, record=record, version=0, topic=_TOPIC, recorded_at=_EPOCH)

    def open(self, record: UUID, data: bytes) -> bytes | None:
        key = self._feed.key_of(record)
        if key is None:
            return None
        return open_state(key, data, record=record, version=0, topic=_TOPIC)

    def blind(self, value: str) -> bytes:
        return self._feed.blind(value)


class Projector:
    """Keeps the read models current with the event log."""

    def __init__(
        self,
        feed: EventFeed,
        rulebook: Rulebook,
        page_size: int = 200,
        analyze_after: int = ANALYZE_AFTER,
        *,
        saved: threading.Event | None = None,
    ) -> None:
        self.feed = feed
        # Set by the writer after every commit, to wake an embedded (SQLite) worker at once.
        self._saved = saved or threading.Event()
        self._page_size = page_size
        self._analyze_after = analyze_after
        self._unanalyzed = 0
        self.sealer = _Sealer(feed)
        self._rulebook = rulebook
        self.model = ReadModel(rulebook, _History(feed), self.sealer)
        self._progress = threading.Condition()
        self._next_retry = 0.0

    def prepare(self, *, fresh: bool = False) -> bool:
        """Create the tables; rebuild them if their schema version changed (or ``fresh``).
        True if rebuilt. Dropping and re-creating is one transaction, so a worker running
        beside never sees the tables missing."""
        with self.feed.db.transaction() as cursor:
            if fresh:
                drop(cursor)
            create(cursor)
            row = cursor.fetchone(
                "SELECT schema_version FROM pv_tracking WHERE projection = %s", (NAME,)
            )
            if row is not None and int(row["schema_version"]) == SCHEMA_VERSION:
                return False
            if row is not None:
                _log.warning("read-model schema changed; rebuilding from the event log")
                drop(cursor)
                create(cursor)
            cursor.execute(
                "INSERT INTO pv_tracking (projection, notification_id, schema_version)"
                " VALUES (%s, 0, %s)",
                (NAME, SCHEMA_VERSION),
            )
        self.model = ReadModel(self._rulebook, _History(self.feed), self.sealer)
        return fresh or row is not None

    def processed(self) -> int:
        """The last notification id applied to the read models."""
        with self.feed.db.transaction(commit=False) as cursor:
            row = cursor.fetchone(
                "SELECT notification_id FROM pv_tracking WHERE projection = %s", (NAME,)
            )
        return int(row["notification_id"]) if row else 0

    def step(self) -> int:
        """Apply the next page of events; returns how many it applied or held.

        An event that cannot be projected stalls only its own tenant: it and the tenant's later
        events are held (``projections/held.py``) and the page goes on for every other tenant.
        """
        start = self.processed()
        notifications = self.feed.notifications(start + 1, self._page_size)
        if not notifications:
            return 0
        self.feed.sync_keys()  # a record destroyed by another process is not projected again
        last = notifications[-1].id
        logged = self.feed.tenant_log.page(start, last)
        with self.feed.db.transaction(commit=False) as cursor:
            known = held.stalls(cursor)
        page = [
            _Planned(n.id, logged[n.id].tenant_id, logged[n.id].position) for n in notifications
        ]
        failed = self._prepare_page(page, notifications, set(known))
        try:
            stalls = self._apply_page(start, last, page, failed, set(known), guarded=False)
        except _ApplyError:
            # An event failed to apply: redo the page with one savepoint per event, so only
            # its tenant stops. Done only then, since savepoints cost a round trip each.
            self.model = ReadModel(self._rulebook, _History(self.feed), self.sealer)
            stalls = self._apply_page(start, last, page, failed, set(known), guarded=True)
        if stalls is None:
            return 0
        for planned, reason in stalls:
            # Type names and positions only: an error message may quote stored values.
            _log.error(
                "tenant %s stalled at position %d: %s; its later events wait",
                planned.tenant, planned.position, reason,
            )  # fmt: skip
            record_projection_stall(NAME, planned.tenant, planned.position)
        with self._progress:
            self._progress.notify_all()
        record_projection_lag(NAME, None, *self.lag(done=last))
        self._unanalyzed += len(page)
        if self._unanalyzed >= self._analyze_after:
            self.analyze()
        return len(page)

    def _apply_page(
        self,
        start: int,
        last: int,
        page: list["_Planned"],
        failed: dict[int, str],
        known: set[str],
        *,
        guarded: bool,
    ) -> list[tuple["_Planned", str]] | None:
        """Apply (or hold) a page and move the tracking position, in one transaction; returns
        the tenants it stalled, or None if the page was not this worker's to apply."""
        stalls: list[tuple[_Planned, str]] = []
        with (
            span("projection.process", {"projection.name": NAME, "events.count": len(page)}),
            self.feed.db.transaction() as cursor,
        ):
            lock = " FOR UPDATE" if cursor.dialect == "postgres" else ""
            row = cursor.fetchone(
                "SELECT notification_id FROM pv_tracking WHERE projection = %s" + lock,  # noqa: S608
                (NAME,),
            )
            if row is None or int(row["notification_id"]) != start:
                return None  # another worker applied this page first
            stalled = set(held.stalls(cursor))
            if stalled != known:
                return None  # a retry released a tenant meanwhile: plan the page again
            for planned in page:
                if planned.tenant in stalled:
                    held.hold(cursor, planned.tenant, planned.id, planned.position, held.BEHIND)
                    continue
                reason = failed.get(planned.id)
                if reason is None and guarded:
                    reason = self._apply_guarded(cursor, planned)
                elif reason is None:
                    try:
                        self.model.apply(cursor, planned.event, planned.position)
                    except _STORE_ERRORS:
                        raise
                    except Exception as error:
                        raise _ApplyError from error
                if reason is not None:
                    held.hold(cursor, planned.tenant, planned.id, planned.position, reason)
                    stalled.add(planned.tenant)
                    stalls.append((planned, reason))
            cursor.execute(
                "UPDATE pv_tracking SET notification_id = %s WHERE projection = %s", (last, NAME)
            )
        return stalls

    def _prepare_page(
        self, page: list["_Planned"], notifications: Sequence[Any], stalled: set[str]
    ) -> dict[int, str]:
        """Map the page's events and read what applying them needs, outside the write
        transaction; returns the events that already failed here (notification id -> error
        type). Inside the write transaction a second connection can deadlock the SQLite pool (a
        writer waiting for the write lock holds the pool's queue while we would wait for it).
        """
        failed: dict[int, str] = {}
        blocked = set(stalled)
        for planned, notification in zip(page, notifications, strict=True):
            if planned.tenant in blocked:
                continue
            try:
                planned.event = self.feed.to_event(notification)
            except Exception as error:
                failed[planned.id] = type(error).__name__
                blocked.add(planned.tenant)
        first: dict[UUID, _Planned] = {}
        for planned in page:
            if isinstance(planned.event, ClientRecord.FactRecorded):
                first.setdefault(planned.event.originator_id, planned)
        for record, planned in first.items():
            try:
                # What precedes the page: the page's own events join the history in memory as
                # they are applied (ReadModel.apply). Reading up to the page's newest event read
                # every event of the page a second time, decrypted, once per page.
                self.model.legal_history(record, cast(Any, planned.event).originator_version - 1)
                self.feed.key_of(record)
            except Exception as error:
                # The record's history does not load: stop its tenant at its first event here.
                failed[planned.id] = type(error).__name__
        return failed

    def _apply_guarded(self, cursor: SqlCursor, planned: "_Planned") -> str | None:
        """Apply one event under a savepoint; on failure undo it and return the error type."""
        cursor.execute("SAVEPOINT apply_event")
        try:
            self.model.apply(cursor, planned.event, planned.position)
        except _STORE_ERRORS:
            raise
        except RecordErasedError:
            # Destroyed between reading its event and projecting it: the destruction purged
            # its rows, and this event must add none back. Not a stall: it is done.
            cursor.execute("ROLLBACK TO SAVEPOINT apply_event")
            cursor.execute("RELEASE SAVEPOINT apply_event")
            self.model = ReadModel(self._rulebook, _History(self.feed), self.sealer)
            return None
        except Exception as error:
            cursor.execute("ROLLBACK TO SAVEPOINT apply_event")
            cursor.execute("RELEASE SAVEPOINT apply_event")
            # The model's record cache may hold half of this event: start it afresh.
            self.model = ReadModel(self._rulebook, _History(self.feed), self.sealer)
            return type(error).__name__
        cursor.execute("RELEASE SAVEPOINT apply_event")
        return None

    def retry_stalled(self, limit: int = 200) -> int:
        """Try the held events of every stalled tenant again, in order; returns how many were
        applied. A tenant whose held events all apply is no longer stalled."""
        with self.feed.db.transaction(commit=False) as cursor:
            tenants = held.stalls(cursor)
        applied = 0
        for tenant in tenants:
            applied += self._retry_tenant(tenant, limit)
        return applied

    def _retry_tenant(self, tenant: str, limit: int) -> int:
        with self.feed.db.transaction(commit=False) as cursor:
            waiting = held.held_for(cursor, tenant, limit)
        page: list[_Planned] = []
        for entry in waiting:
            found = self.feed.notifications(entry.notification_id, 1, stop=entry.notification_id)
            page.append(_Planned(entry.notification_id, tenant, entry.position))
            if not found:
                break
            try:
                page[-1].event = self.feed.to_event(found[0])
                if isinstance(page[-1].event, ClientRecord.FactRecorded):
                    event = page[-1].event
                    self.model.legal_history(event.originator_id, event.originator_version)
                    self.feed.key_of(event.originator_id)
            except Exception:
                page[-1].event = None
                break
        applied: list[int] = []
        with self.feed.db.transaction() as cursor:
            lock = " FOR UPDATE" if cursor.dialect == "postgres" else ""
            cursor.fetchone(
                "SELECT notification_id FROM pv_tracking WHERE projection = %s" + lock,  # noqa: S608
                (NAME,),
            )
            if held.held_for(cursor, tenant, limit) != waiting:
                return 0  # another worker retried first
            for planned in page:
                reason = "NotFound" if planned.event is None else None
                reason = reason or self._apply_guarded(cursor, planned)
                if reason is not None:
                    held.hold(cursor, tenant, planned.id, planned.position, reason)
                    break
                applied.append(planned.id)
            held.release(cursor, applied)
            still = held.stall_of(cursor, tenant)
        if applied:
            _log.warning("tenant %s: %d held events applied on retry", tenant, len(applied))
            if still is None:
                record_projection_stall(NAME, tenant, 0)
            with self._progress:
                self._progress.notify_all()
        return len(applied)

    def stalls(self) -> list[held.Stall]:
        """The stalled tenants, each with the position and error type that stopped it."""
        with self.feed.db.transaction(commit=False) as cursor:
            return sorted(held.stalls(cursor).values(), key=lambda s: s.tenant_id)

    def analyze(self) -> None:
        """Refresh the query planner's statistics of the read-model tables.

        Without them PostgreSQL guesses row counts and picks plans that sort or scan a whole
        table: at 1M events the findings queue took 295 ms instead of 0.14 ms (EXPLAIN
        ANALYZE). Autovacuum would do this too, later, and not where it is turned off. SQLite's
        planner uses them too.
        """
        started = time.perf_counter()
        with self.feed.db.transaction() as cursor:
            if cursor.dialect == "sqlite":
                cursor.execute("PRAGMA analysis_limit = 1000")  # sample, as PostgreSQL does
            for table in TABLES:
                cursor.execute(f"ANALYZE {table}")
        self._unanalyzed = 0
        _log.info("refreshed read-model statistics in %.2f s", time.perf_counter() - started)

    def lag(self, done: int | None = None) -> tuple[int, float]:
        """How far behind the log the read models are: (events, seconds since the oldest
        unapplied event was recorded).

        Both come from index lookups, whatever the backlog: it runs after every page. Counting
        the unapplied rows instead made a catch-up quadratic (each page counted the whole
        remaining backlog: projection fell from 1,400 to 600 events/s at 1M), and an
        open-ended count was planned as a scan of the whole log on a table without statistics.
        The event count is the span of notification ids, so ids skipped by a rolled-back write
        count too: an upper bound, exact when nothing was rolled back. ``done`` is the applied
        notification id when the caller has just written it.
        """
        if done is None:
            done = self.processed()
        top = self.feed.last_notification_id()
        first = self.feed.tenant_log.first_after(done)
        if first is None or top <= done:
            return 0, 0.0
        oldest = first.recorded_at
        return top - done, max(0.0, (datetime.now(UTC) - oldest).total_seconds())

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply everything there is now; returns how many events this worker applied.

        A page another worker took counts as progress, not as the end: this returns only when
        the read models have reached the end of the log as it was when called. ``progress`` is
        told (notification id applied, target) after every page.
        """
        target = self.feed.last_notification_id()
        total = 0
        while True:
            applied = self.step()
            total += applied
            done = self.processed()
            if progress is not None:
                progress(min(done, target), target)
            if applied == 0:
                if done >= target:
                    return total
                with self._progress:
                    self._progress.wait(0.01)

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Drop the read models and replay the whole log into fresh ones."""
        self.prepare(fresh=True)
        applied = self.catch_up(progress)
        self.analyze()
        return applied

    def run(self, stop: threading.Event) -> None:
        """Keep the read models current until ``stop`` is set."""
        if self.feed.db.dialect == "postgres":
            self._run_listening(stop)
            return
        while not stop.is_set():
            try:
                applied = self.step()
                if applied == 0 and self._retry_due() == 0:
                    self._saved.wait(IDLE_POLL)
                    self._saved.clear()
                elif applied < self._page_size:
                    stop.wait(COALESCE_SECONDS)
            except Exception:  # keep serving reads; the next loop retries the same page
                _log.exception("projection step failed; retrying")
                stop.wait(1.0)

    def _run_listening(self, stop: threading.Event) -> None:
        """PostgreSQL: sleep until the events table's NOTIFY (every insert sends one), so new
        events from any process are applied at once; a short timeout still bounds the wait."""
        while not stop.is_set():
            try:
                with self.feed.listening() as conn:
                    while not stop.is_set():
                        applied = self.step()
                        if applied == 0 and self._retry_due() == 0:
                            for _ in conn.notifies(timeout=LISTEN_TIMEOUT, stop_after=1):
                                pass
                        elif applied < self._page_size:
                            stop.wait(COALESCE_SECONDS)
            except Exception:  # an outage or a failed page: wait, reconnect, retry the page
                _log.exception("projection worker lost its connection or failed a page; retrying")
                stop.wait(1.0)

    def _retry_due(self) -> int:
        """Retry stalled tenants when the interval has passed (and on the first idle loop)."""
        if time.monotonic() < self._next_retry:
            return 0
        self._next_retry = time.monotonic() + RETRY_STALLED_SECONDS
        return self.retry_stalled()

    def wait_for(self, tenant_id: str, position: int, timeout: float) -> None:
        """Return once the read models include the tenant's ``position``; else StaleReadError
        (at once when the tenant is stalled at or before it: waiting would not help)."""
        placed = self.feed.tenant_log.at(tenant_id, position)
        if placed is None:
            raise StaleReadError(f"position {position} is not in the log")
        self._check_not_stalled(tenant_id, position)
        target = placed.notification_id
        deadline = time.monotonic() + timeout
        delay = 0.002
        while self.processed() < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StaleReadError(f"read models have not reached position {position}")
            with self._progress:
                self._progress.wait(min(delay, remaining))
            delay = min(delay * 2, 0.02)
        self._check_not_stalled(tenant_id, position)  # it may have been held meanwhile

    def _check_not_stalled(self, tenant_id: str, position: int) -> None:
        with self.feed.db.transaction(commit=False) as cursor:
            stalled_at = held.stall_of(cursor, tenant_id)
        if stalled_at is not None and stalled_at <= position:
            raise TenantStalledError(stalled_at)
