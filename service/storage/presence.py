"""Whether a store exists, found without creating anything, and how to name it to a person.

Commands that only use a store must not start one: an empty store opened by mistake (another
working directory, a typo in the database name) would come with a new master key and a new
signing key, and whatever it exports or verifies would be about nothing.
"""

import sqlite3
from contextlib import closing
from urllib.parse import unquote, urlsplit

import psycopg

from service.settings import Settings
from service.storage import tenant_log

__all__ = ["StoreMissingError", "StoreUnreachableError", "find_store_problem", "store_label"]

# Tables every store has had since its first start; their absence means "no store here".
# The events table is the event-sourcing library's: its name differs between the backends.
_CORE_TABLES = {
    "sqlite": ("stored_events", "da_record_keys", tenant_log.TABLE),
    "postgres": ("audit_events", "da_record_keys", tenant_log.TABLE),
}


class StoreMissingError(Exception):
    """Raised when a command that may not create a store finds none where it looked."""


class StoreUnreachableError(Exception):
    """Raised when the PostgreSQL server of the store cannot be reached to look."""


def store_label(settings: Settings) -> str:
    """The store as a person recognises it: the SQLite file, or PostgreSQL host:port/dbname.

    Never the URL itself: it may carry the password.
    """
    if settings.database_url is None:
        return f"SQLite {settings.sqlite_path.absolute()}"
    url = urlsplit(settings.database_url)
    dbname = unquote(url.path.lstrip("/")) or "postgres"
    return f"PostgreSQL {url.hostname or '127.0.0.1'}:{url.port or 5432}/{dbname}"


def _sqlite_problem(settings: Settings) -> str | None:
    path = settings.sqlite_path.absolute()
    if not path.is_file():
        return f"no store at {path}"
    try:
        # Read-only: opening must not turn a stray file into an empty store.
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error as error:
        return f"{path} is not a readable SQLite store ({error})"
    missing = set(_CORE_TABLES["sqlite"]) - {str(row[0]) for row in rows}
    return f"{path} holds no disclosure-audit store (no {min(missing)} table)" if missing else None


def _postgres_problem(settings: Settings) -> str | None:
    env = settings.eventsourcing_env()
    label = store_label(settings)
    try:
        with psycopg.connect(
            host=env["POSTGRES_HOST"],
            port=int(env["POSTGRES_PORT"]),
            dbname=env["POSTGRES_DBNAME"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"] or None,
            connect_timeout=5,
        ) as conn:
            found = {
                table
                for table in _CORE_TABLES["postgres"]
                if conn.execute("SELECT to_regclass(%s) AS t", (table,)).fetchone() != (None,)
            }
    except psycopg.Error as error:
        # libpq's messages name the host, user and database, never the password.
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StoreUnreachableError(f"cannot connect to {label}: {first}") from None
    missing = set(_CORE_TABLES["postgres"]) - found
    return f"{label} holds no disclosure-audit store (no {min(missing)} table)" if missing else None


def find_store_problem(settings: Settings) -> str | None:
    """Why there is no usable store where the settings point, or None if there is one.

    Reads only: creates no file, no directory and no table. Raises StoreUnreachableError when
    PostgreSQL does not answer (that says nothing about whether the store exists).
    """
    if settings.database_url is None:
        return _sqlite_problem(settings)
    return _postgres_problem(settings)
