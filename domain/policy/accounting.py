"""The 45 CFR 164.528 accounting of disclosures, built from judged facts.

One definition serves the API (JSON and ``Accept: text/csv``), the export bundle's
``accounting.csv`` and the console, so they cannot disagree. It is pure: callers read the facts
and their judgments (the read models, or the bundle's events re-judged) and this module decides
what the client is told.

- **What is listed**: every fact the engine judged accountable (``Judgment.accountable``):
  disclosures, and mandated reports and warnings, which are disclosures too (164.512(b), (c),
  (j) are not exempt under 164.528(a)(1)).
- **Each disclosure once**: a lawful ``DisclosureMade`` that relies on a report or warning of the
  record (``Judgment.relied_on``) documents that same release, so it is folded into the report's
  or warning's entry. An impermissible one is a disclosure of its own.
- **Impermissible**: a fact with a finding of a rule whose rule file says ``impermissible =
  true`` (the same flag that makes the engine hold the fact accountable: PN-1, AU-1, AU-2, AU-3,
  LG-1, LG-3, LG-4, LG-5, MN-2, DW-1, MI-1, FA-1, RF-1, BA-1, BA-2 in the shipped files). Rules
  about process rather than permission (AU-4, MN-1, MR-1, DW-2, AC-2, SC-1) do not make a
  disclosure impermissible. An impermissible disclosure is always an entry of its own.
- **Summaries** (164.528(b)(3)): only for lawful disclosures under a 164.512 basis, to one
  recipient (names compared normalised), for one purpose (the purpose of use; for a report, its
  kind), under one basis. The entry shows the earliest in full, the number of disclosures and
  the date of the last.
- **Dates**: an entry runs from the earliest to the latest ``occurred_at`` (UTC day) of the facts
  in it, whatever order they were posted in.
- **Description**: the union of the categories of every fact in the entry, in words.
- **Purpose**: a brief statement of purpose and basis in words (164.528(b)(2)(iv)); the codes
  stay in ``purpose_of_use`` and ``legal_basis``.
- **Window**: with no ``since``, each fact is listed for the ``accounting.lookback_years`` of the
  rule set that judged it (the record's jurisdiction as of the fact).
- **Which verdict**: the latest judgment of each fact against the record's whole history (what
  the read models hold after re-judging), not the one returned at ingest: a revocation recorded
  late makes an earlier release impermissible, and the accounting must then list it.
"""

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from domain import facts
from domain.policy.engine import Judgment
from domain.policy.rulesets import Rulebook, Ruleset
from domain.policy.state import party_key
from domain.vocabulary import DataCategory, LegalBasisKind, PurposeOfUse, ReportKind

__all__ = [
    "ACCOUNTED",
    "COLUMNS",
    "SUMMARY_BASES",
    "Accountable",
    "AccountedFact",
    "Details",
    "Entry",
    "accountable_of",
    "basis_of",
    "details_of",
    "impermissible_rules",
    "instrument_of",
    "judged",
    "lookback_of",
    "plan",
    "purpose_of",
    "recipient_key",
    "recipient_names",
    "row",
    "ruleset_of",
    "window_start",
]

Source = Literal["disclosure", "report", "warning"]

ACCOUNTED: dict[str, Source] = {
    "DisclosureMade": "disclosure",
    "MandatedReportFiled": "report",
    "DutyToWarnExercised": "warning",
}
"""The fact types an accounting lists, and what each is."""

AccountedFact = facts.DisclosureMade | facts.MandatedReportFiled | facts.DutyToWarnExercised
"""A fact of one of those types."""

SUMMARY_BASES = frozenset(
    {
        LegalBasisKind.COURT_ORDER,
        LegalBasisKind.SUBPOENA_WITH_ASSURANCES,
        LegalBasisKind.REQUIRED_BY_LAW,
        LegalBasisKind.MANDATED_REPORT,
        LegalBasisKind.DUTY_TO_WARN,
        LegalBasisKind.HEALTH_OVERSIGHT,
        LegalBasisKind.LAW_ENFORCEMENT,
    }
)
"""Bases under 164.512, whose repeated disclosures 164.528(b)(3) lets one entry summarise."""

COLUMNS = [
    "date", "last_date", "count", "recipient_name", "recipient_address", "description",
    "purpose", "legal_basis", "purpose_of_use", "disclosure_id", "kind", "impermissible",
    "rules", "record_ref",
]  # fmt: skip
"""The columns of every CSV rendering of the accounting (the API's and the bundle's)."""

CATEGORY_WORDS: dict[DataCategory, str] = {
    DataCategory.DEMOGRAPHICS: "demographic information",
    DataCategory.CONTACT: "contact details",
    DataCategory.INSURANCE_BILLING: "insurance and billing information",
    DataCategory.APPOINTMENTS: "dates of appointments",
    DataCategory.DIAGNOSIS: "diagnosis",
    DataCategory.TREATMENT_PLAN: "treatment plan",
    DataCategory.MEDICATIONS: "medications",
    DataCategory.PROGRESS_NOTES: "progress notes",
    DataCategory.ASSESSMENTS: "assessments",
    DataCategory.RISK_ASSESSMENT: "risk assessment",
    DataCategory.CORRESPONDENCE: "correspondence",
    DataCategory.PSYCHOTHERAPY_NOTES: "psychotherapy notes",
    DataCategory.SUD_RECORDS: "substance use disorder treatment records",
    DataCategory.SUD_COUNSELING_NOTES: "substance use disorder counseling notes",
    DataCategory.COURT_ORDERED_EVALUATION: "court-ordered evaluation",
}
"""What each category of the record is, in words a client reads (164.528(b)(2)(iii))."""

PURPOSE_WORDS: dict[PurposeOfUse, str] = {
    PurposeOfUse.TREAT: "For treatment",
    PurposeOfUse.ETREAT: "For emergency treatment",
    PurposeOfUse.ERTREAT: "For emergency room treatment",
    PurposeOfUse.BTG: "For emergency access to the record",
    PurposeOfUse.COC: "To coordinate care",
    PurposeOfUse.CAREMGT: "For care management",
    PurposeOfUse.HPAYMT: "For payment for health care",
    PurposeOfUse.CLMATTCH: "To support an insurance claim",
    PurposeOfUse.COVAUTH: "For an insurance coverage decision",
    PurposeOfUse.ELIGVER: "To verify insurance eligibility",
    PurposeOfUse.HOPERAT: "For health care operations",
    PurposeOfUse.HCOMPL: "For a compliance review",
    PurposeOfUse.HACCRED: "For accreditation",
    PurposeOfUse.HLEGAL: "For legal proceedings",
    PurposeOfUse.PUBHLTH: "For public health",
    PurposeOfUse.POPHLTH: "For population health",
    PurposeOfUse.PATSFTY: "For patient safety",
    PurposeOfUse.HRESCH: "For research",
    PurposeOfUse.TRAIN: "For training",
    PurposeOfUse.PATRQT: "At your request",
    PurposeOfUse.FAMRQT: "At a family member's request",
    PurposeOfUse.PWATRNY: "At the request of your power of attorney",
    PurposeOfUse.SUPNWK: "For your support network",
    PurposeOfUse.HDECD: "About a deceased person",
    PurposeOfUse.HDIRECT: "For a facility directory",
    PurposeOfUse.GOV: "For a government agency's purposes",
    PurposeOfUse.FRAUD: "To investigate fraud",
    PurposeOfUse.HSYSADMIN: "For system administration",
    PurposeOfUse.RECORDMGT: "For records management",
    PurposeOfUse.THREAT: "To prevent or lessen a threat to health or safety",
    PurposeOfUse.OVRER: "For emergency treatment, overriding your restrictions",
    PurposeOfUse.OVRPS: "For public safety, overriding your restrictions",
    PurposeOfUse.OVRTPS: "For another person's safety, overriding your restrictions",
    PurposeOfUse.OVRPJ: "On professional judgment, overriding your restrictions",
    PurposeOfUse.OVRINCOMP: "Because you could not decide for yourself, overriding your "
    "restrictions",
}
"""The HL7 purpose-of-use codes, as the purpose a client reads (164.528(b)(2)(iv))."""

BASIS_WORDS: dict[LegalBasisKind, str] = {
    LegalBasisKind.CLIENT_AUTHORIZATION: "your written authorization (45 CFR 164.508)",
    LegalBasisKind.PSYCHOTHERAPY_NOTES_AUTHORIZATION: "your written authorization for "
    "psychotherapy notes (45 CFR 164.508(a)(2))",
    LegalBasisKind.PART2_CONSENT: "your written consent to disclose substance use disorder "
    "records (42 CFR 2.31)",
    LegalBasisKind.TO_CLIENT: "your right to your own records (45 CFR 164.502(a)(1)(i), 164.524)",
    LegalBasisKind.TREATMENT: "your treatment (45 CFR 164.506)",
    LegalBasisKind.PAYMENT: "payment for your care (45 CFR 164.506)",
    LegalBasisKind.OPERATIONS: "the practice's health care operations (45 CFR 164.506)",
    LegalBasisKind.COURT_ORDER: "an order of a court or administrative tribunal "
    "(45 CFR 164.512(e)(1)(i))",
    LegalBasisKind.SUBPOENA_WITH_ASSURANCES: "a subpoena or other lawful process, with the "
    "assurances the law requires (45 CFR 164.512(e)(1)(ii))",
    LegalBasisKind.REQUIRED_BY_LAW: "a requirement of law (45 CFR 164.512(a))",
    LegalBasisKind.MANDATED_REPORT: "a report that state law requires (45 CFR 164.512(b), (c))",
    LegalBasisKind.DUTY_TO_WARN: "a serious and imminent threat to health or safety "
    "(45 CFR 164.512(j)(1)(i))",
    LegalBasisKind.HEALTH_OVERSIGHT: "oversight by a health oversight agency (45 CFR 164.512(d))",
    LegalBasisKind.LAW_ENFORCEMENT: "a law enforcement purpose the law permits (45 CFR 164.512(f))",
    LegalBasisKind.EMERGENCY: "an emergency, to people involved in your care "
    "(45 CFR 164.510(b)(3))",
    LegalBasisKind.NONE_STATED: "none recorded",
}
"""Each legal basis in words, with its section: the 'basis' 164.528(b)(2)(iv) asks to inform."""

REPORT_WORDS: dict[ReportKind, tuple[str, str]] = {
    ReportKind.CHILD_ABUSE: ("suspected child abuse or neglect", "45 CFR 164.512(b)(1)(ii)"),
    ReportKind.ELDER_ABUSE: ("suspected abuse or neglect of an elder", "45 CFR 164.512(c)"),
    ReportKind.DISABLED_PERSON_ABUSE: (
        "suspected abuse or neglect of a person with a disability",
        "45 CFR 164.512(c)",
    ),
}
"""What each kind of mandated report is about, and the section that permits it."""

NOT_PERMITTED = "; the practice found that this disclosure was not permitted on that basis"


@dataclass(frozen=True)
class Accountable:
    """One accountable fact, as the accounting needs it; nothing here is a name or free text."""

    handle: Hashable
    """The caller's way back to the fact (a read-model position, or the fact itself)."""
    event_id: str
    occurred_at: datetime
    source: Source
    recipient: str
    """Who received it, as a grouping key: equal for one party (normalised names)."""
    purpose: str | None
    """The purpose-of-use code; for a report, its kind; for a warning, None."""
    basis: LegalBasisKind
    categories: frozenset[DataCategory]
    impermissible: tuple[str, ...]
    """The rules whose findings make it impermissible (empty when lawful)."""
    instrument: str | None
    """A report's or warning's own key; for a disclosure, the key of the report or warning it
    relies on (keys from ``instrument_of``, in the caller's encoding)."""
    lookback_years: int

    @property
    def day(self) -> date:
        """The UTC day it occurred on."""
        try:
            return self.occurred_at.astimezone(UTC).date()
        except OverflowError:  # year 1 east of UTC or 9999 west of it, stored before the API
            # refused such years (facts.STORED): the nearest day UTC can hold keeps the order
            return date.min if self.occurred_at.year == 1 else date.max


@dataclass(frozen=True)
class Details:
    """What only the fact itself holds (sealed in the read models): who, where, which id."""

    recipient_name: str
    recipient_address: str | None
    disclosure_id: str


@dataclass(frozen=True)
class Entry:
    """One line of the accounting: a disclosure (with any copies of it), or a summary."""

    units: tuple[tuple[Accountable, ...], ...]
    """The disclosures in it, earliest first; each is a report or warning with the releases
    that documented it, or a release alone. Their first member leads."""

    @property
    def lead(self) -> Accountable:
        """The fact whose recipient, id, purpose and basis the entry shows."""
        return self.units[0][0]

    @property
    def members(self) -> tuple[Accountable, ...]:
        """Every fact in the entry."""
        return tuple(m for unit in self.units for m in unit)

    @property
    def first(self) -> date:
        """The day of the earliest fact."""
        return min(m.day for m in self.members)

    @property
    def last(self) -> date:
        """The day of the latest fact."""
        return max(m.day for m in self.members)

    @property
    def categories(self) -> tuple[DataCategory, ...]:
        """What was disclosed, over every fact, in the vocabulary's order."""
        union = {c for m in self.members for c in m.categories}
        return tuple(c for c in DataCategory if c in union)

    @property
    def impermissible(self) -> tuple[str, ...]:
        """The rules that make it impermissible, over every fact."""
        return tuple(sorted({r for m in self.members for r in m.impermissible}))

    def description(self) -> str:
        """What was disclosed, in words: "Dates of appointments; diagnosis"."""
        words = "; ".join(CATEGORY_WORDS[c] for c in self.categories)
        if not words:
            return "Information needed to warn of the threat (categories not recorded)"
        return words[0].upper() + words[1:]

    def purpose(self) -> str:
        """A brief statement of purpose and basis, in words (164.528(b)(2)(iv))."""
        lead = self.lead
        if lead.source == "report":
            about, section = REPORT_WORDS[ReportKind(lead.purpose or ReportKind.CHILD_ABUSE)]
            text = (
                f"To report {about} to the authority the law designates. Basis: a report "
                f"that state law requires ({section})"
            )
        elif lead.source == "warning":
            text = (
                "To warn of a serious threat to a person's health or safety. Basis: "
                + BASIS_WORDS[LegalBasisKind.DUTY_TO_WARN]
            )
        else:
            why = PURPOSE_WORDS[PurposeOfUse(lead.purpose)] if lead.purpose else "Purpose unknown"
            text = f"{why}. Basis: {BASIS_WORDS[lead.basis]}"
        if self.impermissible:
            text = text.replace("Basis: ", "Stated basis: ", 1) + NOT_PERMITTED
        return text + "."

    def item(self, details: Mapping[Hashable, Details], record_ref: str) -> dict[str, Any]:
        """The entry as the API gives it (API.md's fields, and more); ``details`` holds the
        details of every member."""
        lead = self.lead
        shown = details[lead.handle]
        address = shown.recipient_address
        if address is None and lead.source != "disclosure":
            address = next(
                (
                    details[m.handle].recipient_address
                    for m in self.units[0][1:]
                    if m.handle in details
                    and details[m.handle].recipient_address
                    and m.recipient == lead.recipient
                ),
                None,
            )
        return {
            "date": self.first.isoformat(),
            "recipient": {"name": shown.recipient_name, "address": address},
            "description": self.description(),
            "purpose": self.purpose(),
            "legal_basis": lead.basis.value,
            "disclosure_id": shown.disclosure_id,
            "count": len(self.units),
            "last_date": self.last.isoformat(),
            "purpose_of_use": lead.purpose if lead.source == "disclosure" else None,
            "categories": [c.value for c in self.categories],
            "kind": lead.source,
            "impermissible": bool(self.impermissible),
            "rules": list(self.impermissible),
            "record_ref": record_ref,
        }


def row(item: Mapping[str, Any]) -> list[object]:
    """An item of ``Entry.item`` as a CSV row of ``COLUMNS`` (before CSV-injection guarding)."""
    return [
        item["date"], item["last_date"], item["count"], item["recipient"]["name"],
        item["recipient"]["address"] or "", item["description"], item["purpose"],
        item["legal_basis"], item["purpose_of_use"] or "", item["disclosure_id"], item["kind"],
        "yes" if item["impermissible"] else "no", " ".join(item["rules"]), item["record_ref"],
    ]  # fmt: skip


def window_start(today: date, lookback_years: int) -> date:
    """The first day an accounting requested ``today`` covers (164.528(a)(1): "in the six
    years prior to the date on which the accounting is requested")."""
    year = today.year - lookback_years
    try:
        return today.replace(year=year)
    except ValueError:  # 29 February in a year that has none
        return today.replace(year=year, day=28)


def plan(
    accountable: Iterable[Accountable], *, since: date | None, until: date, today: date
) -> list[Entry]:
    """The accounting's entries, earliest first, from the record's accountable facts.

    ``since`` overrides every fact's lookback (the client may ask for a shorter period,
    164.528(a)(3)); the result never depends on the order of ``accountable``.
    """
    kept = sorted(
        (
            a
            for a in accountable
            if a.day <= until
            and a.day >= (since if since is not None else window_start(today, a.lookback_years))
        ),
        key=lambda a: (a.occurred_at, a.event_id),
    )
    hosts: dict[str, list[Accountable]] = {}
    alone: list[list[Accountable]] = []
    for fact in kept:  # reports and warnings first: a copy may sort before its report
        if fact.source == "disclosure":
            continue
        if fact.instrument and fact.instrument not in hosts:
            hosts[fact.instrument] = [fact]
        else:
            alone.append([fact])
    for fact in kept:
        if fact.source != "disclosure":
            continue
        host = hosts.get(fact.instrument or "")
        if host is not None and not fact.impermissible:
            host.append(fact)  # the release that documented this report or warning
        else:
            alone.append([fact])
    everything = [*hosts.values(), *alone]
    groups: dict[tuple[str, str | None, LegalBasisKind], list[tuple[Accountable, ...]]] = {}
    entries: list[Entry] = []
    for unit in everything:
        ordered = tuple(sorted(unit, key=_report_first))
        lead = ordered[0]
        lawful = not any(m.impermissible for m in ordered)
        if lawful and lead.basis in SUMMARY_BASES:
            groups.setdefault((lead.recipient, lead.purpose, lead.basis), []).append(ordered)
        else:
            entries.append(Entry((ordered,)))
    for grouped in groups.values():
        entries.append(Entry(tuple(sorted(grouped, key=_unit_order))))
    return sorted(entries, key=lambda e: _unit_order(e.units[0]))


def _report_first(fact: Accountable) -> tuple[bool, datetime, str]:
    return fact.source == "disclosure", fact.occurred_at, fact.event_id


def _unit_order(unit: tuple[Accountable, ...]) -> tuple[datetime, str]:
    return min(m.occurred_at for m in unit), unit[0].event_id


def ruleset_of(rulebook: Rulebook, label: str) -> Ruleset:
    """The rule set a judgment names (``US-CA@2026.12``); the baseline for one no longer
    loaded."""
    found = rulebook.rulesets.get(label.partition("@")[0])
    return found if found is not None else rulebook.rulesets[rulebook.baseline]


def lookback_of(rulebook: Rulebook, label: str) -> int:
    """The ``accounting.lookback_years`` of the rule set a judgment names."""
    return ruleset_of(rulebook, label).accounting.lookback_years.value


def impermissible_rules(rulebook: Rulebook, judgment: Judgment) -> tuple[str, ...]:
    """The rules of a judgment whose findings make the fact impermissible (the rule file's
    ``impermissible`` flag)."""
    rules = ruleset_of(rulebook, judgment.ruleset).rules
    return tuple(sorted({f.rule for f in judgment.findings if rules[f.rule].impermissible}))


def instrument_of(fact: facts.FactBase, judgment: Judgment) -> tuple[str, str] | None:
    """(family, id) of the report or warning a fact is, or that a disclosure relies on."""
    if isinstance(fact, facts.MandatedReportFiled):
        return "report", fact.report_id
    if isinstance(fact, facts.DutyToWarnExercised):
        return "warning", fact.warning_id
    relied = judgment.relied_on
    if isinstance(fact, facts.DisclosureMade) and relied and relied[0] in ("report", "warning"):
        return relied
    return None


def recipient_names(fact: AccountedFact) -> list[str]:
    """Who received an accountable fact: the recipient, the agency, or everyone warned."""
    if isinstance(fact, facts.MandatedReportFiled):
        return [fact.agency]
    if isinstance(fact, facts.DutyToWarnExercised):
        return [n.name for n in fact.notified]
    return [fact.recipient.name]


def recipient_key(fact: AccountedFact) -> str:
    """The grouping key of who received a fact: one for the same party, however spelled."""
    return "|".join(sorted(party_key(name) for name in recipient_names(fact)))


def details_of(fact: AccountedFact) -> Details:
    """A fact's details as an entry shows them."""
    if isinstance(fact, facts.MandatedReportFiled):
        return Details(fact.agency, None, fact.report_id)
    if isinstance(fact, facts.DutyToWarnExercised):
        return Details("; ".join(recipient_names(fact)), None, fact.warning_id)
    return Details(fact.recipient.name, fact.recipient.address, fact.disclosure_id)


def purpose_of(fact: AccountedFact) -> str | None:
    """The purpose an entry groups by: the purpose of use, a report's kind, or None."""
    if isinstance(fact, facts.MandatedReportFiled):
        return fact.kind.value
    if isinstance(fact, facts.DisclosureMade):
        return fact.purpose_of_use.value
    return None


def basis_of(fact: AccountedFact) -> LegalBasisKind:
    """The legal basis an accountable fact was made under."""
    if isinstance(fact, facts.MandatedReportFiled):
        return LegalBasisKind.MANDATED_REPORT
    if isinstance(fact, facts.DutyToWarnExercised):
        return LegalBasisKind.DUTY_TO_WARN
    return fact.legal_basis.kind


def accountable_of(
    handle: Hashable,
    fact: AccountedFact,
    *,
    impermissible: tuple[str, ...],
    instrument: str | None,
    lookback_years: int,
) -> Accountable:
    """An accountable fact (``DisclosureMade``, ``MandatedReportFiled`` or
    ``DutyToWarnExercised``) with what its judgment said of it."""
    return Accountable(
        handle=handle,
        event_id=str(fact.event_id),
        occurred_at=fact.occurred_at,
        source=ACCOUNTED[type(fact).__name__],
        recipient=recipient_key(fact),
        purpose=purpose_of(fact),
        basis=basis_of(fact),
        categories=frozenset(getattr(fact, "categories", None) or ()),
        impermissible=impermissible,
        instrument=instrument,
        lookback_years=lookback_years,
    )


def judged(
    rulebook: Rulebook, handle: Hashable, fact: AccountedFact, judgment: Judgment
) -> Accountable:
    """An accountable fact straight from its judgment (the bundle's way; the read model stores
    the same three values in columns)."""
    instrument = instrument_of(fact, judgment)
    return accountable_of(
        handle,
        fact,
        impermissible=impermissible_rules(rulebook, judgment),
        instrument=None if instrument is None else ":".join(instrument),
        lookback_years=lookback_of(rulebook, judgment.ruleset),
    )
