"""Issue 11: verdicts follow what was disclosed, to whom, under which instrument, not the label.

Every fact here is the minimal body a clinical system sends (tests.factories.EXAMPLES: required
fields only), so no optional block makes a disclosure look compliant.
"""

from typing import Any

import pytest

from domain import facts
from domain.policy.engine import Finding, Judgment
from tests.policy_support import at, fact, verdict

COUNSEL = {"name": "Hale & Burke LLP", "kind": "attorney"}
COURT = {"name": "Suffolk Probate and Family Court", "kind": "court"}


def opened(jurisdiction: str = "US-MA", day: float = -30, **fields: Any) -> facts.FactBase:
    return fact("RecordOpened", day, jurisdiction=jurisdiction, **fields)


def release(day: float = 10, **fields: Any) -> facts.FactBase:
    return fact("DisclosureMade", day, **fields)


def one(judged: Judgment, rule: str) -> Finding:
    return next(f for f in judged.findings if f.rule == rule)


def cites(judged: Judgment, rule: str, *sections: str) -> None:
    finding = one(judged, rule)
    for section in sections:
        assert section in finding.citation + finding.message, (rule, section, finding)


# --- the label no longer switches the checks off ----------------------------------------------


def test_notes_to_opposing_counsel_labelled_required_by_law_with_nothing_behind_it() -> None:
    sent = release(
        recipient=COUNSEL,
        categories=["progress_notes", "psychotherapy_notes"],
        legal_basis={"kind": "required_by_law"},
    )
    judged = verdict([opened()], sent)
    assert judged.rules == {"BA-1", "BA-2", "PN-1", "MN-1"}
    cites(judged, "BA-1", "164.103", "164.502(a)")
    cites(judged, "BA-2", "164.512(a)")
    cites(judged, "PN-1", "164.508(a)(2)")
    assert judged.accountable is True
    assert "psychotherapy_notes" in {c.value for c in judged.excess_categories}


def test_an_attorney_subpoena_is_not_a_mandate_required_by_law() -> None:
    subpoena = fact("LegalDemandReceived", 1)  # attorney_subpoena for progress notes
    sent = release(
        recipient=COUNSEL,
        legal_basis={"kind": "required_by_law", "reference_id": "dem-1"},
    )
    judged = verdict([opened(), subpoena], sent)
    assert {"BA-1", "BA-2"} <= judged.rules
    assert "attorney subpoena demand dem-1" in one(judged, "BA-2").message


@pytest.mark.parametrize("label", ["treatment", "to_client"])
def test_progress_notes_to_an_employer_under_a_routine_label(label: str) -> None:
    sent = release(
        recipient={"name": "Bayview Logistics", "kind": "employer"},
        legal_basis={"kind": label},
        purpose_of_use="TREAT",
    )
    judged = verdict([opened()], sent)
    assert judged.rules == {"BA-1", "MN-1"}
    cites(judged, "BA-1", "164.502(a)", "164.506" if label == "treatment" else "164.502(g)")
    assert judged.accountable is True, "it stays in the client's accounting"


def test_treatment_to_a_provider_is_still_exempt() -> None:
    sent = release(
        recipient={"name": "Dr. L. Chen", "kind": "health_provider"},
        legal_basis={"kind": "treatment"},
        purpose_of_use="TREAT",
    )
    judged = verdict([opened()], sent)
    assert judged.rules == set()
    assert judged.accountable is False


def test_part2_records_to_police_labelled_law_enforcement() -> None:
    sent = release(
        recipient={"name": "Oakland Police Department", "kind": "law_enforcement"},
        categories=["sud_records"],
        legal_basis={"kind": "law_enforcement"},
        purpose_of_use="HLEGAL",
    )
    judged = verdict([opened()], sent)
    assert "LG-5" in judged.rules
    cites(judged, "LG-5", "42 CFR 2.12", "2.64")
    assert judged.accountable is True


def test_a_part2_consent_lets_part2_records_go() -> None:
    consent = fact(
        "AuthorizationGranted",
        0,
        kind="part2_specific",
        recipients=[{"name": "Oakland Police Department", "kind": "law_enforcement"}],
        categories=["sud_records"],
    )
    sent = release(
        recipient={"name": "Oakland Police Department", "kind": "law_enforcement"},
        categories=["sud_records"],
        legal_basis={"kind": "part2_consent", "reference_id": "auth-1"},
    )
    assert verdict([opened(), consent], sent).rules == set()


def _couple() -> facts.FactBase:
    return opened(
        setting="couple",
        participants=[{"id": "p-a", "adult": True}, {"id": "p-b", "adult": True}],
    )


def test_a_joint_record_handed_to_one_partner_as_to_client() -> None:
    sent = release(
        recipient={"name": "J. Doe", "kind": "client"}, legal_basis={"kind": "to_client"}
    )
    judged = verdict([_couple()], sent)
    assert judged.rules == {"FA-1"}
    cites(judged, "FA-1", "AAMFT", "not a HIPAA rule")
    other_partner = fact(
        "AuthorizationGranted",
        0,
        participant_id="p-b",
        recipients=[{"name": "J. Doe", "kind": "client"}],
    )
    assert verdict([_couple(), other_partner], sent).rules == set()


# --- one instrument no longer disables whole rules --------------------------------------------


def _subpoena(**fields: Any) -> facts.FactBase:
    return fact("LegalDemandReceived", 1, categories=["appointments", "progress_notes"], **fields)


def _order(**fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {"demand_id": "dem-1", "categories": ["appointments"]}
    return fact("CourtOrderIssued", 5, **(base | fields))


def _answer(**fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {
        "recipient": COUNSEL,
        "legal_basis": {"kind": "subpoena_with_assurances", "reference_id": "dem-1"},
    }
    return release(**(base | fields))


def test_an_order_for_part_of_a_subpoena_does_not_answer_the_rest() -> None:
    order = _order(recipients=[COUNSEL])
    judged = verdict([opened(), _subpoena(), order], _answer())
    assert "LG-1" in judged.rules
    cites(judged, "LG-1", "164.512(e)(1)(ii)")
    covered = verdict([opened(), _subpoena(), order], _answer(categories=["appointments"]))
    assert "LG-1" not in covered.rules


def test_an_order_pierces_privilege_only_as_far_as_it_reaches() -> None:
    asserted = fact("PrivilegeAsserted", 2)
    order = _order(recipients=[COUNSEL])
    judged = verdict([opened(), _subpoena(), asserted, order], _answer())
    assert {"LG-1", "LG-4"} <= judged.rules
    assert "progress_notes" in one(judged, "LG-4").message
    assert "c.233 s.20B" in one(judged, "LG-4").message, "the state statute is named"
    inside = verdict([opened(), _subpoena(), asserted, order], _answer(categories=["appointments"]))
    assert "LG-4" not in inside.rules


def test_a_billing_only_authorization_does_not_answer_a_subpoena() -> None:
    billing = fact(
        "AuthorizationGranted",
        0,
        recipients=[COUNSEL],
        purposes=["HPAYMT"],
        categories=["insurance_billing"],
    )
    judged = verdict([opened(), _subpoena(), billing], _answer(purpose_of_use="HLEGAL"))
    assert "LG-1" in judged.rules
    legal = fact("AuthorizationGranted", 0, authorization_id="auth-2", recipients=[COUNSEL])
    assert "LG-1" not in verdict([opened(), _subpoena(), billing, legal], _answer()).rules


# --- a missing reference no longer downgrades the verdict -------------------------------------


def test_a_release_after_revocation_with_no_reference_is_au1() -> None:
    granted = fact("AuthorizationGranted", 0)
    revoked = fact("AuthorizationRevoked", 5)
    sent = release(legal_basis={"kind": "client_authorization"})
    judged = verdict([opened(), granted, revoked], sent)
    assert judged.rules == {"AU-1"}
    cites(judged, "AU-1", "164.508(b)(5)")
    assert "judged against hipaa general authorization auth-1" in one(judged, "AU-1").message
    assert judged.instrument == "hipaa general authorization auth-1"
    assert judged.accountable is True


def test_with_no_reference_the_instrument_that_covers_best_is_used() -> None:
    narrow = fact("AuthorizationGranted", 0, authorization_id="auth-a", categories=["diagnosis"])
    wide = fact("AuthorizationGranted", 1, authorization_id="auth-b")  # progress notes
    sent = release(legal_basis={"kind": "client_authorization"})
    judged = verdict([opened(), narrow, wide], sent)
    assert judged.rules == set()
    assert judged.instrument == "hipaa general authorization auth-b"


def test_none_stated_is_judged_against_what_the_record_holds() -> None:
    sent = release(legal_basis={"kind": "none_stated"})
    assert verdict([opened()], sent).rules == {"BA-2", "MN-1"}
    covered = verdict([opened(), fact("AuthorizationGranted", 0)], sent)
    assert covered.rules == set()
    assert covered.accountable is False, "164.528(a)(1)(iv): made under an authorization"


# --- validity and form ------------------------------------------------------------------------


def test_a_release_under_an_oral_authorization_is_not_authorized() -> None:
    oral = fact("AuthorizationGranted", 0, in_writing=False)
    judged = verdict([opened(), oral], release())
    assert judged.rules == {"AU-3"}
    cites(judged, "AU-3", "164.508(b)(1)", "164.508(c)(1)(vi)")
    assert judged.accountable is True


def test_an_oral_revocation_is_flagged_but_does_not_end_the_authorization() -> None:
    granted = fact("AuthorizationGranted", 0)
    oral = fact("AuthorizationRevoked", 5, in_writing=False)
    judged = verdict([opened(), granted, oral], release())
    assert judged.rules == {"AU-4"}
    assert "orally" in one(judged, "AU-4").message
    cites(judged, "AU-4", "164.508(b)(5)")
    written = fact("AuthorizationRevoked", 7)
    assert verdict([opened(), granted, oral, written], release()).rules == {"AU-1"}


def test_an_oral_waiver_does_not_cover_a_release_after_privilege_was_asserted() -> None:
    protected = fact(
        "LegalDemandReceived", 1, assurances={"protective_order": True}
    )  # progress notes
    asserted = fact("PrivilegeAsserted", 2)
    oral = fact("PrivilegeWaived", 3, categories=["progress_notes"], in_writing=False)
    judged = verdict([opened(), protected, asserted, oral], _answer(categories=["progress_notes"]))
    assert judged.rules == {"LG-4", "MN-1"}, "164.512(e)(1)(ii) is not required by law"
    assert "not in writing" in one(judged, "LG-4").message
    written = fact("PrivilegeWaived", 3, categories=["progress_notes"])
    assert verdict([opened(), protected, asserted, written], _answer()).rules == {"MN-1"}


# --- reports and warnings are disclosures too -------------------------------------------------


def _report(**fields: Any) -> facts.FactBase:
    base: dict[str, Any] = {"suspected_at": at(3)}
    return fact("MandatedReportFiled", fields.pop("day", 3.5), **(base | fields))


def test_a_report_carrying_psychotherapy_notes_is_mn2_on_the_report() -> None:
    report = _report(
        categories=["demographics", "psychotherapy_notes"],
        oral_at=at(3),
        written_at=at(3.5),
    )
    judged = verdict([opened()], report)
    assert judged.rules == {"MN-2"}
    cites(judged, "MN-2", "164.512(b)(1)(ii)", "c.119 s.51A")
    assert judged.accountable is True, "a 164.512(b) disclosure is accountable"


@pytest.mark.parametrize(
    ("times", "says"),
    [
        ({"oral_at": at(3)}, "no written report time"),
        ({"written_at": at(3.5)}, "no oral report time"),
        ({}, "no oral report time"),
    ],
    ids=["no-written", "no-oral", "neither"],
)
def test_a_missing_report_time_after_the_deadline_is_mr1(times: dict[str, str], says: str) -> None:
    judged = verdict([opened()], _report(day=6, **times))  # 72 h after the suspicion
    assert judged.rules == {"MR-1"}
    assert says in one(judged, "MR-1").message
    assert "c.119 s.51A" in one(judged, "MR-1").message


def test_a_missing_time_before_the_deadline_is_not_yet_late() -> None:
    assert verdict([opened()], _report(day=3.2, oral_at=at(3))).rules == set()


@pytest.mark.parametrize(
    ("jurisdiction", "citation"),
    [("US-MA", "c.19C s.10"), ("US-CA", "15630")],
)
def test_disabled_person_abuse_has_state_deadlines(jurisdiction: str, citation: str) -> None:
    late = _report(day=6, kind="disabled_person_abuse", oral_at=at(3), written_at=at(6))
    judged = verdict([opened(jurisdiction)], late)
    assert judged.rules == {"MR-1"}
    assert citation in one(judged, "MR-1").message


def test_immediately_is_a_cited_bound() -> None:
    slow_call = _report(day=5, oral_at=at(4.5), written_at=at(4.6))  # oral 36 h after
    judged = verdict([opened()], slow_call)
    assert judged.rules == {"MR-1"}
    message = one(judged, "MR-1").message
    assert "'immediately', applied as 24 h" in message
    assert "counsel sets it" in message


def test_a_california_warning_must_reach_victim_and_police() -> None:
    victim_only = fact("DutyToWarnExercised", 5)  # notified: the victim only
    judged = verdict([opened("US-CA")], victim_only)
    assert judged.rules == {"DW-2"}
    cites(judged, "DW-2", "43.92(b)")
    assert judged.accountable is True
    both = fact(
        "DutyToWarnExercised",
        5,
        notified=[
            {"name": "K. Moreau", "kind": "victim"},
            {"name": "Oakland Police Department", "kind": "law_enforcement"},
        ],
    )
    assert verdict([opened("US-CA")], both).rules == set()
    assert verdict([opened("US-MA")], victim_only).rules == set(), "MA has no such duty"


# --- false positives on lawful routine work ---------------------------------------------------


def test_a_minimal_court_ordered_release_raises_nothing() -> None:
    order = fact("CourtOrderIssued", 5)  # appointments and diagnosis, to the court
    sent = release(
        recipient=COURT,
        categories=["appointments", "diagnosis"],
        legal_basis={"kind": "court_order", "reference_id": "ord-1"},
        purpose_of_use="HLEGAL",
    )
    judged = verdict([opened(), order], sent)
    assert judged.rules == set(), "164.502(b)(2)(v): no minimum-necessary block is needed"
    assert judged.accountable is True


def test_a_minimal_mandated_report_disclosure_raises_nothing() -> None:
    report = _report(oral_at=at(3), written_at=at(3.5))
    sent = release(
        day=3.5,
        recipient={"name": "Department of Children and Families", "kind": "government_agency"},
        categories=["demographics"],
        legal_basis={"kind": "mandated_report", "reference_id": "rep-1"},
        purpose_of_use="PUBHLTH",
    )
    assert verdict([opened(), report], sent).rules == set()


def test_psychotherapy_notes_inside_an_order_that_lists_them() -> None:
    order = fact("CourtOrderIssued", 5, categories=["psychotherapy_notes"])
    sent = release(
        recipient=COURT,
        categories=["psychotherapy_notes"],
        legal_basis={"kind": "court_order", "reference_id": "ord-1"},
    )
    judged = verdict([opened(), order], sent)
    assert judged.rules == set(), "164.508(a)(2)(ii) via 164.512(a)"
    elsewhere = release(
        recipient=COUNSEL,
        categories=["psychotherapy_notes"],
        legal_basis={"kind": "court_order", "reference_id": "ord-1"},
    )
    assert {"LG-3", "PN-1"} <= verdict([opened(), order], elsewhere).rules


def test_an_undated_release_under_a_dated_order_is_a_low_cannot_verify() -> None:
    order = fact("CourtOrderIssued", 5, records_from="2025-06-01", records_until="2026-03-31")
    sent = release(
        recipient=COURT,
        categories=["diagnosis"],
        legal_basis={"kind": "court_order", "reference_id": "ord-1"},
    )
    judged = verdict([opened(), order], sent)
    assert judged.rules == {"SC-1"}
    assert one(judged, "SC-1").severity == "low"
    outside = release(
        recipient=COURT,
        categories=["diagnosis"],
        records_from="2024-01-01",
        records_until="2024-12-31",
        legal_basis={"kind": "court_order", "reference_id": "ord-1"},
    )
    assert verdict([opened(), order], outside).rules == {"LG-3"}


@pytest.mark.parametrize(
    "name", ["Morgan and Lee, LLP", "MORGAN & LEE", "Morgan & Lee, L.L.P.", "morgan and lee llc"]
)
def test_recipients_match_on_a_normalised_name(name: str) -> None:
    granted = fact("AuthorizationGranted", 0)  # to "Morgan & Lee LLP"
    sent = release(recipient={"name": name, "kind": "attorney"})
    assert verdict([opened(), granted], sent).rules == set()


def test_an_identifier_decides_when_both_sides_give_one() -> None:
    firm = {"name": "Morgan & Lee LLP", "kind": "attorney", "identifier": "bar-1001"}
    granted = fact("AuthorizationGranted", 0, recipients=[firm])
    renamed = release(recipient={**firm, "name": "ML Legal"})
    assert verdict([opened(), granted], renamed).rules == set()
    namesake = release(recipient={**firm, "identifier": "bar-2002"})
    assert verdict([opened(), granted], namesake).rules == {"AU-2"}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("health_provider", set()), ("potential_victim", set()), ("employer", {"DW-1"})],
    ids=["psychiatric-emergency-team", "the-target", "employer"],
)
def test_dw1_only_for_a_party_neither_the_target_nor_able_to_prevent(
    kind: str, expected: set[str]
) -> None:
    warning = fact(
        "DutyToWarnExercised",
        5,
        notified=[
            {"name": "K. Moreau", "kind": "victim"},
            {"name": "Oakland Police Department", "kind": "law_enforcement"},
        ],
    )
    sent = release(
        day=5.1,
        recipient={"name": "Alameda County Psychiatric Emergency Team", "kind": kind},
        categories=["risk_assessment"],
        legal_basis={"kind": "duty_to_warn", "reference_id": "warn-1"},
        purpose_of_use="THREAT",
    )
    judged = verdict([opened("US-CA"), warning], sent)
    assert judged.rules == expected
    if expected:
        cites(judged, "DW-1", "164.512(j)(1)(i)(B)")


# --- jurisdiction as of the fact --------------------------------------------------------------


def test_a_later_record_opened_does_not_re_judge_the_past() -> None:
    report = _report(day=4.7, oral_at=at(3), written_at=at(4.7))  # written after 40 h
    ma, ca = opened("US-MA"), opened("US-CA", day=20)
    before = verdict([ma, ca], report)
    assert before.rules == set(), "48 h in Massachusetts, where the record was then"
    assert before.ruleset.startswith("US-MA@")
    after = _report(day=24.7, suspected_at=at(23), oral_at=at(23), written_at=at(24.7))
    moved = verdict([ma, ca], after)
    assert moved.rules == {"MR-1"}, "36 h in California, once the client moved"
    assert moved.ruleset.startswith("US-CA@")


def test_an_id_shared_by_two_instruments_resolves_to_the_one_the_basis_relies_on() -> None:
    grant = fact("AuthorizationGranted", 0, authorization_id="x-1", recipients=[COURT])
    order = fact("CourtOrderIssued", 5, order_id="x-1", categories=["diagnosis"])
    sent = release(
        recipient=COURT,
        categories=["diagnosis"],
        legal_basis={"kind": "court_order", "reference_id": "x-1"},
    )
    judged = verdict([opened(), grant, order], sent)
    assert judged.instrument == "order x-1"
    assert judged.relied_on == ("order", "x-1")
    assert judged.rules == set()


def test_with_no_reference_an_order_listing_the_notes_is_preferred_to_one_that_does_not() -> None:
    listing = fact("CourtOrderIssued", 4, order_id="ord-a", categories=["psychotherapy_notes"])
    silent = fact("CourtOrderIssued", 5, order_id="ord-b", categories=["diagnosis"])
    sent = release(
        recipient=COURT, categories=["psychotherapy_notes"], legal_basis={"kind": "court_order"}
    )
    judged = verdict([opened(), listing, silent], sent)
    assert judged.rules == set()
    assert judged.instrument == "order ord-a"


def test_a_release_to_counsel_is_never_taken_for_a_copy_of_an_abuse_report() -> None:
    report = _report(oral_at=at(3), written_at=at(3.5))
    sent = release(recipient=COUNSEL, legal_basis={"kind": "required_by_law"})
    judged = verdict([opened(), report], sent)
    assert {"BA-1", "BA-2"} <= judged.rules
    assert judged.instrument is None
