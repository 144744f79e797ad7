"""Issue 11, "The accounting hides what it must show", over HTTP on both stores, with the
minimal bodies a clinical system sends: the API's JSON, its CSV and the bundle's
``accounting.csv`` are one accounting (45 CFR 164.528)."""

import csv
import io
import re
import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from domain.policy.accounting import COLUMNS
from domain.policy.rulesets import BUILTIN_RULES
from service.app import create_app
from service.container import build_services
from service.integrity.export import ExportScope, write_bundle
from service.settings import Settings
from tests.conftest import Api
from tests.factories import example

COURT = {"name": "Suffolk Probate and Family Court", "kind": "court"}


def _post(api: Api, record: str, type_: str, when: str, **fields: Any) -> int:
    body = example(type_, occurred_at=when, **fields)
    response = api.client.post(f"/v1/records/{record}/events", json=body, headers=api.writer())
    assert response.status_code == 201, response.text
    position: int = response.json()["position"]
    return position


def _court_releases(api: Api, record: str) -> int:
    """An order for appointments and diagnosis, two releases inside it (posted latest first),
    and one that added psychotherapy notes; returns the last position."""
    _post(api, record, "RecordOpened", "2026-03-01T10:00:00Z")
    _post(api, record, "CourtOrderIssued", "2026-03-02T10:00:00Z")
    release = {"recipient": COURT, "categories": ["appointments"], "purpose_of_use": "HLEGAL",
               "legal_basis": {"kind": "court_order", "reference_id": "ord-1"}}  # fmt: skip
    _post(api, record, "DisclosureMade", "2026-03-20T10:00:00Z", disclosure_id="dis-late",
          **release)  # fmt: skip
    _post(api, record, "DisclosureMade", "2026-03-05T10:00:00Z", disclosure_id="dis-early",
          **release | {"categories": ["diagnosis"]})  # fmt: skip
    return _post(api, record, "DisclosureMade", "2026-03-10T10:00:00Z", disclosure_id="dis-notes",
                 **release | {"categories": ["appointments", "psychotherapy_notes"]})  # fmt: skip


def _accounting(api: Api, record: str, position: int, **params: str) -> list[dict[str, Any]]:
    response = api.client.get(f"/v1/records/{record}/accounting", headers=api.writer(),
                              params={"min_position": str(position), **params})  # fmt: skip
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _api_csv(api: Api, record: str, min_position: int | None = None) -> list[list[str]]:
    response = api.client.get(f"/v1/records/{record}/accounting",
                              params={"min_position": min_position} if min_position else {},
                              headers=api.writer() | {"Accept": "text/csv"})  # fmt: skip
    assert response.status_code == 200, response.text
    header, *rows = csv.reader(io.StringIO(response.text, newline=""))
    assert header == COLUMNS
    return rows


def test_a_summary_never_hides_an_impermissible_release_and_runs_earliest_to_latest(
    api: Api,
) -> None:
    last = _court_releases(api, "acc-1")
    items = _accounting(api, "acc-1", last)
    assert [(i["disclosure_id"], i["count"], i["impermissible"]) for i in items] == [
        ("dis-early", 2, False), ("dis-notes", 1, True)]  # fmt: skip
    summary, notes = items
    # (b)(3): the earliest in full, however the releases were posted, and the date of the last.
    assert (summary["date"], summary["last_date"]) == ("2026-03-05", "2026-03-20")
    assert summary["description"] == "Dates of appointments; diagnosis"  # both, not the first
    assert summary["purpose"] == (
        "For legal proceedings. Basis: an order of a court or administrative tribunal "
        "(45 CFR 164.512(e)(1)(i))."
    )
    assert summary["legal_basis"] == "court_order"
    assert summary["recipient"] == {"name": COURT["name"], "address": None}
    # The release of psychotherapy notes is its own entry, named for what it was.
    assert notes["description"] == "Dates of appointments; psychotherapy notes"
    assert "PN-1" in notes["rules"]
    assert notes["purpose"].startswith("For legal proceedings. Stated basis: an order")
    assert "not permitted" in notes["purpose"]


def test_a_report_posted_alone_is_listed_once_and_so_is_one_with_its_copy(api: Api) -> None:
    _post(api, "acc-2", "RecordOpened", "2026-03-01T10:00:00Z", jurisdiction="US-MA")
    report = _post(api, "acc-2", "MandatedReportFiled", "2026-03-02T10:00:00Z",
                   oral_at="2026-03-02T10:00:00Z", written_at="2026-03-03T10:00:00Z")  # fmt: skip
    alone = _accounting(api, "acc-2", report)
    copy = example("DisclosureMade", occurred_at="2026-03-03T10:00:00Z", disclosure_id="dis-rep",
                   recipient={"name": "Department of Children and Families",
                              "kind": "government_agency",
                              "address": "600 Washington St, Boston MA"},
                   categories=["demographics"], purpose_of_use="PUBHLTH",
                   legal_basis={"kind": "mandated_report", "reference_id": "rep-1"})  # fmt: skip
    response = api.client.post("/v1/records/acc-2/events", json=copy, headers=api.writer())
    assert response.status_code == 201, response.text
    both = _accounting(api, "acc-2", response.json()["position"])
    assert [(i["disclosure_id"], i["kind"], i["count"]) for i in alone] == [
        ("rep-1", "report", 1)]  # fmt: skip
    assert [(i["disclosure_id"], i["kind"], i["count"]) for i in both] == [
        ("rep-1", "report", 1)]  # fmt: skip
    # The copy gave the agency's address; the entry runs from the report to the copy.
    assert both[0]["recipient"]["address"] == "600 Washington St, Boston MA"
    assert (both[0]["date"], both[0]["last_date"]) == ("2026-03-02", "2026-03-03")
    assert both[0]["purpose"].startswith("To report suspected child abuse or neglect")


def test_the_api_csv_and_the_bundle_are_the_same_accounting(api: Api, tmp_path: Path) -> None:
    last = _court_releases(api, "acc-3")
    _post(api, "acc-4", "RecordOpened", "2026-03-01T10:00:00Z")
    formula = _post(api, "acc-4", "DisclosureMade", "2026-03-04T10:00:00Z",
                    recipient={"name": '=HYPERLINK("http://x","y")', "kind": "other"},
                    legal_basis={"kind": "required_by_law"})  # fmt: skip
    json_items = _accounting(api, "acc-3", last)
    # The second record's disclosure came later in the log: wait for it too.
    api_rows = _api_csv(api, "acc-3") + _api_csv(api, "acc-4", formula)
    assert [r[COLUMNS.index("disclosure_id")] for r in api_rows] == [
        "dis-early", "dis-notes", "dis-1"]  # fmt: skip
    assert [r[COLUMNS.index("count")] for r in api_rows[:2]] == [
        str(i["count"]) for i in json_items]  # fmt: skip
    assert api_rows[2][COLUMNS.index("recipient_name")].startswith("'=")  # never a formula
    bundle = tmp_path / "bundle"
    write_bundle(api.services.log, api.services.audit, api.tenant, bundle, scope=ExportScope())
    with (bundle / "accounting.csv").open(newline="") as handle:
        header, *bundle_rows = csv.reader(handle)
    assert header == COLUMNS
    assert bundle_rows == api_rows
    scoped = tmp_path / "scoped"
    write_bundle(api.services.log, api.services.audit, api.tenant, scoped,
                 scope=ExportScope(record_refs=("acc-3",)))  # fmt: skip
    with (scoped / "accounting.csv").open(newline="") as handle:
        assert list(csv.reader(handle))[1:] == api_rows[:2]


def test_the_lookback_comes_from_the_rule_file(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    _post(api, "acc-5", "RecordOpened", "2019-01-01T10:00:00Z")
    last = _post(api, "acc-5", "DisclosureMade", "2019-06-03T10:00:00Z",
                 legal_basis={"kind": "required_by_law"})  # fmt: skip
    assert [i["date"] for i in _accounting(api, "acc-5", last)] == [], "beyond six years"
    rules = tmp_path / "rules"
    shutil.copytree(BUILTIN_RULES, rules)
    us = rules / "US.toml"
    text, found = re.subn(r"(\[accounting\.lookback_years\]\nvalue = )6", r"\g<1>10",
                          us.read_text())  # fmt: skip
    assert found == 1
    us.write_text(text)
    longer = settings.model_copy(update={"rules_dir": rules, "projections": "external"})
    services = build_services(longer)
    try:
        with TestClient(create_app(longer, services)) as client:
            response = client.get("/v1/records/acc-5/accounting", headers=api.writer())
    finally:
        services.close()
    assert response.status_code == 200, response.text
    assert [i["date"] for i in response.json()["items"]] == ["2019-06-03"]
