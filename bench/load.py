"""Real processes and a real load generator for the benchmarks: ``disclosure-audit serve`` and
the bare baseline app started as an operator would, driven by ``wrk`` over loopback.

wrk is Debian's package (``apt-get install wrk``); it runs in its own process with its own event
loop, so it is not the bottleneck (check: it drives the bare endpoint far faster than the
service). Every run is bounded in time and connections.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.server import ServerProcess, free_port

__all__ = ["LUA", "bare_server", "ensure_wrk", "service_server", "wrk"]

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "post_event.lua"
CLI = str(Path(sys.executable).with_name("disclosure-audit"))
UVICORN_BARE = [sys.executable, "-m", "uvicorn", "bench.bare:app", "--http", "httptools"]
UVICORN_BARE += ["--no-access-log", "--log-level", "warning"]


def ensure_wrk() -> str:
    """The wrk binary; installs Debian's package when it is missing and we may."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: run 'apt-get install wrk', then try again")
    return found


def wrk(
    base: str,
    key: str,
    *,
    connections: int,
    seconds: float,
    records: int = 1000,
    batch: int = 0,
    threads: int = 2,
) -> dict[str, Any]:
    """One wrk run of unique RecordAccessed posts; its figures (req/s, p50/p99 ms, errors)."""
    nonce = int.from_bytes(os.urandom(4), "big")
    command = [
        ensure_wrk(),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        base,
        "--",
        key,
        str(records),
        str(nonce),
        str(batch),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK-JSON "))
    raw = json.loads(line.removeprefix("WRK-JSON "))
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(
        raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx")
    )
    return {
        "requests_per_s": raw["requests"] / seconds_run,
        "events_per_s": raw["requests"] * max(1, batch) / seconds_run,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "errors": errors,
        "timeouts": raw["timeouts"],
        "non_2xx": raw["non_2xx"],
        "connections": connections,
    }


@contextmanager
def service_server(env: dict[str, str], workers: int) -> Iterator[ServerProcess]:
    """``disclosure-audit serve`` in its own process group, stopped (SIGTERM) on exit."""
    port = free_port()
    server = ServerProcess(
        [CLI, "serve", "--port", str(port), "--workers", str(workers)],
        {**env, "DISCLOSURE_AUDIT_LOG_LEVEL": "WARNING"},
        port,
    )
    try:
        server.wait_ready()
        yield server
    finally:
        _stop(server)


@contextmanager
def bare_server(workers: int) -> Iterator[str]:
    """The baseline app of ``bench/bare.py`` under uvicorn with the service's protocol."""
    port = free_port()
    server = ServerProcess(
        [*UVICORN_BARE, "--port", str(port), "--workers", str(workers)],
        {},
        port,
    )
    try:
        server.wait_ready()
        yield server.base
    finally:
        _stop(server)


def _stop(server: ServerProcess) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()
