"""Projection throughput, and projection lag under a steady ingest.

Throughput: events ingested with the projector off, then applied by one projector from an empty
read model (events/s). Lag: a real server with its in-process projector, posted to at a fixed
rate by paced clients, while the lag (seconds from the oldest unapplied event's recording to
now, the figure ``/readyz`` reports) is sampled every 100 ms.
"""

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.load import service_server
from service.application.ingest import Submission
from service.container import build_services
from service.settings import Settings
from tests.factories import example

__all__ = ["lag_at", "throughput"]


def throughput(home: Path, url: str, events: int = 20_000) -> dict[str, Any]:
    """Apply ``events`` freshly ingested events (over 1,000 records) from scratch."""
    from domain import facts

    services = build_services(Settings(home=home, database_url=url))
    try:
        services.projector.catch_up()
        for start in range(0, events, 1000):
            batch = [
                Submission(
                    f"p-{(start + n) % 1000}",
                    facts.RecordAccessed.model_validate(example("RecordAccessed")),
                )
                for n in range(1000)
            ]
            services.ingest.record_facts("bench-projection", batch)
        started = time.perf_counter()
        applied = services.projector.catch_up()
        elapsed = time.perf_counter() - started
    finally:
        services.close()
    return {"events applied": applied, "events/s": applied / elapsed}


def lag_at(
    env: dict[str, str], token: str, url: str, *, rate: float, seconds: float, clients: int = 8
) -> dict[str, Any]:
    """Post at ``rate`` events/s for ``seconds`` and sample the projection lag."""
    env = {**env, "DISCLOSURE_AUDIT_PROJECTIONS": "in-process"}
    samples: list[float] = []
    failures: list[int] = []
    stop = threading.Event()
    observer = build_services(
        Settings(home=Path(env["DISCLOSURE_AUDIT_HOME"]), database_url=url), create=False
    )
    with service_server(env, 2) as server:

        def client(n: int) -> None:
            interval = clients / rate
            due = time.monotonic() + n * interval / clients
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=30) as http:
                while not stop.is_set():
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    due += interval
                    answer = http.post(
                        f"/v1/records/lag-{n}/events", json=example("RecordAccessed")
                    )
                    if answer.status_code != 201:
                        failures.append(answer.status_code)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            samples.append(observer.projector.lag()[1])  # what /readyz reports
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join()
    observer.close()
    samples.sort()
    return {
        "rate events/s": rate,
        "samples": len(samples),
        "lag p50 s": statistics.median(samples),
        "lag p99 s": samples[int(0.99 * (len(samples) - 1))],
        "lag max s": samples[-1],
        "failed posts": len(failures),
    }
