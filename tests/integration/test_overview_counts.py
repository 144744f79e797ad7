"""The overview's counters equal a count of the read-model rows, through everything that changes
them: new facts and findings, acknowledgements (twice), findings withdrawn by a late
authorization and raised again by a late revocation, a crypto-shredded record, a rebuild."""

from collections import defaultdict
from typing import Any

from projections.dashboard import overview
from service.container import Services
from tests.conftest import Api, post_scenarios
from tests.factories import example


def counted(services: Services, tenant: str) -> dict[str, Any]:
    """What the overview shows, over every month (the page keeps the latest twelve)."""
    services.projector.catch_up()
    with services.audit.db.transaction(commit=False) as cursor:
        shown = overview(cursor, tenant)
    return {
        "open": ({k: v for k, v in shown.open_by_severity.items() if v}, dict(shown.open_by_rule)),
        "basis": shown.disclosures_by_basis,
        "rule": shown.findings_by_rule,
        "role": dict(shown.accesses_by_role),
    }


def scanned(services: Services, tenant: str) -> dict[str, Any]:
    """The same figures counted from the rows themselves (how the overview once did it)."""
    with services.audit.db.transaction(commit=False) as cursor:
        text_id = "CAST(x.finding_id AS TEXT)" if cursor.dialect == "postgres" else "x.finding_id"
        open_rows = cursor.fetchall(
            "SELECT x.rule, x.severity, COUNT(*) AS n FROM pv_findings x LEFT JOIN pv_acks a"  # noqa: S608
            f" ON a.tenant_id = x.tenant_id AND a.finding_id = {text_id}"
            " WHERE x.tenant_id = %s AND x.withdrawn = 0 AND a.resolution IS NULL"
            " GROUP BY x.rule, x.severity",
            (tenant,),
        )
        basis = cursor.fetchall(
            "SELECT SUBSTR(occurred_day, 1, 7) AS month, legal_basis, COUNT(*) AS n FROM pv_facts"
            " WHERE tenant_id = %s AND type = 'DisclosureMade'"
            " GROUP BY SUBSTR(occurred_day, 1, 7), legal_basis",
            (tenant,),
        )
        rules = cursor.fetchall(
            "SELECT SUBSTR(f.occurred_day, 1, 7) AS month, x.rule, COUNT(*) AS n"
            " FROM pv_findings x JOIN pv_facts f"
            " ON f.tenant_id = x.tenant_id AND f.position = x.subject_position"
            " WHERE x.tenant_id = %s AND x.withdrawn = 0"
            " GROUP BY SUBSTR(f.occurred_day, 1, 7), x.rule",
            (tenant,),
        )
        roles = cursor.fetchall(
            "SELECT actor_role, COUNT(*) AS n FROM pv_facts"
            " WHERE tenant_id = %s AND type = 'RecordAccessed' GROUP BY actor_role",
            (tenant,),
        )
    severity: dict[str, int] = defaultdict(int)
    by_rule: dict[str, int] = defaultdict(int)
    for row in open_rows:
        severity[row["severity"]] += int(row["n"])
        by_rule[row["rule"]] += int(row["n"])
    per_month: dict[str, dict[str, dict[str, int]]] = {"basis": {}, "rule": {}}
    for chart, rows, key in (("basis", basis, "legal_basis"), ("rule", rules, "rule")):
        for row in rows:
            name = row[key] or "none given"
            per_month[chart].setdefault(name, {})[row["month"]] = int(row["n"])
    return {
        "open": (dict(severity), dict(by_rule)),
        "basis": per_month["basis"],
        "rule": per_month["rule"],
        "role": {row["actor_role"]: int(row["n"]) for row in roles},
    }


def _counted(api: Api) -> dict[str, Any]:
    return counted(api.services, api.tenant)


def _scanned(api: Api) -> dict[str, Any]:
    return scanned(api.services, api.tenant)


def _open_findings(api: Api, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    found = api.client.get("/v1/findings", params={"status": "open", **params}, headers=headers)
    assert found.status_code == 200, found.text
    items: list[dict[str, Any]] = found.json()["items"]
    return items


def test_the_counters_follow_every_change_of_what_they_count(own_api: Api) -> None:
    api = own_api  # it rebuilds the whole store: only this test's
    headers = api.writer()
    post_scenarios(api, headers)
    assert _counted(api) == _scanned(api)
    assert _counted(api)["open"][0], "the demo has open findings"

    # Acknowledged, one of them twice: each leaves the open counts once.
    first, second, *_ = _open_findings(api, headers)
    for finding, resolution in ((first, "remediated"), (second, "accepted_risk"),
                                (first, "false_positive")):  # fmt: skip
        done = api.client.post(f"/v1/findings/{finding['finding_id']}/acknowledgement",
                               json={"resolution": resolution}, headers=headers)  # fmt: skip
        assert done.status_code in (200, 201), done.text
    assert _counted(api) == _scanned(api)

    # Withdrawn by an authorization that arrives late, dated before the release; acknowledged
    # meanwhile; raised again by a revocation dated before the release.
    release = example("DisclosureMade", occurred_at="2026-01-20T10:00:00Z")
    for body in (example("RecordOpened", occurred_at="2026-01-01T10:00:00Z"), release):
        posted = api.client.post("/v1/records/late/events", json=body, headers=headers)
        assert posted.status_code == 201, posted.text
    assert _counted(api) == _scanned(api)
    raised = _open_findings(api, headers, record_ref="late")
    assert raised
    api.client.post(f"/v1/findings/{raised[0]['finding_id']}/acknowledgement",
                    json={"resolution": "remediated"}, headers=headers)  # fmt: skip
    grant = example("AuthorizationGranted", occurred_at="2026-01-10T10:00:00Z")
    assert api.client.post("/v1/records/late/events", json=grant, headers=headers).is_success
    assert _counted(api) == _scanned(api)
    late = api.client.get("/v1/findings", params={"record_ref": "late", "status": "withdrawn"},
                          headers=headers).json()["items"]  # fmt: skip
    assert {f["finding_id"] for f in late} >= {f["finding_id"] for f in raised}, "withdrawn"
    revoke = example("AuthorizationRevoked", occurred_at="2026-01-15T10:00:00Z",
                     authorization_id=grant["authorization_id"])  # fmt: skip
    answer = api.client.post("/v1/records/late/events", json=revoke, headers=headers)
    assert answer.status_code == 201, answer.text
    assert _counted(api) == _scanned(api)
    again = api.client.get("/v1/findings", params={"record_ref": "late"}, headers=headers)
    assert any(f["status"] != "withdrawn" for f in again.json()["items"]), "raised again"

    # A crypto-shredded record leaves the counts with its rows; a rebuild counts the same.
    before = _scanned(api)
    api.services.shred_record(api.tenant, "jr-2041")
    assert _counted(api) == _scanned(api) != before
    kept = _counted(api)
    api.services.projector.rebuild()
    assert _counted(api) == kept
