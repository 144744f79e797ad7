"""Workers and replicas start together: schema creation must not race on PostgreSQL."""

import threading
from pathlib import Path

from service.container import build_services
from service.settings import Settings

STARTERS = 6


def test_several_processes_can_start_on_one_database_at_the_same_moment(
    postgres_url: str, session_keys: Path, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=postgres_url,
        # The shared database's master key: a process with another one fails to start.
        master_key_file=session_keys / "master.key",
        postgres_pool_size=1,
        postgres_max_overflow=0,
        _env_file=None,
    )
    build_services(settings).close()  # the master key exists before the race, as in production
    errors: list[str] = []
    for _ in range(3):
        barrier = threading.Barrier(STARTERS)

        def start(barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                build_services(settings).close()
            except Exception as error:  # every failure is the finding
                errors.append(f"{type(error).__name__}: {error}")

        starters = [threading.Thread(target=start, args=(barrier,)) for _ in range(STARTERS)]
        for starter in starters:
            starter.start()
        for starter in starters:
            starter.join(timeout=120)
    assert not errors, errors[:3]
