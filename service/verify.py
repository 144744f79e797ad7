"""Offline verifier of a disclosure-audit export bundle. Needs only the bundle and a public key.

Run it as ``disclosure-audit verify DIR --public-key FILE``. It uses the Python standard library,
``cryptography`` (Ed25519) and ``domain/merkle.py`` (RFC 9162 tree hashing and proofs, about 300
lines, tested on the transparency-dev vectors). What it checks, in order, stopping at the first
problem and naming it:

1. ``checkpoint.txt`` is a C2SP signed note signed by a pinned key (the ``--public-key`` file
   holds verifier keys ``<name>+<key id>+<base64 key>``, one per line) **whose name is the
   checkpoint's origin** (C2SP tlog-checkpoint: a log's key is named by its origin, here
   ``<prefix>/<tenant>``); its body is the checkpoint ``<origin>\\n<tree size>\\n<base64
   root>\\n``. Signatures by keys not pinned (a witness's, a legacy one) are ignored.
2. ``manifest.sig`` signs the SHA-256 of ``manifest.json`` with that log's pinned key, and the
   manifest names the same origin and tree size as the checkpoint. Bundles of format 1 (made
   before each log had its own key) were signed by one key for every log, named by the bare
   origin prefix; for those alone, a pinned key of that name is accepted, and reported.
3. Events. Each line of ``events.ndjson`` is the exact bytes of one Merkle leaf: canonical JSON
   (RFC 8785) holding the event, its tenant-log ``position`` and a random salt; its leaf hash is
   ``SHA-256(0x00 || line)``. A crypto-shredded event is a line ``{"erased":true,"leaf_hash":…,
   "position":…}`` carrying the hash in place of the event.
   - Full export: ``leaves.bin`` holds every leaf hash; their RFC 9162 root must equal the signed
     root, and line ``i`` must hash to leaf ``i`` at position ``i``: so any altered, removed,
     inserted or reordered line is named.
   - Partial export: ``proofs.ndjson`` holds, line for line, an inclusion proof of each event
     against the signed checkpoint.
4. ``consistency.json`` (when present) proves that the previous checkpoint it carries (signed by
   a pinned key) is a prefix of this one: history was only appended to, never rewritten.
5. Every file listed in the manifest has the SHA-256 the manifest gives; no file is unlisted.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain import merkle

__all__ = ["BundleError", "Verified", "verify_bundle"]

FORMAT = "disclosure-audit-export/2"
# Format 1: checkpoint.txt and manifest.sig signed by the one key of every log, named by the
# bare origin prefix (what the service did before each log had a key named by its origin).
LEGACY_FORMAT = "disclosure-audit-export/1"
MANIFEST_NOTE = "disclosure-audit export manifest"


class BundleError(Exception):
    """Raised for the first problem found in a bundle; the message says where and why."""


@dataclass(frozen=True)
class Verified:
    """What a bundle proved."""

    origin: str
    tree_size: int
    events: int
    erased: int
    key_name: str
    full: bool
    legacy_key: bool = False  # signed by the pre-per-log key (format 1 bundles only)


def _pinned_keys(text: str) -> dict[bytes, tuple[str, Ed25519PublicKey]]:
    keys = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            name, id_hex, encoded = line.strip().split("+", 2)
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise BundleError(f"public key file, line {number}: not a verifier key") from None
        if len(raw) != 33 or raw[0] != 1:
            raise BundleError(f"public key file, line {number}: not an Ed25519 verifier key")
        ident = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
        if ident.hex() != id_hex:
            raise BundleError(f"public key file, line {number}: key id does not match the key")
        keys[ident] = (name, Ed25519PublicKey.from_public_bytes(raw[1:]))
    if not keys:
        raise BundleError("the public key file holds no key")
    return keys


def _open_note(note: str, keys: dict[bytes, tuple[str, Ed25519PublicKey]], what: str) -> tuple[
    str, list[str]
]:  # fmt: skip
    """The text of a signed note and the names of the pinned keys that signed it.

    Raises when no pinned key signed it, naming the keys that did and the ones pinned.
    """
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not text:
        raise BundleError(f"{what}: not a signed note")
    text += "\n"
    signers: list[str] = []
    names: list[str] = []
    for line in signatures.splitlines():
        dash, _, rest = line.partition(" ")
        name, _, encoded = rest.partition(" ")
        if dash != "\u2014" or not encoded:
            raise BundleError(f"{what}: malformed signature line")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise BundleError(f"{what}: malformed signature") from None
        names.append(name)
        known = keys.get(blob[:4])
        if known is None or known[0] != name:
            continue  # a signature by a key we do not pin (for example, a witness): ignored
        try:
            known[1].verify(blob[4:], text.encode())
        except InvalidSignature:
            raise BundleError(f"{what}: the signature of {name} does not verify") from None
        signers.append(name)
    if not signers:
        pinned = ", ".join(sorted({repr(n) for n, _ in keys.values()}))
        signed = f"keys named {', '.join(map(repr, names))}" if names else "no key"
        raise BundleError(
            f"{what}: not signed by any pinned key (it is signed by {signed}; the pinned keys "
            f"are named {pinned})"
        )
    return text, signers


def _log_signer(signers: list[str], origin: str, what: str, *, legacy: bool) -> str:
    """The pinned signer whose name is the log's origin, or (format 1 bundles) the legacy key
    of every log, named by the origin's prefix; raises, saying so, for a key of another name."""
    if origin in signers:
        return origin
    if legacy:
        for name in signers:
            if origin.startswith(name + "/"):
                return name
    raise BundleError(
        f"{what}: signed only by the pinned key(s) named {', '.join(map(repr, signers))}, not by "
        f"the key named {origin!r}: a log's checkpoints and bundles are signed by the key named "
        "by the log's origin (C2SP tlog-checkpoint). Pin that log's key (its vkey starts with "
        f"'{origin}+')"
    )


def _checkpoint(text: str, what: str) -> tuple[str, int, bytes]:
    lines = text.split("\n")
    try:
        origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (IndexError, ValueError, binascii.Error):
        raise BundleError(f"{what}: not a checkpoint") from None
    if len(root) != 32 or size < 0:
        raise BundleError(f"{what}: not a checkpoint")
    return origin, size, root


def _position(line: bytes, number: int) -> tuple[int, bytes]:
    """The position a line claims, and its leaf hash."""
    try:
        content = json.loads(line)
        position = content["position"]
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"events.ndjson line {number}: not an event of this format") from None
    if not isinstance(position, int) or isinstance(position, bool) or position < 1:
        raise BundleError(f"events.ndjson line {number}: invalid position")
    if content.get("erased") is True:
        try:
            leaf = base64.b64decode(content["leaf_hash"], validate=True)
        except (KeyError, binascii.Error):
            raise BundleError(f"events.ndjson line {number}: erased event without a hash") from None
        return position, leaf
    return position, merkle.leaf_hash(line)


def _lines(path: Path) -> Iterator[bytes]:
    """The lines of a file without their newlines, read as a stream."""
    try:
        with path.open("rb") as handle:
            for line in handle:
                yield line.rstrip(b"\n")
    except OSError:
        raise BundleError(f"{path.name} is missing") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _leaves(path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            yield from iter(lambda: handle.read(32), b"")
    except OSError:
        raise BundleError("leaves.bin is missing") from None


def _full(lines: Iterator[bytes], leaves_path: Path, size: int, root: bytes) -> int:
    # First authenticate leaves.bin against the signed root (streamed: O(log n) memory), then
    # hold every line against its leaf, so the first altered, moved or missing line is named.
    builder = merkle.TreeBuilder()
    for leaf in _leaves(leaves_path):
        if len(leaf) != 32:
            raise BundleError("leaves.bin does not match the signed checkpoint")
        builder.append(leaf)
    if builder.size != size or builder.root() != root:
        raise BundleError("leaves.bin does not match the signed checkpoint")
    leaves = _leaves(leaves_path)
    number = 0
    for number, line in enumerate(lines, start=1):
        position, leaf = _position(line, number)
        if position != number or number > size:
            raise BundleError(
                f"events.ndjson line {number}: holds position {position}, expected {number}"
                " (a line was removed, inserted or moved)"
            )
        if number > size or leaf != next(leaves):
            raise BundleError(
                f"events.ndjson line {number}: does not match leaf {number - 1} of the signed log"
                " (the line was altered)"
            )
    if number != size:
        raise BundleError(f"events.ndjson has {number} lines; the log has {size} leaves")
    return number


def _partial(lines: Iterator[bytes], proofs: Iterator[bytes], size: int, root: bytes) -> int:
    previous = number = 0
    for number, (line, proof_line) in enumerate(zip(lines, proofs, strict=False), start=1):
        position, leaf = _position(line, number)
        if position <= previous or position > size:
            raise BundleError(f"events.ndjson line {number}: position {position} out of order")
        previous = position
        try:
            path = [base64.b64decode(p) for p in json.loads(proof_line)["proof"]]
            merkle.verify_inclusion(leaf, position - 1, size, path, root)
        except (merkle.ProofError, ValueError, KeyError, binascii.Error) as error:
            raise BundleError(
                f"events.ndjson line {number}: not in the signed log ({error})"
            ) from None
    if next(lines, None) is not None or next(proofs, None) is not None:
        raise BundleError("proofs.ndjson and events.ndjson differ in length")
    return number


def _consistency(
    link: dict[str, object], keys: dict[bytes, tuple[str, Ed25519PublicKey]], origin: str,
    size: int, root: bytes, *, legacy: bool,
) -> None:  # fmt: skip
    old_text, signers = _open_note(str(link["previous_checkpoint"]), keys, "consistency.json")
    old_origin, old_size, old_root = _checkpoint(old_text, "consistency.json")
    if old_origin != origin:
        raise BundleError("consistency.json: the previous checkpoint is of another log")
    _log_signer(signers, origin, "consistency.json", legacy=legacy)
    try:
        path = [base64.b64decode(p) for p in link["proof"]]  # type: ignore[attr-defined]
        merkle.verify_consistency(old_size, size, path, old_root, root)
    except (merkle.ProofError, binascii.Error) as error:
        raise BundleError(f"consistency.json: history was rewritten ({error})") from None


def verify_bundle(directory: Path, public_keys: str) -> Verified:
    """Check a bundle completely; raise BundleError naming the first problem."""
    keys = _pinned_keys(public_keys)

    def read(name: str) -> bytes:
        try:
            return (directory / name).read_bytes()
        except OSError:
            raise BundleError(f"{name} is missing") from None

    text, checkpoint_signers = _open_note(read("checkpoint.txt").decode(), keys, "checkpoint.txt")
    origin, size, root = _checkpoint(text, "checkpoint.txt")

    manifest_bytes = read("manifest.json")
    signed, manifest_signers = _open_note(read("manifest.sig").decode(), keys, "manifest.sig")
    if signed != f"{MANIFEST_NOTE}\n{hashlib.sha256(manifest_bytes).hexdigest()}\n":
        raise BundleError("manifest.json was changed after it was signed")
    manifest = json.loads(manifest_bytes)
    if manifest.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise BundleError(f"manifest.json: unknown format {manifest.get('format')!r}")
    legacy = manifest["format"] == LEGACY_FORMAT  # authenticated: manifest.sig verified above
    signer = _log_signer(checkpoint_signers, origin, "checkpoint.txt", legacy=legacy)
    _log_signer(manifest_signers, origin, "manifest.sig", legacy=legacy)
    if manifest.get("origin") != origin or manifest.get("tree_size") != size:
        raise BundleError("manifest.json and checkpoint.txt describe different logs")
    full = manifest["scope"]["kind"] == "full"

    lines = _lines(directory / "events.ndjson")
    if full:
        events = _full(lines, directory / "leaves.bin", size, root)
    else:
        events = _partial(lines, _lines(directory / "proofs.ndjson"), size, root)
    if (directory / "consistency.json").exists():
        _consistency(json.loads(read("consistency.json")), keys, origin, size, root,
                     legacy=legacy)  # fmt: skip

    listed: dict[str, str] = manifest.get("files", {})
    for name, digest in listed.items():
        if not (directory / name).is_file():
            raise BundleError(f"{name} is missing")
        if _sha256(directory / name) != digest:
            raise BundleError(f"{name} does not match the digest in the manifest")
    present = {p.name for p in directory.iterdir() if p.is_file()}
    unlisted = present - set(listed) - {"manifest.json", "manifest.sig"}
    if unlisted:
        raise BundleError(f"unexpected file(s) in the bundle: {', '.join(sorted(unlisted))}")
    counts = manifest.get("counts", {})
    if counts.get("events") != events:
        raise BundleError("manifest.json counts a different number of events")
    erased = int(counts.get("erased", 0))
    return Verified(origin, size, events, erased, signer, full, legacy_key=signer != origin)
