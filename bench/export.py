"""Export and verify throughput and peak memory, beside raw baselines from the same run.

    .venv/bin/python -m bench.export [--events 1000000] [--json]

Loads N synthetic events (a realistic mix over 500 records) into a fresh SQLite store, then runs
``disclosure-audit export`` and ``disclosure-audit verify`` as separate processes, at N/10 and at
N events, each reporting its own peak resident memory. Baselines: a raw scan of the tenant-log
rows (no decryption, no files) for export, and reading plus SHA-256 of the bundle's files for
verify.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from domain import facts
from service.application.ingest import Submission
from service.container import build_services
from service.settings import Settings
from tests.factories import example

console = Console(stderr=True)
TENANT = "bench-practice"
# Peak memory is VmHWM of the child's own image: ru_maxrss would include the parent's high-water
# mark from before exec (Linux keeps it across exec), and the parent has just loaded the events.
_MEASURE = (
    "import re, sys, time\n"
    "from pathlib import Path\n"
    "from service.cli import app\n"
    "started = time.perf_counter()\n"
    "code = 0\n"
    "try:\n"
    "    code = app(sys.argv[1:], standalone_mode=False)\n"
    "finally:\n"
    "    status = Path('/proc/self/status').read_text()\n"
    "    usage = re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)\n"
    "    sys.stderr.write(f'MEASURE {time.perf_counter() - started} {usage}\\n')\n"
    # Without standalone mode a command that fails returns its exit code instead of exiting.
    "sys.exit(code if isinstance(code, int) else 0)\n"
)


def _mix(n: int) -> facts.FactBase:
    kind = n % 10
    if kind < 6:
        return facts.RecordAccessed.model_validate(example("RecordAccessed"))
    if kind < 9:
        return facts.DisclosureMade.model_validate(
            example("DisclosureMade", legal_basis={"kind": "treatment"}, purpose_of_use="TREAT")
        )
    return facts.AuthorizationGranted.model_validate(
        example("AuthorizationGranted", authorization_id=f"auth-{n}")
    )


def load(settings: Settings, count: int) -> float:
    """Ingest ``count`` events in batches of 1000; returns events per second."""
    services = build_services(settings)
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"loading {count:,} events", total=count)
        for start in range(0, count, 1000):
            batch = [
                Submission(f"rec-{n % 500}", _mix(n))
                for n in range(start, min(count, start + 1000))
            ]
            services.ingest.record_facts(TENANT, batch)
            progress.advance(task, len(batch))
    rate = count / (time.perf_counter() - started)
    services.close()
    return rate


def run(env: dict[str, str], *args: str) -> tuple[float, int]:
    """Run a CLI command in its own process: (seconds, peak RSS in KiB)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    line = next((x for x in done.stderr.splitlines() if x.startswith("MEASURE ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{args[0]} failed: {done.stderr[-2000:]}")
    _, seconds, rss = line.split()
    return float(seconds), int(rss)


def raw_scan(settings: Settings, size: int) -> float:
    """Rows per second of a plain scan of the tenant log (the floor under export)."""
    services = build_services(settings)
    started = time.perf_counter()
    last = rows = 0
    while last < size:
        page = services.audit.tenant_log.leaves(TENANT, last, size, 1000)
        if not page:
            break
        last, rows = int(page[-1]["position"]), rows + len(page)
    services.close()
    return rows / (time.perf_counter() - started)


def raw_read(directory: Path) -> float:
    """Bytes per second of reading and hashing the bundle (the floor under verify)."""
    started, total = time.perf_counter(), 0
    for path in directory.iterdir():
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hashlib.sha256(chunk)
                total += len(chunk)
    return total / (time.perf_counter() - started)


def main() -> None:
    """Measure at N/10 and N events and print the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = Settings(home=home)
        env = {**os.environ, "DISCLOSURE_AUDIT_HOME": str(home)}
        small = max(1, args.events // 10)
        run(env, "init")  # as an operator starts a store: with its checkpoint signing key
        load_rate = load(settings, small)
        for size in (small, args.events):
            if size != small:
                load_rate = load(settings, size - small)
            out = Path(tmp) / f"bundle-{size}"
            with console.status(f"export and verify at {size:,} events…"):
                export_s, export_kib = run(env, "export", "--tenant", TENANT, "--out", str(out),
                                           "--json")  # fmt: skip
                (Path(tmp) / "key.txt").write_text((out / "public-key.txt").read_text())
                verify_s, verify_kib = run(env, "verify", str(out), "--public-key",
                                           str(Path(tmp) / "key.txt"), "--json")  # fmt: skip
                scan = raw_scan(settings, size)
                read = raw_read(out)
            bundle_bytes = sum(p.stat().st_size for p in out.iterdir())
            rows.append({
                "events": size, "load_per_s": load_rate,
                "export_per_s": size / export_s, "export_peak_mib": export_kib / 1024,
                "raw_scan_per_s": scan,
                "verify_per_s": size / verify_s, "verify_peak_mib": verify_kib / 1024,
                "raw_read_hash_mib_s": read / 2**20, "bundle_mib": bundle_bytes / 2**20,
            })  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        "events", "export/s", "export peak MiB", "baseline: raw scan rows/s", "verify/s",
        "verify peak MiB", "baseline: read+hash MiB/s", "bundle MiB", title="Export and verify",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            f"{r['events']:,}", f"{r['export_per_s']:,.0f}", f"{r['export_peak_mib']:.0f}",
            f"{r['raw_scan_per_s']:,.0f}", f"{r['verify_per_s']:,.0f}",
            f"{r['verify_peak_mib']:.0f}", f"{r['raw_read_hash_mib_s']:,.0f}",
            f"{r['bundle_mib']:.0f}",
        )  # fmt: skip
    wide = Console(width=160)
    wide.print(table)
    wide.print(f"ingest (batches of 1000, SQLite): {rows[-1]['load_per_s']:,.0f} events/s")


if __name__ == "__main__":
    main()
