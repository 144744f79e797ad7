"""Policy-engine throughput and its share of ingest, on a record with 1,000 prior events.

    .venv/bin/python -m bench.policy [--history 1000] [--events 500] [--json]

Measured in the same run: (1) the engine alone, judging disclosures against the full 1,000-event
history (what a projection rebuild does) and against the record's legal facts (what ingest does);
(2) ingest of the same disclosures through the real app on PostgreSQL, into that record; (3) the
engine's share of one ingest. Baseline: a bare FastAPI endpoint through the same client.
"""

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table

from domain import facts
from domain.policy.engine import judge_on_record
from domain.policy.rulesets import Rulebook
from domain.record import ClientRecord
from service.app import create_app
from service.auth import Role
from service.container import build_services
from service.settings import Settings
from tests.factories import example

ADMIN_URL = os.environ.get(
    "DISCLOSURE_AUDIT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
FACT: TypeAdapter[facts.FactBase] = TypeAdapter(facts.Fact)
console = Console(stderr=True)


def history_events(size: int) -> list[dict[str, Any]]:
    """A realistic mix: mostly accesses and disclosures, some consents and legal process."""
    events: list[dict[str, Any]] = [example("RecordOpened", occurred_at="2024-01-02T09:00:00Z")]
    for n in range(1, size):
        day = f"2024-{1 + n // 100 % 12:02d}-{1 + n % 28:02d}T10:{n % 60:02d}:00Z"
        kind = n % 20
        if kind == 0:
            events.append(example("AuthorizationGranted", occurred_at=day,
                                  authorization_id=f"auth-{n}"))  # fmt: skip
        elif kind == 7:
            events.append(example("AuthorizationRevoked", occurred_at=day,
                                  authorization_id=f"auth-{n - 7}"))  # fmt: skip
        elif kind == 13:
            events.append(example("LegalDemandReceived", occurred_at=day, demand_id=f"dem-{n}"))
        elif kind % 3 == 0:
            events.append(example("DisclosureMade", occurred_at=day,
                                  legal_basis={"kind": "client_authorization",
                                               "reference_id": f"auth-{n - n % 20}"}))  # fmt: skip
        else:
            events.append(example("RecordAccessed", occurred_at=day))
    return events


def disclosures(count: int) -> list[dict[str, Any]]:
    """Disclosures to judge, under authorizations of the history."""
    return [
        example(
            "DisclosureMade",
            occurred_at="2025-06-01T12:00:00Z",
            legal_basis={"kind": "client_authorization", "reference_id": f"auth-{20 * (n % 40)}"},
        )
        for n in range(count)
    ]


def ingest_rate(prior: list[dict[str, Any]], count: int) -> float:
    """Disclosures per second posted through the app into a record that has ``prior`` events."""
    name = f"da_bench_{uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
        with tempfile.TemporaryDirectory() as home:
            settings = Settings(home=Path(home), database_url=url)
            services = build_services(settings)
            token = services.keys.create(f"bench-{uuid4().hex[:6]}", {Role.INGEST})[1]
            headers = {"Authorization": f"Bearer {token}"}
            with TestClient(create_app(settings, services)) as client:
                for start in range(0, len(prior), 500):
                    batch = [{**e, "record_ref": "long"} for e in prior[start : start + 500]]
                    response = client.post(
                        "/v1/events:batch", json={"events": batch}, headers=headers
                    )
                    assert response.status_code == 201, response.text
                started = time.perf_counter()
                for body in disclosures(count):
                    response = client.post("/v1/records/long/events", json=body, headers=headers)
                    assert response.status_code == 201, response.text
                rate = count / (time.perf_counter() - started)
            services.close()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return rate


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


def _rate(count: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def main() -> None:
    """Run the measurements and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    book = Rulebook.load()
    prior = history_events(args.history)
    full = [FACT.validate_python(e) for e in prior]
    legal = [f for f in full if isinstance(f, ClientRecord.legal_fact_types())]
    subjects = [FACT.validate_python(e) for e in disclosures(args.events)]

    def engine_rate(history: list[facts.FactBase]) -> float:
        started = time.perf_counter()
        for subject in subjects:
            judge_on_record(book, history, subject)
        return len(subjects) / (time.perf_counter() - started)

    results: dict[str, float] = {}
    with console.status("engine alone…"):
        results["engine, full 1,000-event history (rebuild)"] = engine_rate(full)
        results["engine, the record's legal facts (ingest)"] = engine_rate(legal)
    with console.status("bare FastAPI baseline…"):
        results["baseline: bare FastAPI endpoint"] = bare_fastapi(args.events)

    with console.status(f"ingest into a record with {args.history} prior events…"):
        results["ingest on PostgreSQL, 1,000 prior events"] = ingest_rate(prior, args.events)

    share = (
        results["ingest on PostgreSQL, 1,000 prior events"]
        / results["engine, the record's legal facts (ingest)"]
    )
    if args.json:
        print(json.dumps({"per_second": results, "engine_share_of_ingest": share}, indent=2))
        return
    table = Table("measurement", "per second", title=f"Policy engine, history {args.history}")
    for label, rate in results.items():
        table.add_row(label, f"{rate:,.0f}")
    Console().print(table)
    Console().print(
        f"Engine share of one ingest: {share:.1%} "
        f"({'within' if share <= 0.2 else 'OVER'} the 20% budget)"
    )


if __name__ == "__main__":
    main()
