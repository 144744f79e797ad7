"""Console sessions: a login with an API key starts one; a cookie carries only a random token.

The table stores a hash of the token (as for API keys), the key it was opened with, a CSRF
token for the session's forms, and two deadlines: an idle one that each page view pushes back
(HIPAA 164.312(a)(2)(iii), automatic logoff) and an absolute one. Every request re-checks the
key, so revoking it ends its sessions at once, in every process (the table is shared).
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.auth import Principal, Role
from service.storage.sql import Database, Dialect, as_datetime

__all__ = ["MAX_SESSION", "SESSION_TABLES", "ConsoleSession", "ConsoleSessions"]

MAX_SESSION = timedelta(hours=12)
"""However active, a session ends this long after the login."""

_TOUCH_EVERY = timedelta(minutes=1)
"""The idle deadline is pushed back at most this often: one write a minute, not one a page."""

SESSION_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_console_sessions (token_hash BYTEA PRIMARY KEY,"
        " key_id TEXT NOT NULL, csrf TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL,"
        " idle_until TIMESTAMPTZ NOT NULL, ends_at TIMESTAMPTZ NOT NULL)",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_console_sessions (token_hash BLOB PRIMARY KEY,"
        " key_id TEXT NOT NULL, csrf TEXT NOT NULL, created_at TEXT NOT NULL,"
        " idle_until TEXT NOT NULL, ends_at TEXT NOT NULL)",
    ],
}


@dataclass(frozen=True)
class ConsoleSession:
    """A live session: who, and the token its forms must echo."""

    principal: Principal
    csrf: str

    def csrf_ok(self, sent: str | None) -> bool:
        """Whether a form echoed this session's CSRF token."""
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ConsoleSessions:
    """Start, find and end console sessions."""

    def __init__(self, db: Database, idle: timedelta) -> None:
        self._db = db
        self._idle = idle

    def start(self, principal: Principal) -> str:
        """A new session for ``principal``; returns the cookie's token (never stored)."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self._db.transaction() as cursor:
            # Expired sessions go when anyone logs in: the table stays as small as the staff.
            cursor.execute(
                "DELETE FROM da_console_sessions WHERE idle_until < %s OR ends_at < %s", (now, now)
            )
            cursor.execute(
                "INSERT INTO da_console_sessions (token_hash, key_id, csrf, created_at,"
                " idle_until, ends_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (_hash(token), principal.key_id, secrets.token_urlsafe(32), now,
                 now + self._idle, now + MAX_SESSION),
            )  # fmt: skip
        return token

    def find(self, token: str | None) -> ConsoleSession | None:
        """The live session of a cookie's token, with its key still valid and compliance; else
        None. A page view pushes the idle deadline back."""
        if not token or len(token) > 100:
            return None
        row = self._db.read_one(
            "SELECT s.key_id, s.csrf, s.idle_until, s.ends_at, k.tenant_id, k.roles,"
            " k.revoked_at FROM da_console_sessions s JOIN da_api_keys k ON k.key_id = s.key_id"
            " WHERE s.token_hash = %s",
            (_hash(token),),
        )
        now = datetime.now(UTC)
        if row is None or row["revoked_at"] is not None:
            return None
        idle_until = as_datetime(row["idle_until"])
        if idle_until <= now or as_datetime(row["ends_at"]) <= now:
            return None
        roles = frozenset(Role(r) for r in row["roles"].split(","))
        if Role.COMPLIANCE not in roles:
            return None
        if idle_until - now < self._idle - _TOUCH_EVERY:
            with self._db.transaction() as cursor:
                cursor.execute(
                    "UPDATE da_console_sessions SET idle_until = %s WHERE token_hash = %s",
                    (now + self._idle, _hash(token)),
                )
        principal = Principal(key_id=row["key_id"], tenant_id=row["tenant_id"], roles=roles)
        return ConsoleSession(principal=principal, csrf=row["csrf"])

    def end(self, token: str | None) -> None:
        """Log out: the token is worthless from now on."""
        if token:
            with self._db.transaction() as cursor:
                cursor.execute(
                    "DELETE FROM da_console_sessions WHERE token_hash = %s", (_hash(token),)
                )
