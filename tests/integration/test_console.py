"""The console's security and its pages, in process on both stores (the browser walk is in
tests/e2e/test_console_browser.py): login, sessions, CSRF, tenant isolation, self-audit."""

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import Role
from service.console.pages import COOKIE
from tests.conftest import Api, post_scenarios
from tests.factories import example

SAME_SITE = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}


def _load(api: Api) -> int:
    last = post_scenarios(api, api.writer())
    api.services.projector.catch_up()
    return last


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def _login(client: TestClient, token: str, target: str = "/console/") -> None:
    response = client.post(
        "/console/login",
        data={"api_key": token, "next": target},
        headers=SAME_SITE,
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == target


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "every page of a session carries its CSRF token"
    return found.group(1)


@pytest.fixture
def officer(api: Api) -> Iterator[TestClient]:
    """A browser-like client of the same app, logged in as a compliance officer."""
    with TestClient(api.app) as client:
        _login(client, _token(api.key(Role.COMPLIANCE)))
        yield client


def test_a_logged_out_visit_lands_on_the_login_form(api: Api) -> None:
    for path in ("/console/", "/console/findings?rule=PN-1", "/console/records/jr-2041",
                 "/console/exports"):  # fmt: skip
        response = api.client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login?next=")
    page = api.client.get("/console/findings?rule=PN-1")  # followed
    assert page.status_code == 200
    assert 'name="api_key"' in page.text
    assert 'value="/console/findings?rule=PN-1"' in page.text, "it comes back where it was"
    assert api.client.get("/", follow_redirects=False).headers["location"] == "/console/"


def test_login_needs_a_valid_key_with_the_compliance_role(api: Api) -> None:
    wrong = api.client.post("/console/login", data={"api_key": "da_nope"}, headers=SAME_SITE)
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text
    ingest_only = _token(api.key(Role.INGEST))
    refused = api.client.post("/console/login", data={"api_key": ingest_only}, headers=SAME_SITE)
    assert refused.status_code == 401
    assert "lacks the compliance role" in refused.text
    assert COOKIE not in refused.cookies


def test_the_session_cookie_is_httponly_strict_and_scoped_and_ends_at_logout(api: Api) -> None:
    token = _token(api.key(Role.COMPLIANCE))
    response = api.client.post(
        "/console/login", data={"api_key": token}, headers=SAME_SITE, follow_redirects=False
    )
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert token not in cookie, "the cookie carries a session token, never the API key"
    assert "Secure" not in cookie, "plain HTTP (the embedded default on loopback)"
    with TestClient(api.app) as proxied:
        over_tls = proxied.post(
            "/console/login",
            data={"api_key": token},
            headers={**SAME_SITE, "X-Forwarded-Proto": "https"},
            follow_redirects=False,
        )
    assert "Secure" in over_tls.headers["set-cookie"]
    page = api.client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    logout = api.client.post(
        "/console/logout", data={"csrf_token": _csrf(page.text)}, headers=SAME_SITE,
        follow_redirects=False,
    )  # fmt: skip
    assert logout.status_code == 303
    assert api.client.get("/console/", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions_at_once(api: Api, officer: TestClient) -> None:
    assert officer.get("/console/", follow_redirects=False).status_code == 200
    for key in api.services.keys.list(api.tenant):
        api.services.keys.revoke(key.key_id)
    assert officer.get("/console/", follow_redirects=False).status_code == 303


def test_another_tenants_record_is_a_404_page_like_an_unknown_one(api: Api) -> None:
    _load(api)
    with TestClient(api.app) as stranger:
        _login(stranger, _token(api.key(Role.COMPLIANCE, tenant=api.tenant + "-x")))
        for path in ("/console/records/jr-2041", "/console/records/jr-2041/accounting",
                     "/console/records/nobody-1"):  # fmt: skip
            response = stranger.get(path)
            assert response.status_code == 404, path
            assert "There is no record with this reference." in response.text
            assert "jr-2041</h1>" not in response.text
        findings = stranger.get("/console/findings?status=").text
        assert "No findings match." in findings


def test_a_forged_cross_site_post_is_refused_and_changes_nothing(
    api: Api, officer: TestClient
) -> None:
    _load(api)
    queue = officer.get("/console/findings", params={"rule": "LG-3"}).text
    token = _csrf(queue)
    finding = re.search(r'action="/console/findings/([0-9a-f-]+)/acknowledgement"', queue)
    assert finding, "LG-3 is open in the queue"
    url = f"/console/findings/{finding.group(1)}/acknowledgement"
    body = {"resolution": "remediated", "csrf_token": token, "back": "/console/findings"}
    forged = {
        "from another site": ({**body}, {"Origin": "https://evil.example",
                                         "Sec-Fetch-Site": "cross-site"}),
        "with a null origin": ({**body}, {"Origin": "null"}),
        "without the token": ({"resolution": "remediated"}, SAME_SITE),
        "with another token": ({**body, "csrf_token": "x" * 43}, SAME_SITE),
    }  # fmt: skip
    for name, (data, headers) in forged.items():
        response = officer.post(url, data=data, headers=headers, follow_redirects=False)
        assert response.status_code == 403, name
        assert "nothing was done" in response.text or "reload it" in response.text, name
    assert "Acknowledge LG-3" in officer.get("/console/findings", params={"rule": "LG-3"}).text
    done = officer.post(url, data=body, headers=SAME_SITE, follow_redirects=False)
    assert done.status_code == 303
    after = officer.get(done.headers["location"]).text
    assert "Finding acknowledged." in after
    acknowledged = officer.get(
        "/console/findings", params={"rule": "LG-3", "status": "acknowledged"}
    )
    assert "remediated" in acknowledged.text
    # The pages that list a record's findings show the acknowledged one with its resolution.
    shown = officer.get("/console/records/jr-2041")
    assert shown.status_code == 200
    assert "(acknowledged: remediated)" in shown.text


def test_every_page_renders_and_is_in_the_self_audit(api: Api, officer: TestClient) -> None:
    _load(api)
    pages = {
        "/console/": ["Open findings", "Disclosures per month by legal basis", "<svg"],
        "/console/findings?status=open": ["LG-3", "jr-2041"],
        "/console/records/jr-2041": ["Privilege per demand", "pierced", "Timeline", "LG-3"],
        "/console/records/jr-2041?as_of=2026-03-15": ["at the end of 2026-03-15", "Open demands"],
        "/console/records/jr-2041/accounting": ["Suffolk Probate and Family Court", "Print"],
        "/console/access-log?break_glass=true": ["bg-6630", "break-glass"],
        "/console/exports": ["Start export", "What a regulator pins"],
    }
    for path, texts in pages.items():
        response = officer.get(path)
        assert response.status_code == 200, path
        for text in texts:
            assert text in response.text, (path, text)
    csv = officer.get("/console/records/jr-2041/accounting.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("date,last_date,count")
    reads = api.client.get("/v1/audit-reads", params={"limit": 1000},
                           headers=api.key(Role.COMPLIANCE)).json()["items"]  # fmt: skip
    console = [(r["route"], r["record_ref"]) for r in reads if "/console" in r["route"]]
    assert ("GET /console/records/{record_ref}", "jr-2041") in console
    assert ("GET /console/records/{record_ref}/accounting.csv", "jr-2041") in console
    assert {r for r, _ in console} >= {
        "GET /console/",
        "GET /console/findings",
        "GET /console/access-log",
        "GET /console/exports",
    }


def test_bad_filters_are_a_page_that_says_what_to_fix(officer: TestClient) -> None:
    for path, text in {
        "/console/access-log?role=wizard": "is not a role",
        "/console/access-log?since=yesterday": "must be a date",
        "/console/findings?severity=huge": "Severity is low, medium or high",
        "/console/findings?after=x": "not one the console made",
    }.items():
        response = officer.get(path)
        assert response.status_code == 400, path
        assert text in response.text, path
        assert "Traceback" not in response.text


def test_a_long_timeline_is_paged_latest_first_and_every_event_is_reachable(
    api: Api, officer: TestClient
) -> None:
    events = [example("RecordAccessed", occurred_at=f"2026-01-01T10:{n // 60:02d}:{n % 60:02d}Z")
              for n in range(450)]  # fmt: skip
    batch = [{"record_ref": "long-one", **e} for e in events]
    posted = api.client.post("/v1/events:batch", json={"events": batch}, headers=api.writer())
    assert posted.status_code == 201, posted.text
    seen: list[str] = []
    page = officer.get("/console/records/long-one")
    while True:
        assert page.status_code == 200
        shown = re.findall(r'<li id="event-([0-9a-f-]+)"', page.text)
        assert 0 < len(shown) <= 200
        seen = shown + seen
        earlier = re.search(r'<a href="([^"]+)" rel="prev">Earlier events</a>', page.text)
        if earlier is None:
            break
        page = officer.get("/console/records/long-one" + earlier.group(1).replace("&amp;", "&"))
    assert seen == [e["event_id"] for e in events], "each event once, in the order it occurred"
    assert "Events 251 to 450 of 450" in officer.get("/console/records/long-one").text
    oldest = officer.get("/console/records/long-one?upto=50").text
    assert "Events 1 to 50 of 450" in oldest
    assert 'href="?upto=250" rel="next">Later events</a>' in oldest
    assert officer.get("/console/records/long-one?upto=-1").status_code == 400


def test_the_docs_work_offline(api: Api) -> None:
    for path in ("/docs", "/redoc"):
        page = api.client.get(path)
        assert page.status_code == 200
        assert "cdn." not in page.text, f"{path} must not load anything from a CDN"
        assets = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
        assert assets, path
        for asset in assets:
            if asset != "/openapi.json":
                assert api.client.get(asset).status_code == 200, asset


def test_a_second_app_process_serves_the_same_session(api: Api, officer: TestClient) -> None:
    """Sessions live in the store: any worker of the deployment knows them."""
    other = create_app(api.services.settings, api.services)
    with TestClient(other) as client:
        client.cookies.set(COOKIE, officer.cookies[COOKIE], path="/console")
        assert client.get("/console/", follow_redirects=False).status_code == 200
