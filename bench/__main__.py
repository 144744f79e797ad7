"""The whole benchmark suite, every figure beside its baseline from the same run.

    .venv/bin/python -m bench [--seconds 15] [--quick] [--json] [--out FILE]

Needs PostgreSQL (``DISCLOSURE_AUDIT_TEST_DATABASE_URL``, default the local server) and wrk
(Debian's package; installed when missing and run as root). Runs, in order: single-event and
batch ingest against real server processes, a post into a long record warm and after a
restart, projection throughput and lag at half the measured single-event rate, then the
policy, query and export benchmarks, batch ingest into a tenant of 200k events beside a fresh
one, and the console pages (on a 1M-event store: about 20 minutes more, most of it loading).
Nothing else should run on the machine meanwhile.
Results are printed as a table (``--json``: as JSON) and written to ``--out``.
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import ingest, projection
from bench.load import ensure_wrk

console = Console(stderr=True)


def _machine() -> dict[str, Any]:
    cpus = Path("/proc/cpuinfo").read_text().count("processor\t:")
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    pg = subprocess.run(
        ["psql", ingest.ADMIN_URL, "-Atc", "SHOW server_version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {"cpus": cpus, "cpu": model, "python": platform.python_version(), "postgresql": pg}


def _module(name: str, *args: str) -> Any:
    """Another benchmark's JSON; its error instead if it fails (the others still count)."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        console.print(f"[red]bench.{name} failed[/red]: {done.stderr.strip().splitlines()[-1:]}")
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout)


def run(seconds: float, quick: bool, results: dict[str, Any]) -> None:
    """Every measurement, into ``results`` (kept so far if one fails)."""
    ensure_wrk()
    results.update({"machine": _machine(), "seconds per wrk run": seconds})
    results["ingest"] = ingest.measure(seconds)
    single = results["ingest"]["single, PostgreSQL, 2 workers, 64 connections"]
    with (
        tempfile.TemporaryDirectory() as home,
        ingest.scratch_database() as url,
        console.status("projection throughput…"),
    ):
        results["projection throughput"] = projection.throughput(
            Path(home) / "t", url, events=5_000 if quick else 20_000
        )
    with tempfile.TemporaryDirectory() as home, ingest.scratch_database() as url:
        env, token = ingest.store_with_key(Path(home) / "lag", url)
        rate = single["service"]["requests_per_s"] / 2
        with console.status(f"projection lag at {rate:.0f} events/s…"):
            results["projection lag"] = projection.lag_at(
                env, token, url, rate=rate, seconds=seconds * 2
            )
    with console.status("policy, query and export benchmarks…"):
        results["policy"] = _module("policy")
        results["queries"] = _module("queries", "--events", "5000" if quick else "50000")
        results["export"] = _module("export", "--events", "5000" if quick else "50000")
    with console.status("batch ingest into a large tenant…"):
        results["tenant size"] = _module("tenant_size", "--events", "50000" if quick else "200000")
    with console.status("console page benchmarks…"):
        results["console"] = _module("console", "--events", "20000" if quick else "1000000")


def _summary(results: dict[str, Any]) -> Table:
    ing = results["ingest"]
    table = Table("measurement", "this service", "baseline, same run", "ratio", "target")
    pg = ing["single, PostgreSQL, 2 workers, 64 connections"]
    one = ing["single, PostgreSQL, 2 workers, 1 connection"]
    lite = ing["single, SQLite, 1 process, 32 connections"]
    batch = ing["batch of 1000, PostgreSQL, 2 connections"]
    longr = ing["long record, PostgreSQL"]
    lag = results["projection lag"]

    def shot(m: dict[str, Any]) -> str:
        return (
            f"{m['requests_per_s']:,.0f} req/s, p50 {m['p50_ms']:.0f} ms, "
            f"p99 {m['p99_ms']:.0f} ms, {m['errors']} errors"
        )

    table.add_row(
        "single POST, PostgreSQL, 2 workers, 64 conns",
        shot(pg["service"]),
        shot(pg["bare endpoint"]),
        f"{pg['ratio']:.3f}",
        ">= 0.40, p99 <= 3x",
    )
    table.add_row(
        "single POST, PostgreSQL, 1 conn",
        shot(one["service"]),
        shot(one["bare endpoint"]),
        f"{one['ratio']:.3f}",
        "",
    )
    table.add_row(
        "batch of 1,000, PostgreSQL, 2 conns",
        f"{batch['service events/s']:,.0f} events/s",
        f"raw COPY {batch['raw COPY rows/s']:,.0f} rows/s",
        f"{batch['ratio']:.3f}",
        ">= 0.08",
    )
    table.add_row(
        "single POST, SQLite, 1 process, 32 conns",
        shot(lite["service"]),
        shot(lite["bare endpoint"]),
        f"{lite['ratio']:.3f}",
        ">= 0.30",
    )
    table.add_row(
        "post into 10,000-event record vs fresh, warm",
        f"{longr['warm: median ms into long']:.1f} ms",
        f"{longr['warm: median ms into fresh']:.1f} ms",
        f"{longr['warm ratio']:.2f}",
        "<= 1.25",
    )
    table.add_row(
        "the same, first post after a restart",
        f"{longr['cold: median ms into long']:.1f} ms",
        f"{longr['cold: median ms into fresh']:.1f} ms",
        f"{longr['cold ratio']:.2f}",
        "<= 1.25",
    )
    table.add_row(
        "projection throughput",
        f"{results['projection throughput']['events/s']:,.0f} events/s",
        f"ingest {pg['service']['requests_per_s']:,.0f} req/s",
        "",
        ">= ingest",
    )
    table.add_row(f"projection lag at {lag['rate events/s']:.0f} events/s",
                  f"p99 {lag['lag p99 s']:.2f} s, max {lag['lag max s']:.2f} s", "", "",
                  "p99 <= 1 s")  # fmt: skip
    return table


def main() -> None:
    """Run the suite, print it, write it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="length of each wrk run")
    parser.add_argument("--quick", action="store_true", help="smaller data sets")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, default=Path("bench/last-run.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    try:
        run(args.seconds, args.quick, results)
    finally:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    Console().print(_summary(results))
    console.print(f"all figures written to {args.out}")


if __name__ == "__main__":
    main()
