"""Ed25519 log keys and C2SP signed notes (github.com/C2SP/C2SP signed-note.md).

A note is text ending in a newline, a blank line, then one line per signature:
``— <key name> base64(key id (4 bytes) || Ed25519 signature)``. The key id is
``SHA-256(name || 0x0A || 0x01 || public key)[:4]``; a verifier key is written
``<name>+<hex key id>+base64(0x01 || public key)``, which is the string a regulator pins.

Each tenant's log has keys of its own, named by the log's origin (C2SP tlog-checkpoint: the
key name identifies the log, so a witness finds a log's key by its origin). They are derived
from the key files: every file holds one 32-byte seed (a *generation*), and the log named
``N`` signs with the Ed25519 key whose seed is ``HKDF-SHA256(file seed, info = "disclosure-audit
log key" || 0x00 || N)``. So each log has a distinct key pair (a signature of one log's note
never verifies under another log's key), yet there is no key file, creation or rotation per
tenant: rotation adds one file, which is a new generation for every log. The file's seed used
as is, under the bare origin prefix, is the *legacy* key that signed every tenant's checkpoints
before keys were per log; it is kept only to recognise those notes (see ``TenantLog``).
"""

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["LogKey", "LogKeyring", "key_id", "log_origin", "sign_note", "signatures", "vkey"]

_ED25519 = b"\x01"
_EM_DASH = "\u2014"
_DERIVATION = b"disclosure-audit log key\x00"


def log_origin(prefix: str, tenant_id: str) -> str:
    """The origin line of a tenant's log, which is also the name of its keys."""
    return f"{prefix}/{tenant_id}"


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte id of an Ed25519 key under ``name``."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def vkey(name: str, public: bytes) -> str:
    """The verifier-key string for a public key."""
    return f"{name}+{key_id(name, public).hex()}+{base64.b64encode(_ED25519 + public).decode()}"


@dataclass(frozen=True)
class LogKey:
    """One signing key of a log (one generation, under one name)."""

    name: str
    private: Ed25519PrivateKey
    created: str

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def id_hex(self) -> str:
        """The key id as 8 hex digits."""
        return key_id(self.name, self.public).hex()

    @property
    def vkey(self) -> str:
        """The verifier key a regulator pins."""
        return vkey(self.name, self.public)

    def signature_line(self, text: bytes) -> str:
        """The signed-note signature line of ``text``."""
        signature = key_id(self.name, self.public) + self.private.sign(text)
        return f"{_EM_DASH} {self.name} {base64.b64encode(signature).decode()}\n"


def sign_note(text: str, key: LogKey) -> str:
    """A signed note of ``text`` (which must end in a newline)."""
    if not text.endswith("\n"):
        raise ValueError("a note's text ends with a newline")
    return text + "\n" + key.signature_line(text.encode())


def signatures(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text of a signed note and its signatures' (key name, key id), unverified."""
    text, separator, lines = note.rpartition("\n\n")
    if not separator:
        raise ValueError("not a signed note")
    found = []
    for line in lines.splitlines():
        _, _, rest = line.partition(" ")
        name, _, encoded = rest.partition(" ")
        found.append((name, base64.b64decode(encoded)[:4]))
    return text + "\n", found


def _derived(seed: bytes, name: str) -> Ed25519PrivateKey:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVATION + name.encode())
    return Ed25519PrivateKey.from_private_bytes(hkdf.derive(seed))


class LogKeyring:
    """Signing keys in a directory: the newest generation signs; older ones stay listed.

    Files are ``<UTC timestamp>.ed25519`` holding a 32-byte seed in base64 (mode 0600); each
    log's key of a generation is derived from it under the log's name (module docstring).
    Rotation adds a file; old checkpoints stay verifiable with the old public keys, which
    ``/v1/log/public-key`` keeps listing.
    """

    def __init__(self, directory: Path, prefix: str, *, may_create: bool = True) -> None:
        self.directory = directory
        # The origin prefix: each log's key is named <prefix>/<tenant>; the bare prefix named
        # the single key of every log before keys were per log (the legacy keys).
        self.prefix = prefix
        # False for the commands that only use a store: they never start a key of their own.
        self.may_create = may_create

    def _seeds(self) -> list[tuple[str, bytes]]:
        return [
            (path.stem, base64.b64decode(path.read_text().strip()))
            for path in sorted(self.directory.glob("*.ed25519"))
        ]

    def generations(self) -> list[str]:
        """The generation of every key file (its timestamp), oldest first."""
        return [stamp for stamp, _ in self._seeds()]

    def keys(self, name: str) -> list[LogKey]:
        """The key of the log named ``name`` in every generation, oldest first."""
        return [LogKey(name, _derived(seed, name), stamp) for stamp, seed in self._seeds()]

    def legacy_keys(self) -> list[LogKey]:
        """Every generation's key as it was before keys were per log: the seed itself, under
        the bare prefix (only to recognise the checkpoints those keys signed)."""
        return [
            LogKey(self.prefix, Ed25519PrivateKey.from_private_bytes(seed), stamp)
            for stamp, seed in self._seeds()
        ]

    def current(self, name: str, *, create: bool) -> LogKey:
        """The signing key of the log ``name``; the first generation is made on first use when
        ``create`` (and the ring) allow it."""
        if not self._seeds():
            self.ensure(create=create)
        return self.keys(name)[-1]

    def ensure(self, *, create: bool) -> str:
        """The newest generation, made first when there is none and ``create`` (and the ring)
        allow it."""
        generations = self.generations()
        if generations:
            return generations[-1]
        if not (create and self.may_create):
            raise FileNotFoundError(
                f"no log signing key in {self.directory}; run 'disclosure-audit init' (or "
                "'disclosure-audit log-key --rotate' to add one to an existing store)"
            )
        return self.rotate()

    def rotate(self) -> str:
        """Add a new generation of keys; the previous ones remain for verification."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}.ed25519"
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(base64.b64encode(seed).decode() + "\n")
        return stamp

    def vkeys(self, name: str) -> str:
        """Every verifier key of the log ``name``, one per line, oldest first."""
        return "".join(key.vkey + "\n" for key in self.keys(name))
