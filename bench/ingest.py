"""Ingest measured from outside, each figure beside its baseline from the same run.

    .venv/bin/python -m bench.ingest [--seconds 15] [--json] [--only single-postgres|single-sqlite]

Every measurement drives a real ``disclosure-audit serve`` process with wrk over loopback, and
its baseline is measured the same way in the same run: the bare FastAPI endpoint of
``bench/bare.py`` (same route, same body validation, nothing stored) under the same workers,
and raw ``COPY`` of rows of the same size into the same PostgreSQL server.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import httpx2 as httpx
import psycopg
from rich.console import Console

from bench.load import bare_server, service_server, wrk
from service.auth import Role
from service.container import build_services
from service.settings import Settings
from tests.factories import example

__all__ = ["ADMIN_URL", "measure", "scratch_database", "store_with_key"]

ADMIN_URL = os.environ.get(
    "DISCLOSURE_AUDIT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ROW_BYTES = 600  # about the size of one stored event with its tenant-log row
console = Console(stderr=True)


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh database on the benchmark server, dropped afterwards."""
    name = f"da_bench_{uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def raw_copy(url: str, rows: int = 200_000) -> float:
    """Rows per second of one ``COPY`` of ``rows`` rows of ROW_BYTES, committed durably."""
    payload = os.urandom(ROW_BYTES // 2).hex()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_copy (id bigint PRIMARY KEY, state text)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy("COPY bench_copy (id, state) FROM STDIN") as copy:
            for n in range(rows):
                copy.write_row((n, payload))
        conn.commit()
        return rows / (time.perf_counter() - started)


def store_with_key(
    home: Path, url: str | None, projections: str = "external"
) -> tuple[dict[str, str], str]:
    """A store with an ingest key; the environment a server of it needs."""
    env = {"DISCLOSURE_AUDIT_HOME": str(home), "DISCLOSURE_AUDIT_PROJECTIONS": projections}
    if url:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = url
    services = build_services(Settings(home=home, database_url=url))
    _, token = services.keys.create("bench", {Role.INGEST, Role.COMPLIANCE}, "bench")
    services.close()
    return env, token


def warm_up(base: str, token: str, *, connections: int, workers: int, records: int = 1000) -> None:
    """Post until every worker has very likely served every record (steady state: records in
    memory), bounded in time. A connection stays with one worker and each worker gets about
    1/workers of the posts, so a worker misses a given record after n posts with probability
    about exp(-n / (records x workers)): 5 x records x workers posts leave under 1% unloaded.
    """
    wanted = 5 * records * max(1, workers)
    first = wrk(base, token, connections=connections, seconds=5, records=records)
    missing = wanted - first["requests"]
    if missing > 0 and first["requests_per_s"] > 0:
        more = min(25.0, missing / first["requests_per_s"])
        wrk(base, token, connections=connections, seconds=more, records=records)


def single_events(
    env: dict[str, str], token: str, *, workers: int, connections: int, seconds: float
) -> dict[str, Any]:
    """wrk against the service and against the bare endpoint, same workers and connections."""
    with bare_server(workers) as base:
        wrk(base, "-", connections=connections, seconds=3)
        bare = wrk(base, "-", connections=connections, seconds=seconds)
    with service_server(env, workers) as server:
        warm_up(server.base, token, connections=connections, workers=workers)
        service = wrk(server.base, token, connections=connections, seconds=seconds)
    return {
        "service": service,
        "bare endpoint": bare,
        "ratio": service["requests_per_s"] / bare["requests_per_s"],
        "p99 ratio": service["p99_ms"] / bare["p99_ms"],
    }


def batches(url: str, env: dict[str, str], token: str, seconds: float) -> dict[str, Any]:
    """1,000-event batches over 2 connections, beside raw COPY into the same server."""
    with service_server(env, 2) as server:
        # Warm up: a worker's first batch registers and caches the 1,000 records (seconds).
        wrk(server.base, token, connections=2, seconds=8, batch=1000)
        service = wrk(server.base, token, connections=2, seconds=seconds, batch=1000)
    copy_rate = raw_copy(url)
    return {
        "service events/s": service["events_per_s"],
        "service": service,
        "raw COPY rows/s": copy_rate,
        "ratio": service["events_per_s"] / copy_rate,
    }


def _post_latencies(base: str, token: str, record: str, count: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    taken = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        for _ in range(count):
            started = time.perf_counter()
            answer = http.post(f"/v1/records/{record}/events", json=example("RecordAccessed"))
            taken.append(time.perf_counter() - started)
            if answer.status_code != 201:
                raise RuntimeError(f"post failed: {answer.status_code} {answer.text}")
    return taken


def long_record(env: dict[str, str], token: str, events: int = 10_000) -> dict[str, Any]:
    """Posting into a record of ``events`` events costs what posting into a fresh one does:
    warm (records in memory) and cold (the first post after a restart)."""
    longs = [f"long-{n}" for n in range(3)]
    with service_server(env, 1) as server, httpx.Client(base_url=server.base, timeout=120) as h:
        headers = {"Authorization": f"Bearer {token}"}
        for record in longs:
            for _ in range(events // 1000):
                items = [{**example("RecordAccessed"), "record_ref": record} for _ in range(1000)]
                answer = h.post("/v1/events:batch", json={"events": items}, headers=headers)
                answer.raise_for_status()
        warm_long = _post_latencies(server.base, token, longs[0], 200)
        warm_fresh = _post_latencies(server.base, token, "fresh-warm", 200)
    with service_server(env, 1) as server:  # a restart: nothing in memory
        _post_latencies(server.base, token, "first-after-restart", 1)
        cold_long = [_post_latencies(server.base, token, r, 1)[0] for r in longs]
        cold_fresh = [_post_latencies(server.base, token, f"fresh-{r}", 1)[0] for r in longs]
    warm = statistics.median(warm_long[20:]) / statistics.median(warm_fresh[20:])
    cold = statistics.median(cold_long) / statistics.median(cold_fresh)
    return {
        "events in the long record": events,
        "warm: median ms into long": 1000 * statistics.median(warm_long[20:]),
        "warm: median ms into fresh": 1000 * statistics.median(warm_fresh[20:]),
        "warm ratio": warm,
        "cold: median ms into long": 1000 * statistics.median(cold_long),
        "cold: median ms into fresh": 1000 * statistics.median(cold_fresh),
        "cold ratio": cold,
    }


def single_postgres(seconds: float) -> dict[str, Any]:
    """Only the single-event figure on PostgreSQL (2 workers, 64 connections): for A/B runs."""
    with tempfile.TemporaryDirectory() as home, scratch_database() as url:
        env, token = store_with_key(Path(home) / "pg", url, "external")
        return single_events(env, token, workers=2, connections=64, seconds=seconds)


def single_sqlite(seconds: float) -> dict[str, Any]:
    """Only the single-event figure on SQLite (1 process, 32 connections): for A/B runs."""
    with tempfile.TemporaryDirectory() as home:
        env, token = store_with_key(Path(home) / "sqlite", None, "in-process")
        return single_events(env, token, workers=1, connections=32, seconds=seconds)


def measure(seconds: float) -> dict[str, Any]:
    """Every ingest figure of the issue's table, with its baselines."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home, scratch_database() as url:
        env, token = store_with_key(Path(home) / "pg", url, "external")
        with console.status("single-event ingest, PostgreSQL, 2 workers, 64 connections…"):
            results["single, PostgreSQL, 2 workers, 64 connections"] = single_events(
                env, token, workers=2, connections=64, seconds=seconds
            )
        with console.status("single-event ingest, PostgreSQL, 1 connection…"):
            results["single, PostgreSQL, 2 workers, 1 connection"] = single_events(
                env, token, workers=2, connections=1, seconds=seconds / 2
            )
        with console.status("batches of 1,000 events, PostgreSQL, 2 connections…"):
            results["batch of 1000, PostgreSQL, 2 connections"] = batches(url, env, token, seconds)
        with console.status("a post into a record of 10,000 events, warm and cold…"):
            results["long record, PostgreSQL"] = long_record(env, token)
        env, token = store_with_key(Path(home) / "sqlite", None, "in-process")
        with console.status("single-event ingest, SQLite, 1 process, 32 connections…"):
            results["single, SQLite, 1 process, 32 connections"] = single_events(
                env, token, workers=1, connections=32, seconds=seconds
            )
    return results


def main() -> None:
    """Run the ingest measurements and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="length of each wrk run")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--only",
        choices=["single-postgres", "single-sqlite"],
        help="one measurement (with its baseline), e.g. to compare two commits in one hour",
    )
    args = parser.parse_args()
    chosen = {"single-postgres": single_postgres, "single-sqlite": single_sqlite}
    run = chosen[args.only] if args.only else measure
    print(json.dumps(run(args.seconds), indent=2))


if __name__ == "__main__":
    main()
