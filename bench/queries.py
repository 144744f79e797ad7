"""Query latency on a large store, and projection lag under sustained ingest.

    .venv/bin/python -m bench.queries [--events 1000000] [--json] [--keep | --reuse DATABASE]

On a fresh PostgreSQL database: loads N synthetic events (60% accesses, 30% disclosures, 10%
consents and legal process; 1,000 events per record), projects them, then measures p50/p95
latency of filtered practice-wide queries (access log, disclosures, findings queue) and a
one-record accounting, beside a bare FastAPI endpoint through the same client. Finally it
measures the maximum single-event ingest rate, ingests at half of it for 20 s with the
projector running, and reports the projection lag (commit to applied) p50/p99.
"""

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from domain import facts
from service.app import create_app
from service.application.ingest import Submission
from service.auth import Role
from service.container import Services, build_services
from service.settings import Settings
from tests.factories import example

ADMIN_URL = os.environ.get(
    "DISCLOSURE_AUDIT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TENANT = "bench-practice"
console = Console(stderr=True)
BASES = ["treatment", "payment", "client_authorization", "court_order", "mandated_report"]


def _fact(n: int) -> facts.FactBase:
    # Events arrive in time order, as they do from a clinical system (a minute apart).
    day = (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=n)).isoformat()
    kind = n % 20
    if kind < 12:
        role = ["treating_clinician", "billing", "front_desk", "supervisor"][n % 4]
        return facts.RecordAccessed.model_validate(example(
            "RecordAccessed", occurred_at=day,
            actor={"id": f"staff-{n % 40}", "name": "Staff", "role": role}))  # fmt: skip
    if kind < 18:
        basis = BASES[n % len(BASES)]
        return facts.DisclosureMade.model_validate(example(
            "DisclosureMade", occurred_at=day,
            recipient={"name": f"Recipient {n % 50}", "kind": "other"},
            legal_basis={"kind": basis, "reference_id": f"ref-{n % 9}"},
            minimum_necessary={"mode": "protocol"}))  # fmt: skip
    if kind == 18:
        return facts.AuthorizationGranted.model_validate(
            example("AuthorizationGranted", occurred_at=day, authorization_id=f"ref-{n % 9}")
        )
    return facts.LegalDemandReceived.model_validate(
        example("LegalDemandReceived", occurred_at=day, demand_id=f"dem-{n % 9}")
    )


def load(services: Services, count: int) -> float:
    """Ingest in batches of 1000, one record per batch; returns events per second."""
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"loading {count:,} events", total=count)
        for start in range(0, count, 1000):
            ref = f"rec-{start // 1000}"
            batch = [Submission(ref, _fact(n)) for n in range(start, min(count, start + 1000))]
            services.ingest.record_facts(TENANT, batch)
            progress.advance(task, len(batch))
    return count / (time.perf_counter() - started)


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return pick(0.5), pick(0.95), pick(0.99)


def latency(client: TestClient, path: str, headers: dict[str, str], runs: int) -> tuple[float, ...]:
    """p50, p95, p99 in milliseconds of ``runs`` GETs."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return _percentiles(samples)


def lag(services: Services, seconds: float) -> dict[str, float]:
    """Ingest at half the measured maximum with the projector running; lag percentiles."""

    def one(n: int) -> float:
        started = time.perf_counter()
        services.ingest.record_facts(TENANT, [Submission(f"live-{n % 50}", _fact(n))])
        return time.perf_counter() - started

    services.projector.catch_up()
    probe = [one(n) for n in range(200)]
    maximum = 1 / statistics.mean(probe)
    rate = maximum / 2
    services.projector.catch_up()  # the probe's events are not part of the sustained ingest
    stop = threading.Event()
    worker = threading.Thread(target=services.projector.run, args=(stop,))
    worker.start()
    committed: list[tuple[int, float]] = []
    lags: list[float] = []
    end = time.perf_counter() + seconds
    n = 10_000
    while time.perf_counter() < end:
        tick = time.perf_counter()
        one(n)
        committed.append((services.audit.recorder.max_notification_id() or 0, time.perf_counter()))
        n += 1
        while committed and services.projector.processed() >= committed[0][0]:
            lags.append(time.perf_counter() - committed.pop(0)[1])
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - tick)))
    while committed:
        if services.projector.processed() >= committed[0][0]:
            lags.append(time.perf_counter() - committed.pop(0)[1])
        else:
            time.sleep(0.001)
    stop.set()
    worker.join()
    p50, _, p99 = _percentiles(lags)
    return {"max_ingest_per_s": maximum, "rate_per_s": rate, "lag_p50_ms": p50,
            "lag_p99_ms": p99, "events": len(lags)}  # fmt: skip


def query_latency(settings: Settings, services: Services, runs: int) -> dict[str, Any]:
    """p50/p95/p99 of the queries, beside a bare endpoint through the same client."""
    result: dict[str, Any] = {}
    token = services.keys.create(TENANT, {Role.COMPLIANCE})[1]
    headers = {"Authorization": f"Bearer {token}"}
    bare = FastAPI()

    @bare.get("/ping")
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(bare) as client, console.status("query latency…"):
        result["baseline: bare endpoint"] = latency(client, "/ping", {}, runs)
    with TestClient(create_app(settings, services)) as client, console.status("…"):
        queries = {
            "access log, role + day range (practice-wide)":
                "/v1/access-log?role=billing&since=2024-03-01&until=2024-03-31",
            "disclosures, basis + category (practice-wide)":
                "/v1/disclosures?legal_basis=court_order&category=progress_notes",
            "disclosures with a finding of one rule (practice-wide)":
                "/v1/disclosures?rule=AU-2&legal_basis=client_authorization",
            "findings queue, open + severity (practice-wide)":
                "/v1/findings?status=open&severity=high",
            "accounting, one record": "/v1/records/rec-1/accounting?since=2020-01-01",
        }  # fmt: skip
        for label, path in queries.items():
            result[label] = latency(client, path, headers, runs)
    return result


def report(result: dict[str, Any]) -> None:
    """Print the figures as a table and two lines."""
    wide = Console(width=140)
    table = Table("query", "p50 ms", "p95 ms", "p99 ms",
                  title=f"Query latency, {result['events']:,} events (PostgreSQL)")  # fmt: skip
    for label, value in result.items():
        if isinstance(value, tuple):
            table.add_row(label, *(f"{v:.1f}" for v in value))
    wide.print(table)
    if "load_per_s" in result:
        wide.print(f"load {result['load_per_s']:,.0f} events/s (batches of 1000)")
    if result["projected"]:
        wide.print(f"projection {result['projected']:,} events at "
                   f"{result['project_per_s']:,.0f} events/s")  # fmt: skip
    lag_ = result["lag"]
    wide.print(f"projection lag while ingesting {lag_['rate_per_s']:.0f}/s (half the single-event "
               f"maximum of {lag_['max_ingest_per_s']:.0f}/s): p50 {lag_['lag_p50_ms']:.0f} ms, "
               f"p99 {lag_['lag_p99_ms']:.0f} ms over {lag_['events']} events")  # fmt: skip


def main() -> None:
    """Load, project, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--lag-seconds", type=float, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the loaded database and its home (in the temp dir) for --reuse",
    )
    parser.add_argument(
        "--reuse",
        metavar="DATABASE",
        help="measure a database kept by --keep instead of loading a new one",
    )
    args = parser.parse_args()
    name = args.reuse or f"da_bench_{uuid4().hex[:8]}"
    if not args.reuse:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    result: dict[str, Any] = {"events": args.events, "database": name}
    try:
        url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
        with contextlib.ExitStack() as stack:
            # A kept database needs its master key again: keep the home beside it.
            home = (Path(tempfile.gettempdir()) / name if args.keep or args.reuse
                    else Path(stack.enter_context(tempfile.TemporaryDirectory())))  # fmt: skip
            settings = Settings(home=home, database_url=url, projections="external")
            services = build_services(settings)
            if args.reuse:
                result["events"] = services.audit.recorder.max_notification_id() or 0
            else:
                result["load_per_s"] = load(services, args.events)
            with console.status("projecting…"):
                started = time.perf_counter()
                applied = services.projector.catch_up()
                result["projected"] = applied
                result["project_per_s"] = applied / (time.perf_counter() - started)
            result.update(query_latency(settings, services, args.runs))
            with console.status(f"projection lag under ingest for {args.lag_seconds:.0f} s…"):
                result["lag"] = lag(services, args.lag_seconds)
            services.close()
    finally:
        if args.keep or args.reuse:
            console.print(f"kept database {name}; measure it again with --reuse {name}")
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
