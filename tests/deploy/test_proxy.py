"""The compose stack's front door: only TLS is published, and slow clients are cut off.

docker/nginx.conf is checked for what the stack promises (README "Docker"). What needs an nginx
binary (parsing the file, the behaviour against slow clients) is listed in README "Docker".
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/compose.yml as Compose reads it."""
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def nginx() -> str:
    """docker/nginx.conf without its comments."""
    text = (DOCKER / "nginx.conf").read_text()
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _directive(config: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{re.escape(name)}[ \t]+([^;\n{{]+);", config, flags=re.MULTILINE)


def _published(service: dict[str, Any]) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


def test_only_the_tls_proxy_is_published_to_the_network(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _published(services["proxy"]) == ["443:8443"]
    assert not _published(services["api"]), "the API speaks plain HTTP: never publish it"
    assert not _published(services["projector"])
    assert not _published(services["postgres"])
    for name, service in services.items():
        if name == "proxy":
            continue
        for port in _published(service):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_the_proxy_terminates_tls_and_forwards_to_the_api(
    compose: dict[str, Any], nginx: str
) -> None:
    assert _directive(nginx, "listen") == ["8443 ssl"], "TLS only: no plain listener"
    assert _directive(nginx, "ssl_certificate") == ["/run/secrets/tls_cert"]
    assert _directive(nginx, "ssl_certificate_key") == ["/run/secrets/tls_key"]
    assert _directive(nginx, "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    assert _directive(nginx, "server") == ["api:8000"]
    assert _directive(nginx, "proxy_pass") == ["http://api"]
    proxy = compose["services"]["proxy"]
    assert set(proxy["secrets"]) == {"tls_cert", "tls_key"}
    assert {"tls_cert", "tls_key"} <= set(compose["secrets"])
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    assert proxy["read_only"] is True
    assert proxy["cap_drop"] == ["ALL"]
    assert "unprivileged" in proxy["image"], "a non-root nginx, so all capabilities can go"


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return int(match[1])


def test_slow_clients_are_cut_off_and_bodies_buffered(nginx: str) -> None:
    for name in ("client_header_timeout", "client_body_timeout", "keepalive_timeout"):
        (value,) = _directive(nginx, name)
        assert _seconds(value) <= 30, f"{name} {value}: a slow client holds a connection that long"
    assert _directive(nginx, "proxy_request_buffering") == ["on"], (
        "the API gets only bodies that arrived in full"
    )
    assert _directive(nginx, "reset_timedout_connection") == ["on"]


def test_the_proxy_limits_match_the_api_and_log_no_paths(nginx: str) -> None:
    (size,) = _directive(nginx, "client_max_body_size")
    match = re.fullmatch(r"(\d+)m", size)
    assert match, size
    assert int(match[1]) * 1024 * 1024 == Settings.model_fields["max_body_bytes"].default
    assert _directive(nginx, "access_log") == ["off"], "request paths carry record refs"
    assert _directive(nginx, "server_tokens") == ["off"]


def test_the_proxy_answers_its_own_refusals_as_problem_json(nginx: str) -> None:
    pages = _directive(nginx, "error_page")
    covered = {code for page in pages for code in page.split()[:-1]}
    assert {"400", "408", "413", "414", "502", "503", "504"} <= covered
    bodies = re.findall(r"return (\d{3}) '(\{.*\})';", nginx)
    assert {status for status, _ in bodies} == {"400", "408", "413", "414", "503"}
    assert _directive(nginx, "default_type") == ["application/problem+json"] * len(bodies)
    for status, body in bodies:
        assert json.loads(body)["status"] == int(status)
