"""Group commit: concurrent requests share one transaction, and still each get what they would
have got alone (idempotency, order, gapless positions, isolation), on both stores."""

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from domain import facts
from domain.errors import EventIdReusedError, RecordErasedError
from service.application import ingest as ingest_module
from service.application.ingest import Ingest, Receipt, Submission, WriteContentionError
from service.container import Services, build_services
from service.settings import Settings
from service.storage.app import SNAPSHOT_INTERVAL
from tests.conftest import new_tenant
from tests.factories import example


def _fact(**fields: Any) -> facts.FactBase:
    return facts.RecordAccessed.model_validate(example("RecordAccessed", **fields))


def _post(services: Services, tenant: str, record: str, fact: facts.FactBase) -> Callable[[], Any]:
    return lambda: services.ingest.record_facts(tenant, [Submission(record, fact)])


class _Gate:
    """Once armed, holds the writer in its next save until every caller has queued, so the
    callers that follow all land in the group after it; records how many events each save
    carried from then on."""

    def __init__(self, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.open = threading.Event()
        self.held = threading.Event()
        self.saves: list[int] = []
        append = services.audit.append

        def gated(records: Any, write: Any) -> Any:
            if self.armed:
                if not self.saves:
                    self.held.set()
                    self.open.wait(30)
                self.saves.append(len(write.rows))
            return append(records, write)

        monkeypatch.setattr(services.audit, "append", gated)


def _start_all(calls: list[Callable[[], Any]]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    return threads, results


def _run_all(calls: list[Callable[[], Any]]) -> list[Any]:
    return _joined(*_start_all(calls))


def _joined(threads: list[threading.Thread], results: list[Any]) -> list[Any]:
    for thread in threads:
        thread.join(60)
    return results


@pytest.fixture
def gate(services: Services, monkeypatch: pytest.MonkeyPatch) -> _Gate:
    return _Gate(services, monkeypatch)


def _queue_behind_a_held_save(
    services: Services, gate: _Gate, tenant: str, calls: list[Callable[[], Any]]
) -> list[Any]:
    """Start one write that the gate holds, queue ``calls`` behind it, then let all go."""
    gate.armed = True
    blocker = threading.Thread(
        target=services.ingest.record_facts, args=(tenant, [Submission("blocker", _fact())])
    )
    blocker.start()
    _wait_until(lambda: bool(gate.held.is_set()))
    threads, results = _start_all(calls)
    _wait_until(lambda: services.ingest.queued() >= len(calls))  # all wait for the writer
    gate.open.set()
    blocker.join(60)
    return _joined(threads, results)


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def test_concurrent_requests_share_one_commit_and_one_bad_request_fails_alone(
    services: Services, gate: _Gate
) -> None:
    tenant = new_tenant()
    taken = _fact()
    services.ingest.record_facts(tenant, [Submission("shared", taken)])
    reused = facts.RecordAccessed.model_validate(
        {**taken.model_dump(mode="json"), "categories": ["diagnosis"]}
    )
    good = [_fact() for _ in range(20)]
    calls = [_post(services, tenant, "shared", f) for f in good]
    calls.append(lambda: services.ingest.record_facts(tenant, [Submission("shared", reused)]))
    results = _queue_behind_a_held_save(services, gate, tenant, calls)

    assert isinstance(results[-1], EventIdReusedError), results[-1]
    answered = results[:-1]
    assert all(isinstance(r, tuple) and r[1] is True for r in answered), answered
    assert gate.saves[1] == 20, f"the 20 good requests were saved together: {gate.saves}"
    # Gapless positions: 1 (registration), 2 (taken), 3 (blocker's registration and fact),
    # then the 20 in one commit.
    stored = services.audit.read_record(tenant, "shared")
    assert [e.event.originator_version for e in stored] == list(range(1, 23))
    positions = sorted(r[0][0].position for r in answered)
    assert positions == list(range(positions[0], positions[0] + 20))
    assert services.audit.last_position(tenant) == 2 + 2 + 20
    order = [e.event.fact.event_id for e in stored[2:] if hasattr(e.event, "fact")]
    assert sorted(order, key=str) == sorted((f.event_id for f in good), key=str)


def test_a_record_our_writer_saved_while_a_caller_looked_for_it_takes_the_callers_fact(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A caller looks for a record in the store, finds none, and before it notes the record as
    # new, the writer stores that record for another caller. The record is not new any more:
    # the fact must land after the other one, not fail on replaying the registration.
    tenant = new_tenant()
    load = services.audit.load
    first = _fact()

    raced: list[bool] = []

    def stale_look(record: UUID) -> Any:
        found = load(record)
        if threading.current_thread().name == "late" and not raced:
            raced.append(True)
            services.ingest.record_facts(tenant, [Submission("raced", first)])
            return None  # what the store said before that save
        return found

    monkeypatch.setattr(services.audit, "load", stale_look)
    late = _fact()
    results: list[Any] = []
    caller = threading.Thread(
        target=lambda: results.append(
            services.ingest.record_facts(tenant, [Submission("raced", late)])
        ),
        name="late",
    )
    caller.start()
    caller.join(60)

    assert len(results) == 1, results
    assert results[0][1] is True, results
    stored = services.audit.read_record(tenant, "raced")
    assert [getattr(e.event, "fact", None) for e in stored][1:] == [first, late]


def test_a_fact_sent_twice_in_one_group_is_stored_once_with_one_receipt(
    services: Services, gate: _Gate
) -> None:
    tenant = new_tenant()
    fact = _fact()
    twice: list[Callable[[], Any]] = [
        lambda: services.ingest.record_facts(tenant, [Submission("retry", fact)]),
        lambda: services.ingest.record_facts(tenant, [Submission("retry", fact)]),
    ]
    (first, second) = _queue_behind_a_held_save(services, gate, tenant, twice)
    receipts: list[Receipt] = [first[0][0], second[0][0]]
    assert {first[1], second[1]} == {True, False}, "one stored it, the other is a repeat"
    assert receipts[0].position == receipts[1].position
    assert len(services.audit.read_record(tenant, "retry")) == 2  # registration + the fact


def test_a_request_for_a_destroyed_record_fails_alone_in_its_group(
    services: Services, gate: _Gate
) -> None:
    tenant = new_tenant()
    services.ingest.record_facts(tenant, [Submission("gone", _fact())])
    services.ingest.record_facts(tenant, [Submission("kept", _fact())])
    services.shred_record(tenant, "gone")
    calls: list[Callable[[], Any]] = [
        lambda: services.ingest.record_facts(tenant, [Submission("gone", _fact())]),
        lambda: services.ingest.record_facts(tenant, [Submission("kept", _fact())]),
    ]
    gone, kept = _queue_behind_a_held_save(services, gate, tenant, calls)
    assert isinstance(gone, RecordErasedError), gone
    assert kept[1] is True
    assert len(services.audit.read_record(tenant, "kept")) == 3


def test_a_batch_is_atomic_inside_a_group(services: Services, gate: _Gate) -> None:
    tenant = new_tenant()
    taken = _fact()
    services.ingest.record_facts(tenant, [Submission("b-0", taken)])
    reused = facts.RecordAccessed.model_validate(
        {**taken.model_dump(mode="json"), "categories": ["diagnosis"]}
    )
    bad_batch = [Submission("b-1", _fact()), Submission("b-0", reused)]
    calls: list[Callable[[], Any]] = [
        lambda: services.ingest.record_facts(tenant, bad_batch),
        lambda: services.ingest.record_facts(tenant, [Submission("b-2", _fact())]),
    ]
    bad, good = _queue_behind_a_held_save(services, gate, tenant, calls)
    assert isinstance(bad, EventIdReusedError)
    assert good[1] is True
    assert not services.audit.has_record(tenant, "b-1"), "nothing of the failed batch is stored"


def test_a_store_error_fails_the_whole_group_and_stores_nothing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()

    def down(records: Any, write: Any) -> Any:
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(services.audit, "append", down)
    results = _run_all([_post(services, tenant, f"o-{n}", _fact()) for n in range(5)])
    assert all(isinstance(r, OperationalError) for r in results), results
    monkeypatch.undo()
    assert services.audit.last_position(tenant) == 0
    receipts, created = services.ingest.record_facts(tenant, [Submission("o-0", _fact())])
    assert created
    assert receipts[0].position == 2


def test_another_process_writing_the_same_record_is_caught_up_not_reloaded(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers, each with its record in memory (two processes): the stale one learns of
    the other's event by its version, reads only that event, and both facts are stored in
    order; its saves never fail on the version."""
    tenant = new_tenant()
    other = Ingest(services.audit, write_attempts=5)
    try:
        services.ingest.record_facts(tenant, [Submission("both", _fact())])
        other.record_facts(tenant, [Submission("both", _fact())])  # loads version 2, writes 3
        loads: list[UUID] = []
        caught_up: list[int] = []
        load, newer_events = services.audit.load, services.audit.newer_events

        def loading(rid: UUID) -> Any:
            loads.append(rid)
            return load(rid)

        def catching_up(known: Any) -> Any:
            found = newer_events(known)
            caught_up.append(sum(len(events) for events in found.values()))
            return found

        monkeypatch.setattr(services.audit, "load", loading)
        monkeypatch.setattr(services.audit, "newer_events", catching_up)
        conflicts: list[int] = []
        append = services.audit.append

        def saving(*args: Any, **kwargs: Any) -> Any:
            try:
                return append(*args, **kwargs)
            except IntegrityError:
                conflicts.append(1)
                raise

        monkeypatch.setattr(services.audit, "append", saving)
        receipts, created = services.ingest.record_facts(tenant, [Submission("both", _fact())])
        assert created
        assert caught_up == [1], "only the event the other writer added"
        assert not loads, "not the whole stream"
        assert not conflicts
        monkeypatch.undo()
        versions = [e.event.originator_version for e in services.audit.read_record(tenant, "both")]
        assert versions == [1, 2, 3, 4]
        assert receipts[0].position == 4
    finally:
        other.close()


@pytest.mark.parametrize("store", ["postgres"])
def test_a_writer_that_lost_a_race_redoes_alone_and_cannot_lose_it_again(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes writing one record: the one whose save lost the race redoes its group
    holding the write turn alone; the other's next write waits for that redo, and neither
    loses again."""
    tenant = new_tenant()
    other = Ingest(services.audit, write_attempts=5)
    ours, first, second = _fact(), _fact(), _fact()
    try:
        services.ingest.record_facts(tenant, [Submission("contested", _fact())])
        other.record_facts(tenant, [Submission("contested", _fact())])
        saves: list[str] = []
        waiting: list[threading.Thread] = []
        append = services.audit.append

        def facts_stored() -> list[Any]:
            return [
                getattr(e.event, "fact", None)
                for e in services.audit.read_record(tenant, "contested")
            ]

        def racing(records: Any, write: Any) -> Any:
            if threading.current_thread() is not services.ingest._writer:
                saves.append("other")
                return append(records, write)
            saves.append("ours")
            if saves.count("ours") == 1:  # between our read and our save, the other writes
                other.record_facts(tenant, [Submission("contested", first)])
            else:  # our redo: the other writes again, and must wait for us
                waiting.append(
                    threading.Thread(
                        target=other.record_facts,
                        args=(tenant, [Submission("contested", second)]),
                    )
                )
                waiting[0].start()
                time.sleep(0.5)
                assert second not in facts_stored(), "the other wrote during our redo"
            return append(records, write)

        monkeypatch.setattr(services.audit, "append", racing)
        receipts, created = services.ingest.record_facts(tenant, [Submission("contested", ours)])
        waiting[0].join(30)
        monkeypatch.undo()

        assert created
        assert saves == ["ours", "other", "ours", "other"], "one lost race, one redo, no more"
        assert facts_stored()[-3:] == [first, ours, second]
        assert receipts[0].position == 5
    finally:
        other.close()


@pytest.fixture
def long_record(settings: Settings) -> tuple[str, int]:
    tenant = new_tenant()
    count = 2 * SNAPSHOT_INTERVAL + 37
    services = build_services(settings)
    try:
        for start in range(0, count, 100):
            batch = [Submission("long", _fact()) for _ in range(min(100, count - start))]
            services.ingest.record_facts(tenant, batch)
    finally:
        services.close()
    return tenant, count


def test_after_a_restart_a_long_record_loads_from_its_snapshot(
    settings: Settings, long_record: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, count = long_record
    restarted = build_services(settings)
    try:
        read: list[int] = []
        select = restarted.audit.recorder.select_events

        def counting(*args: Any, **kwargs: Any) -> Any:
            found = select(*args, **kwargs)
            read.append(len(found))
            return found

        monkeypatch.setattr(restarted.audit.recorder, "select_events", counting)
        rid: UUID = restarted.audit.record_id(tenant, "long")
        record = restarted.audit.load(rid)
        assert record is not None
        assert sum(read) <= SNAPSHOT_INTERVAL, f"read {read} events, not the whole stream"
        assert record.version == count + 1
        assert record.fact_count == count
        replayed = restarted.audit.history(rid, record.version)
        assert len(replayed) == count + 1
        monkeypatch.undo()
        receipts, _ = restarted.ingest.record_facts(tenant, [Submission("long", _fact())])
        assert receipts[0].position == count + 2
    finally:
        restarted.close()


def test_an_async_caller_gets_a_retryable_error_when_the_commit_takes_too_long_then_it_lands(
    services: Services, gate: _Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event-loop path waits a bounded time (503 to the caller, who retries idempotently);
    the commit it gave up on still runs, and a caller that goes away cancels nothing."""
    tenant = new_tenant()
    monkeypatch.setattr(ingest_module, "ANSWER_WITHIN_SECONDS", 0.2)
    gate.armed = True
    late, gone = _fact(), _fact()

    async def both() -> tuple[BaseException | None, bool]:
        waiting = asyncio.create_task(
            services.ingest.record_facts_async(tenant, [Submission("late", late)])
        )
        leaving = asyncio.create_task(
            services.ingest.record_facts_async(tenant, [Submission("gone", gone)])
        )
        await asyncio.sleep(0.05)
        leaving.cancel()  # a client that disconnected while its group was held
        try:
            await waiting
        except WriteContentionError as error:
            timed_out: BaseException | None = error
        else:
            timed_out = None
        return timed_out, leaving.cancelled()

    timed_out, cancelled = asyncio.run(both())
    assert isinstance(timed_out, WriteContentionError), "answered within the bound, not stuck"
    assert cancelled
    gate.open.set()
    _wait_until(lambda: services.audit.last_position(tenant) == 4)  # 2 registrations, 2 facts
    _, created = services.ingest.record_facts(tenant, [Submission("late", late)])
    assert not created, "the retry finds the fact the timed-out request had sent"
    _, created = services.ingest.record_facts(tenant, [Submission("gone", gone)])
    assert not created, "the abandoned request's fact was stored all the same"
