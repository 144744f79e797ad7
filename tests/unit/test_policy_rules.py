"""Every rule: a case that fires and a near miss that does not."""

from typing import Any

import pytest

from domain import facts
from domain.policy.engine import Finding, Judgment
from tests.policy_support import at, fact, rules_of, verdict

ATTORNEY = {"name": "Morgan & Lee LLP", "kind": "attorney"}
COURT = {"name": "Suffolk Probate and Family Court", "kind": "court"}


def opened(jurisdiction: str = "US-MA", **fields: Any) -> facts.FactBase:
    return fact("RecordOpened", -30, jurisdiction=jurisdiction, **fields)


def authorization(day: float = 0, **fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {
        "authorization_id": "auth-1",
        "recipients": [ATTORNEY],
        "purposes": ["HLEGAL"],
        "categories": ["progress_notes", "diagnosis"],
        "records_from": "2025-01-01",
        "records_until": "2025-12-31",
    }
    return fact("AuthorizationGranted", day, **(base | fields))


def disclosure(day: float = 10, **fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {
        "recipient": ATTORNEY,
        "categories": ["progress_notes"],
        "records_from": "2025-02-01",
        "records_until": "2025-06-30",
        "legal_basis": {"kind": "client_authorization", "reference_id": "auth-1"},
        "purpose_of_use": "HLEGAL",
    }
    return fact("DisclosureMade", day, **(base | fields))


def order(**fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {
        "order_id": "ord-1",
        "demand_id": "dem-1",
        "categories": ["appointments", "diagnosis"],
        "recipients": [COURT],
        "pierces_privilege": True,
    }
    return fact("CourtOrderIssued", 5, **(base | fields))


def court_release(**fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {
        "recipient": COURT,
        "categories": ["appointments", "diagnosis"],
        "records_from": None,
        "records_until": None,
        "legal_basis": {"kind": "court_order", "reference_id": "ord-1"},
        "minimum_necessary": {"mode": "individual_review", "reviewer": "J. Okafor"},
    }
    return disclosure(**(base | fields))


def subpoena(**fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {"demand_id": "dem-1", "kind": "attorney_subpoena",
                            "categories": ["progress_notes", "diagnosis"]}  # fmt: skip
    return fact("LegalDemandReceived", 1, **(base | fields))


def subpoena_release(**fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {
        "legal_basis": {"kind": "subpoena_with_assurances", "reference_id": "dem-1"},
        "minimum_necessary": {"mode": "individual_review", "reviewer": "J. Okafor"},
    }
    return disclosure(**(base | fields))


# --- authorizations --------------------------------------------------------------------------


def test_a_disclosure_within_an_authorization_is_compliant() -> None:
    assert rules_of([opened(), authorization()], disclosure()) == set()


@pytest.mark.parametrize(("revoked_on", "expected"), [(9, {"AU-1"}), (11, set())])
def test_au1_revocation_counts_from_the_day_it_happened(
    revoked_on: int, expected: set[str]
) -> None:
    revocation = fact("AuthorizationRevoked", revoked_on, authorization_id="auth-1")
    assert rules_of([opened(), authorization(), revocation], disclosure(day=10)) == expected


def test_au1_a_revocation_before_a_re_grant_does_not_revoke_it() -> None:
    revocation = fact("AuthorizationRevoked", -5, authorization_id="auth-1")
    assert rules_of([opened(), revocation, authorization(day=0)], disclosure(day=10)) == set()


@pytest.mark.parametrize(("expires_on", "expected"), [(9, {"AU-1"}), (11, set())])
def test_au1_expiry(expires_on: int, expected: set[str]) -> None:
    auth = authorization(expires_at=at(expires_on))
    assert rules_of([opened(), auth], disclosure(day=10)) == expected


@pytest.mark.parametrize(
    "change",
    [
        {"recipient": {"name": "Another Firm LLP", "kind": "attorney"}},
        {"purpose_of_use": "HMARKT"},
        {"categories": ["progress_notes", "medications"]},
        {"records_until": "2026-01-31"},
    ],
    ids=["recipient", "purpose", "category", "dates"],
)
def test_au2_each_way_out_of_scope(change: dict[str, Any]) -> None:
    if change.get("purpose_of_use") == "HMARKT":
        change = {"purpose_of_use": "TRAIN"}
    assert rules_of([opened(), authorization()], disclosure(**change)) == {"AU-2"}


def test_au2_near_miss_exact_scope_and_spelling_of_the_recipient() -> None:
    exact = disclosure(
        recipient={"name": "morgan  and Lee, L.L.P.", "kind": "attorney"},
        categories=["progress_notes", "diagnosis"],
        records_from="2025-01-01",
        records_until="2025-12-31",
    )
    assert rules_of([opened(), authorization()], exact) == set()


def test_sc1_an_undated_release_under_a_dated_authorization_cannot_be_verified() -> None:
    judged = verdict([opened(), authorization()], disclosure(records_from=None, records_until=None))
    assert judged.rules == {"SC-1"}
    (finding,) = judged.findings
    assert finding.severity == "low"
    assert "2025-01-01 to 2025-12-31" in finding.message
    assert judged.accountable is False, "a release under an authorization stays exempt"


def test_excess_categories_name_what_went_beyond_the_basis() -> None:
    judged = verdict(
        [opened(), authorization()], disclosure(categories=["progress_notes", "medications"])
    )
    assert [c.value for c in judged.excess_categories] == ["medications"]
    assert judged.accountable is True, "an impermissible disclosure is accountable"


# --- psychotherapy notes ---------------------------------------------------------------------


def test_pn1_psychotherapy_notes_under_a_general_authorization() -> None:
    auth = authorization(categories=["progress_notes", "psychotherapy_notes"])
    assert rules_of([opened(), auth], disclosure(categories=["psychotherapy_notes"])) == {"PN-1"}


def test_pn1_near_miss_with_a_psychotherapy_notes_authorization() -> None:
    auth = authorization(kind="psychotherapy_notes", categories=["psychotherapy_notes"])
    release = disclosure(
        categories=["psychotherapy_notes"],
        legal_basis={"kind": "psychotherapy_notes_authorization", "reference_id": "auth-1"},
    )
    judged = verdict([opened(), auth], release)
    assert judged.rules == set()
    assert judged.excess_categories == ()


def test_pn1_does_not_apply_to_a_warning_but_mn2_does() -> None:
    warning = fact("DutyToWarnExercised", 5, warning_id="w-1")
    release = disclosure(
        recipient={"name": "K. Moreau", "kind": "potential_victim"},
        categories=["risk_assessment", "psychotherapy_notes"],
        legal_basis={"kind": "duty_to_warn", "reference_id": "w-1"},
        purpose_of_use="THREAT",
        minimum_necessary={"mode": "individual_review"},
    )
    assert rules_of([opened(), warning], release) == {"MN-2"}


# --- legal process ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        (["appointments", "diagnosis"], set()),
        (["appointments", "diagnosis", "progress_notes"], {"LG-3"}),
    ],
    ids=["exactly-the-order", "one-category-more"],
)
def test_lg3_court_order_scope(categories: list[str], expected: set[str]) -> None:
    assert rules_of([opened(), subpoena(), order()], court_release(categories=categories)) == (
        expected
    )


def test_lg3_recipient_not_named_in_the_order() -> None:
    release = court_release(recipient={"name": "Hale & Burke LLP", "kind": "attorney"})
    assert rules_of([opened(), subpoena(), order()], release) == {"LG-3"}


def test_lg1_attorney_subpoena_answered_without_assurances() -> None:
    assert rules_of([opened(), subpoena()], subpoena_release()) == {"LG-1"}


@pytest.mark.parametrize(
    "assurances",
    [
        {"protective_order": True},
        {"client_notified_at": at(2), "objection_deadline": "2026-01-14"},
    ],
    ids=["protective-order", "notice-and-objection-period-over"],
)
def test_lg1_near_miss_with_satisfactory_assurances(assurances: dict[str, Any]) -> None:
    assert rules_of([opened(), subpoena(assurances=assurances)], subpoena_release()) == set()


def test_lg1_objection_period_still_running() -> None:
    still_open = {"client_notified_at": at(2), "objection_deadline": "2026-01-16"}
    assert rules_of([opened(), subpoena(assurances=still_open)], subpoena_release()) == {"LG-1"}


def test_lg4_release_after_privilege_was_asserted() -> None:
    asserted = fact("PrivilegeAsserted", 2, demand_id="dem-1")
    protected = subpoena(assurances={"protective_order": True})
    assert rules_of([opened(), protected, asserted], subpoena_release()) == {"LG-4"}


def test_lg4_near_miss_with_a_written_waiver() -> None:
    asserted = fact("PrivilegeAsserted", 2, demand_id="dem-1")
    waived = fact("PrivilegeWaived", 3, demand_id="dem-1", categories=["progress_notes"])
    protected = subpoena(assurances={"protective_order": True})
    assert rules_of([opened(), protected, asserted, waived], subpoena_release()) == set()


def test_lg4_near_miss_with_a_piercing_order() -> None:
    asserted = fact("PrivilegeAsserted", 2, demand_id="dem-1")
    assert rules_of([opened(), subpoena(), asserted, order()], court_release()) == set()
    not_piercing = order(pierces_privilege=False)
    assert rules_of([opened(), subpoena(), asserted, not_piercing], court_release()) == {"LG-4"}


def test_lg5_part2_records_on_a_subpoena_alone() -> None:
    part2 = opened(part2_program=True)
    protected = subpoena(assurances={"protective_order": True})
    assert rules_of([part2, protected], subpoena_release()) == {"LG-5"}
    sud = subpoena_release(categories=["sud_records"])
    assert rules_of([opened(), subpoena(categories=["sud_records"], assurances={
        "protective_order": True})], sud) == {"LG-5"}  # fmt: skip


def test_lg5_near_miss_with_a_subpart_e_court_order() -> None:
    part2 = opened(part2_program=True)
    subpart_e = order(part2_findings=True)
    assert rules_of([part2, subpoena(), subpart_e], court_release()) == set()


def test_lg5_any_court_order_is_not_a_subpart_e_order() -> None:
    part2 = opened(part2_program=True)
    judged = verdict([part2, subpoena(), order()], court_release())
    assert judged.rules == {"LG-5"}
    assert "2.64 findings" in judged.findings[0].message


# --- minimum necessary, reports, warnings ----------------------------------------------------


def test_mn1_non_exempt_disclosure_without_a_determination() -> None:
    protected = subpoena(assurances={"protective_order": True})
    assert rules_of([opened(), protected], subpoena_release(minimum_necessary=None)) == {"MN-1"}
    claimed_exempt = subpoena_release(minimum_necessary={"mode": "exempt"})
    assert rules_of([opened(), protected], claimed_exempt) == {"MN-1"}


def test_mn1_near_miss_treatment_is_exempt() -> None:
    to_doctor = disclosure(
        recipient={"name": "Dr. L. Chen", "kind": "health_provider"},
        legal_basis={"kind": "treatment"},
        purpose_of_use="TREAT",
    )
    judged = verdict([opened()], to_doctor)
    assert judged.rules == set()
    assert judged.accountable is False


def _report(written_after_hours: float, jurisdiction: str = "US-MA") -> tuple[
    list[facts.FactBase], facts.FactBase
]:  # fmt: skip
    suspected = at(3)
    written = at(3 + written_after_hours / 24)
    report = fact("MandatedReportFiled", 3 + written_after_hours / 24, report_id="rep-1",
                  suspected_at=suspected, oral_at=suspected, written_at=written)  # fmt: skip
    return [opened(jurisdiction)], report


@pytest.mark.parametrize(
    ("jurisdiction", "hours", "expected"),
    [
        ("US-MA", 47, set()),
        ("US-MA", 49, {"MR-1"}),
        ("US-CA", 35, set()),
        ("US-CA", 37, {"MR-1"}),
        ("US", 200, set()),
    ],
)
def test_mr1_written_report_deadline_by_state(
    jurisdiction: str, hours: float, expected: set[str]
) -> None:
    history, report = _report(hours, jurisdiction)
    assert rules_of(history, report) == expected


def test_mn2_mandated_report_carrying_a_diagnosis_under_the_baseline() -> None:
    report = fact("MandatedReportFiled", 4, report_id="rep-1", suspected_at=at(3))
    agency = {"name": "Department of Children and Families", "kind": "government_agency"}
    base: dict[str, Any] = {
        "recipient": agency,
        "legal_basis": {"kind": "mandated_report", "reference_id": "rep-1"},
        "purpose_of_use": "PUBHLTH",
        "minimum_necessary": {"mode": "protocol"},
    }
    federal = opened("US")
    assert rules_of([federal, report], disclosure(**base, categories=["demographics"])) == set()
    judged = verdict(
        [federal, report], disclosure(**base, categories=["demographics", "diagnosis"])
    )
    assert judged.rules == {"MN-2"}
    assert [c.value for c in judged.excess_categories] == ["diagnosis"]


@pytest.mark.parametrize(
    ("jurisdiction", "kind", "expected"),
    [
        ("US", "health_provider", set()),
        ("US-CA", "health_provider", set()),
        ("US-CA", "law_enforcement", set()),
        ("US-MA", "employer", {"DW-1"}),
    ],
)
def test_dw1_permitted_recipients_by_jurisdiction(
    jurisdiction: str, kind: str, expected: set[str]
) -> None:
    warning = fact("DutyToWarnExercised", 5, warning_id="w-1")
    release = disclosure(
        recipient={"name": "Someone", "kind": kind},
        categories=["risk_assessment"],
        legal_basis={"kind": "duty_to_warn", "reference_id": "w-1"},
        purpose_of_use="THREAT",
        minimum_necessary={"mode": "individual_review"},
    )
    assert rules_of([opened(jurisdiction), warning], release) == expected


@pytest.mark.parametrize(("justification", "expected"), [(None, {"AC-2"}), ("ED admit", set())])
def test_ac2_break_glass_needs_a_justification(
    justification: str | None, expected: set[str]
) -> None:
    access = fact("RecordAccessed", 1, break_glass=True, justification=justification,
                  purpose_of_use="BTG")  # fmt: skip
    assert rules_of([opened()], access) == expected


# --- minors and families ---------------------------------------------------------------------


def _to_parent(
    granted_by: str = "personal_representative",
) -> tuple[facts.FactBase, facts.FactBase]:
    parent = {"name": "R. Novak", "kind": "parent"}
    auth = authorization(recipients=[parent], purposes=["FAMRQT"], granted_by=granted_by)
    return auth, disclosure(recipient=parent, purpose_of_use="FAMRQT")


@pytest.mark.parametrize(("born", "expected"), [("2009-06-01", {"MI-1"}), ("2007-12-01", set())])
def test_mi1_minor_who_consented_to_treatment(born: str, expected: set[str]) -> None:
    record = opened("US-CA", client_birth_date=born, minor_consented_to_treatment=True)
    auth, release = _to_parent()
    assert rules_of([record, auth], release) == expected


def test_mi1_near_miss_when_the_minor_authorized_it() -> None:
    record = opened("US-CA", client_birth_date="2009-06-01", minor_consented_to_treatment=True)
    auth, release = _to_parent(granted_by="client")
    assert rules_of([record, auth], release) == set()


def test_fa1_joint_record_needs_every_adult() -> None:
    couple = opened(setting="couple", participants=[{"id": "p-a", "adult": True},
                                                     {"id": "p-b", "adult": True}])  # fmt: skip
    first = authorization(participant_id="p-a")
    second = authorization(authorization_id="auth-2", participant_id="p-b")
    assert rules_of([couple, first], disclosure()) == {"FA-1"}
    assert rules_of([couple, first, second], disclosure()) == set()


# --- references and jurisdiction -------------------------------------------------------------


def _finding(judged: Judgment, rule: str) -> Finding:
    return next(f for f in judged.findings if f.rule == rule)


def test_rf1_reference_that_names_nothing() -> None:
    judged = verdict([opened()], disclosure())
    # Nothing on the record authorizes it either: the basis does not hold, nor its exemptions.
    assert judged.rules == {"RF-1", "BA-2", "MN-1"}
    assert "nowhere" in _finding(judged, "RF-1").message
    assert judged.accountable is True


def test_rf1_reference_recorded_only_later() -> None:
    later = authorization(day=20)
    judged = verdict([opened(), later], disclosure(day=10))
    assert judged.rules == {"RF-1", "BA-2", "MN-1"}
    assert "only after" in _finding(judged, "RF-1").message


def test_a_missing_reference_is_judged_against_the_authorization_on_the_record() -> None:
    unnamed = disclosure(legal_basis={"kind": "client_authorization"})
    judged = verdict([opened(), authorization()], unnamed)
    assert judged.rules == set()
    assert judged.instrument == "hipaa general authorization auth-1"
    assert judged.accountable is False


def test_an_unknown_jurisdiction_falls_back_to_the_baseline_and_says_so() -> None:
    judged = verdict([opened("US-NY")], disclosure())
    assert judged.ruleset.startswith("US@")
    assert "no rule set for US-NY" in judged.findings[0].message
