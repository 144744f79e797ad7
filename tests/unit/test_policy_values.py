"""Every value in the rule files is read: changing it changes a verdict.

A value that no verdict depends on would be an illusion of configurability, so the last test
checks that every cited value of every shipped rule set has a case here.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from pydantic import BaseModel

from domain import facts
from domain.policy.accounting import judged, plan
from domain.policy.engine import judge, judge_on_record
from domain.policy.rulesets import Cited, Rulebook, Ruleset
from domain.vocabulary import LegalBasisKind
from tests.policy_support import BOOK, at, fact

READ_ELSEWHERE = {
    "accounting.lookback_years": "the 164.528 accounting's window, not a verdict: "
    "test_the_accounting_lookback_sets_the_window",
}


@dataclass(frozen=True)
class Case:
    """Judge ``subject`` after ``history`` under ``jurisdiction``, then with ``path`` set to
    ``value``; the two judgments must differ."""

    jurisdiction: str
    path: str
    value: Any
    history: Callable[[], list[facts.FactBase]]
    subject: Callable[[], facts.FactBase]


def _changed(ruleset: Ruleset, path: str, value: Any) -> Ruleset:
    data = ruleset.model_dump()
    node = data
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[LegalBasisKind(key) if node is data["bases"] else key]
    node[leaf] = {**node[leaf], "value": value}
    return Ruleset.model_validate(data)


def _opened(jurisdiction: str, **fields: Any) -> Callable[[], list[facts.FactBase]]:
    return lambda: [fact("RecordOpened", -30, jurisdiction=jurisdiction, **fields)]


def _with(
    jurisdiction: str, *more: Callable[[], facts.FactBase], **opened: Any
) -> Callable[[], list[facts.FactBase]]:
    return lambda: [*_opened(jurisdiction, **opened)(), *(m() for m in more)]


def _release(**fields: Any) -> Callable[[], facts.FactBase]:
    return lambda: fact("DisclosureMade", 10, **fields)


def _basis_cases() -> Iterator[Case]:
    us = BOOK.rulesets["US"]
    for kind, profile in us.bases.items():
        listed = [k for k in profile.recipients.value if k != "any"]
        recipient = {"name": "R. Somebody", "kind": listed[0] if listed else "attorney"}
        subject = _release(recipient=recipient, legal_basis={"kind": kind.value})
        yield Case("US", f"bases.{kind.value}.recipients", [], _opened("US"), subject)
        swapped = [] if profile.instruments.value else ["warning"]
        yield Case("US", f"bases.{kind.value}.instruments", swapped, _opened("US"), subject)


def _report(kind: str, oral_after: float, written_after: float) -> Callable[[], facts.FactBase]:
    return lambda: fact(
        "MandatedReportFiled",
        3 + written_after / 24,
        kind=kind,
        suspected_at=at(3),
        oral_at=at(3 + oral_after / 24),
        written_at=at(3 + written_after / 24),
        categories=["demographics", "appointments"],
    )


def _deadline_cases() -> Iterator[Case]:
    for jurisdiction in ("US-MA", "US-CA"):
        for kind in ("child_abuse", "elder_abuse", "disabled_person_abuse"):
            base = f"mandated_report.{kind}"
            history = _opened(jurisdiction)
            # Oral 30 h after the suspicion is late for "immediately"; 72 h would allow it.
            yield Case(jurisdiction, f"{base}.oral_within_hours", 72, history,
                       _report(kind, 30, 30))  # fmt: skip
            yield Case(jurisdiction, f"{base}.written_within_hours", 10, history,
                       _report(kind, 1, 30))  # fmt: skip
        yield Case(jurisdiction, "mandated_report.child_abuse.allowed_categories",
                   ["demographics"], _opened(jurisdiction),
                   _report("child_abuse", 1, 2))  # fmt: skip


THREAT = {"legal_basis": {"kind": "duty_to_warn", "reference_id": "warn-1"},
          "purpose_of_use": "THREAT", "categories": ["risk_assessment"]}  # fmt: skip
WARNING = lambda: fact("DutyToWarnExercised", 5)  # noqa: E731 - a one-line builder
MINOR = {"client_birth_date": "2009-06-01", "minor_consented_to_treatment": True}
TO_PARENT = _release(
    recipient={"name": "R. Novak", "kind": "parent"},
    legal_basis={"kind": "to_client"},
    purpose_of_use="FAMRQT",
)
ORDER_NOTES = lambda: fact("CourtOrderIssued", 5, categories=["psychotherapy_notes"])  # noqa: E731
COURT = {"name": "Suffolk Probate and Family Court", "kind": "court"}

CASES: list[Case] = [
    *_basis_cases(),
    *_deadline_cases(),
    Case("US", "authorizations.oral_revocation_effective", True,
         _with("US", lambda: fact("AuthorizationGranted", 0),
               lambda: fact("AuthorizationRevoked", 5, in_writing=False)), _release()),
    Case("US", "psychotherapy_notes.exempt_bases", ["required_by_law"],
         _with("US", ORDER_NOTES),
         _release(recipient=COURT, categories=["psychotherapy_notes"],
                  legal_basis={"kind": "court_order", "reference_id": "ord-1"})),
    Case("US", "minimum_necessary.exempt_bases", ["treatment"],
         _with("US", lambda: fact("CourtOrderIssued", 5)),
         _release(recipient=COURT, categories=["diagnosis"],
                  legal_basis={"kind": "court_order", "reference_id": "ord-1"})),
    Case("US", "part2.exempt_bases", ["emergency"], _opened("US"),
         _release(recipient={"name": "J. Doe", "kind": "client"}, categories=["sud_records"],
                  legal_basis={"kind": "to_client"})),
    Case("US", "accounting.exempt_bases", ["payment"], _opened("US"),
         _release(recipient={"name": "Dr. L. Chen", "kind": "health_provider"},
                  legal_basis={"kind": "treatment"})),
    Case("US", "mandated_report.allowed_categories", ["demographics", "diagnosis"],
         _opened("US"),
         lambda: fact("MandatedReportFiled", 4, suspected_at=at(3),
                      categories=["demographics", "diagnosis"])),
    Case("US-MA", "mandated_report.immediately_hours", 48, _opened("US-MA"),
         _report("child_abuse", 30, 30)),
    Case("US", "duty_to_warn.permitted_recipients", ["potential_victim"], _with("US", WARNING),
         _release(recipient={"name": "Crisis Team", "kind": "health_provider"}, **THREAT)),
    Case("US", "duty_to_warn.allowed_categories", ["demographics"], _with("US", WARNING),
         _release(recipient={"name": "K. Moreau", "kind": "potential_victim"}, **THREAT)),
    Case("US-MA", "duty_to_warn.standard", "another standard", _with("US-MA", WARNING),
         _release(recipient={"name": "Bayview", "kind": "employer"}, **THREAT)),
    Case("US-CA", "duty_to_warn.standard", "another standard", _with("US-CA", WARNING),
         _release(recipient={"name": "Bayview", "kind": "employer"}, **THREAT)),
    Case("US", "duty_to_warn.standard", "another standard", _with("US", WARNING),
         _release(recipient={"name": "Bayview", "kind": "employer"}, **THREAT)),
    Case("US-CA", "duty_to_warn.must_notify", ["victim"], _opened("US-CA"), WARNING),
    *(
        Case(j, "privilege.statute", "another statute",
             _with(j, lambda: fact("LegalDemandReceived", 1, assurances={"protective_order": True}),
                   lambda: fact("PrivilegeAsserted", 2)),
             _release(recipient={"name": "Hale & Burke LLP", "kind": "attorney"},
                      legal_basis={"kind": "subpoena_with_assurances", "reference_id": "dem-1"}))
        for j in ("US", "US-MA", "US-CA")
    ),
    Case("US", "minors.age_of_majority", 16, _opened("US", **MINOR), TO_PARENT),
    Case("US-CA", "minors.minor_consent_age", 17, _opened("US-CA", **MINOR), TO_PARENT),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[f"{c.jurisdiction}:{c.path}" for c in CASES])
def test_changing_the_value_changes_the_verdict(case: Case) -> None:
    ruleset = BOOK.rulesets[case.jurisdiction]
    history, subject = case.history(), case.subject()
    before = judge(history, subject, ruleset)
    after = judge(history, subject, _changed(ruleset, case.path, case.value))
    assert after != before, case.path


def _cited_paths(node: object, prefix: str = "") -> Iterator[str]:
    if isinstance(node, Cited):
        yield prefix.removeprefix(".")
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _cited_paths(value, f"{prefix}.{getattr(key, 'value', key)}")
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _cited_paths(getattr(node, name), f"{prefix}.{name}")


@pytest.mark.parametrize("ident", sorted(BOOK.rulesets))
def test_every_cited_value_has_a_case_or_a_reader_elsewhere(ident: str) -> None:
    # One code path reads a value whichever rule set holds it, so a case in any jurisdiction
    # covers the path; states are given their own cases where their law differs.
    covered = {c.path for c in CASES}
    missing = set(_cited_paths(BOOK.rulesets[ident])) - covered - set(READ_ELSEWHERE)
    assert missing == set()


@pytest.mark.parametrize("jurisdiction", ["US", "US-CA"])
def test_the_accounting_lookback_sets_the_window(jurisdiction: str) -> None:
    # A release required by law on 2026-01-05, and an accounting asked for seven years later.
    history = _opened(jurisdiction)()
    release = fact("DisclosureMade", 0, legal_basis={"kind": "required_by_law"})
    today = date(2033, 1, 6)
    for years, listed in ((6, False), (8, True)):
        ruleset = _changed(BOOK.rulesets[jurisdiction], "accounting.lookback_years", years)
        book = Rulebook({**BOOK.rulesets, jurisdiction: ruleset})
        judgment = judge_on_record(book, history, release)
        assert isinstance(release, facts.DisclosureMade)
        assert judgment.accountable, judgment
        entries = plan([judged(book, 1, release, judgment)], since=None, until=today, today=today)
        assert bool(entries) is listed, years
