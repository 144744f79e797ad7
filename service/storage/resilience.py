"""PostgreSQL that answers quickly while the database is down and recovers by itself.

The library's defaults suit a batch job, not an API: its pool waits 5 s for a connection on
every call, its recorders retry ten times (so one request can wait almost a minute), a broken
pool reconnects with an exponential back-off of up to five minutes, and libpq waits 130 s for
an unreachable host. Here:

- connections carry a connect timeout and TCP keepalives, so a vanished server is noticed;
- while the last connection attempt failed, callers wait at most ``FAIL_FAST_SECONDS`` for a
  pooled connection (then 503 + Retry-After), instead of the full pool timeout;
- a failed reconnection is abandoned after ``RECONNECT_SECONDS``; the next request starts a
  fresh attempt at once, so the pool is back within about a second of the database;
- the first dead connection found by the pre-ping sweeps the pool of the others;
- the recorders retry connection errors within ``RETRY_BUDGET_SECONDS`` only;
- the library's table creation runs under an advisory lock, so processes can start together.
"""

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar, cast

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import ConnectionPool, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType

from service.telemetry import spans_recorded

__all__ = [
    "FAIL_FAST_SECONDS",
    "RECONNECT_SECONDS",
    "RETRY_BUDGET_SECONDS",
    "GuardedConnectionPool",
    "ResilientPostgresFactory",
    "StoreBreaker",
    "bounded_retry",
    "schema_lock",
]

FAIL_FAST_SECONDS = 1.0
RECONNECT_SECONDS = 2.0
RETRY_BUDGET_SECONDS = 1.5
_RETRY_WAIT_SECONDS = 0.2

# libpq options of every connection: give up connecting after 3 s; probe idle connections
# after 30 s and drop them after 3 unanswered probes; drop a connection whose sent data stays
# unacknowledged for 15 s (a server that vanished mid-write, without a reset).
_CONNECTION_OPTIONS: dict[str, Any] = {
    "connect_timeout": 3,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}

P = ParamSpec("P")
T = TypeVar("T")


class StoreBreaker:
    """Whether the store is known to be unreachable: the last connection attempt failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        """True from a failed connection attempt until the next successful one."""
        return self._down_since is not None

    def down_for(self) -> float:
        """Seconds since the store became unreachable (0 when it is reachable)."""
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    def connect_failed(self) -> None:
        """A connection attempt failed."""
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()

    def connect_succeeded(self) -> None:
        """A connection attempt succeeded."""
        with self._lock:
            self._down_since = None


def _ping(conn: psycopg.Connection[Any]) -> None:
    # The pool's pre-ping, on a plain cursor: the connection's own cursor factory is traced, and
    # a span per borrowed connection would double the trace volume for nothing.
    autocommit = conn.autocommit
    if not autocommit:
        conn.autocommit = True
    try:
        with psycopg.Cursor(conn) as cursor:
            cursor.execute("")
    finally:
        if not autocommit:
            # A broken connection cannot switch back: keep the original error.
            with contextlib.suppress(psycopg.Error):
                conn.autocommit = False


def _positional(factory: type[Any]) -> type[Any]:
    # A class per connection, like the instrumentation's own factory (no cache to grow).
    class PositionalQueryCursor(factory):  # type: ignore[misc]
        """Passes the query positionally: the tracer names spans after ``args[0]``, and the
        library's event insert passes ``query=`` by keyword (an unnamed, empty span)."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            return super().execute(query, params, **kwargs)

    return PositionalQueryCursor


def _instrument(conn: psycopg.Connection[Any]) -> None:
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    if not spans_recorded():  # a tracer per statement for spans nobody receives: ~8% of ingest
        return
    # One client span per statement, under the request's span.
    PsycopgInstrumentor.instrument_connection(conn)
    conn.cursor_factory = _positional(conn.cursor_factory)


class GuardedConnectionPool(ConnectionPool[Any]):
    """The library's pool, failing fast while the store is down and noticing when it is back."""

    def __init__(self, *args: Any, breaker: StoreBreaker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.breaker = breaker
        self._sweeping = threading.Lock()

    def _connect(self, timeout: float | None = None) -> Any:
        try:
            conn = super()._connect(timeout=timeout)
        except Exception:
            self.breaker.connect_failed()
            raise
        self.breaker.connect_succeeded()
        _instrument(conn)
        return conn

    def getconn(self, timeout: float | None = None) -> Any:
        """A pooled connection; while the store is down, wait only briefly for one."""
        if self.breaker.down:
            timeout = min(self.timeout if timeout is None else timeout, FAIL_FAST_SECONDS)
        return super().getconn(timeout)

    def putconn(self, conn: Any) -> None:
        """Take a connection back; one that broke in use marks the store down until the
        replacement the pool opens at once succeeds (a moment, if the server is fine)."""
        if conn.broken:
            self.breaker.connect_failed()
        super().putconn(conn)

    def _check_connection(self, conn: Any) -> None:
        try:
            super()._check_connection(conn)
        except Exception:
            # One dead connection means the others idle beside it died too (a restart or a
            # failover): sweep them now, rather than one per request, each after a back-off.
            self.breaker.connect_failed()
            if self._sweeping.acquire(blocking=False):
                threading.Thread(target=self._sweep, name="pool-sweep", daemon=True).start()
            raise

    def _sweep(self) -> None:
        try:
            self.check()
        except Exception:  # noqa: S110 - best effort: the pre-ping still guards each borrower
            pass
        finally:
            self._sweeping.release()


def _guarded_pool(datastore: PostgresDatastore, breaker: StoreBreaker) -> GuardedConnectionPool:
    old = datastore.pool
    kwargs = dict(cast(dict[str, Any], old.kwargs))
    kwargs.update(_CONNECTION_OPTIONS)
    return GuardedConnectionPool(
        breaker=breaker,
        get_password_func=old.get_password_func,
        connection_class=old.connection_class,
        kwargs=kwargs,
        min_size=old.min_size,
        max_size=old.max_size,
        open=False,
        name="disclosure-audit",
        configure=datastore.after_connect_func(),
        check=_ping if datastore.pre_ping else None,
        timeout=old.timeout,
        max_waiting=old.max_waiting,
        max_lifetime=old.max_lifetime,
        reconnect_timeout=RECONNECT_SECONDS,
    )


class ResilientPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory with the guarded pool; ``PERSISTENCE_MODULE`` topic."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        self.breaker = StoreBreaker()
        # The library built an unopened pool (no connections yet); replace it with ours.
        self.datastore.pool = _guarded_pool(self.datastore, self.breaker)


_SCHEMA_LOCK = 4242002  # pg_advisory_lock key; 4242001 guards Database.create_tables


@contextlib.contextmanager
def schema_lock(datastore: PostgresDatastore) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock while the library's DDL runs, one process at a time.

    Workers and replicas start together, and ``CREATE TYPE`` / ``CREATE OR REPLACE FUNCTION``
    fail when run concurrently (duplicate ``pg_type`` keys, "tuple concurrently updated"). The
    lock is held on a connection of its own, so even a pool of one cannot deadlock on it.
    """
    pool = datastore.pool
    kwargs = dict(cast(dict[str, Any], pool.kwargs))
    kwargs.update(_CONNECTION_OPTIONS)
    if pool.get_password_func is not None:
        kwargs["password"] = pool.get_password_func()
    with psycopg.connect(**kwargs, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


def bounded_retry(method: Callable[P, T]) -> Callable[P, T]:
    """The method (the library's without its ten retries): retry connection errors briefly."""
    inner = cast(Callable[P, T], getattr(method, "__wrapped__", method))

    @functools.wraps(inner)
    def retrying(*args: P.args, **kwargs: P.kwargs) -> T:
        deadline = time.monotonic() + RETRY_BUDGET_SECONDS
        while True:
            try:
                return inner(*args, **kwargs)
            except (OperationalError, InterfaceError):
                if time.monotonic() + _RETRY_WAIT_SECONDS >= deadline:
                    raise
                time.sleep(_RETRY_WAIT_SECONDS)

    return retrying
