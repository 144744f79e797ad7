"""A compliance officer's walk through the console in a real browser, on the demo data.

Playwright for Python drives Debian's chromium (scripts/ensure-browser installs it when missing;
Playwright downloads no browser). The service runs as an operator starts it (``serve --demo``
on the embedded store). Each page is checked with axe-core, injected from npm's package, for
serious or critical accessibility violations, and screenshotted to artifacts/console/.
"""

import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_api

from tests.e2e.server import ROOT, ServerProcess, free_port

ARTIFACTS = ROOT / "artifacts" / "console"
_KEY = re.compile(r"\bda_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\b")


@pytest.fixture(scope="module")
def axe() -> str:
    """The path of axe.min.js (and chromium installed)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "ensure-browser")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A served demo store: its base URL and the printed API key."""
    home = tmp_path_factory.mktemp("console-home")
    port = free_port()
    server = ServerProcess(
        [str(ROOT / ".venv" / "bin" / "disclosure-audit"), "serve", "--demo"],
        {"DISCLOSURE_AUDIT_HOME": str(home), "DISCLOSURE_AUDIT_PORT": str(port),
         "DISCLOSURE_AUDIT_LOG_FORMAT": "text", "DISCLOSURE_AUDIT_TIMEZONE": "America/New_York"},
        port,
    )  # fmt: skip
    try:
        server.wait_ready()
        key = next(m.group(0) for line in server.lines if (m := _KEY.search(line)))
        yield server.base, key
    finally:
        server.kill()


@pytest.fixture(scope="module")
def browser(axe: str) -> Iterator[Any]:
    """Debian's chromium, once ensure-browser (run for ``axe``) has installed it."""
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield launched
        launched.close()


def _check(page: Any, axe: str, name: str) -> None:
    """No serious or critical axe-core violation; a screenshot for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    # Evaluated through the DevTools protocol: the page's CSP (no inline script) stays on.
    page.evaluate(Path(axe).read_text())
    result = page.evaluate("async () => await axe.run(document)")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: {bad}"


def test_an_officer_walks_the_scenarios_in_a_browser(
    demo: tuple[str, str], browser: Any, axe: str, tmp_path: Path
) -> None:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        _walk(page, demo, axe, tmp_path)
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "failed-here.png"), full_page=True)
        (ARTIFACTS / "failed-here.html").write_text(page.content())
        raise
    finally:
        context.close()


def _walk(page: Any, demo: tuple[str, str], axe: str, tmp_path: Path) -> None:
    base, key = demo
    refused: list[str] = []  # what the pages' own CSP blocked: a style or script of ours
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)

    # Logged out, a deep link lands on the login form, and comes back after it.
    page.goto(f"{base}/console/findings")
    assert page.locator("#api_key").is_visible()
    _check(page, axe, "01-login")
    page.fill("#api_key", "da_wrong")
    page.click("button:has-text('Log in')")
    assert "unknown or revoked" in page.locator("[role=alert]").inner_text()
    # By keyboard: the first Tab reaches "Skip to content", whose focus is visible, and Enter
    # in the key field submits the form.
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.textContent.trim(),"
        " getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused[0] == "Skip to content", focused
    assert focused[1] != "none", "a visible focus ring"
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    page.focus("#api_key")
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/console/findings")
    _check(page, axe, "02-findings")

    # LG-3: the order did not reach the psychotherapy notes sent to the court (PRODUCT.md 7.1).
    row = page.locator("tr[data-rule='LG-3']")
    assert row.count() == 1
    assert "jr-2041" in row.inner_text()
    row.locator("select[name=resolution]").select_option("remediated")
    row.locator("input[name=note]").fill("Court clerk asked to return the notes.")
    row.locator("button", has_text="Acknowledge LG-3").click()
    page.wait_for_url(re.compile(r".*/console/findings\?.*done=.*"))
    assert "Finding acknowledged." in page.locator("[role=status]").inner_text()
    assert page.locator("tr[data-rule='LG-3']").count() == 0, "no longer open"
    page.goto(f"{base}/console/findings?status=acknowledged&rule=LG-3")
    assert "remediated" in page.locator("tr[data-rule='LG-3']").inner_text()

    # The record and its timeline, with the finding beside the disclosure it judges.
    page.goto(f"{base}/console/findings?status=&rule=LG-3")
    page.locator("tr[data-rule='LG-3'] a", has_text="jr-2041").click()
    page.wait_for_url(f"{base}/console/records/jr-2041")
    assert "pierced" in page.locator("main").inner_text()
    timeline = page.locator("ol.timeline").inner_text()
    assert "Suffolk Probate and Family Court" in timeline
    assert "LG-3" in timeline
    assert "EST" in timeline or "EDT" in timeline, "times in the practice's zone"
    _check(page, axe, "03-record")
    page.fill("#as_of", "2026-03-15")
    page.click("button:has-text('Show')")
    then = page.locator("main").inner_text()
    assert "at the end of 2026-03-15" in then
    assert "dem-jr-1 from Hale & Burke LLP" in then, "the subpoena was still open that day"
    assert "pierced" not in then, "the order came later"

    # A record that is not the practice's (or does not exist) is a page that says so.
    missing = page.goto(f"{base}/console/records/no-such-record")
    assert missing is not None
    assert missing.status == 404
    assert "There is no record with this reference." in page.locator("main").inner_text()
    _check(page, axe, "03b-not-found")

    # The accounting, its print view and its CSV.
    page.goto(f"{base}/console/records/jr-2041/accounting")
    assert "Made without a valid basis" in page.locator("table.accounting").inner_text()
    _check(page, axe, "04-accounting")
    page.emulate_media(media="print")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "05-accounting-print.png"), full_page=True)
    assert not page.locator("header.top").is_visible(), "print drops the navigation"
    assert page.locator("table.accounting").is_visible()
    page.emulate_media(media="screen")
    with page.expect_download() as csv_download:
        page.click("text=Download CSV")
    csv = Path(csv_download.value.path()).read_text()
    assert csv.startswith("date,last_date,count")
    assert "Suffolk Probate and Family Court" in csv

    # The access log with a filter.
    page.goto(f"{base}/console/access-log")
    page.select_option("#a-glass", "true")
    page.click("button:has-text('Filter')")
    assert "bg-6630" in page.locator("main table").inner_text()
    _check(page, axe, "06-access-log")

    # The overview.
    page.goto(f"{base}/console/")
    assert page.locator("svg.chart").count() >= 3
    _check(page, axe, "07-overview")

    # Start an export, follow it, download the bundle.
    page.goto(f"{base}/console/exports")
    page.fill("#e-refs", "jr-2041")
    page.click("button:has-text('Start export')")
    page.wait_for_url(re.compile(r".*/console/exports\?started=.*"))
    page.locator("a", has_text="Download .tar.gz").first.wait_for(timeout=60_000)
    _check(page, axe, "08-exports")
    with page.expect_download() as bundle_download:
        page.locator("a", has_text="Download .tar.gz").first.click()
    target = tmp_path / "bundle.tar.gz"
    bundle_download.value.save_as(target)
    with tarfile.open(target) as bundle:
        names = bundle.getnames()
    assert any(n.endswith("checkpoint.txt") for n in names), names
    vkey, checkpoint = (k.inner_text() for k in page.locator("pre.key").all())
    assert re.fullmatch(r"\S+\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+\s*", vkey.splitlines()[0]), vkey
    assert checkpoint.startswith("disclosure-audit.local/demo-practice\n"), checkpoint

    assert not refused, refused

    # Logging out ends it.
    page.click("button:has-text('Log out')")
    page.goto(f"{base}/console/")
    assert page.locator("#api_key").is_visible()
