"""Invariants of the engine, over generated histories (hypothesis)."""

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import facts
from domain.vocabulary import DataCategory, LegalBasisKind, PurposeOfUse
from tests.policy_support import at, fact, rules_of, verdict

CATEGORIES = sorted(c.value for c in DataCategory)
PURPOSES = sorted(p.value for p in PurposeOfUse)
RECIPIENT_KINDS = ["attorney", "court", "parent", "health_provider", "employer", "other"]

categories = st.sets(st.sampled_from(CATEGORIES), min_size=1, max_size=6).map(sorted)
days = st.integers(min_value=-200, max_value=200)


@st.composite
def disclosures(draw: st.DrawFn, reference: str = "auth-x") -> dict[str, Any]:
    start = draw(st.integers(min_value=0, max_value=300))
    length = draw(st.integers(min_value=0, max_value=300))
    return {
        "recipient": {
            "name": draw(st.sampled_from(["Morgan & Lee LLP", "R. Novak", "Harbor Life"])),
            "kind": draw(st.sampled_from(RECIPIENT_KINDS)),
        },
        "categories": draw(categories),
        "records_from": f"2025-{1 + start // 31 % 12:02d}-{1 + start % 28:02d}",
        "records_until": f"2026-{1 + length // 31 % 12:02d}-{1 + length % 28:02d}",
        "legal_basis": {"kind": "client_authorization", "reference_id": reference},
        "purpose_of_use": draw(st.sampled_from(PURPOSES)),
        "minimum_necessary": draw(st.sampled_from([None, {"mode": "protocol"}])),
    }


@st.composite
def histories(draw: st.DrawFn) -> list[facts.FactBase]:
    """Records with random legal facts, each at a distinct day."""
    day_pool = draw(st.lists(days, min_size=1, max_size=12, unique=True))
    history: list[facts.FactBase] = [
        fact(
            "RecordOpened",
            day_pool[0] - 400,
            jurisdiction=draw(st.sampled_from(["US", "US-MA", "US-CA", "US-NY"])),
            setting=draw(st.sampled_from(["individual", "couple"])),
            participants=[{"id": "p-a", "adult": True}, {"id": "p-b", "adult": True}],
            client_birth_date=draw(st.sampled_from(["2009-06-01", "1980-01-01"])),
            minor_consented_to_treatment=draw(st.booleans()),
        )
    ]
    for n, day in enumerate(day_pool[1:]):
        kind = draw(st.sampled_from(["grant", "revoke", "demand", "order", "assert"]))
        # Never "auth-x": the property adds a *valid* authorization under that id.
        ident = draw(st.sampled_from(["auth-y", "auth-0", "dem-1"]))
        if kind == "grant":
            history.append(fact("AuthorizationGranted", day, authorization_id=f"auth-{n}",
                                categories=draw(categories), participant_id="p-a"))  # fmt: skip
        elif kind == "revoke":
            history.append(fact("AuthorizationRevoked", day, authorization_id=ident))
        elif kind == "demand":
            history.append(fact("LegalDemandReceived", day, demand_id="dem-1"))
        elif kind == "order":
            history.append(fact("CourtOrderIssued", day, order_id=f"ord-{n}", demand_id="dem-1",
                                categories=draw(categories)))  # fmt: skip
        else:
            history.append(fact("PrivilegeAsserted", day, demand_id="dem-1"))
    return history


def _covering(release: facts.DisclosureMade, day: int) -> facts.FactBase:
    """An authorization that covers exactly what ``release`` disclosed."""
    notes = DataCategory.PSYCHOTHERAPY_NOTES in release.categories
    return fact(
        "AuthorizationGranted",
        day,
        authorization_id="auth-x",
        kind="psychotherapy_notes" if notes else "hipaa_general",
        granted_by="client",
        recipients=[release.recipient.model_dump(exclude_none=True)],
        purposes=[release.purpose_of_use.value],
        categories=[c.value for c in release.categories],
        records_from=release.records_from.isoformat() if release.records_from else None,
        records_until=release.records_until.isoformat() if release.records_until else None,
    )


@settings(max_examples=150, deadline=None)
@given(history=histories(), shape=disclosures(), gap=st.integers(min_value=1, max_value=60))
def test_a_covering_authorization_never_adds_a_finding(
    history: list[facts.FactBase], shape: dict[str, Any], gap: int
) -> None:
    release = fact("DisclosureMade", 250, **shape)
    assert isinstance(release, facts.DisclosureMade)
    without = rules_of(history, release)
    with_auth = rules_of([*history, _covering(release, 250 - gap)], release)
    assert with_auth <= without


@settings(max_examples=150, deadline=None)
@given(
    allowed=st.sets(st.sampled_from(CATEGORIES), min_size=2, max_size=10),
    data=st.data(),
)
def test_a_strict_subset_of_what_the_basis_allows_is_never_excess(
    allowed: set[str], data: st.DataObject
) -> None:
    subset = data.draw(st.sets(st.sampled_from(sorted(allowed)), min_size=1,
                               max_size=len(allowed) - 1))  # fmt: skip
    opened = fact("RecordOpened", -10, jurisdiction="US-MA")
    auth = fact("AuthorizationGranted", 0, authorization_id="auth-x", categories=sorted(allowed))
    order = fact("CourtOrderIssued", 0, order_id="ord-x", categories=sorted(allowed))
    under_auth = fact(
        "DisclosureMade",
        5,
        categories=sorted(subset),
        legal_basis={"kind": "client_authorization", "reference_id": "auth-x"},
    )
    under_order = fact(
        "DisclosureMade",
        5,
        recipient={"name": "Suffolk Probate and Family Court", "kind": "court"},
        categories=sorted(subset),
        legal_basis={"kind": "court_order", "reference_id": "ord-x"},
        minimum_necessary={"mode": "individual_review"},
    )
    for release in (under_auth, under_order):
        judged = verdict([opened, auth, order], release)
        beyond_notes = {c.value for c in judged.excess_categories} - {"psychotherapy_notes"}
        assert beyond_notes == set()
        if "psychotherapy_notes" not in subset:
            assert judged.excess_categories == ()


@settings(max_examples=100, deadline=None)
@given(history=histories(), shape=disclosures(), seed=st.integers(0, 2**32 - 1))
def test_judgment_is_deterministic_and_independent_of_recorded_order(
    history: list[facts.FactBase], shape: dict[str, Any], seed: int
) -> None:
    release = fact("DisclosureMade", 100, **shape)
    first = verdict(history, release)
    shuffled = list(history)
    random.Random(seed).shuffle(shuffled)  # noqa: S311 - a test permutation, not a secret
    assert verdict(shuffled, release) == first
    assert verdict(history, release) == first


def test_a_late_revocation_with_an_earlier_occurred_at_re_judges_the_disclosure() -> None:
    opened = fact("RecordOpened", -10, jurisdiction="US-MA")
    auth = fact("AuthorizationGranted", 0, authorization_id="auth-1")
    release = fact(
        "DisclosureMade",
        10,
        legal_basis={"kind": "client_authorization", "reference_id": "auth-1"},
    )
    assert rules_of([opened, auth], release) == set(), "as judged at ingest"
    # Recorded after the disclosure, but it happened on day 8: the client had revoked already.
    revocation = fact("AuthorizationRevoked", 8, authorization_id="auth-1")
    rejudged = verdict([opened, auth, release, revocation], release)
    assert rejudged.rules == {"AU-1"}
    assert revocation.event_id in rejudged.findings[0].evidence
    assert rejudged.accountable is True
    assert at(8) < at(10)


BASES = sorted(b.value for b in LegalBasisKind)
REFERENCES = [None, "auth-0", "auth-1", "ord-0", "dem-1", "rep-0", "warn-0", "nothing-9"]
tie_days = st.integers(min_value=-5, max_value=5)  # a narrow pool: many facts share a moment


@st.composite
def mixed_histories(draw: st.DrawFn) -> list[facts.FactBase]:
    """Every kind of legal fact and every kind of judged fact, many at the same moment."""
    history: list[facts.FactBase] = []
    for n in range(draw(st.integers(min_value=1, max_value=14))):
        day = draw(tie_days)
        kind = draw(st.sampled_from(["opened", "grant", "revoke", "demand", "order", "assert",
                                     "waive", "report", "warn", "release", "access"]))  # fmt: skip
        ident = f"{n % 2}"
        if kind == "opened":
            history.append(fact("RecordOpened", day - 2,
                                jurisdiction=draw(st.sampled_from(["US", "US-MA", "US-CA"])),
                                part2_program=draw(st.booleans())))  # fmt: skip
        elif kind == "grant":
            history.append(fact("AuthorizationGranted", day, authorization_id=f"auth-{ident}",
                                kind=draw(st.sampled_from(["hipaa_general", "psychotherapy_notes",
                                                           "part2_specific"])),
                                categories=draw(categories),
                                in_writing=draw(st.booleans())))  # fmt: skip
        elif kind == "revoke":
            history.append(fact("AuthorizationRevoked", day, authorization_id=f"auth-{ident}",
                                in_writing=draw(st.booleans())))  # fmt: skip
        elif kind == "demand":
            history.append(fact("LegalDemandReceived", day, demand_id="dem-1",
                                kind=draw(st.sampled_from(["attorney_subpoena", "warrant"])),
                                categories=draw(categories)))  # fmt: skip
        elif kind == "order":
            history.append(fact("CourtOrderIssued", day, order_id=f"ord-{ident}",
                                demand_id="dem-1", categories=draw(categories),
                                pierces_privilege=draw(st.booleans()),
                                part2_findings=draw(st.booleans())))  # fmt: skip
        elif kind == "assert":
            history.append(fact("PrivilegeAsserted", day, demand_id="dem-1"))
        elif kind == "waive":
            history.append(fact("PrivilegeWaived", day, demand_id="dem-1",
                                categories=draw(categories),
                                in_writing=draw(st.booleans())))  # fmt: skip
        elif kind == "report":
            history.append(fact("MandatedReportFiled", day, report_id=f"rep-{ident}",
                                suspected_at=at(day - draw(st.sampled_from([0.5, 3]))),
                                categories=draw(categories)))  # fmt: skip
        elif kind == "warn":
            history.append(fact("DutyToWarnExercised", day, warning_id=f"warn-{ident}",
                                categories=draw(categories)))  # fmt: skip
        elif kind == "release":
            history.append(fact("DisclosureMade", day, disclosure_id=f"dis-{n}",
                                recipient={"name": draw(st.sampled_from(
                                    ["Morgan and Lee, LLP", "K. Moreau", "Hale & Burke LLP"])),
                                    "kind": draw(st.sampled_from(RECIPIENT_KINDS))},
                                categories=draw(categories),
                                legal_basis={
                                    "kind": draw(st.sampled_from(BASES)),
                                    "reference_id": draw(st.sampled_from(REFERENCES)),
                                }))  # fmt: skip
        else:
            history.append(fact("RecordAccessed", day, break_glass=draw(st.booleans())))
    return history


@settings(max_examples=200, deadline=None)
@given(history=mixed_histories(), seed=st.integers(0, 2**32 - 1))
def test_no_verdict_depends_on_posting_order_only_on_occurred_at(
    history: list[facts.FactBase], seed: int
) -> None:
    """Acceptance 3: every fact's verdict against the whole record is the same whatever order
    the facts were posted in; facts at the same moment are ordered by event id."""
    posted = list(history)
    random.Random(seed).shuffle(posted)  # noqa: S311 - a test permutation, not a secret
    for subject in history:
        assert verdict(posted, subject) == verdict(history, subject)
