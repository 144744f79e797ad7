"""Sealing of event payloads and the master key file."""

import base64
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from service.storage.crypto import (
    MasterKey,
    MasterKeyError,
    SealedStateError,
    open_state,
    random_bytes,
    recorded_at_of,
    seal_state,
    unwrap_record_key,
    wrap_record_key,
)

KEY = b"\x01" * 32


def _seal(
    record: UUID | None = None, version: int = 3, topic: str = "client-record/DisclosureMade"
) -> tuple[UUID, datetime, bytes]:
    record = record or uuid4()
    at = datetime(2026, 3, 2, 20, 4, 5, 123456, tzinfo=UTC)
    return (
        record,
        at,
        seal_state(KEY, b'{"a": 1}', record=record, version=version, topic=topic, recorded_at=at),
    )


def test_a_sealed_payload_opens_only_in_its_own_place() -> None:
    record, at, state = _seal()
    topic = "client-record/DisclosureMade"
    assert open_state(KEY, state, record=record, version=3, topic=topic) == b'{"a": 1}'
    assert recorded_at_of(state) == at
    assert b'"a"' not in state
    for place in (
        (uuid4(), 3, topic),
        (record, 4, topic),
        (record, 3, "client-record/RecordAccessed"),
    ):
        with pytest.raises(SealedStateError):
            open_state(KEY, state, record=place[0], version=place[1], topic=place[2])
    with pytest.raises(SealedStateError):
        open_state(b"\x02" * 32, state, record=record, version=3, topic=topic)


@pytest.mark.parametrize("index", [0, 5, 12, 25, -1])
def test_any_flipped_byte_is_detected(index: int) -> None:
    record, _, state = _seal()
    tampered = bytearray(state)
    tampered[index] ^= 0x01
    with pytest.raises(SealedStateError):
        open_state(
            KEY, bytes(tampered), record=record, version=3, topic="client-record/DisclosureMade"
        )


def test_the_master_key_file_is_generated_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "home" / "master.key"
    with pytest.raises(MasterKeyError, match="does not exist"):
        MasterKey.load_or_create(path, create=False)
    created = MasterKey.load_or_create(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert MasterKey.load_or_create(path, create=False) == created
    assert created.derive("a") != created.derive("b")


def test_a_malformed_master_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(base64.b64encode(b"short"))
    with pytest.raises(MasterKeyError, match="32 bytes"):
        MasterKey.load_or_create(path, create=False)
    path.write_text("not base64 at all!")
    with pytest.raises(MasterKeyError, match="unreadable"):
        MasterKey.load_or_create(path, create=False)


def test_wrapped_record_keys_are_bound_to_their_record() -> None:
    kek = MasterKey(b"\x07" * 32).derive("record-key-wrapping")
    record = uuid4()
    wrapped = wrap_record_key(kek, KEY, record)
    assert unwrap_record_key(kek, wrapped, record) == KEY
    with pytest.raises(SealedStateError):
        unwrap_record_key(kek, wrapped, uuid4())


def test_service_keys_are_wrapped_for_one_label_and_one_master_key() -> None:
    master, other = MasterKey(b"\x07" * 32), MasterKey(b"\x08" * 32)
    assert master.key_id != other.key_id
    assert len(master.key_id) == 16
    wrapped = master.wrap_key(KEY, b"blind-index")
    assert master.unwrap_key(wrapped, b"blind-index") == KEY
    with pytest.raises(SealedStateError):
        master.unwrap_key(wrapped, b"record-id")
    with pytest.raises(SealedStateError):
        other.unwrap_key(wrapped, b"blind-index")


def test_pooled_random_bytes_never_repeat_and_differ_in_a_forked_child() -> None:
    drawn = [random_bytes(12) for _ in range(2000)]  # crosses several 4 KiB refills
    assert all(len(b) == 12 for b in drawn)
    assert len(set(drawn)) == len(drawn)
    assert len(random_bytes(5000)) == 5000  # more than one pool at once
    random_bytes(12)  # a fresh pool, most of it left: what a child must not hand out again
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, random_bytes(12))
        os._exit(0)
    os.close(write)
    in_child = os.read(read, 12)
    os.close(read)
    os.waitpid(child, 0)
    # The child would have handed out the parent's next bytes had it kept the pool.
    assert in_child != random_bytes(12)
