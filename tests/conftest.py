"""Fixtures: settings and services for each store, API clients with keys of chosen roles.

PostgreSQL is real: one database per test session, created and dropped here. Tests isolate
themselves with unique tenant ids instead of wiping tables. If PostgreSQL is unreachable the
suite fails; it never skips.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import Role
from service.container import Services, build_services
from service.demo import scenario_events
from service.settings import Settings

ADMIN_URL = os.environ.get(
    "DISCLOSURE_AUDIT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    name = f"da_test_{uuid4().hex[:10]}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL at {ADMIN_URL} is unreachable ({error}); run scripts/ensure-postgres "
            "or set DISCLOSURE_AUDIT_TEST_DATABASE_URL",
            pytrace=False,
        )
    yield _with_database(ADMIN_URL, name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> str:
    """The store under test; tests that take it run once per store."""
    return str(request.param)


@pytest.fixture(scope="session")
def session_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One master key and log key directory for the session's shared PostgreSQL database, as
    one deployment has: every test's records there must open with the same master key."""
    return tmp_path_factory.mktemp("keys")


@pytest.fixture
def settings(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for a store, with a fresh home directory (key files, SQLite file)."""
    if store == "postgres":
        keys: Path = request.getfixturevalue("session_keys")
        return Settings(
            home=tmp_path / "home",
            database_url=request.getfixturevalue("postgres_url"),
            master_key_file=keys / "master.key",
            log_key_dir=keys / "log-keys",
            _env_file=None,
        )
    return Settings(
        home=tmp_path / "home", master_key_file=tmp_path / "home" / "master.key", _env_file=None
    )


@pytest.fixture
def own_services(store: str, tmp_path: Path) -> Iterator[Services]:
    """Services on a store of the test's own (a new database on PostgreSQL), for a test whose
    work grows with everything in the store (a rebuild replays the whole log)."""
    home = tmp_path / "own"
    if store == "sqlite":
        built = build_services(Settings(home=home, master_key_file=home / "master.key",
                                        _env_file=None))  # fmt: skip
        yield built
        built.close()
        return
    name = f"da_test_{uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    built = build_services(Settings(home=home, database_url=_with_database(ADMIN_URL, name),
                                    master_key_file=home / "master.key",
                                    log_key_dir=home / "log-keys", _env_file=None))  # fmt: skip
    try:
        yield built
    finally:
        built.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """Open services on the store under test."""
    built = build_services(settings)
    yield built
    built.close()


@dataclass
class Api:
    """A test client bound to a tenant, with a helper to make keys of chosen roles."""

    app: FastAPI
    client: TestClient
    services: Services
    tenant: str

    def key(self, *roles: Role, tenant: str | None = None) -> dict[str, str]:
        """Authorization headers for a new key of this (or another) tenant."""
        _, token = self.services.keys.create(tenant or self.tenant, set(roles) or {Role.INGEST})
        return {"Authorization": f"Bearer {token}"}

    def writer(self, tenant: str | None = None) -> dict[str, str]:
        """Headers of a key that may ingest and query."""
        return self.key(Role.INGEST, Role.COMPLIANCE, tenant=tenant)


@pytest.fixture
def api(settings: Settings, services: Services) -> Iterator[Api]:
    """The HTTP API in-process, on the store under test, for a tenant of its own."""
    app = create_app(settings, services)
    with TestClient(app) as client:
        yield Api(app=app, client=client, services=services, tenant=f"t-{uuid4().hex[:12]}")


@pytest.fixture
def own_api(own_services: Services) -> Iterator[Api]:
    """``api`` on a store of the test's own (see ``own_services``)."""
    app = create_app(own_services.settings, own_services)
    with TestClient(app) as client:
        yield Api(app=app, client=client, services=own_services, tenant=f"t-{uuid4().hex[:12]}")


def post_scenarios(api: Api, headers: dict[str, str]) -> int:
    """POST every demo scenario event over HTTP, as a clinical system would; the last position."""
    last = 0
    for scenario in scenario_events():
        for event in scenario.events:
            response = api.client.post(
                f"/v1/records/{scenario.record_ref}/events", json=event, headers=headers
            )
            assert response.status_code == 201, response.text
            last = response.json()["position"]
    return last


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment that points the CLI at the store of ``settings``."""
    env = {
        "DISCLOSURE_AUDIT_HOME": str(settings.home),
        "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path),
        "DISCLOSURE_AUDIT_LOG_KEY_DIR": str(settings.log_keys_path),
    }
    if settings.database_url is not None:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = settings.database_url
    return env


def new_tenant() -> str:
    """A tenant id used by no other test."""
    return f"t-{uuid4().hex[:12]}"
