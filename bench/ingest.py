"""Ingest throughput beside its baselines, all measured in the same run.

    .venv/bin/python -m bench.ingest [--events 2000] [--json]

Baselines: raw PostgreSQL single-row inserts, one transaction each with synchronous commit (the
floor any durable per-event write pays), and a bare FastAPI endpoint through the same in-process
client (the floor of the HTTP layer). Then the real service on PostgreSQL and on SQLite: one
event per request (sequential, and 8 clients on distinct records), and batches of 100.
"""

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from service.app import create_app
from service.auth import Role
from service.container import build_services
from service.settings import Settings
from tests.factories import example

ADMIN_URL = os.environ.get(
    "DISCLOSURE_AUDIT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
console = Console(stderr=True)


def _rate(count: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def raw_postgres(url: str, count: int) -> float:
    """Single-row inserts of ~600 bytes, each committed durably."""
    payload = os.urandom(600)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, state bytea)")
        conn.execute("SET synchronous_commit TO on")

        def run() -> None:
            for _ in range(count):
                with conn.transaction():
                    conn.execute("INSERT INTO bench_raw (state) VALUES (%s)", (payload,))

        return _rate(count, run)


def bare_fastapi(count: int) -> float:
    """A FastAPI endpoint that only parses JSON and answers."""
    app = FastAPI()

    @app.post("/echo", status_code=201)
    def echo(body: dict[str, Any]) -> dict[str, str]:
        return {"event_id": str(body.get("event_id"))}

    bodies = [example("RecordAccessed") for _ in range(count)]
    with TestClient(app) as client:

        def run() -> None:
            for body in bodies:
                client.post("/echo", json=body)

        return _rate(count, run)


def service(settings: Settings, count: int) -> dict[str, float]:
    """The real app: sequential single posts, concurrent single posts, batches of 100."""
    services = build_services(settings)
    tenant = f"bench-{uuid4().hex[:8]}"
    _, token = services.keys.create(tenant, {Role.INGEST})
    headers = {"Authorization": f"Bearer {token}"}
    figures: dict[str, float] = {}
    with TestClient(create_app(settings, services)) as client:

        def post(record: str, body: dict[str, Any]) -> None:
            response = client.post(f"/v1/records/{record}/events", json=body, headers=headers)
            assert response.status_code == 201, response.text

        sequential = [example("RecordAccessed") for _ in range(count)]

        def sequential_run() -> None:
            for body in sequential:
                post("seq", body)

        figures["single, 1 client"] = _rate(count, sequential_run)

        def client_run(n: int) -> None:
            for _ in range(count // 8):
                post(f"conc-{n}", example("RecordAccessed"))

        def concurrent() -> None:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(client_run, range(8)))

        figures["single, 8 clients"] = _rate(count // 8 * 8, concurrent)

        batches = [
            {
                "events": [
                    {**example("RecordAccessed"), "record_ref": f"b-{i % 10}"} for i in range(100)
                ]
            }
            for _ in range(max(1, count // 100))
        ]

        def batch_run() -> None:
            for batch in batches:
                response = client.post("/v1/events:batch", json=batch, headers=headers)
                assert response.status_code == 201, response.text

        figures["batches of 100"] = _rate(len(batches) * 100, batch_run)
    services.close()
    return figures


def main() -> None:
    """Run every measurement and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events per measurement")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()

    name = f"da_bench_{uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    results: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as home:
            steps: list[tuple[str, Callable[[], dict[str, float]]]] = [
                (
                    "baseline: raw PostgreSQL insert+commit",
                    lambda: {
                        "baseline: raw PostgreSQL insert+commit": raw_postgres(url, args.events)
                    },
                ),
                (
                    "baseline: bare FastAPI endpoint",
                    lambda: {"baseline: bare FastAPI endpoint": bare_fastapi(args.events)},
                ),
                (
                    "service on PostgreSQL",
                    lambda: {
                        f"PostgreSQL: {k}": v
                        for k, v in service(
                            Settings(home=Path(home) / "pg", database_url=url), args.events
                        ).items()
                    },
                ),
                (
                    "service on SQLite",
                    lambda: {
                        f"SQLite: {k}": v
                        for k, v in service(
                            Settings(home=Path(home) / "sqlite"), args.events
                        ).items()
                    },
                ),
            ]
            for label, step in steps:
                with console.status(f"measuring {label} ({args.events} events)…"):
                    results.update(step())
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if args.json:
        print(json.dumps({"events": args.events, "per_second": results}, indent=2))
        return
    floor = results["baseline: raw PostgreSQL insert+commit"]
    table = Table("measurement", "events/s", "vs raw PostgreSQL", title="Ingest throughput")
    for label, rate in results.items():
        table.add_row(label, f"{rate:,.0f}", f"{rate / floor:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
