"""API keys: random, shown once, stored only as a hash, bound to one tenant and a set of roles."""

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from service.storage.sql import Database, Dialect, as_datetime

__all__ = [
    "API_KEY_TABLES",
    "INVALID_KEY",
    "INVALID_KEY_CHALLENGE",
    "TENANT_PATTERN",
    "ApiKey",
    "ApiKeyStore",
    "KeyRevokedError",
    "Principal",
    "Role",
]

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TOKEN = re.compile(r"^da_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")

API_KEY_TABLES: dict[Dialect, list[str]] = {
    "postgres": [
        "CREATE TABLE IF NOT EXISTS da_api_keys ("
        " key_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, roles TEXT NOT NULL,"
        " secret_hash BYTEA NOT NULL, label TEXT, created_at TIMESTAMPTZ NOT NULL,"
        " revoked_at TIMESTAMPTZ)",
    ],
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS da_api_keys ("
        " key_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, roles TEXT NOT NULL,"
        " secret_hash BLOB NOT NULL, label TEXT, created_at TEXT NOT NULL, revoked_at TEXT)",
    ],
}


class Role(StrEnum):
    """What a key may do (API.md "Conventions")."""

    INGEST = "ingest"
    COMPLIANCE = "compliance"
    REGULATOR = "regulator"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: one tenant, some roles."""

    key_id: str
    tenant_id: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class ApiKey:
    """A stored key as listed to an operator (never with its secret)."""

    key_id: str
    tenant_id: str
    roles: tuple[Role, ...]
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def _hash(secret: str) -> bytes:
    # The secret has 256 bits of entropy, so a fast hash is enough: no dictionary to slow down.
    return hashlib.sha256(secret.encode()).digest()


INVALID_KEY = "The API key is unknown or revoked; ask an operator for a valid key."
INVALID_KEY_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
"""The 401 of a key that is not (or no longer) valid, however it was found out."""


class KeyRevokedError(Exception):
    """Raised for a write whose key was revoked after the key was checked from memory."""


class ApiKeyStore:
    """Creates, lists, revokes and checks API keys.

    Two ways to check a key. ``authenticate`` asks the database every time: a revocation
    holds from the next request on, in every process. ``recall`` answers from memory the keys
    this process has authenticated before (their secret hash is kept, never the secret); the
    ingest writer then asks ``active`` once per group commit, before saving, and fails the
    requests of keys revoked since (``KeyRevokedError``): a revoked key stores nothing from the
    next group on, and ingest saves a database round trip per request.
    """

    def __init__(self, database: Database) -> None:
        self._db = database
        self._known: dict[str, tuple[bytes, Principal]] = {}
        self._known_lock = threading.Lock()

    def create(self, tenant_id: str, roles: set[Role], label: str | None = None) -> tuple[str, str]:
        """Make a key; returns (key id, the full token). The token is never stored."""
        if not TENANT_PATTERN.match(tenant_id):
            raise ValueError(
                "a tenant id is 1-63 characters of lower-case letters, digits and '-', "
                "starting with a letter or digit"
            )
        if not roles:
            raise ValueError("a key needs at least one role")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self._db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO da_api_keys (key_id, tenant_id, roles, secret_hash, label, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    key_id,
                    tenant_id,
                    ",".join(sorted(r.value for r in roles)),
                    _hash(secret),
                    label,
                    datetime.now(UTC),
                ),
            )
        return key_id, f"da_{key_id}_{secret}"

    def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        """Every key, or one tenant's, oldest first."""
        sql = "SELECT * FROM da_api_keys"
        params: tuple[str, ...] = ()
        if tenant_id is not None:
            sql += " WHERE tenant_id = %s"
            params = (tenant_id,)
        with self._db.transaction(commit=False) as cursor:
            rows = cursor.fetchall(sql + " ORDER BY created_at, key_id", params)
        return [
            ApiKey(
                key_id=row["key_id"],
                tenant_id=row["tenant_id"],
                roles=tuple(Role(r) for r in row["roles"].split(",")),
                label=row["label"],
                created_at=as_datetime(row["created_at"]),
                revoked_at=as_datetime(row["revoked_at"]) if row["revoked_at"] else None,
            )
            for row in rows
        ]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key at once; True if it existed and was active."""
        with self._db.transaction() as cursor:
            row = cursor.fetchone("SELECT revoked_at FROM da_api_keys WHERE key_id = %s", (key_id,))
            if row is None or row["revoked_at"] is not None:
                return False
            cursor.execute(
                "UPDATE da_api_keys SET revoked_at = %s WHERE key_id = %s",
                (datetime.now(UTC), key_id),
            )
        with self._known_lock:
            self._known.pop(key_id, None)
        return True

    def recall(self, token: str) -> Principal | None:
        """The principal of a token authenticated before by this process, from memory; None if
        it is not known here (then call ``authenticate``). Revocation is not checked here."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        with self._known_lock:
            known = self._known.get(key_id)
        if known is None or not hmac.compare_digest(known[0], _hash(secret)):
            return None
        return known[1]

    def active(self, key_ids: Collection[str]) -> set[str]:
        """Which of these keys exist and are not revoked (one query); forgets the others."""
        ids = sorted(key_ids)
        if not ids:
            return set()
        marks = ", ".join(["%s"] * len(ids))
        rows = self._db.read(
            f"SELECT key_id FROM da_api_keys WHERE key_id IN ({marks})"  # noqa: S608
            " AND revoked_at IS NULL",
            ids,
        )
        alive = {str(row["key_id"]) for row in rows}
        with self._known_lock:
            for key_id in set(ids) - alive:
                self._known.pop(key_id, None)
        return alive

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token, else None."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        row = self._db.read_one(
            "SELECT tenant_id, roles, secret_hash, revoked_at FROM da_api_keys WHERE key_id = %s",
            (key_id,),
        )
        if row is None or row["revoked_at"] is not None:
            return None
        secret_hash = bytes(row["secret_hash"])
        if not hmac.compare_digest(secret_hash, _hash(secret)):
            return None
        principal = Principal(
            key_id=key_id,
            tenant_id=row["tenant_id"],
            roles=frozenset(Role(r) for r in row["roles"].split(",")),
        )
        with self._known_lock:
            self._known[key_id] = (secret_hash, principal)
        return principal
