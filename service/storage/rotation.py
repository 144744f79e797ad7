"""Master-key rotation, online and resumable: every step can be run again after an interruption.

Run by a process that opened the store with the old master key (its ``ServiceKeys``):

a. wrap every named key and every KEK generation under the new master key as well (one
   transaction), so that a process started with the new key can already read everything;
b. create KEK generation g+1 (random), wrapped under both master keys, and make it current (the
   newest generation is current); the rotation's row in ``da_master_rotations`` remembers it;
c. re-wrap, in committed batches, every live record key of an older generation with g+1;
d. in one transaction: delete the older generations, re-wrap what is left, delete every row not
   wrapped under the new master key and the rotation's row. A process inserting a record key
   wraps it with a generation it holds a share lock on (``ServiceKeys.hold``), so on PostgreSQL
   the delete waits for that insert, which the re-wrap then sees; SQLite serialises writers.

Processes running on the old master key keep working throughout: they wrap new record keys with
the newest generation, loading it under the old master key, which wraps it until step d. After
that a process that does not hold it fails the request, telling the operator to restart it with
the new key file; it never wraps with a retired generation. The named keys never change, so
record ids, digests and blind indexes stay the same.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from service.storage.crypto import MasterKey
from service.storage.keyring import RecordKeyring
from service.storage.service_keys import (
    KEK,
    NAMED_KEYS,
    ServiceKeys,
    WrappedKey,
    insert_wrapped,
    label,
)
from service.storage.sql import Database

__all__ = ["RotationError", "RotationResult", "RotationStep", "rotate_master_key"]

_NIL = UUID(int=0)


class RotationError(Exception):
    """The rotation cannot run as asked (nothing was changed by the failed step)."""


@dataclass(frozen=True)
class RotationStep:
    """Where a rotation is, reported after each committed step and each batch."""

    step: str  # "wrapped", "generation", "rewrapped" (each batch), "retired"
    done: int
    total: int


@dataclass(frozen=True)
class RotationResult:
    """What a rotation did."""

    old_key_id: str
    new_key_id: str
    kek_generation: int
    rewrapped: int
    resumed: bool


def _count_left(db: Database, generation: int) -> int:
    row = db.read_one(
        "SELECT COUNT(*) AS n FROM da_record_keys"
        " WHERE kek_generation < %s AND wrapped_key IS NOT NULL",
        (generation,),
    )
    return int(row["n"]) if row else 0


def _start(db: Database, old: MasterKey, new: MasterKey) -> tuple[bool, int | None]:
    """Remember the rotation, or find it again: whether it was begun, the generation it made."""
    with db.transaction() as cursor:
        state = cursor.fetchone(
            "SELECT kek_generation FROM da_master_rotations WHERE new_master_id = %s",
            (new.key_id,),
        )
        if state is None:
            cursor.execute(
                "INSERT INTO da_master_rotations (new_master_id, old_master_id, started_at)"
                " VALUES (%s, %s, %s)",
                (new.key_id, old.key_id, datetime.now(UTC)),
            )
            return False, None
    generation = state["kek_generation"]
    return True, None if generation is None else int(generation)


def _wrap_under(db: Database, keys: ServiceKeys, new: MasterKey) -> int:
    """(a) Everything the old master key opens, wrapped under the new one too."""
    for row in db.read("SELECT DISTINCT generation FROM da_service_keys WHERE name = %s", (KEK,)):
        keys.kek(int(row["generation"]))  # every generation, loaded under the old master key
    rows = [
        WrappedKey(name, 0, new.key_id, new.wrap_key(keys.named(name), label(name, 0)))
        for name in NAMED_KEYS
    ] + [
        WrappedKey(KEK, g, new.key_id, new.wrap_key(kek, label(KEK, g)))
        for g, kek in sorted(keys.held_keks().items())
    ]
    with db.transaction() as cursor:
        insert_wrapped(cursor, rows)
    return len(rows)


def _new_generation(db: Database, keys: ServiceKeys, new: MasterKey) -> int:
    """(b) A random KEK of the next generation, under both master keys, and the rotation's."""
    generation = keys.current_generation() + 1
    kek = secrets.token_bytes(32)
    with db.transaction() as cursor:
        insert_wrapped(
            cursor,
            [
                WrappedKey(KEK, generation, m.key_id, m.wrap_key(kek, label(KEK, generation)))
                for m in (keys.master, new)
            ],
        )
        cursor.execute(
            "UPDATE da_master_rotations SET kek_generation = %s WHERE new_master_id = %s",
            (generation, new.key_id),
        )
    keys.add_kek(generation, kek)
    return generation


def _rewrap(
    db: Database,
    keyring: RecordKeyring,
    generation: int,
    batch_size: int,
    report: Callable[[RotationStep], None],
) -> int:
    """(c) Every live record key of an older generation, re-wrapped in committed batches."""
    total = _count_left(db, generation)
    rewrapped, after = 0, _NIL
    while True:
        with db.transaction() as cursor:  # each batch commits on its own
            batch = keyring.rewrap(cursor, generation, after=after, limit=batch_size)
        if not batch:
            if after == _NIL:
                return rewrapped  # a pass from the start found nothing left
            after = _NIL  # once more, for keys created with the old generation meanwhile
            continue
        after = batch[-1]
        rewrapped += len(batch)
        report(RotationStep("rewrapped", rewrapped, max(total, rewrapped)))


def _retire(
    db: Database, keyring: RecordKeyring, new: MasterKey, generation: int, batch_size: int
) -> int:
    """(d) The old generations and every row not under the new master key go, at once."""
    rewrapped, after = 0, _NIL
    with db.transaction() as cursor:
        # First: on PostgreSQL this waits for inserts that hold an old generation (see
        # ServiceKeys.hold), whose keys the next statements then see and re-wrap.
        cursor.execute(
            "DELETE FROM da_service_keys WHERE name = %s AND generation < %s", (KEK, generation)
        )
        while batch := keyring.rewrap(cursor, generation, after=after, limit=batch_size):
            rewrapped += len(batch)
            after = batch[-1]
        cursor.execute("DELETE FROM da_service_keys WHERE master_id <> %s", (new.key_id,))
        # With the rows of every other master key gone, so is any rotation begun towards one.
        cursor.execute("DELETE FROM da_master_rotations")
    return rewrapped


def rotate_master_key(
    db: Database,
    keys: ServiceKeys,
    keyring: RecordKeyring,
    new: MasterKey,
    *,
    batch_size: int = 500,
    progress: Callable[[RotationStep], None] | None = None,
) -> RotationResult:
    """Rotate the store from ``keys.master`` to ``new`` (see the module docstring).

    ``keyring`` must use ``keys``. ``progress`` is called after each committed step and batch;
    an exception it raises stops the rotation there, and calling this again resumes it.
    """
    old = keys.master
    if old.key_id == new.key_id:
        raise RotationError("the new master key is the one in use")
    if batch_size < 1:
        raise RotationError("the batch size must be at least 1")
    report = progress or (lambda _: None)
    keys.open()
    resumed, created = _start(db, old, new)
    wrapped = _wrap_under(db, keys, new)
    report(RotationStep("wrapped", wrapped, wrapped))
    if created is None:
        generation = _new_generation(db, keys, new)
    else:
        generation = created
        keys.kek(generation)  # made by the interrupted run, still wrapped under the old key
    report(RotationStep("generation", generation, generation))
    rewrapped = _rewrap(db, keyring, generation, batch_size, report)
    rewrapped += _retire(db, keyring, new, generation, batch_size)
    report(RotationStep("retired", 1, 1))
    return RotationResult(
        old_key_id=old.key_id,
        new_key_id=new.key_id,
        kek_generation=generation,
        rewrapped=rewrapped,
        resumed=resumed,
    )
