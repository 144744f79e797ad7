"""The 164.528 accounting as the domain builds it: what is summarised, what stands alone, and
how each entry reads."""

import random
from datetime import UTC, date, datetime

from domain.policy.accounting import (
    CATEGORY_WORDS,
    PURPOSE_WORDS,
    Accountable,
    Details,
    plan,
    window_start,
)
from domain.vocabulary import DataCategory, LegalBasisKind, PurposeOfUse

TODAY = date(2026, 12, 1)


def _fact(n: int, day: int, *, cats: list[str], bad: tuple[str, ...] = (), source: str =
          "disclosure", instrument: str | None = None) -> Accountable:  # fmt: skip
    return Accountable(
        handle=n, event_id=f"e{n}", occurred_at=datetime(2026, 3, day, 12, tzinfo=UTC),
        source=source,  # type: ignore[arg-type]
        recipient="suffolk court" if source == "disclosure" else "dcf",
        purpose="HLEGAL" if source == "disclosure" else "child_abuse",
        basis=LegalBasisKind.COURT_ORDER if source == "disclosure"
        else LegalBasisKind.MANDATED_REPORT,
        categories=frozenset(DataCategory(c) for c in cats), impermissible=bad,
        instrument=instrument, lookback_years=6,
    )  # fmt: skip


def _plan(items: list[Accountable]) -> list[tuple[int, ...]]:
    entries = plan(items, since=None, until=TODAY, today=TODAY)
    return [tuple(int(str(m.handle)) for m in e.members) for e in entries]


def test_lawful_repeats_are_summarised_and_an_impermissible_release_stands_alone() -> None:
    items = [
        _fact(1, 10, cats=["appointments"]),
        _fact(2, 5, cats=["diagnosis"]),
        _fact(3, 7, cats=["appointments", "psychotherapy_notes"], bad=("PN-1",)),
    ]
    for order in (items, items[::-1], random.sample(items, 3)):
        entries = plan(order, since=None, until=TODAY, today=TODAY)
        assert sorted(len(e.units) for e in entries) == [1, 2]
        summary = next(e for e in entries if not e.impermissible)
        assert (summary.first, summary.last) == (date(2026, 3, 5), date(2026, 3, 10))
        assert summary.description() == "Dates of appointments; diagnosis"
        notes = next(e for e in entries if e.impermissible)
        assert notes.description() == "Dates of appointments; psychotherapy notes"
        assert "not permitted" in notes.purpose()
    summary = next(e for e in plan(items, since=None, until=TODAY, today=TODAY) if e.units[1:])
    assert summary.lead.handle == 2, "the earliest is shown in full"
    item = summary.item({2: Details("Suffolk Court", None, "dis-2")}, "jr-1")
    assert (item["count"], item["date"], item["last_date"]) == (2, "2026-03-05", "2026-03-10")
    assert item["purpose"] == (
        "For legal proceedings. Basis: an order of a court or administrative tribunal "
        "(45 CFR 164.512(e)(1)(i))."
    )
    assert item["legal_basis"] == "court_order"


def test_a_report_and_the_release_that_documented_it_are_one_entry() -> None:
    report = _fact(1, 4, cats=["demographics"], source="report", instrument="report:r1")
    copy = _fact(2, 4, cats=["risk_assessment"], instrument="report:r1")
    assert _plan([copy, report]) == [(1, 2)]
    (entry,) = plan([copy, report], since=None, until=TODAY, today=TODAY)
    assert entry.description() == "Demographic information; risk assessment"
    assert len(entry.units) == 1
    bad_copy = _fact(3, 4, cats=["psychotherapy_notes"], bad=("MN-2",), instrument="report:r1")
    assert sorted(_plan([report, bad_copy])) == [(1,), (3,)]


def test_the_lookback_is_the_rule_sets_and_since_overrides_it() -> None:
    old = _fact(1, 10, cats=["diagnosis"])
    assert window_start(date(2028, 2, 29), 6) == date(2022, 2, 28)
    assert _plan([old]) == [(1,)]
    assert plan([old], since=None, until=TODAY, today=date(2032, 3, 11)) == []
    assert plan([old], since=date(2020, 1, 1), until=date(2032, 3, 11), today=date(2032, 3, 11))


def test_every_code_has_words() -> None:
    assert set(CATEGORY_WORDS) == set(DataCategory)
    assert set(PURPOSE_WORDS) == set(PurposeOfUse)
