"""Store resilience: bounded retries, and a pool that fails fast on an unreachable database."""

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder

from service.settings import Settings
from service.storage.recorders import PostgresAuditRecorder
from service.storage.resilience import (
    FAIL_FAST_SECONDS,
    RECONNECT_SECONDS,
    RETRY_BUDGET_SECONDS,
    GuardedConnectionPool,
    ResilientPostgresFactory,
    bounded_retry,
)
from tests.e2e.server import free_port


def _as_library_method(inner: Callable[[], str]) -> Callable[[], str]:
    # Like the library's @retry: a wrapper whose __wrapped__ is the undecorated function.
    @functools.wraps(inner)
    def decorated() -> str:
        raise AssertionError("the library's own ten retries must be bypassed")

    return decorated


def test_connection_errors_are_retried_only_within_the_budget() -> None:
    calls: list[float] = []

    def always_down() -> str:
        calls.append(time.monotonic())
        raise OperationalError("connection refused")

    started = time.monotonic()
    with pytest.raises(OperationalError):
        bounded_retry(_as_library_method(always_down))()
    assert time.monotonic() - started <= RETRY_BUDGET_SECONDS + 0.1
    assert len(calls) > 1, "a blip is retried"


def test_a_blip_is_retried_and_the_call_succeeds() -> None:
    outcomes: Iterator[Exception | str] = iter(
        [OperationalError("reset"), OperationalError("reset"), "stored"]
    )

    def flaky() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert bounded_retry(_as_library_method(flaky))() == "stored"


def test_other_errors_are_not_retried() -> None:
    calls = []

    def conflict() -> str:
        calls.append(1)
        raise IntegrityError("duplicate key")

    with pytest.raises(IntegrityError):
        bounded_retry(_as_library_method(conflict))()
    assert calls == [1], "a version conflict goes back to the write loop at once"


@pytest.mark.parametrize("name", ["select_events", "select_notifications", "max_notification_id"])
def test_the_recorder_replaces_the_library_retry_of(name: str) -> None:
    ours = getattr(PostgresAuditRecorder, name)
    library = getattr(PostgresApplicationRecorder, name)
    assert ours is not library
    assert ours.__wrapped__ is library.__wrapped__, "the same SQL, only the retry differs"


def test_the_recorders_own_insert_has_the_bounded_retry_not_the_librarys() -> None:
    ours = PostgresAuditRecorder.insert_events
    assert ours is not PostgresApplicationRecorder.insert_events
    assert cast(Any, ours).__wrapped__ is PostgresAuditRecorder._copy_events


def test_an_unreachable_database_fails_fast_after_the_first_failed_connection() -> None:
    port = free_port()  # nothing listens there
    env = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{port}/postgres", _env_file=None
    ).eventsourcing_env()
    env["POSTGRES_CONNECT_TIMEOUT"] = "2"  # the pool's own wait, shortened for the test
    factory = ResilientPostgresFactory(env)
    pool = factory.datastore.pool
    assert isinstance(pool, GuardedConnectionPool)
    assert pool.reconnect_timeout == RECONNECT_SECONDS
    assert cast(dict[str, Any], pool.kwargs)["connect_timeout"] == 3
    try:
        assert not factory.breaker.down
        with pytest.raises(OperationalError), factory.datastore.transaction(commit=False):
            pass
        assert factory.breaker.down
        started = time.monotonic()
        with pytest.raises(OperationalError), factory.datastore.transaction(commit=False):
            pass
        assert time.monotonic() - started < FAIL_FAST_SECONDS + 0.5
    finally:
        factory.close()
