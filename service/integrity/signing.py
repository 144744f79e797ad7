"""Ed25519 log keys and C2SP signed notes (github.com/C2SP/C2SP signed-note.md).

A note is text ending in a newline, a blank line, then one line per signature:
``— <key name> base64(key id (4 bytes) || Ed25519 signature)``. The key id is
``SHA-256(name || 0x0A || 0x01 || public key)[:4]``; a verifier key is written
``<name>+<hex key id>+base64(0x01 || public key)``, which is the string a regulator pins.
"""

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["LogKey", "LogKeyring", "key_id", "sign_note", "vkey"]

_ED25519 = b"\x01"
_EM_DASH = "\u2014"


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte id of an Ed25519 key under ``name``."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def vkey(name: str, public: bytes) -> str:
    """The verifier-key string for a public key."""
    return f"{name}+{key_id(name, public).hex()}+{base64.b64encode(_ED25519 + public).decode()}"


@dataclass(frozen=True)
class LogKey:
    """One signing key of the log."""

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


class LogKeyring:
    """Signing keys in a directory: the newest signs; older ones stay listed for verifiers.

    Files are ``<UTC timestamp>.ed25519`` holding the 32-byte private seed in base64 (mode 0600).
    Rotation adds a file; old checkpoints stay verifiable with the old public keys, which
    ``/v1/log/public-key`` keeps listing.
    """

    def __init__(self, directory: Path, name: str, *, may_create: bool = True) -> None:
        self.directory = directory
        self.name = name
        # False for the commands that only use a store: they never start a key of their own.
        self.may_create = may_create

    def keys(self) -> list[LogKey]:
        """Every key, oldest first."""
        found = []
        for path in sorted(self.directory.glob("*.ed25519")):
            seed = base64.b64decode(path.read_text().strip())
            found.append(LogKey(self.name, Ed25519PrivateKey.from_private_bytes(seed), path.stem))
        return found

    def current(self, *, create: bool) -> LogKey:
        """The signing key, generated on first use when ``create`` (and the ring) allow it."""
        keys = self.keys()
        if keys:
            return keys[-1]
        if not (create and self.may_create):
            raise FileNotFoundError(
                f"no log signing key in {self.directory}; run 'disclosure-audit init' (or "
                "'disclosure-audit log-key --rotate' to add one to an existing store)"
            )
        return self.rotate()

    def rotate(self) -> LogKey:
        """Add a new signing key; the previous ones remain for verification."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}.ed25519"
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(base64.b64encode(seed).decode() + "\n")
        return self.keys()[-1]

    def vkeys(self) -> str:
        """Every verifier key, one per line."""
        return "".join(key.vkey + "\n" for key in self.keys())
