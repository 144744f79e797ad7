"""Console page render times on the demo data and on a large store, from a real server.

    .venv/bin/python -m bench.console [--events N [--keep] | --reuse DATABASE] [--skip-demo]
                                      [--runs 30] [--json]

Every console page is fetched from a ``disclosure-audit serve`` process (one worker) over
loopback with a keep-alive client, logged in as a compliance officer, after one warm-up fetch:
p50, p95 and max beside the bare endpoint of ``bench/bare.py`` under uvicorn, fetched the same
way in the same run (the difference is the page's own server-side time). The demo data
(PRODUCT.md's scenarios, as ``serve --demo`` loads them) is served on both stores with the
projector in the process, as a small practice runs it; the large store is the one of
``bench.queries`` (PostgreSQL, records of 1,000 events), loaded and projected here (``--keep``
keeps it, with its home in the temp directory, for a later ``--reuse DATABASE``) and served
with ``DISCLOSURE_AUDIT_PROJECTIONS=external``, as a large deployment runs it. ``--events 0``
skips it. Targets (issue 13): every page ≤ 300 ms on the demo data, ≤ 500 ms on the 1M-event
store.
"""

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import httpx2 as httpx
import psycopg
from rich.console import Console
from rich.table import Table

from bench import load, queries
from service.application.ingest import Submission
from service.auth import Role
from service.container import build_services
from service.demo import DEMO_TENANT, demo_submissions
from service.settings import Settings

console = Console(stderr=True)
DEMO_PAGES = {
    "overview": "/console/",
    "findings queue (open)": "/console/findings",
    "findings, one rule, any status": "/console/findings?status=&rule=LG-3",
    "record status and timeline": "/console/records/jr-2041",
    "record as of a date": "/console/records/jr-2041?as_of=2026-03-15",
    "accounting": "/console/records/jr-2041/accounting",
    "accounting CSV": "/console/records/jr-2041/accounting.csv",
    "access log": "/console/access-log",
    "access log, break-glass": "/console/access-log?break_glass=true",
    "exports": "/console/exports",
}
LARGE_PAGES = {
    "overview": "/console/",
    "findings queue (open)": "/console/findings",
    "findings, one rule, high": "/console/findings?rule=AU-2&severity=high",
    "findings of one record": "/console/findings?status=&record_ref=rec-1",
    "record status and timeline (1,000 events)": "/console/records/rec-1",
    "record as of a date": "/console/records/rec-1?as_of=2024-01-01",
    "accounting": "/console/records/rec-1/accounting?since=2020-01-01",
    "accounting CSV": "/console/records/rec-1/accounting.csv?since=2020-01-01",
    "access log": "/console/access-log",
    "access log, role + day range":
        "/console/access-log?role=billing&since=2024-03-01&until=2024-03-31",
    "exports": "/console/exports",
}  # fmt: skip


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def _timed(client: httpx.Client, path: str, runs: int) -> dict[str, float]:
    client.get(path)  # warm-up: templates compiled, caches filled
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path, follow_redirects=False)
        samples.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}: {response.text[:300]}")
    return _ms(samples)


def _bare(runs: int) -> dict[str, float]:
    with load.bare_server(1) as base, httpx.Client(base_url=base) as client:
        return _timed(client, "/ping", runs)


def pages(env: dict[str, str], token: str, paths: dict[str, str], runs: int) -> dict[str, Any]:
    """Serve the store, log in as a compliance officer and time every page."""
    result: dict[str, Any] = {}
    with load.service_server(env, 1) as server, httpx.Client(base_url=server.base) as client:
        login = client.post("/console/login", data={"api_key": token},
                            headers={"Origin": server.base}, follow_redirects=False)  # fmt: skip
        if login.status_code != 303:
            raise SystemExit(f"login failed: {login.status_code} {login.text[:300]}")
        with console.status("timing pages…") as status:
            for label, path in paths.items():
                status.update(f"timing {label}…")
                result[label] = _timed(client, path, runs)
    return result


def _environment(settings: Settings, projections: str) -> dict[str, str]:
    env = {"DISCLOSURE_AUDIT_HOME": str(settings.home), "DISCLOSURE_AUDIT_PROJECTIONS": projections}
    if settings.database_url:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = settings.database_url
    return env


def demo(store: str, runs: int) -> dict[str, Any]:
    """The demo scenarios on a fresh store of the given kind, as ``serve --demo`` loads them."""
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = stack.enter_context(_database())[1] if store == "postgresql" else None
        settings = Settings(home=home, database_url=url)
        services = build_services(settings)
        with console.status(f"loading the demo ({store})…"):
            for ref, fact in demo_submissions():
                services.ingest.record_facts(DEMO_TENANT, [Submission(ref, fact)])
            services.projector.catch_up()
        token = services.keys.create(DEMO_TENANT, {Role.COMPLIANCE}, "bench")[1]
        services.close()
        return pages(_environment(settings, "in-process"), token, DEMO_PAGES, runs)


@contextlib.contextmanager
def _database(reuse: str | None = None, keep: bool = False) -> Iterator[tuple[str, str]]:
    """A scratch PostgreSQL database (dropped after unless kept), or a kept one; name, URL."""
    name = reuse or f"da_bench_{uuid4().hex[:8]}"
    if not reuse:
        with psycopg.connect(queries.ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, urlunsplit(urlsplit(queries.ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        if keep or reuse:
            console.print(f"kept database {name}; measure it again with --reuse {name}")
        else:
            with psycopg.connect(queries.ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def large(events: int, reuse: str | None, keep: bool, runs: int) -> dict[str, Any]:
    """bench.queries' synthetic store, loaded and projected here or reused."""
    with contextlib.ExitStack() as stack:
        name, url = stack.enter_context(_database(reuse, keep))
        # A kept database needs its master key again: its home is kept beside it, by name.
        home = (Path(tempfile.gettempdir()) / name if reuse or keep
                else Path(stack.enter_context(tempfile.TemporaryDirectory())))  # fmt: skip
        settings = Settings(home=home, database_url=url, projections="external")
        services = build_services(settings)
        if not reuse:
            queries.load(services, events)
        with console.status("projecting…"):
            services.projector.catch_up()
        count = services.audit.recorder.max_notification_id() or 0
        token = services.keys.create(queries.TENANT, {Role.COMPLIANCE}, "bench")[1]
        services.close()
        env = _environment(settings, "external")
        return {"events": count} | pages(env, token, LARGE_PAGES, runs)


def report(result: dict[str, Any]) -> None:
    """One table per store, the bare endpoint's figures on top."""
    wide = Console(width=140)
    bare = result["baseline: bare endpoint"]
    for name, target in (("demo, SQLite", 300), ("demo, PostgreSQL", 300), ("large", 500)):
        if name not in result:
            continue
        figures = result[name]
        title = f"Console pages, {name}" + (
            f" ({figures['events']:,} events)" if "events" in figures else ""
        )
        table = Table("page", "p50 ms", "p95 ms", "max ms", f"≤ {target} ms", title=title)
        table.add_row("baseline: bare endpoint", *(f"{bare[k]:.1f}" for k in bare), "")
        for label, value in figures.items():
            if isinstance(value, dict):
                ok = "yes" if value["max_ms"] <= target else "NO"
                table.add_row(label, *(f"{value[k]:.1f}" for k in value), ok)
        wide.print(table)


def main() -> None:
    """Measure the demo on both stores, then the large store; print or emit JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reuse", metavar="DATABASE", help="a database kept with --keep")
    parser.add_argument("--keep", action="store_true", help="keep the large store for --reuse")
    parser.add_argument("--skip-demo", action="store_true", help="measure the large store only")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"runs": args.runs, "baseline: bare endpoint": _bare(args.runs)}
    if not args.skip_demo:
        result["demo, SQLite"] = demo("sqlite", args.runs)
        result["demo, PostgreSQL"] = demo("postgresql", args.runs)
    if args.events or args.reuse:
        result["large"] = large(args.events, args.reuse, args.keep, args.runs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
