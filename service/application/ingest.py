"""The ingest use case: check, judge and store the facts clinical systems post.

Group commit. Every request thread checks what it can alone (clock, duplicate ids, the content
digest) and hands its facts to one writer thread per process, then waits. The writer takes
everything pending (up to ``max_group_events``), and for the whole group does one idempotency
lookup per tenant, judges each fact against its record's state kept in memory, and saves every
touched record in one ``save(*records)``: one transaction, one lock, one durable commit. Each
request is answered only after that commit, so 201 still means durable.

What holds, and why:

- *Idempotency*: facts already stored answer their original receipts; the same event id twice in
  one group (a client retrying while its first try waits) is stored once, and the retry answers
  the same receipt as already stored.
- *Per-record order and gapless tenant positions*: the writer applies requests in arrival order;
  positions are assigned by the recorder under the store's write lock.
- *Atomic batches and isolation*: a request whose facts cannot be applied (an id reused with
  other content, a record whose key was destroyed) fails alone, before anything is saved: its
  changes were made on copies of the records, which are dropped.
- *Several processes*: each writer keeps the records it saved in memory. Another process may
  have appended to one since: before judging, one query for the group reads the events past
  the versions we hold, and only those are applied to ours. Should another process
  append between that look and our save, the save fails on the record's version (optimistic
  concurrency), nothing is stored, and the writer redoes the group from the idempotency
  lookup, this time holding the store's write turn alone (``AuditLog.write_turn``: writers
  otherwise share it), so the redo cannot lose the race again.
- *Store errors* (an outage) fail the group's requests with the error, which the HTTP layer
  answers 503 + Retry-After; nothing was acknowledged, so nothing is lost.
"""

import asyncio
import base64
import contextlib
import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from opentelemetry.context import Context

from domain import canonical, facts
from domain.errors import EventIdReusedError, RecordErasedError
from domain.policy.engine import Judgment, judge_on_record
from domain.record import ClientRecord, check_not_in_future
from service.auth import KeyRevokedError
from service.storage.app import AuditLog
from service.storage.crypto import random_bytes
from service.storage.sql import as_datetime, as_uuid
from service.storage.tenant_log import FactEntry, LogRow, LogWrite
from service.telemetry import current_context, group_span

__all__ = [
    "Ingest",
    "Receipt",
    "Submission",
    "WriteContentionError",
    "leaf_content",
]

_log = logging.getLogger("disclosure_audit.ingest")

ANSWER_WITHIN_SECONDS = 60.0
"""A request waits at most this long for its group's commit, then gets 503 (it may still be
stored: a retry is idempotent)."""


class WriteContentionError(Exception):
    """Raised when a write lost the race for its records more often than allowed, or waited
    too long for the writer."""


@dataclass(frozen=True)
class Submission:
    """One fact for one record, as posted by a clinical system."""

    record_ref: str
    fact: facts.FactBase


@dataclass(frozen=True)
class Receipt:
    """Proof that a fact is stored, with the policy engine's judgment of it at ingest."""

    event_id: UUID
    record_ref: str
    position: int
    recorded_at: datetime
    findings: tuple[dict[str, Any], ...]
    accountable: bool | None
    excess_categories: tuple[str, ...]
    ruleset: str | None


_NO_JUDGMENT: dict[str, Any] = {
    "findings": [],
    "accountable": None,
    "excess_categories": [],
    "ruleset": None,
}


def _judgment_dict(judgment: Judgment) -> dict[str, Any]:
    return {
        "findings": [f.as_dict() for f in judgment.findings],
        "accountable": judgment.accountable,
        "excess_categories": [c.value for c in judgment.excess_categories],
        "ruleset": judgment.ruleset,
    }


def leaf_content(event: ClientRecord.Event, salt: str) -> dict[str, Any]:
    """What a Merkle leaf commits to for one stored event, with a random salt.

    The salt keeps a bare leaf hash from being matched against guessed contents; it is sealed
    with the rest of the leaf, so after crypto-shredding only the hash remains.
    """
    content: dict[str, Any] = {
        "type": "RecordRegistered",
        "record_ref": getattr(event, "record_ref", None),
        "recorded_at": event.timestamp.isoformat(),
        "salt": salt,
    }
    if isinstance(event, ClientRecord.FactRecorded):
        content["type"] = type(event.fact).__name__
        content["event"] = event.fact.model_dump(mode="json", exclude_none=True)
    elif isinstance(event, ClientRecord.Destroyed):
        content["type"] = "RecordDestroyed"
        content["event"] = event.model_dump(
            mode="json", exclude={"originator_id", "originator_version", "timestamp"}
        )
    return content


def _receipt(
    submission: Submission, position: int, recorded_at: datetime, judgment: dict[str, Any]
) -> Receipt:
    return Receipt(
        event_id=submission.fact.event_id,
        record_ref=submission.record_ref,
        position=position,
        recorded_at=recorded_at,
        findings=tuple(judgment["findings"]),
        accountable=judgment["accountable"],
        excess_categories=tuple(judgment["excess_categories"]),
        ruleset=judgment["ruleset"],
    )


@dataclass
class _Request:
    """One caller's submissions, waiting for the writer."""

    tenant_id: str
    unique: dict[UUID, tuple[Submission, bytes]]
    key_id: str | None = None  # the API key it came with, if the caller checked it from memory
    answered: threading.Event = field(default_factory=threading.Event)
    receipts: dict[UUID, Receipt] = field(default_factory=dict)
    created: bool = False
    error: BaseException | None = None
    context: Context = field(default_factory=current_context)  # the caller's trace
    wake: Callable[[], object] | None = None  # an async caller's: resolves its future

    def finish(self) -> None:
        self.answered.set()
        if self.wake is not None:
            self.wake()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.finish()


@dataclass
class _Placed:
    """A fact new in this group, waiting for its position."""

    request: _Request
    submission: Submission
    digest: bytes
    key: tuple[UUID, int]
    judgment: dict[str, Any]


class Ingest:
    """Records facts idempotently and atomically per request, group-committed per process."""

    def __init__(
        self,
        store: AuditLog,
        *,
        write_attempts: int,
        max_group_events: int = 2000,
        cached_records: int = 20_000,
        active_keys: Callable[[Collection[str]], set[str]] | None = None,
    ) -> None:
        self.store = store
        self._active_keys = active_keys
        self.saved = threading.Event()  # set after every commit: wakes an in-process projector
        self._attempts = write_attempts
        self._max_group_events = max_group_events
        self._cached = cached_records
        self._records: OrderedDict[UUID, ClientRecord] = OrderedDict()
        self._absent: set[UUID] = set()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the writer's start and the records in memory
        self._writer: threading.Thread | None = None
        self._closed = False

    # The callers' side --------------------------------------------------------------------

    def record_facts(
        self, tenant_id: str, submissions: Sequence[Submission], *, key_id: str | None = None
    ) -> tuple[list[Receipt], bool]:
        """Store the submissions atomically; return their receipts and whether anything was new.

        Facts already stored with the same content keep their original receipts; an event id
        reused with different content stores nothing and raises EventIdReusedError. With
        ``key_id`` (a key admitted from memory), the writer stores nothing if that key was
        revoked meanwhile and raises KeyRevokedError.
        """
        request = self._prepare(tenant_id, submissions, key_id)
        self._prefetch(tenant_id, {s.record_ref for s in submissions})
        self._submit(request)
        if not request.answered.wait(ANSWER_WITHIN_SECONDS):
            raise WriteContentionError("the writer did not answer in time; retry")
        return self._outcome(request, submissions)

    async def record_facts_async(
        self, tenant_id: str, submissions: Sequence[Submission], *, key_id: str | None = None
    ) -> tuple[list[Receipt], bool]:
        """``record_facts`` for an event loop: no thread waits while the writer commits.

        The checks run in the loop (they are short and CPU-bound); a thread is borrowed only
        when a record or its key is not in memory yet and must be read first.
        """
        request = self._prepare(tenant_id, submissions, key_id)
        refs = {s.record_ref for s in submissions}
        # While the store is known to be down, leave the reads to the writer: its first
        # query fails the whole queue at once (503), where a prefetch would spend its retry
        # budget on every read and keep the caller waiting for seconds.
        if not self._in_memory(tenant_id, refs) and not self.store.known_unreachable:
            await asyncio.to_thread(self._prefetch, tenant_id, refs)
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, answered)

        request.wake = wake
        self._submit(request)
        # A timer on the future itself, not wait_for(shield(...)): two futures, a task's worth
        # of callbacks less per request. A caller that stops waiting cancels only its own
        # future; the commit runs its course (_settle skips a future that is done).
        expiry = loop.call_later(ANSWER_WITHIN_SECONDS, _expire, answered)
        try:
            await answered
        finally:
            expiry.cancel()
        return self._outcome(request, submissions)

    def _prepare(
        self, tenant_id: str, submissions: Sequence[Submission], key_id: str | None
    ) -> _Request:
        """The checks a request makes alone, before the writer: clock, ids, content digests."""
        now = datetime.now(UTC)
        for index, submission in enumerate(submissions):
            check_not_in_future(submission.fact, now, index if len(submissions) > 1 else None)
        unique: dict[UUID, tuple[Submission, bytes]] = {}
        for submission in submissions:
            digest = self._digest(submission)
            seen = unique.get(submission.fact.event_id)
            if seen is not None and seen[1] != digest:
                raise EventIdReusedError(str(submission.fact.event_id))
            unique[submission.fact.event_id] = (submission, digest)
        return _Request(tenant_id, unique, key_id)

    @staticmethod
    def _outcome(
        request: _Request, submissions: Sequence[Submission]
    ) -> tuple[list[Receipt], bool]:
        if request.error is not None:
            raise request.error
        return [request.receipts[s.fact.event_id] for s in submissions], request.created

    def _in_memory(self, tenant_id: str, record_refs: set[str]) -> bool:
        """Whether the writer holds these records (or knows them new) and their keys."""
        for record_ref in record_refs:
            rid = self.store.record_id(tenant_id, record_ref)
            with self._lock:
                known = rid in self._records or rid in self._absent
            if not known or not self.store.keyring.holds(rid):
                return False
        return True

    def _prefetch(self, tenant_id: str, record_refs: set[str]) -> None:
        """Read what the writer will need, here, in parallel with the other callers: records
        not in memory (snapshot and later events), their keys (created for new records). Then
        the writer does no round trip per record, only one per group."""
        for record_ref in record_refs:
            rid = self.store.record_id(tenant_id, record_ref)
            with self._lock:
                known = rid in self._records
            record = None if known else self.store.load(rid)
            if record is not None:
                self._remember([record], only_newer=True)
            if known or record is not None:
                self.store.key_of(rid)
            else:
                self.store.ensure_key(tenant_id, rid)
                with self._lock:
                    # New as far as we know: the writer registers it without looking again.
                    # Should another process register it first, the save fails on version 1
                    # and the group is redone with the record read from the store. Should our
                    # own writer have saved it since our look, it is held now: not new.
                    if rid not in self._records:
                        self._absent.add(rid)

    def _digest(self, submission: Submission) -> bytes:
        content = {
            "record_ref": submission.record_ref,
            "fact": submission.fact.model_dump(mode="json"),
        }
        return self.store.content_digest(canonical.dumps(content))

    def _submit(self, request: _Request) -> None:
        with self._lock:
            if self._closed:
                raise WriteContentionError("the service is shutting down; retry")
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
                self._writer.start()
            self._queue.put(request)

    def close(self) -> None:
        """Answer everything already submitted, then stop the writer."""
        with self._lock:
            self._closed = True
            writer = self._writer
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join()

    def queued(self) -> int:
        """How many requests wait for the writer now (a gauge for operators and tests)."""
        return self._queue.qsize()

    def forget(self, *records: UUID) -> None:
        """Drop records from memory (their key was destroyed, or they changed elsewhere)."""
        with self._lock:
            for record in records:
                self._records.pop(record, None)

    # The writer's side --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, events, stopping = [first], len(first.unique), False
            while events < self._max_group_events:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                group.append(nxt)
                events += len(nxt.unique)
            try:
                with group_span(
                    "ingest.commit",
                    [r.context for r in group],
                    {"events.count": events, "requests.count": len(group)},
                ):
                    self._commit(group)
            except BaseException as error:  # never leave a caller waiting
                _log.exception("the ingest writer failed a group")
                for request in group:
                    if not request.answered.is_set():
                        request.fail(error)
                self._fail_queued_if_unreachable(error)
            if stopping:
                return

    def _fail_queued_if_unreachable(self, error: BaseException) -> None:
        """The store is unreachable: answer everything queued meanwhile at once with the same
        error (503, nothing stored) rather than have each group in turn spend the retry budget
        finding that out, which made callers wait several budgets in a row."""
        if not isinstance(error, OperationalError | InterfaceError):
            return
        while True:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                return
            if waiting is None:  # the stop signal: leave it for the loop
                self._queue.put(None)
                return
            waiting.fail(error)

    def _commit(self, group: list[_Request]) -> None:
        # Destructions by other processes since the last group: their keys and records go
        # from memory before anything is sealed (their facts then fail alone, as erased).
        self.store.sync_keys()
        for attempt in range(self._attempts):
            pending = [r for r in group if not r.answered.is_set()]
            if not pending:
                return
            touched: set[UUID] = set()
            try:
                # After a lost race, the redo writes alone: nobody can append in between.
                with self.store.write_turn(alone=attempt > 0):
                    self._attempt(pending, touched)
            except IntegrityError:
                # Another process appended to one of these records, or stored one of these
                # event ids, between our look and our save: nothing was stored. Redo: the next
                # attempt catches those records up and finds those ids stored.
                time.sleep(min(0.05, 0.001 * (attempt + 1)) * random.random())  # noqa: S311
            except Exception as error:  # the store failed: the outcome is for the callers
                self._evict(touched)
                for request in pending:
                    request.fail(error)
                self._fail_queued_if_unreachable(error)
                return
            else:
                return
        for request in group:
            if not request.answered.is_set():
                request.fail(WriteContentionError(f"gave up after {self._attempts} attempts"))

    def _attempt(self, pending: list[_Request], touched: set[UUID]) -> None:
        self._refuse_revoked(pending)
        stored = self._already_stored(pending)
        self._catch_up(pending)
        recorded_at = datetime.now(UTC)
        working: dict[UUID, ClientRecord] = {}
        rows: dict[tuple[UUID, int], LogRow] = {}
        placed: dict[tuple[str, UUID], _Placed] = {}
        shared: list[tuple[_Request, UUID, _Placed]] = []
        for request in pending:
            if request.answered.is_set():
                continue
            try:
                trial, mine, again = self._apply(request, stored, placed, working, recorded_at)
                new_rows = {
                    (record.id, event.originator_version): self._row(
                        request.tenant_id, record.id, event, mine
                    )
                    for record in trial.values()
                    for event in record.pending_events
                    if (record.id, event.originator_version) not in rows
                }
            except (IntegrityError, OperationalError, InterfaceError):
                raise  # the store's, not the request's: the whole group is retried or fails
            except Exception as error:  # this request's own fault: it fails alone
                request.fail(error)
                continue
            touched.update(trial)
            working.update(trial)
            rows.update(new_rows)
            for item in mine.values():
                placed[(request.tenant_id, item.submission.fact.event_id)] = item
            shared += [(request, eid, item) for eid, item in again]
            request.created = bool(mine)
        if not working:
            return
        placements = self.store.append(list(working.values()), LogWrite(rows))
        for item in placed.values():
            item.request.receipts[item.submission.fact.event_id] = _receipt(
                item.submission, placements[item.key].position, recorded_at, item.judgment
            )
        for request, eid, item in shared:
            submission = request.unique[eid][0]
            request.receipts[eid] = _receipt(
                submission, placements[item.key].position, recorded_at, item.judgment
            )
        self._remember(working.values())
        self.saved.set()
        for request in pending:
            if not request.answered.is_set():
                request.finish()

    def _refuse_revoked(self, pending: list[_Request]) -> None:
        """One query for the group: fail the requests whose key was revoked since it was
        admitted from memory (the others' keys were checked against the store per request)."""
        keys = {r.key_id for r in pending if r.key_id is not None and not r.answered.is_set()}
        if not keys or self._active_keys is None:
            return
        active = self._active_keys(keys)
        for request in pending:
            revoked = request.key_id is not None and request.key_id not in active
            if revoked and not request.answered.is_set():
                request.fail(KeyRevokedError("the API key was revoked"))

    def _already_stored(self, pending: list[_Request]) -> dict[tuple[str, UUID], Any]:
        """One lookup per tenant; answers the requests whose facts are all stored already."""
        ids: dict[str, list[UUID]] = {}
        for request in pending:
            ids.setdefault(request.tenant_id, []).extend(request.unique)
        stored: dict[tuple[str, UUID], Any] = {}
        for tenant, event_ids in ids.items():
            for row in self.store.tenant_log.facts(tenant, event_ids):
                stored[(tenant, as_uuid(row["event_id"]))] = row
        for request in pending:
            try:
                request.receipts.update(self._receipts_of(request, stored))
            except EventIdReusedError as error:
                request.fail(error)
                continue
            if len(request.receipts) == len(request.unique):
                request.finish()  # a repeat: 200 with the original receipts
        return stored

    def _receipts_of(
        self, request: _Request, stored: dict[tuple[str, UUID], Any]
    ) -> dict[UUID, Receipt]:
        """The original receipts of the request's facts stored already."""
        found: dict[UUID, Receipt] = {}
        for eid, (submission, digest) in request.unique.items():
            row = stored.get((request.tenant_id, eid))
            if row is None:
                continue
            if bytes(row["content_digest"]) != digest:
                raise EventIdReusedError(str(eid))
            judgment = self.store.open_judgment(
                as_uuid(row["record_id"]), int(row["originator_version"]), row["receipt"]
            )
            found[eid] = _receipt(
                submission,
                int(row["position"]),
                as_datetime(row["recorded_at"]),
                judgment or _NO_JUDGMENT,
            )
        return found

    def _apply(
        self,
        request: _Request,
        stored: dict[tuple[str, UUID], Any],
        placed: dict[tuple[str, UUID], _Placed],
        working: dict[UUID, ClientRecord],
        recorded_at: datetime,
    ) -> tuple[dict[UUID, ClientRecord], dict[UUID, _Placed], list[tuple[UUID, _Placed]]]:
        """Judge and append one request's new facts, on copies of the records it touches."""
        tenant = request.tenant_id
        trial: dict[UUID, ClientRecord] = {}
        mine: dict[UUID, _Placed] = {}
        again: list[tuple[UUID, _Placed]] = []
        for eid, (submission, digest) in request.unique.items():
            if (tenant, eid) in stored:
                continue
            earlier = placed.get((tenant, eid))
            if earlier is not None:  # the same fact sent twice in one group: store it once
                if earlier.digest != digest:
                    raise EventIdReusedError(str(eid))
                again.append((eid, earlier))
                continue
            rid = self.store.record_id(tenant, submission.record_ref)
            record = trial.get(rid)
            if record is None:
                base = working.get(rid) or self._recall(rid)
                if base is None:
                    record = self.store.register(tenant, submission.record_ref, recorded_at)
                else:
                    record = base.fork()
                trial[rid] = record
            judgment = _judgment_dict(
                judge_on_record(self.store.rulebook, record.legal_facts, submission.fact)
            )
            record.record(submission.fact, recorded_at)
            key = (rid, record.version)
            mine[eid] = _Placed(request, submission, digest, key, judgment)
        return trial, mine, again

    def _row(
        self,
        tenant_id: str,
        record: UUID,
        event: Any,
        mine: dict[UUID, _Placed],
    ) -> LogRow:
        salt = base64.b64encode(random_bytes(16)).decode()
        key = self.store.key_of(record)
        if key is None:
            raise RecordErasedError("a record whose key was destroyed takes no new facts")
        fact = None
        if isinstance(event, ClientRecord.FactRecorded):
            item = mine[event.fact.event_id]
            fact = FactEntry(
                item.submission.fact.event_id,
                item.digest,
                self.store.seal_judgment(
                    record, event.originator_version, item.judgment, event.timestamp
                ),
            )
        return LogRow(
            tenant_id=tenant_id,
            leaf=canonical.Splice(leaf_content(event, salt), "position"),
            key=key,
            recorded_at=event.timestamp,
            fact=fact,
        )

    # Records in memory --------------------------------------------------------------------

    def _catch_up(self, pending: list[_Request]) -> None:
        """Bring the group's records in memory up to date with what other processes stored.

        One query for the whole group reads the events past the versions we hold: a record
        another process appended to gets only the events it lacks applied to it (never a
        reload of its whole stream), and a record we took for new but another process
        registered is read whole when applied. Without this, two API processes writing the
        same records would lose nearly every group to a version conflict.
        """
        rids: set[UUID] = set()
        for request in pending:
            if not request.answered.is_set():
                rids.update(
                    self.store.record_id(request.tenant_id, s.record_ref)
                    for s, _ in request.unique.values()
                )
        with self._lock:
            held = {rid: self._records[rid] for rid in rids if rid in self._records}
            known = {rid: r.version for rid, r in held.items()}
            known |= {rid: 0 for rid in rids if rid in self._absent and rid not in held}
        if not known:
            return
        fresh: list[ClientRecord] = []
        for rid, events in self.store.newer_events(known).items():
            record = held.get(rid)
            if record is None:  # registered elsewhere: _recall reads it from the store
                with self._lock:
                    self._absent.discard(rid)
                continue
            newer = record.fork()
            for event in events:
                newer = cast(ClientRecord, event.mutate(newer))
            fresh.append(newer)
        self._remember(fresh, only_newer=True)

    def _recall(self, record: UUID) -> ClientRecord | None:
        with self._lock:
            found = self._records.get(record)
            if found is not None:
                self._records.move_to_end(record)
                return found
            if record in self._absent:
                return None
        return self.store.load(record)

    def _remember(self, records: Any, *, only_newer: bool = False) -> None:
        with self._lock:
            for record in records:
                self._absent.discard(record.id)
                held = self._records.get(record.id)
                if only_newer and held is not None and held.version >= record.version:
                    continue  # the writer saved a newer state meanwhile
                self._records[record.id] = record
                self._records.move_to_end(record.id)
            while len(self._records) > self._cached:
                self._records.popitem(last=False)

    def _evict(self, records: set[UUID]) -> None:
        with self._lock:
            for record in records:
                self._records.pop(record, None)
                self._absent.discard(record)


def _expire(answered: "asyncio.Future[None]") -> None:
    if not answered.done():
        answered.set_exception(WriteContentionError("the writer did not answer in time; retry"))


def _settle(answered: "asyncio.Future[None]") -> None:
    if not answered.done():  # the caller may have stopped waiting
        answered.set_result(None)
