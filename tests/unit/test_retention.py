"""Retention schedules: due dates computed by hand from the cited rules, and what blocks them.

Every row of ``CASES`` was worked out by hand from the rule it cites (issue 14, acceptance 4):
keep_until = max(last service + adult years, (birth + 18) + minor years); due = keep_until + 1.
Years are calendar years; 29 February plus N years in a common year is 1 March.

- US (federal baseline; HIPAA sets none for the record): APA Record Keeping Guidelines (2007),
  7 years after the last service; a minor's 3 years after majority (18) or 7 years after the
  last service, whichever is later.
- US-MA: 262 CMR 8.02(1)(b), 7 years from the last professional contact; a minor's one year
  after majority (18: M.G.L. c.4 s.7 cl.51) and in no event less than 7 years.
- US-CA: Cal. Bus. & Prof. Code 4980.49, 4989.51, 4999.75 (SB 578, 2014), 7 years from
  termination; a minor's 7 years from the date the client reaches 18 (Cal. Fam. Code 6500).
"""

import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from domain import facts
from domain.policy.retention import Retention, add_years, retention_of
from domain.policy.rulesets import BUILTIN_RULES, Rulebook, RulesetError
from domain.vocabulary import DemandOutcome
from tests.factories import example
from tests.policy_support import broken_rules

BOOK = Rulebook.load()
_FACT: TypeAdapter[facts.FactBase] = TypeAdapter(facts.Fact)
FAR = date(2201, 1, 1)  # judged after every fact a client may send (years up to 2200)

US = "APA Record Keeping Guidelines (2007)"
MA = "262 CMR 8.02(1)(b)"
CA = "Cal. Bus. & Prof. Code 4980.49"


def _fact(type_: str, day: date, **fields: Any) -> facts.FactBase:
    return _FACT.validate_python(
        example(type_, occurred_at=f"{day.isoformat()}T12:00:00-05:00", **fields)
    )


def _opened(day: date, jurisdiction: str, birth: date | None, **fields: Any) -> facts.FactBase:
    birth_date = {"client_birth_date": birth.isoformat()} if birth else {}
    return _fact("RecordOpened", day, jurisdiction=jurisdiction, **birth_date, **fields)


def _seen(day: date, role: str = "treating_clinician", purpose: str = "TREAT") -> facts.FactBase:
    actor = {"id": "staff-1", "name": "A. Staff", "role": role}
    return _fact("RecordAccessed", day, actor=actor, purpose_of_use=purpose)


def _hold(day: date, hold_id: str = "hold-1") -> facts.FactBase:
    return _fact("LegalHoldPlaced", day, hold_id=hold_id)


def _release(day: date, hold_id: str = "hold-1") -> facts.FactBase:
    return _fact("LegalHoldReleased", day, hold_id=hold_id)


def _record(jurisdiction: str, birth: date | None, last: date) -> list[facts.FactBase]:
    """Opened 90 days before the last treatment access."""
    return [_opened(last - timedelta(days=90), jurisdiction, birth), _seen(last)]


@dataclass(frozen=True)
class Case:
    jurisdiction: str
    birth: date
    last_service: date
    keep_until: date
    due_on: date
    rule: str
    cites: str
    working: str


D = date.fromisoformat
CASES = [
    # An adult, last seen 2019-03-14: 7 years after the last service everywhere.
    Case("US", D("1980-05-01"), D("2019-03-14"), D("2026-03-14"), D("2026-03-15"), "adult", US,
         "max(2019-03-14 + 7 = 2026-03-14, 1998-05-01 + 3 = 2001-05-01)"),
    Case("US-MA", D("1980-05-01"), D("2019-03-14"), D("2026-03-14"), D("2026-03-15"), "adult", MA,
         "max(2026-03-14, 1998-05-01 + 1 = 1999-05-01)"),
    Case("US-CA", D("1980-05-01"), D("2019-03-14"), D("2026-03-14"), D("2026-03-15"), "adult", CA,
         "max(2026-03-14, 1998-05-01 + 7 = 2005-05-01)"),
    # A minor born 2010-06-30 (18 on 2028-06-30), last seen 2024-01-10.
    Case("US", D("2010-06-30"), D("2024-01-10"), D("2031-06-30"), D("2031-07-01"), "minor",
         "3 years after the age of majority",
         "max(2024-01-10 + 7 = 2031-01-10, 2028-06-30 + 3 = 2031-06-30)"),
    Case("US-MA", D("2010-06-30"), D("2024-01-10"), D("2031-01-10"), D("2031-01-11"), "adult", MA,
         "max(2031-01-10, 2028-06-30 + 1 = 2029-06-30): 'in no event less than 7 years'"),
    Case("US-CA", D("2010-06-30"), D("2024-01-10"), D("2035-06-30"), D("2035-07-01"), "minor",
         "7 years from the date the client reaches 18",
         "max(2031-01-10, 2028-06-30 + 7 = 2035-06-30)"),
    # A minor whose adult term is the later one: born 2007-01-15 (18 on 2025-01-15), last seen
    # 2024-11-20 at 17.
    Case("US", D("2007-01-15"), D("2024-11-20"), D("2031-11-20"), D("2031-11-21"), "adult", US,
         "max(2024-11-20 + 7 = 2031-11-20, 2025-01-15 + 3 = 2028-01-15)"),
    Case("US-MA", D("2007-01-15"), D("2024-11-20"), D("2031-11-20"), D("2031-11-21"), "adult", MA,
         "max(2031-11-20, 2025-01-15 + 1 = 2026-01-15)"),
    Case("US-CA", D("2007-01-15"), D("2024-11-20"), D("2032-01-15"), D("2032-01-16"), "minor", CA,
         "max(2031-11-20, 2025-01-15 + 7 = 2032-01-15)"),
    # A young child: born 2015-09-01 (18 on 2033-09-01), last seen 2018-04-02.
    Case("US", D("2015-09-01"), D("2018-04-02"), D("2036-09-01"), D("2036-09-02"), "minor", US,
         "max(2018-04-02 + 7 = 2025-04-02, 2033-09-01 + 3 = 2036-09-01)"),
    Case("US-MA", D("2015-09-01"), D("2018-04-02"), D("2034-09-01"), D("2034-09-02"), "minor", MA,
         "max(2025-04-02, 2033-09-01 + 1 = 2034-09-01)"),
    Case("US-CA", D("2015-09-01"), D("2018-04-02"), D("2040-09-01"), D("2040-09-02"), "minor", CA,
         "max(2025-04-02, 2033-09-01 + 7 = 2040-09-01)"),
    # Born and last seen on 29 February: 18 on 2026-03-01 (2026 is a common year), and
    # 2012-02-29 + 7 = 2019-03-01.
    Case("US", D("2008-02-29"), D("2012-02-29"), D("2029-03-01"), D("2029-03-02"), "minor", US,
         "max(2019-03-01, 2026-03-01 + 3 = 2029-03-01)"),
    Case("US-MA", D("2008-02-29"), D("2012-02-29"), D("2027-03-01"), D("2027-03-02"), "minor", MA,
         "max(2019-03-01, 2026-03-01 + 1 = 2027-03-01)"),
    Case("US-CA", D("2008-02-29"), D("2012-02-29"), D("2033-03-01"), D("2033-03-02"), "minor", CA,
         "max(2019-03-01, 2026-03-01 + 7 = 2033-03-01)"),
    # An adult last seen on 29 February 2016: 2016-02-29 + 7 = 2023-03-01 (2023 is common).
    Case("US", D("1970-01-01"), D("2016-02-29"), D("2023-03-01"), D("2023-03-02"), "adult", US,
         "max(2023-03-01, 1988-01-01 + 3 = 1991-01-01)"),
    Case("US-MA", D("1970-01-01"), D("2016-02-29"), D("2023-03-01"), D("2023-03-02"), "adult", MA,
         "max(2023-03-01, 1989-01-01)"),
    Case("US-CA", D("1970-01-01"), D("2016-02-29"), D("2023-03-01"), D("2023-03-02"), "adult", CA,
         "max(2023-03-01, 1995-01-01)"),
    # Last seen on the 18th birthday, 2024-03-14: in California both terms end the same day.
    Case("US", D("2006-03-14"), D("2024-03-14"), D("2031-03-14"), D("2031-03-15"), "adult", US,
         "max(2031-03-14, 2024-03-14 + 3 = 2027-03-14)"),
    Case("US-MA", D("2006-03-14"), D("2024-03-14"), D("2031-03-14"), D("2031-03-15"), "adult", MA,
         "max(2031-03-14, 2025-03-14)"),
    Case("US-CA", D("2006-03-14"), D("2024-03-14"), D("2031-03-14"), D("2031-03-15"), "adult", CA,
         "max(2031-03-14, 2024-03-14 + 7 = 2031-03-14): a tie, named by the adult term"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.jurisdiction}:{c.birth}:{c.last_service}" for c in CASES]
)
def test_due_dates_match_the_table_computed_by_hand(case: Case) -> None:
    history = _record(case.jurisdiction, case.birth, case.last_service)
    schedule = retention_of(history, BOOK, today=FAR)
    assert schedule.ruleset == BOOK.rulesets[case.jurisdiction].label
    assert schedule.last_service == case.last_service
    assert (schedule.keep_until, schedule.due_on) == (case.keep_until, case.due_on), case.working
    assert schedule.rule == case.rule
    assert case.cites in schedule.citation
    assert schedule.blocks == ()
    assert not schedule.destroyable(case.keep_until)
    assert schedule.destroyable(case.due_on)


def test_the_rule_values_are_what_the_table_assumes() -> None:
    us, ma, ca = (BOOK.rulesets[i].retention for i in ("US", "US-MA", "US-CA"))
    assert (us.years_after_last_service, us.minor_years_after_majority, us.age_of_majority) == (
        7, 3, 18
    )  # fmt: skip
    assert (ma.years_after_last_service, ma.minor_years_after_majority, ma.age_of_majority) == (
        7, 1, 18
    )  # fmt: skip
    assert (ca.years_after_last_service, ca.minor_years_after_majority, ca.age_of_majority) == (
        7, 7, 18
    )  # fmt: skip
    assert "M.G.L. c.4 s.7 cl.51" in ma.minor_citation
    assert "Cal. Fam. Code 6500" in ca.minor_citation
    assert "164.530(j)" in us.citation
    assert ma.method == us.method, "inherited"
    assert ca.method_citation == us.method_citation, "inherited"
    assert us.part2_years_after_last_service is None


def test_add_years_takes_29_february_to_1_march() -> None:
    assert add_years(D("2024-02-29"), 1) == D("2025-03-01")
    assert add_years(D("2024-02-29"), 4) == D("2028-02-29")
    assert add_years(D("2023-03-01"), 7) == D("2030-03-01")


# --- What counts as service -------------------------------------------------------------------

BIRTH, LAST = D("1985-01-01"), D("2019-03-14")


def test_the_order_of_the_history_does_not_matter() -> None:
    history = [*_record("US-MA", BIRTH, LAST), _seen(D("2018-01-01")),
               _hold(D("2020-01-01")), _release(D("2021-01-01"))]  # fmt: skip
    expected = retention_of(history, BOOK, today=FAR)
    assert expected.last_service == LAST
    for permutation in itertools.permutations(history):
        assert retention_of(permutation, BOOK, today=FAR) == expected


@pytest.mark.parametrize(
    ("role", "purpose"),
    [("compliance_officer", "HCOMPL"), ("billing", "HPAYMT"), ("records_custodian", "TREAT"),
     ("treating_clinician", "HOPERAT"), ("compliance_officer", "TREAT")],
)  # fmt: skip
def test_a_review_or_billing_read_does_not_restart_the_clock(role: str, purpose: str) -> None:
    history = [*_record("US", BIRTH, LAST), _seen(D("2024-06-01"), role, purpose)]
    schedule = retention_of(history, BOOK, today=FAR)
    assert schedule.last_service == LAST
    assert schedule.due_on == D("2026-03-15")


@pytest.mark.parametrize("role", ["treating_clinician", "supervisor", "trainee"])
@pytest.mark.parametrize("purpose", ["TREAT", "ETREAT", "ERTREAT", "BTG", "COC", "CAREMGT"])
def test_a_clinicians_treatment_access_restarts_the_clock(role: str, purpose: str) -> None:
    history = [*_record("US", BIRTH, LAST), _seen(D("2024-06-01"), role, purpose)]
    schedule = retention_of(history, BOOK, today=FAR)
    assert schedule.last_service == D("2024-06-01")
    assert schedule.due_on == D("2031-06-02")


def test_facts_after_today_are_not_counted() -> None:
    history = [*_record("US", BIRTH, LAST), _seen(D("2027-01-01")),
               _fact("LegalHoldPlaced", D("2026-06-01"))]  # fmt: skip
    schedule = retention_of(history, BOOK, today=D("2026-03-15"))
    assert schedule.last_service == LAST
    assert schedule.blocks == ()
    assert schedule.destroyable(D("2026-03-15"))


def test_the_latest_record_opened_sets_the_jurisdiction() -> None:
    # Opened in Massachusetts, then reopened in California: California's minor rule applies.
    birth, last = D("2010-06-30"), D("2024-01-10")
    history = [_seen(last), _opened(D("2023-05-01"), "US-CA", birth),
               _opened(D("2020-01-01"), "US-MA", birth)]  # fmt: skip
    schedule = retention_of(history, BOOK, today=FAR)
    assert schedule.ruleset == BOOK.rulesets["US-CA"].label
    assert schedule.due_on == D("2035-07-01")


# --- Blocks -----------------------------------------------------------------------------------

DUE = D("2026-03-15")  # US, adult, last seen 2019-03-14


def test_a_legal_hold_blocks_and_its_release_unblocks() -> None:
    record = _record("US", BIRTH, LAST)
    held = retention_of([*record, _hold(D("2025-01-01"))], BOOK, today=D("2027-01-01"))
    assert held.due_on == DUE
    assert [(b.kind, b.ref, b.since) for b in held.blocks] == [
        ("legal_hold", "hold-1", D("2025-01-01"))
    ]
    assert "LegalHoldReleased" in held.blocks[0].reason
    assert not held.destroyable(D("2027-01-01"))
    history = [*record, _hold(D("2025-01-01")), _release(D("2026-12-01"))]
    released = retention_of(history, BOOK, today=D("2027-01-01"))
    assert released.blocks == ()
    assert released.destroyable(D("2027-01-01"))
    # Judged before the release, the hold still stands.
    assert retention_of(history, BOOK, today=D("2026-11-30")).blocks == held.blocks


def test_a_hold_placed_again_after_its_release_blocks_again() -> None:
    history = [*_record("US", BIRTH, LAST), _hold(D("2025-01-01")), _release(D("2025-06-01")),
               _hold(D("2026-02-01")), _hold(D("2026-01-01"), "hold-2")]  # fmt: skip
    schedule = retention_of(history, BOOK, today=D("2027-01-01"))
    assert [(b.ref, b.since) for b in schedule.blocks] == [
        ("hold-2", D("2026-01-01")), ("hold-1", D("2026-02-01"))
    ]  # fmt: skip


@pytest.mark.parametrize("outcome", [o.value for o in DemandOutcome])
def test_an_open_demand_blocks_and_any_answer_unblocks(outcome: str) -> None:
    record = _record("US", BIRTH, LAST)
    demand = _fact("LegalDemandReceived", D("2026-02-01"), demand_id="dem-7")
    open_ = retention_of([*record, demand], BOOK, today=D("2027-01-01"))
    assert [(b.kind, b.ref, b.since) for b in open_.blocks] == [
        ("open_demand", "dem-7", D("2026-02-01"))
    ]
    assert "DemandAnswered" in open_.blocks[0].reason
    assert not open_.destroyable(D("2027-01-01"))
    answer = _fact("DemandAnswered", D("2026-04-01"), demand_id="dem-7", outcome=outcome)
    answered = retention_of([*record, demand, answer], BOOK, today=D("2027-01-01"))
    assert answered.blocks == ()
    assert answered.destroyable(D("2027-01-01"))
    other = _fact("DemandAnswered", D("2026-04-01"), demand_id="dem-8", outcome=outcome)
    assert retention_of([*record, demand, other], BOOK, today=D("2027-01-01")).blocks


def test_an_unknown_birth_date_blocks_and_the_adult_term_is_the_earliest_due() -> None:
    schedule = retention_of(_record("US-CA", None, LAST), BOOK, today=FAR)
    assert (schedule.rule, schedule.due_on) == ("adult", DUE)
    assert [b.kind for b in schedule.blocks] == ["birth_date_unknown"]
    assert "client_birth_date" in schedule.blocks[0].reason
    assert not schedule.destroyable(FAR)
    # A birth date stated on a later RecordOpened is taken.
    later = [*_record("US-CA", None, LAST), _opened(D("2019-03-20"), "US-CA", BIRTH)]
    assert retention_of(later, BOOK, today=FAR).blocks == ()


def test_no_record_opened_blocks() -> None:
    schedule = retention_of([_seen(LAST)], BOOK, today=FAR)
    assert schedule.ruleset == BOOK.rulesets["US"].label
    assert schedule.due_on == DUE
    assert [b.kind for b in schedule.blocks] == ["no_record_opened"]
    assert not schedule.destroyable(FAR)
    empty = retention_of([], BOOK, today=FAR)
    assert (empty.last_service, empty.keep_until, empty.due_on) == (None, None, None)
    assert not empty.destroyable(FAR)


def test_an_unknown_jurisdiction_is_judged_under_the_baseline_and_blocked() -> None:
    schedule = retention_of(_record("US-NY", BIRTH, LAST), BOOK, today=FAR)
    assert schedule.ruleset == BOOK.rulesets["US"].label
    assert schedule.due_on == DUE
    assert [(b.kind, b.ref) for b in schedule.blocks] == [("jurisdiction_unknown", "US-NY")]


def test_a_minor_participant_blocks() -> None:
    participants = [{"id": "p-1", "adult": True}, {"id": "p-2", "adult": False}]
    history = [_opened(D("2019-01-01"), "US-MA", BIRTH, setting="family",
                       participants=participants), _seen(LAST)]  # fmt: skip
    schedule = retention_of(history, BOOK, today=FAR)
    assert [(b.kind, b.ref) for b in schedule.blocks] == [("minor_participant", "p-2")]


def test_a_part2_record_cites_2_16_and_takes_a_state_part2_term() -> None:
    history = [_opened(D("2019-01-01"), "US-MA", BIRTH, part2_program=True), _seen(LAST)]
    schedule = retention_of(history, BOOK, today=FAR)
    assert schedule.part2
    assert "42 CFR 2.16(a)" in schedule.method_citation
    assert "164.310(d)(2)(i)" in schedule.method_citation
    plain = retention_of(_record("US-MA", BIRTH, LAST), BOOK, today=FAR)
    assert "2.16" not in plain.method_citation
    # A state that sets its own Part 2 minimum (none of ours does): also a max term.
    ma = BOOK.rulesets["US-MA"]
    rules = ma.retention.model_copy(
        update={"part2_years_after_last_service": 10, "part2_citation": "a state Part 2 rule"}
    )
    book = Rulebook({**BOOK.rulesets, "US-MA": ma.model_copy(update={"retention": rules})})
    longer = retention_of(history, book, today=FAR)
    assert (longer.rule, longer.due_on, longer.citation) == (
        "part2", D("2029-03-15"), "a state Part 2 rule"
    )  # fmt: skip
    assert retention_of(_record("US-MA", BIRTH, LAST), book, today=FAR).due_on == DUE


# --- Properties -------------------------------------------------------------------------------

JURISDICTIONS = ["US", "US-MA", "US-CA"]
days = st.dates(min_value=D("1900-01-01"), max_value=D("2150-12-31"))


def _bounds(schedule: Retention, jurisdiction: str, birth: date) -> tuple[date, date]:
    rules = BOOK.rulesets[jurisdiction].retention
    assert schedule.last_service is not None
    adult = add_years(schedule.last_service, rules.years_after_last_service)
    minor = add_years(add_years(birth, rules.age_of_majority), rules.minor_years_after_majority)
    return adult, minor


@settings(max_examples=150, deadline=None)
@given(
    jurisdiction=st.sampled_from(JURISDICTIONS),
    birth=days,
    opened=days,
    accesses=st.lists(
        st.tuples(days, st.sampled_from(["treating_clinician", "compliance_officer", "billing"]),
                  st.sampled_from(["TREAT", "HCOMPL", "BTG", "HPAYMT"])),
        max_size=4,
    ),
)  # fmt: skip
def test_due_on_is_never_before_either_term(
    jurisdiction: str, birth: date, opened: date, accesses: list[tuple[date, str, str]]
) -> None:
    history = [_opened(opened, jurisdiction, birth), *(_seen(d, r, p) for d, r, p in accesses)]
    schedule = retention_of(history, BOOK, today=FAR)
    assert schedule.due_on is not None
    adult, minor = _bounds(schedule, jurisdiction, birth)
    assert schedule.due_on > adult
    assert schedule.due_on > minor
    assert schedule.due_on == max(adult, minor) + timedelta(days=1)


@settings(max_examples=150, deadline=None)
@given(
    jurisdiction=st.sampled_from(JURISDICTIONS),
    birth=st.none() | days,
    opened=days,
    later=st.integers(min_value=0, max_value=40 * 366),
    role=st.sampled_from(["treating_clinician", "supervisor", "trainee", "compliance_officer"]),
)
def test_a_later_treatment_access_never_makes_due_on_earlier(
    jurisdiction: str, birth: date | None, opened: date, later: int, role: str
) -> None:
    history = [_opened(opened, jurisdiction, birth)]
    before = retention_of(history, BOOK, today=FAR)
    access = _seen(min(opened + timedelta(days=later), D("2200-12-31")), role)
    after = retention_of([*history, access], BOOK, today=FAR)
    assert before.due_on is not None
    assert after.due_on is not None
    assert after.due_on >= before.due_on
    assert after.blocks == before.blocks


# --- The rule files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        ("US.toml", "years_after_last_service = 7\n", "", "retention.years_after_last_service"),
        ("US.toml", "age_of_majority = 18\nminor_citation", "minor_citation",
         "retention.age_of_majority"),
        ("US.toml", "method_citation = ", "method_reference = ", "retention.method_citation"),
        ("US.toml", "[retention]", "[retained]", "retention"),
        ("US.toml", "years_after_last_service = 7", 'years_after_last_service = "7"',
         "retention.years_after_last_service"),
        ("US.toml", "minor_years_after_majority = 3", "minor_years_after_majority = 0",
         "retention.minor_years_after_majority"),
        ("US-CA.toml", "minor_years_after_majority = 7", "minor_years_after_majority = 7.0",
         "retention.minor_years_after_majority"),
        ("US-MA.toml", "minor_citation = ", "minor_note = ", "retention.minor_citation"),
        ("US-CA.toml", "years_after_last_service = 7",
         "years_after_last_service = 7\npart2_years_after_last_service = 10",
         "part2_citation"),
    ],
    ids=["missing-years", "missing-majority", "missing-method-citation", "no-section",
         "years-as-text", "zero-years", "float-years", "state-value-without-its-citation",
         "part2-term-without-citation"],
)  # fmt: skip
def test_a_broken_retention_section_is_refused_naming_file_and_field(
    tmp_path: Path, file: str, old: str, new: str, says: str
) -> None:
    with pytest.raises(RulesetError) as caught:
        Rulebook.load(broken_rules(tmp_path, file, old, new))
    message = str(caught.value)
    assert file in message
    assert says in message


def test_a_state_inherits_the_retention_values_it_does_not_set(tmp_path: Path) -> None:
    start = "# Retention for LMFTs"
    text = (BUILTIN_RULES / "US-CA.toml").read_text()
    directory = broken_rules(tmp_path, "US-CA.toml", text[text.index(start) :], "")
    book = Rulebook.load(directory)
    assert book.rulesets["US-CA"].retention == book.rulesets["US"].retention
