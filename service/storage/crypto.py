"""Key material: the master key file, wrapping of keys, and sealing of event payloads.

The master key wraps the service's keys, which are stored in the database
(``service/storage/service_keys.py``); one of them, the key-encryption key, wraps each record's
data key. ``MasterKey.derive`` gives the values a store started with before keys were stored
(and which it keeps): existing record ids, digests and wrapped keys depend on them.

Layout of a sealed event state (all integers big-endian)::

    version (1 byte, 0x01) | recorded_at (8 bytes, microseconds since the epoch) | nonce (12) |
    AES-256-GCM ciphertext and tag

The header stays readable so that a record whose key is destroyed still shows when each of its
events was recorded; it is bound to the ciphertext as associated data, with the record id, the
version and the event topic, so no sealed payload can be moved to another place in the log.
"""

import base64
import hashlib
import hmac
import os
import secrets
import stat
import struct
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MasterKey",
    "MasterKeyError",
    "SealedStateError",
    "open_state",
    "random_bytes",
    "recorded_at_of",
    "seal_state",
    "unwrap_record_key",
    "wrap_record_key",
]

_FORMAT = 1
_HEADER = struct.Struct(">Bq")
_NONCE_BYTES = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_POOL_BYTES = 4096


class _Entropy:
    """Bytes of ``os.urandom`` handed out from a pool drawn 4 KiB at a time.

    For nonces and salts, which the writer needs several of per event: ``os.urandom`` gives up
    the GIL around its system call, and each such call on the writer thread could wait for a
    busy request thread to hand the GIL back (py-spy: 9% of the writer under load, for 12
    bytes at a time). The pool is dropped in a forked child, so parent and child never hand
    out the same bytes (a repeated AES-GCM nonce under one key would expose both messages).
    Never used for keys.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._taken = 0
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._taken = b"", 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._taken + count > len(self._pool):
                self._pool, self._taken = os.urandom(max(_POOL_BYTES, count)), 0
            start = self._taken
            self._taken += count
            return self._pool[start : self._taken]


random_bytes = _Entropy().take
"""``count`` random bytes, for nonces and salts (not keys), drawn from ``os.urandom``."""


class MasterKeyError(Exception):
    """Raised when the master key file is missing, unreadable or malformed."""


class SealedStateError(Exception):
    """Raised when a stored payload fails authentication: it was altered or moved."""


@dataclass(frozen=True)
class MasterKey:
    """The one secret from configuration; every other key is derived from it or wrapped by it."""

    secret: bytes

    @classmethod
    def load_or_create(cls, path: Path, *, create: bool) -> "MasterKey":
        """Read the key file, generating it first (mode 0600) when allowed and missing."""
        if not path.exists():
            if not create:
                raise MasterKeyError(
                    f"master key file {path} does not exist; create it with "
                    "'disclosure-audit init' or point "
                    "DISCLOSURE_AUDIT_MASTER_KEY_FILE at the existing one"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            encoded = base64.b64encode(secrets.token_bytes(32)) + b"\n"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(encoded)
        try:
            secret = base64.b64decode(path.read_bytes().strip(), validate=True)
        except (OSError, ValueError) as error:
            raise MasterKeyError(f"master key file {path} is unreadable: {error}") from None
        if len(secret) != 32:
            raise MasterKeyError(f"master key file {path} must hold 32 bytes in base64")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            path.chmod(0o600)
        return cls(secret)

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (HKDF-SHA256, RFC 5869), independent of the others.

        Only the initial values of a store's service keys come from here (see the module
        docstring); every key in use is read from the database, wrapped by ``wrap_key``.
        """
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
            self.secret
        )

    @cached_property
    def key_id(self) -> str:
        """A public name of this key (16 hex digits), stored beside every row it wraps."""
        return hmac.new(self.secret, b"disclosure-audit master key id", hashlib.sha256).hexdigest()[
            :16
        ]

    def wrap_key(self, key: bytes, label: bytes) -> bytes:
        """Encrypt a service key for storage (AES-256-GCM), bound to ``label``."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + AESGCM(self._wrapping_key).encrypt(nonce, key, b"service-key:" + label)

    def unwrap_key(self, wrapped: bytes, label: bytes) -> bytes:
        """Recover a service key; raises SealedStateError if it was altered or moved."""
        try:
            return AESGCM(self._wrapping_key).decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], b"service-key:" + label
            )
        except InvalidTag:
            raise SealedStateError(
                f"the service key {label!r} fails authentication under master key {self.key_id}"
            ) from None

    @cached_property
    def _wrapping_key(self) -> bytes:
        return self.derive("service-key-wrapping")


def wrap_record_key(kek: bytes, data_key: bytes, record: UUID) -> bytes:
    """Encrypt a record's data key with a key-encryption key, bound to the record id."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, b"record-key:" + record.bytes)


def unwrap_record_key(kek: bytes, wrapped: bytes, record: UUID) -> bytes:
    """Recover a record's data key; fails if the wrapped key was altered or swapped."""
    try:
        return AESGCM(kek).decrypt(
            wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], b"record-key:" + record.bytes
        )
    except InvalidTag:
        raise SealedStateError(f"the data key of record {record} fails authentication") from None


def _associated_data(header: bytes, record: UUID, version: int, topic: str) -> bytes:
    return header + record.bytes + struct.pack(">q", version) + topic.encode()


def seal_state(
    key: bytes, plaintext: bytes, *, record: UUID, version: int, topic: str, recorded_at: datetime
) -> bytes:
    """Encrypt one event payload with its record's data key."""
    micros = (recorded_at - _EPOCH) // timedelta(microseconds=1)
    header = _HEADER.pack(_FORMAT, micros)
    nonce = random_bytes(_NONCE_BYTES)
    aad = _associated_data(header, record, version, topic)
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def recorded_at_of(state: bytes) -> datetime:
    """When the event was recorded, read from the clear header (works without the key)."""
    fmt, micros = _HEADER.unpack_from(state)
    if fmt != _FORMAT:
        raise SealedStateError(f"unknown sealed-state format {fmt}")
    return _EPOCH + timedelta(microseconds=micros)


def open_state(key: bytes, state: bytes, *, record: UUID, version: int, topic: str) -> bytes:
    """Decrypt one event payload; raises SealedStateError if anything about it was changed."""
    recorded_at_of(state)
    header = state[: _HEADER.size]
    nonce = state[_HEADER.size : _HEADER.size + _NONCE_BYTES]
    aad = _associated_data(header, record, version, topic)
    try:
        return AESGCM(key).decrypt(nonce, state[_HEADER.size + _NONCE_BYTES :], aad)
    except InvalidTag:
        raise SealedStateError(
            f"stored event {version} of record {record} fails authentication"
        ) from None
