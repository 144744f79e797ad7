"""Read models: the scenarios' access log, disclosures, findings and accounting; late events;
read-your-writes; self-audit; and exactly-once processing across a killed worker."""

import json
import os
import signal
import subprocess
import time
from typing import Any
from uuid import uuid4

import pytest

from domain import facts
from domain.policy.accounting import COLUMNS
from service.auth import Role
from service.container import Services
from service.demo import scenario_events
from service.storage.sql import as_uuid
from tests.conftest import Api, post_scenarios
from tests.e2e.server import ROOT
from tests.factories import example
from tests.unit.test_policy_scenarios import ACCOUNTABLE, EXPECTED


def _all(api: Api, path: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params | {"limit": 7} | ({"cursor": cursor} if cursor else {})
        response = api.client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_the_scenarios_produce_the_expected_read_models(api: Api) -> None:
    headers = api.writer()
    last = post_scenarios(api, headers)
    disclosures = _all(api, "/v1/disclosures", headers, min_position=last)
    by_id = {d["disclosure_id"]: d for d in disclosures}
    assert set(by_id) == set(ACCOUNTABLE)
    for expected in EXPECTED.values():
        for label, rules in expected.items():
            if label.startswith("dis-"):
                assert {f["rule"] for f in by_id[label]["findings"]} == rules, label
                assert by_id[label]["accountable"] is ACCOUNTABLE[label], label
    assert by_id["dis-jr-3"]["excess_categories"] == ["progress_notes", "psychotherapy_notes"]
    assert by_id["dis-jr-3"]["recipient"]["name"] == "Suffolk Probate and Family Court"

    pn1 = _all(api, "/v1/disclosures", headers, rule="PN-1")
    assert {d["disclosure_id"] for d in pn1} == {"dis-jr-3", "dis-cr-2"}
    courts = _all(api, "/v1/disclosures", headers, recipient="suffolk probate AND family court")
    assert {d["disclosure_id"] for d in courts} == {"dis-jr-2", "dis-jr-3"}

    glass = _all(api, "/v1/access-log", headers, break_glass="true")
    assert [(a["record_ref"], a["actor"]["id"]) for a in glass] == [("bg-6630", "fd-02")]
    notes = _all(api, "/v1/access-log", headers, category="progress_notes")
    assert {a["record_ref"] for a in notes} == {"jr-2041", "bg-6630"}

    findings = _all(api, "/v1/findings", headers)
    assert sorted(f["rule"] for f in findings) == sorted(
        rule for expected in EXPECTED.values() for rules in expected.values() for rule in rules
    )
    assert all(f["status"] == "open" and f["ruleset"] for f in findings)
    # Each finding names its record: the one of the fact it judges, as the register says.
    record_of = {d["event_id"]: d["record_ref"] for d in disclosures}
    record_of |= {a["event_id"]: a["record_ref"] for a in _all(api, "/v1/access-log", headers)}
    judged = [f for f in findings if f["event_id"] in record_of]
    assert judged, "the scenarios' findings judge accesses and disclosures"
    assert all(f["record_ref"] == record_of[f["event_id"]] for f in judged)
    assert all(f["record_ref"] for f in findings)
    one = _all(api, "/v1/findings", headers, record_ref="jr-2041")
    assert {f["record_ref"] for f in one} == {"jr-2041"}


def test_the_accounting_lists_court_agency_and_warning_disclosures_and_summarises_repeats(
    api: Api,
) -> None:
    headers = api.writer()
    last = post_scenarios(api, headers)
    court = api.client.get(
        "/v1/records/jr-2041/accounting", params={"min_position": last}, headers=headers
    ).json()["items"]
    # dis-jr-3 went to the same court for the same purpose, but carried psychotherapy notes the
    # order did not reach (PN-1, LG-3): an impermissible disclosure is never summarised.
    assert [(e["disclosure_id"], e["count"], e["impermissible"]) for e in court] == [
        ("dis-jr-2", 1, False), ("dis-jr-3", 1, True)]  # fmt: skip
    assert court[1]["rules"] == ["LG-3", "PN-1"]
    assert "not permitted" in court[1]["purpose"]
    assert court[1]["description"] == (
        "Dates of appointments; diagnosis; progress notes; psychotherapy notes"
    )
    # Two lawful reports to one agency, each with the copy that documented it, are one summary
    # (164.528(b)(3)); the third carried psychotherapy notes (MN-2) and stands alone.
    agency = api.client.get("/v1/records/mr-3310/accounting", headers=headers).json()["items"]
    assert [(e["disclosure_id"], e["kind"], e["count"], e["rules"]) for e in agency] == [
        ("rep-mr-1", "report", 2, []), ("rep-mr-3", "report", 1, ["MN-2"])]  # fmt: skip
    assert agency[0]["recipient"] == {
        "name": "Department of Children and Families",
        "address": "600 Washington St, Boston MA",
    }
    assert (agency[0]["date"], agency[0]["last_date"]) == ("2026-03-06", "2026-03-17")
    authorized = api.client.get("/v1/records/cv-5520/accounting", headers=headers).json()["items"]
    assert [e["disclosure_id"] for e in authorized] == ["dis-cv-2"]  # the one after revocation
    assert authorized[0]["rules"] == ["AU-1"]
    # The warning is listed once (its police copy folded in); the release to the employer,
    # who can neither prevent the harm nor is its target (DW-1), is listed on its own.
    warning = api.client.get("/v1/records/dw-0912/accounting", headers=headers).json()["items"]
    assert [(e["disclosure_id"], e["kind"], e["rules"]) for e in warning] == [
        ("warn-dw-1", "warning", []), ("dis-dw-3", "disclosure", ["DW-1"])]  # fmt: skip
    csv = api.client.get("/v1/records/mr-3310/accounting",
                         headers={**headers, "Accept": "text/csv"})  # fmt: skip
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1].startswith("2026-03-06,2026-03-17,2,Department of Children and Families,")
    assert lines[2].endswith(",rep-mr-3,report,yes,MN-2,mr-3310")


def test_record_status_now_and_as_of(api: Api) -> None:
    headers = api.writer()
    post_scenarios(api, headers)
    now = api.client.get("/v1/records/cv-5520", headers=headers).json()
    assert [a["status"] for a in now["authorizations"]] == ["revoked"]
    before = api.client.get("/v1/records/cv-5520", params={"as_of": "2026-02-20T00:00:00Z"},
                            headers=headers).json()  # fmt: skip
    assert [a["status"] for a in before["authorizations"]] == ["active"]
    jr = api.client.get("/v1/records/jr-2041", headers=headers).json()
    assert jr["privilege"] == [
        {
            "demand_id": "dem-jr-1",
            "status": "pierced",
            "holder": "therapist_on_behalf",
            "statute": "M.G.L. c.233 s.20B",
        }
    ]
    assert jr["open_demands"] == []


def test_a_late_revocation_flips_the_finding_and_the_accounting(api: Api) -> None:
    headers = api.writer()
    grant = example("AuthorizationGranted", occurred_at="2026-01-10T10:00:00Z")
    release = example("DisclosureMade", occurred_at="2026-01-20T10:00:00Z")
    for body in (example("RecordOpened", occurred_at="2026-01-01T10:00:00Z"), grant, release):
        assert (
            api.client.post("/v1/records/late/events", json=body, headers=headers).status_code
            == 201
        )
    before = api.client.get("/v1/findings", params={"record_ref": "late", "min_position": 4},
                            headers=headers).json()["items"]  # fmt: skip
    assert before == []
    assert api.client.get("/v1/records/late/accounting", headers=headers).json()["items"] == []
    revoked = example("AuthorizationRevoked", occurred_at="2026-01-15T10:00:00Z")
    position = api.client.post("/v1/records/late/events", json=revoked, headers=headers).json()[
        "position"
    ]
    after = api.client.get("/v1/findings", params={"record_ref": "late", "min_position": position},
                           headers=headers).json()["items"]  # fmt: skip
    assert [(f["rule"], f["event_id"], f["status"]) for f in after] == [
        ("AU-1", release["event_id"], "open")]  # fmt: skip
    assert revoked["event_id"] in after[0]["evidence"]
    listed = api.client.get("/v1/records/late/accounting", headers=headers).json()["items"]
    assert [e["disclosure_id"] for e in listed] == [release["disclosure_id"]]


def test_acknowledging_a_finding_changes_its_status(api: Api) -> None:
    headers = api.writer()
    body = example("RecordAccessed", break_glass=True, purpose_of_use="BTG")
    api.client.post("/v1/records/ack/events", json=body, headers=headers)
    (finding,) = _all(api, "/v1/findings", headers, record_ref="ack", min_position=2)
    position = api.client.post(
        f"/v1/findings/{finding['finding_id']}/acknowledgement",
        json={"resolution": "accepted_risk"},
        headers=headers,
    ).json()["position"]
    (acknowledged,) = _all(api, "/v1/findings", headers, record_ref="ack", min_position=position)
    assert (acknowledged["status"], acknowledged["resolution"]) == ("acknowledged", "accepted_risk")
    assert _all(api, "/v1/findings", headers, record_ref="ack", status="open") == []


def test_min_position_returns_the_callers_own_write_at_once(api: Api) -> None:
    headers = api.writer()
    # The session's shared PostgreSQL database holds events of earlier tests whose services
    # ran no projector: this one catches up on them first (seconds, in CI once), which is
    # not the latency of a caller's own write.
    deadline = time.monotonic() + 120
    while api.services.projector.lag()[0] > 0:
        assert time.monotonic() < deadline, "the projector never caught up"
        time.sleep(0.05)
    for _ in range(20):
        body = example("RecordAccessed")
        position = api.client.post("/v1/records/ryw/events", json=body, headers=headers).json()[
            "position"
        ]
        started = time.perf_counter()
        params = {"record_ref": "ryw", "min_position": position, "limit": 1000}
        items = api.client.get("/v1/access-log", params=params, headers=headers).json()["items"]
        assert body["event_id"] in {i["event_id"] for i in items}
        assert time.perf_counter() - started < 2


def test_min_position_beyond_the_log_is_503_with_retry_after(api: Api) -> None:
    response = api.client.get("/v1/findings", params={"min_position": 10**9}, headers=api.writer())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def test_every_query_is_in_audit_reads_with_its_filters(api: Api) -> None:
    headers = api.writer()
    api.client.post("/v1/records/aud/events", json=example("RecordAccessed"), headers=headers)
    api.client.get(
        "/v1/access-log", params={"record_ref": "aud", "role": "billing"}, headers=headers
    )
    api.client.get("/v1/findings", params={"rule": "PN-1"}, headers=headers)
    first = api.client.get("/v1/audit-reads", headers=headers).json()["items"]
    assert [(r["route"], r["filters"]) for r in first] == [
        ("GET /v1/access-log", {"record_ref": "aud", "role": "billing"}),
        ("GET /v1/findings", {"rule": "PN-1"}),
        ("GET /v1/audit-reads", {}),
    ]
    second = api.client.get("/v1/audit-reads", headers=headers).json()["items"]
    assert len(second) == 4, "each read of audit-reads is recorded once, and records nothing more"
    other = api.client.get("/v1/audit-reads", headers=api.writer(tenant=api.tenant + "-b")).json()
    assert [r["route"] for r in other["items"]] == ["GET /v1/audit-reads"]


def test_timelines_proofs_and_exports_are_audited_too(api: Api) -> None:
    headers = api.key(Role.INGEST, Role.COMPLIANCE, Role.REGULATOR)
    api.client.post("/v1/records/aud2/events", json=example("RecordAccessed"), headers=headers)
    api.client.get("/v1/records/aud2/timeline", headers=headers)
    api.client.get("/v1/log/checkpoint", headers=headers)
    api.client.post("/v1/exports", json={"record_refs": ["aud2"]}, headers=headers)
    reads = api.client.get("/v1/audit-reads", headers=headers).json()["items"]
    routes = [(r["route"], r["filters"]) for r in reads]
    assert reads[0]["record_ref"] == "aud2", "a read of a record's route names the record"
    assert routes[:3] == [
        ("GET /v1/records/{record_ref}/timeline", {"record_ref": "aud2"}),
        ("GET /v1/log/checkpoint", {}),
        ("POST /v1/exports", {"record_refs": ["aud2"]}),  # unset filters are not recorded
    ]


def _snapshot(services: Services) -> dict[str, Any]:
    """Everything the read models hold, with sealed fields opened (their nonces differ)."""
    with services.audit.db.transaction(commit=False) as cursor:
        facts_rows = cursor.fetchall("SELECT * FROM pv_facts ORDER BY tenant_id, position")
        findings = cursor.fetchall("SELECT * FROM pv_findings ORDER BY finding_id")
        acks = cursor.fetchall("SELECT * FROM pv_acks ORDER BY tenant_id, finding_id")
    opened = []
    for raw in facts_rows:
        row = dict(raw)
        sealed = row.pop("sealed")
        row["content"] = services.projector.sealer.open(as_uuid(row["record_id"]), bytes(sealed))
        opened.append({k: str(v) for k, v in row.items()})
    return {
        "facts": opened,
        "findings": [{k: str(v) for k, v in r.items()} for r in findings],
        "acks": [{k: str(v) for k, v in r.items()} for r in acks],
    }


@pytest.mark.slow
def test_a_killed_worker_resumes_without_missing_or_repeating_and_equals_a_rebuild(
    own_services: Services,
) -> None:
    services = own_services  # it rebuilds the whole store: only this test's
    tenant = "worker-" + os.urandom(4).hex()
    from service.application.ingest import Submission

    for scenario in scenario_events():
        for raw in scenario.events:
            fact = facts.FACT_TYPES_BY_NAME[raw["type"]].model_validate(
                {**raw, "event_id": uuid4()}
            )
            services.ingest.record_facts(tenant, [Submission(scenario.record_ref, fact)])
    for n in range(300):
        body = example("DisclosureMade", legal_basis={"kind": "none_stated"})
        fact = facts.DisclosureMade.model_validate(body)
        services.ingest.record_facts(tenant, [Submission(f"bulk-{n % 7}", fact)])
    target = services.audit.recorder.max_notification_id() or 0
    settings = services.settings
    env = {**os.environ, "DISCLOSURE_AUDIT_HOME": str(settings.home),
           "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path),
           "DISCLOSURE_AUDIT_PROJECTIONS": "external",
           "DISCLOSURE_AUDIT_PROJECTION_PAGE_SIZE": "10"}  # fmt: skip
    if settings.database_url:
        env["DISCLOSURE_AUDIT_DATABASE_URL"] = settings.database_url
    command = [str(ROOT / ".venv/bin/disclosure-audit"), "project"]

    worker = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    start = services.projector.processed()
    deadline = time.monotonic() + 60
    while services.projector.processed() <= start and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)  # mid-stream: no chance to finish its page
    worker.wait(timeout=10)
    assert services.projector.processed() < target, "killed before it caught up"

    worker = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while services.projector.processed() < target and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert services.projector.processed() >= target
    incremental = _snapshot(services)
    mine = [r for r in incremental["facts"] if r["tenant_id"] == tenant]
    assert len(mine) == 15 + 3 + 3 + 1 + 300, (
        "every judged fact once (disclosures, accesses, reports, the warning)"
    )
    services.projector.rebuild()
    assert _snapshot(services) == incremental
    assert json.dumps(incremental)  # plain data, comparable


def test_a_changed_schema_version_rebuilds_the_read_models(own_api: Api) -> None:
    api = own_api  # the rebuild replays the whole store: only this test's
    headers = api.writer()
    position = api.client.post(
        "/v1/records/schema/events", json=example("RecordAccessed"), headers=headers
    ).json()["position"]
    before = _all(api, "/v1/access-log", headers, record_ref="schema", min_position=position)
    projector = api.services.projector
    with api.services.audit.db.transaction() as cursor:
        cursor.execute("UPDATE pv_tracking SET schema_version = 0")  # as an older release left it
    assert projector.prepare(), "a different schema version means a rebuild"
    assert projector.processed() == 0
    projector.catch_up()
    after = _all(api, "/v1/access-log", headers, record_ref="schema")
    assert after == before
    assert not projector.prepare(), "the current version is kept"


def test_the_lag_counts_the_unapplied_events_and_the_age_of_the_oldest(services: Services) -> None:
    from service.application.ingest import Submission

    tenant = "lag-" + os.urandom(4).hex()

    def submit() -> None:
        fact = facts.RecordAccessed.model_validate(example("RecordAccessed"))
        services.ingest.record_facts(tenant, [Submission("lagging", fact)])

    submit()  # the record exists: each later fact is one event
    services.projector.catch_up()
    assert services.projector.lag() == (0, 0.0)
    started = time.monotonic()
    for _ in range(3):
        submit()
    time.sleep(0.05)
    events, seconds = services.projector.lag()
    assert events == 3
    assert 0.05 <= seconds <= time.monotonic() - started + 0.01
    services.projector.catch_up()
    assert services.projector.lag() == (0, 0.0)


@pytest.mark.parametrize("store", ["sqlite"])  # a store of its own: the rebuild drops every view
def test_the_rebuild_command_replays_the_log_into_equal_read_models(api: Api) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    post_scenarios(api, api.writer())
    services = api.services
    services.projector.catch_up()
    before = _snapshot(services)
    settings = services.settings
    env = {"DISCLOSURE_AUDIT_HOME": str(settings.home),
           "DISCLOSURE_AUDIT_MASTER_KEY_FILE": str(settings.master_key_path)}  # fmt: skip
    result = CliRunner().invoke(app, ["projections", "rebuild", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # The app's own worker shares the replay, so count the end reached, not who applied it.
    top = services.audit.recorder.max_notification_id()
    assert report["notification"] == top
    assert 0 <= report["events"] <= top
    assert _snapshot(services) == before
    human = CliRunner().invoke(app, ["projections", "rebuild"], env=env)
    assert human.exit_code == 0, human.output
    assert f"up to notification {top}" in " ".join(human.stdout.split())


def test_a_catch_up_reports_its_progress_up_to_the_end_of_the_log(services: Services) -> None:
    from service.application.ingest import Submission

    tenant = "progress-" + os.urandom(4).hex()
    for n in range(5):
        fact = facts.RecordAccessed.model_validate(example("RecordAccessed"))
        services.ingest.record_facts(tenant, [Submission(f"p-{n}", fact)])
    seen: list[tuple[int, int]] = []
    services.projector.catch_up(lambda done, target: seen.append((done, target)))
    target = services.audit.recorder.max_notification_id()
    assert seen[-1] == (target, target)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_withdrawn_finding_no_longer_matches_the_rule_filter(api: Api) -> None:
    headers = api.writer()
    release = example("DisclosureMade", occurred_at="2026-01-20T10:00:00Z")
    for body in (example("RecordOpened", occurred_at="2026-01-01T10:00:00Z"), release):
        posted = api.client.post("/v1/records/unfound/events", json=body, headers=headers)
        assert posted.status_code == 201, posted.text
    position = posted.json()["position"]
    (item,) = _all(api, "/v1/disclosures", headers, record_ref="unfound", min_position=position)
    rules = {f["rule"] for f in item["findings"]}
    assert rules, "a disclosure under an authorization not on the record has a finding"
    for rule in rules:
        matched = _all(api, "/v1/disclosures", headers, rule=rule)
        assert release["event_id"] in {d["event_id"] for d in matched}

    # The authorization arrives late, dated before the disclosure: the findings are withdrawn.
    grant = example("AuthorizationGranted", occurred_at="2026-01-10T10:00:00Z")
    late = api.client.post("/v1/records/unfound/events", json=grant, headers=headers).json()
    (item,) = _all(api, "/v1/disclosures", headers, record_ref="unfound",
                   min_position=late["position"])  # fmt: skip
    assert item["findings"] == []
    for rule in rules:
        matched = _all(api, "/v1/disclosures", headers, rule=rule)
        assert release["event_id"] not in {d["event_id"] for d in matched}


def test_the_rule_filter_reads_on_past_findings_that_other_filters_reject(api: Api) -> None:
    headers = api.writer()
    # 210 disclosures of one record, then 3 of another, all with the same findings: the
    # second record's come after more findings of the rule than one batch of the lookup holds.
    events = [{"record_ref": "crowded", **example("DisclosureMade")} for _ in range(210)]
    events += [{"record_ref": "sparse", **example("DisclosureMade")} for _ in range(3)]
    response = api.client.post("/v1/events:batch", json={"events": events}, headers=headers)
    assert response.status_code == 201, response.text
    last = response.json()["receipts"][-1]["position"]
    (first, *_) = _all(api, "/v1/disclosures", headers, record_ref="sparse", min_position=last)
    rules = {f["rule"] for f in first["findings"]}
    assert rules, "an authorization that is not on the record is a finding"
    for rule in rules:
        sparse = _all(api, "/v1/disclosures", headers, rule=rule, record_ref="sparse")
        assert [d["event_id"] for d in sparse] == [e["event_id"] for e in events[-3:]]
        every = _all(api, "/v1/disclosures", headers, rule=rule)
        assert [d["event_id"] for d in every] == [e["event_id"] for e in events]


def _read_model_statistics(services: Services, forget: bool = False) -> int:
    """How many planner statistics the store holds for pv_facts (after deleting them)."""
    with services.audit.db.transaction() as cursor:
        if cursor.dialect == "postgres":
            where = "FROM pg_statistic WHERE starelid = 'pv_facts'::regclass"
        else:
            exists = cursor.fetchone("SELECT 1 AS x FROM sqlite_master WHERE name = 'sqlite_stat1'")
            if exists is None:
                return 0  # the first ANALYZE creates it
            where = "FROM sqlite_stat1 WHERE tbl = 'pv_facts'"
        if forget:
            cursor.execute("DELETE " + where)
        row = cursor.fetchone("SELECT COUNT(*) AS n " + where)
    return int(row["n"]) if row else 0


def test_the_projector_refreshes_the_planner_statistics_as_the_read_models_grow(
    own_services: Services,
) -> None:
    services = own_services  # a rebuild below replays the whole store: only this test's
    from service.application.ingest import Submission
    from service.projector import Projector

    services.projector.catch_up()
    projector = Projector(services.audit, services.audit.rulebook, page_size=4, analyze_after=10)
    tenant = "stats-" + os.urandom(4).hex()

    def submit(count: int) -> None:
        for _ in range(count):
            fact = facts.RecordAccessed.model_validate(example("RecordAccessed"))
            services.ingest.record_facts(tenant, [Submission("counted", fact)])

    _read_model_statistics(services, forget=True)
    submit(6)  # with the registration, 7 events: fewer than analyze_after
    projector.catch_up()
    assert _read_model_statistics(services) == 0
    submit(4)
    projector.catch_up()
    assert _read_model_statistics(services) > 0, "refreshed once 10 events were applied"

    _read_model_statistics(services, forget=True)
    projector.rebuild()
    assert _read_model_statistics(services) > 0, "refreshed after a rebuild"


def test_a_page_is_judged_from_memory_with_its_own_earlier_events(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record already projected is not read again for the next page: its history is held, and
    the page's own events join it as they are applied. The verdicts show it: a disclosure that
    follows its authorization in the same page has no finding, one after the revocation has."""
    from service.application.ingest import Submission

    tenant = "held-" + os.urandom(4).hex()

    def submit(kind: str, hour: int) -> str:
        body = example(kind, occurred_at=f"2026-03-02T{hour:02d}:00:00-05:00")
        services.ingest.record_facts(
            tenant, [Submission("held", facts.FACT_TYPES_BY_NAME[kind].model_validate(body))]
        )
        return str(body["event_id"])

    submit("RecordAccessed", 8)
    services.projector.catch_up()  # the record is known to the projector from here on
    reads: list[tuple[object, int]] = []
    history = services.audit.history

    def counted(record: Any, up_to: int, after: int = 0) -> Any:
        reads.append((record, after))
        return history(record, up_to, after)

    monkeypatch.setattr(services.audit, "history", counted)
    submit("AuthorizationGranted", 9)
    authorized = submit("DisclosureMade", 10)
    submit("AuthorizationRevoked", 11)
    revoked = submit("DisclosureMade", 12)
    services.projector.catch_up()
    assert reads == [], "the page's events were read back from the store"
    with services.audit.db.transaction(commit=False) as cursor:
        rows = cursor.fetchall(
            "SELECT subject_event_id, rule FROM pv_findings WHERE tenant_id = %s AND withdrawn = 0",
            (tenant,),
        )
    rules: dict[str, set[str]] = {authorized: set(), revoked: set()}
    for row in rows:
        rules.setdefault(str(row["subject_event_id"]), set()).add(row["rule"])
    assert rules[authorized] == set(), rules
    assert rules[revoked], "a disclosure after the revocation has a finding"
