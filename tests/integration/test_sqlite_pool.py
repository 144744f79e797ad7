"""The embedded store's connection pool: a reader never waits behind a queued writer."""

import threading
import time
from pathlib import Path

from service.container import build_services
from service.settings import Settings


def test_a_writer_that_reads_on_another_connection_is_not_stuck_behind_a_queued_writer(
    tmp_path: Path,
) -> None:
    """As the projector does: inside its write transaction it reads a record's history on a
    second connection, while the ingest writer (here: another thread) waits for the writer.
    The library's fairness queue deadlocked the two until its 5 s timeout failed the waiter
    ('Timed out waiting for return of writer', seen in CI on a shred beside the projector)."""
    services = build_services(Settings(home=tmp_path, _env_file=None))
    db = services.audit.db
    waiting = threading.Event()
    outcome: list[str] = []

    def queued_writer() -> None:
        waiting.set()
        try:
            with db.transaction() as cursor:
                cursor.execute("SELECT 1")
            outcome.append("stored")
        except Exception as error:
            outcome.append(type(error).__name__)

    try:
        with db.transaction() as cursor:
            cursor.execute("SELECT 1")
            other = threading.Thread(target=queued_writer)
            other.start()
            waiting.wait(5)
            time.sleep(0.3)  # the other thread now waits for the writer, first in the queue
            started = time.monotonic()
            rows = db.read("SELECT 1 AS one")
            took = time.monotonic() - started
        other.join(10)
    finally:
        services.close()
    assert rows == [{"one": 1}]
    assert took < 1, f"the read waited {took:.1f} s behind the queued writer"
    assert outcome == ["stored"], "and the queued writer got its turn"
