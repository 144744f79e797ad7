"""Batch ingest into a tenant that already holds a large log, beside a fresh tenant.

    .venv/bin/python -m bench.tenant_size [--events 200000 | --reuse DATABASE] [--batches 20]
                                          [--json]

In process, on PostgreSQL: batches of 1,000 new events (one new record each, as bench.queries
loads) into bench.queries' tenant of N events, and, in the same database and run, into a tenant
of its own that starts empty, alternating. A write path whose per-commit statements read the
tenant's log shows here as a ratio above 1 (it was 3 and growing at 280k events before the
next-position and idempotency lookups became index probes); the HTTP benchmarks of
``python -m bench`` start from fresh stores and cannot see it. ``--reuse`` takes a store kept by
``bench.queries --keep`` or ``bench.console --keep``.
"""

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console

from bench import queries
from bench.console import _database
from service.application.ingest import Submission
from service.container import Services, build_services
from service.settings import Settings

console = Console(stderr=True)


def _batch_seconds(services: Services, tenant: str, start: int) -> float:
    ref = f"size-{uuid4().hex[:12]}"
    batch = [Submission(ref, queries._fact(n)) for n in range(start, start + 1000)]
    started = time.perf_counter()
    services.ingest.record_facts(tenant, batch)
    return time.perf_counter() - started


def measure(services: Services, batches: int) -> dict[str, Any]:
    """Median seconds per 1,000-event batch into the large tenant and into a fresh one."""
    fresh = f"fresh-{uuid4().hex[:8]}"
    large: list[float] = []
    small: list[float] = []
    with console.status("batches into the large and the fresh tenant…"):
        for n in range(batches):
            large.append(_batch_seconds(services, queries.TENANT, n * 1000))
            small.append(_batch_seconds(services, fresh, n * 1000))
    return {
        "batches": batches,
        "large tenant events/s": 1000 / statistics.median(large),
        "fresh tenant events/s": 1000 / statistics.median(small),
        "ratio (fresh / large time)": statistics.median(large) / statistics.median(small),
    }


def main() -> None:
    """Load or reuse the large tenant, then measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reuse", metavar="DATABASE")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        name, url = stack.enter_context(_database(args.reuse))
        home = (Path(tempfile.gettempdir()) / name if args.reuse
                else Path(stack.enter_context(tempfile.TemporaryDirectory())))  # fmt: skip
        services = build_services(Settings(home=home, database_url=url, projections="external"))
        stack.callback(services.close)
        if not args.reuse:
            queries.load(services, args.events)
        with services.audit.db.transaction(commit=False) as cursor:
            row = cursor.fetchone(
                "SELECT COUNT(*) AS n FROM da_tenant_log WHERE tenant_id = %s", (queries.TENANT,)
            )
        result = {"large tenant events": int(row["n"]) if row else 0} | measure(
            services, args.batches
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value:,.2f}" if isinstance(value, float) else f"{key}: {value:,}")


if __name__ == "__main__":
    main()
