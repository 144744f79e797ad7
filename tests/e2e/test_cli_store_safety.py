"""The command line never starts a key hierarchy by accident, and says which store it used.

Each test runs the installed ``disclosure-audit`` script in a temporary directory, as an
operator would, on SQLite and on a PostgreSQL database of its own.
"""

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import httpx2 as httpx
import psycopg
import pytest
from pydantic import TypeAdapter

from domain import facts
from service.application.ingest import Submission
from service.container import build_services
from service.settings import Settings
from tests.conftest import ADMIN_URL
from tests.e2e.server import ServerProcess, free_port
from tests.factories import example

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("disclosure-audit"))
PASSWORD = "s3cret-pw-never-shown"  # trust auth ignores it; it must still never be printed


@dataclass
class Place:
    """Where a store is (or would be): the environment, the directory a person runs from."""

    store: str
    env: dict[str, str]
    cwd: Path
    root: Path
    label: str  # how the CLI must name the store
    database_url: str | None = None

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the CLI here with only this place's settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISCLOSURE_AUDIT_")}
        env.update(self.env, COLUMNS="200")
        done = subprocess.run(
            [CLI, *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert PASSWORD not in done.stdout + done.stderr, "the database password was printed"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def files(self) -> set[str]:
        """Every file and directory under the test's directory."""
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*")}

    def tables(self) -> set[str]:
        """The tables of the store (none when it was never created)."""
        if self.database_url is None:
            path = self.cwd / ".disclosure-audit" / "audit.sqlite3"
            if not path.exists():
                return set()
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
                query = "SELECT name FROM sqlite_master WHERE type = 'table'"
                return {str(r[0]) for r in conn.execute(query).fetchall()}
        with psycopg.connect(self.database_url) as pg:
            query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            return {str(r[0]) for r in pg.execute(query).fetchall()}

    def settings(self) -> Settings:
        """The same settings, for seeding the store in-process."""
        if self.database_url is None:
            return Settings(home=self.cwd / ".disclosure-audit", _env_file=None)
        return Settings(
            home=self.root / "home",
            database_url=self.database_url,
            master_key_file=Path(self.env["DISCLOSURE_AUDIT_MASTER_KEY_FILE"]),
            log_key_dir=Path(self.env["DISCLOSURE_AUDIT_LOG_KEY_DIR"]),
            _env_file=None,
        )


@pytest.fixture
def place(store: str, tmp_path: Path) -> Iterator[Place]:
    """An empty directory to run from; on PostgreSQL also an empty database of its own."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    if store == "sqlite":
        # No DISCLOSURE_AUDIT_HOME: the default ./.disclosure-audit of the working directory,
        # which is what someone running a command in the wrong directory gets.
        label = f"SQLite {cwd / '.disclosure-audit' / 'audit.sqlite3'}"
        yield Place(store, {}, cwd, tmp_path, label)
        return
    name = f"da_cli_{uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin = urlsplit(ADMIN_URL)
    host = admin.hostname or "127.0.0.1"
    port = admin.port or 5432
    netloc = f"{admin.username or 'postgres'}:{PASSWORD}@{host}:{port}"
    url = urlunsplit(admin._replace(netloc=netloc, path=f"/{name}"))
    keys = tmp_path / "keys"
    env = {
        "DISCLOSURE_AUDIT_DATABASE_URL": url,
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(keys / "master.key"),
        "DISCLOSURE_AUDIT_LOG_KEY_DIR": str(keys / "log-keys"),
    }
    try:
        yield Place(store, env, cwd, tmp_path, f"PostgreSQL {host}:{port}/{name}", url)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


STORE_COMMANDS = [
    ["export", "--tenant", "demo-practice", "--out", "../bundle"],
    ["keys", "list"],
    ["keys", "create", "--tenant", "demo-practice", "--role", "ingest"],
    ["keys", "revoke", "k-1"],
    ["log-key", "--rotate"],
    ["project"],
    ["projections", "rebuild"],
]


def test_commands_that_use_a_store_refuse_a_missing_one_and_create_nothing(place: Place) -> None:
    for args in STORE_COMMANDS:
        done = place.run(*args)
        assert done.returncode != 0, args
        assert place.label.split(" ", 1)[1] in done.stderr, (args, done.stderr)
        assert "disclosure-audit init" in done.stderr, (args, done.stderr)
        assert "DISCLOSURE_AUDIT_HOME" in done.stderr, (args, done.stderr)
        assert place.files() == {"elsewhere"}, (args, place.files())
        assert place.tables() == set(), args
    # The signing key alone: printing the verifier keys never makes the first one.
    done = place.run("log-key")
    assert done.returncode != 0
    assert "no signing key in" in done.stderr
    assert "disclosure-audit init" in done.stderr
    assert place.files() == {"elsewhere"}


def test_an_unreachable_postgresql_is_named_without_its_password(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    place = Place(
        "postgres",
        {
            "DISCLOSURE_AUDIT_DATABASE_URL": f"postgresql://audit:{PASSWORD}@127.0.0.1:{port}/x",
            "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(tmp_path / "keys" / "master.key"),
        },
        tmp_path,
        tmp_path,
        f"PostgreSQL 127.0.0.1:{port}/x",
    )
    for args in (["keys", "list"], ["init"]):
        done = place.run(*args)
        assert done.returncode == 2, args
        assert f"cannot connect to {place.label}" in done.stderr, done.stderr
        assert "DISCLOSURE_AUDIT_DATABASE_URL" in done.stderr
        assert place.files() == set(), args


def test_init_creates_the_store_and_its_keys_once_and_says_so(place: Place) -> None:
    if place.store == "postgres":
        # Production settings: 'serve' would stop on the missing key; 'init' is the explicit
        # act that creates it for a new store.
        place.env["DISCLOSURE_AUDIT_CREATE_MASTER_KEY"] = "false"
        refused = place.run("serve")
        assert refused.returncode == 2
        assert "does not exist; create it with 'disclosure-audit init'" in refused.stderr
        assert place.tables() == set()
    first = place.run("init", "--json")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert made["store"] == place.label
    assert made["store_created"]
    assert made["master_key_created"]
    assert made["signing_key_created"]
    master = Path(made["master_key_file"])
    assert master.stat().st_mode & 0o777 == 0o600
    assert {"da_tenant_log", "da_record_keys"} <= place.tables()

    again = place.run("init")
    assert again.returncode == 0, again.stderr
    assert "exists already" in again.stdout
    assert "Created" not in again.stdout
    # Keys are per tenant log: none has events yet, so there is no key to list, only a hint.
    assert made["verifier_keys"] == []
    assert "log-key --tenant T" in " ".join(again.stdout.split())
    assert json.loads(place.run("init", "--json").stdout) == {
        **made,
        "store_created": False,
        "master_key_created": False,
        "signing_key_created": False,
    }

    # From now on the other commands use this store, and name it.
    listed = place.run("log-key")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == made["verifier_keys"]
    created = place.run("keys", "create", "--tenant", "t-one", "--role", "ingest", "--json")
    assert created.returncode == 0, created.stderr
    assert f"store: {place.label}" in created.stderr
    keys = place.run("keys", "list", "--json")
    assert keys.returncode == 0, keys.stderr
    assert f"store: {place.label}" in keys.stderr
    assert [k["tenant"] for k in json.loads(keys.stdout)] == ["t-one"]
    one = place.run("log-key", "--tenant", "t-one")
    assert one.returncode == 0, one.stderr
    (vkey_one,) = one.stdout.splitlines()
    assert vkey_one.startswith("disclosure-audit.local/t-one+"), vkey_one
    rotated = place.run("log-key", "--rotate", "--tenant", "t-one")
    assert rotated.returncode == 0, rotated.stderr
    assert f"store: {place.label}" in rotated.stderr
    assert rotated.stdout.splitlines()[0] == vkey_one, "the older key stays listed"
    assert len(rotated.stdout.splitlines()) == 2


def test_a_store_that_lost_its_master_key_is_never_given_a_new_one(place: Place) -> None:
    made = json.loads(place.run("init", "--json").stdout)
    master = Path(made["master_key_file"])
    master.unlink()
    for args in (["init"], ["demo"], ["keys", "list"], ["serve", "--port", str(free_port())]):
        done = place.run(*args)
        assert done.returncode != 0, args
        assert str(master) in done.stderr, (args, done.stderr)
        assert "DISCLOSURE_AUDIT_MASTER_KEY_FILE" in done.stderr, (args, done.stderr)
        assert not master.exists(), args


def test_export_fails_on_an_unknown_tenant_record_or_an_empty_scope(place: Place) -> None:
    assert place.run("init").returncode == 0
    loaded = place.run("demo", "--json")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["store"] == place.label
    bundle = place.root / "bundle"

    demo = ["--tenant", "demo-practice"]
    refused = {
        "unknown tenant": ["--tenant", "no-such-practice"],
        "unknown record": [*demo, "--record", "jr-2041", "--record", "x-9"],
        "empty dates": [*demo, "--since", "2001-01-01", "--until", "2001-12-31"],
    }
    for case, args in refused.items():
        done = place.run("export", *args, "--out", str(bundle))
        assert done.returncode != 0, (case, done.stdout)
        assert place.label in done.stderr, case
        assert "Wrote" not in done.stdout, case
        assert not bundle.exists(), case
    assert (
        "no-such-practice"
        in place.run("export", *refused["unknown tenant"], "--out", str(bundle)).stderr
    )
    assert (
        "number 2" in place.run("export", *refused["unknown record"], "--out", str(bundle)).stderr
    )

    empty = place.run(
        "export", *refused["empty dates"], "--out", str(bundle), "--allow-empty", "--json"
    )
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["events"] == 0
    assert (bundle / "checkpoint.txt").exists()

    full = place.run(
        "export", "--tenant", "demo-practice", "--out", str(place.root / "full"), "--json"
    )
    assert full.returncode == 0, full.stderr
    summary = json.loads(full.stdout)
    assert summary["events"] > 0
    assert summary["store"] == place.label
    # A bundle is a plaintext copy of PHI: only its owner may read it.
    written = place.root / "full"
    assert stat.S_IMODE(written.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in written.rglob("*") if p.is_file()} == {0o600}


def _seed(settings: Settings, events: int) -> None:
    """Write events through the ingest code path, in batches (faster than over HTTP)."""
    adapter: TypeAdapter[facts.FactBase] = TypeAdapter(facts.Fact)
    services = build_services(settings, create=False)
    try:
        batch: list[Submission] = []
        for n in range(events):
            kind = "RecordOpened" if n % 4 == 0 else "RecordAccessed"
            batch.append(Submission(f"r-{n // 4}", adapter.validate_python(example(kind))))
            if len(batch) == 100:
                services.ingest.record_facts("t-load", batch)
                batch = []
        if batch:
            services.ingest.record_facts("t-load", batch)
        services.projector.catch_up()
    finally:
        services.close()


def _read_models(place: Place) -> dict[str, int]:
    counts = {}
    with closing(sqlite3.connect(str(place.cwd / ".disclosure-audit" / "audit.sqlite3"))) as conn:
        for table in ("pv_facts", "pv_findings", "pv_acks"):
            counts[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        counts["tracking"] = int(
            conn.execute("SELECT notification_id FROM pv_tracking").fetchone()[0]
        )
    return counts


@pytest.mark.parametrize("store", ["sqlite"])
def test_projections_rebuild_works_beside_a_running_server_on_sqlite(place: Place) -> None:
    assert place.run("init").returncode == 0
    _seed(place.settings(), 1200)
    before = _read_models(place)
    assert before["pv_facts"] == 900
    # Small pages: many write transactions, each of which used to meet the server's own
    # projection worker and fail at once with "database is locked".
    place.env["DISCLOSURE_AUDIT_PROJECTION_PAGE_SIZE"] = "10"
    port = free_port()
    server = ServerProcess(
        [CLI, "serve", "--port", str(port)],
        {"DISCLOSURE_AUDIT_HOME": str(place.cwd / ".disclosure-audit"), **place.env},
        port,
    )
    try:
        server.wait_ready()
        for _ in range(3):
            done = place.run("projections", "rebuild", "--json")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["notification"] == before["tracking"]
        assert httpx.get(server.base + "/readyz", timeout=10).status_code == 200
    finally:
        server.kill(signal.SIGTERM)
    assert _read_models(place) == before


@pytest.mark.parametrize("store", ["postgres"])
def test_project_exits_cleanly_on_sigterm(place: Place) -> None:
    place.env["DISCLOSURE_AUDIT_PROJECTIONS"] = "external"
    assert place.run("init").returncode == 0
    assert place.run("demo").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCLOSURE_AUDIT_")}
    worker = subprocess.Popen(
        [CLI, "project"],
        cwd=place.cwd,
        env={**env, **place.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
        assert f"store: {place.label}" in first, first
        assert "Projecting from notification" in worker.stderr.readline()
        time.sleep(1.5)  # caught up, and waiting for NOTIFY
        worker.send_signal(signal.SIGTERM)
        _, rest = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "Traceback" not in rest, rest
    assert PASSWORD not in rest
    assert worker.returncode == 0, rest
    assert "Stopped at notification" in rest
