"""Retention schedules: until when a record must be kept, and what stops its destruction.

Pure: the record's facts (in any order) and the rule book in, a frozen ``Retention`` out,
judged as of a calendar date ``today``. Facts that occurred after ``today`` (by the date of their
``occurred_at`` in its own offset, the day the clinical system reported) are not taken into
account. An engineering digest of the rule files' ``[retention]`` section, not legal advice.

Definitions:

- Jurisdiction: the latest RecordOpened's (by ``occurred_at``, ties by event id); with no
  RecordOpened, the baseline. A jurisdiction with no rule file of its own is judged under the
  baseline and blocked (``jurisdiction_unknown``): state law may require longer.
- Last service: the facts report no "service" as such, so the proxy is the latest date of a
  RecordOpened or of a RecordAccessed for a treatment purpose (``TREATMENT_PURPOSES``) by a
  clinical role (``CLINICAL_ROLES``). A compliance officer's review, a billing read or a
  custodian's copy does not restart the clock; a clinician's treatment access does, even with
  no session on record, so the proxy never ends retention before the last real service.
- Birth date: the latest ``client_birth_date`` any RecordOpened states (if two disagree, the
  later one keeps the record longer). Part 2: any RecordOpened with ``part2_program`` true.
- ``keep_until`` = the latest of last service + ``years_after_last_service`` ("adult") and
  (birth + ``age_of_majority``) + ``minor_years_after_majority`` ("minor"), and for a Part 2
  record, if the rule set has ``part2_years_after_last_service``, last service + those years
  ("part2"); on a tie the earlier-listed rule names it. ``due_on`` = ``keep_until`` + 1 day.
  Years are calendar years; 29 February plus N years, in a common year, is 1 March (keeping a
  day longer is the lawful side). The majority date is computed first, then the years after it.
- Blocks (destruction waits until none is left): every legal hold placed and not released, and
  every legal demand received and not answered (any outcome: complied, quashed, withdrawn...),
  an open demand being an implicit hold; both by ``occurred_at`` on or before ``today``. And
  what makes the schedule unreliable: no RecordOpened, no birth date on record (the minor rule
  cannot be ruled out), a participant recorded as a minor (whose birth date the facts cannot
  give), an unknown jurisdiction. With no birth date, ``keep_until`` is the adult term: the
  earliest the record could be due.

EventCorrected facts are not applied here: the caller passes the facts as they stand.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal

from domain import facts
from domain.policy.rulesets import Rulebook, Ruleset
from domain.vocabulary import ActorRole, PurposeOfUse

__all__ = [
    "CLINICAL_ROLES",
    "TREATMENT_PURPOSES",
    "Block",
    "BlockKind",
    "Retention",
    "RuleName",
    "add_years",
    "retention_of",
]

TREATMENT_PURPOSES: Final = frozenset(
    {
        PurposeOfUse.TREAT,
        PurposeOfUse.ETREAT,
        PurposeOfUse.ERTREAT,
        PurposeOfUse.BTG,
        PurposeOfUse.COC,
        PurposeOfUse.CAREMGT,
    }
)
"""Purposes of use whose access by a clinician counts as service (restarts the clock)."""

CLINICAL_ROLES: Final = frozenset(
    {ActorRole.TREATING_CLINICIAN, ActorRole.SUPERVISOR, ActorRole.TRAINEE}
)
"""Roles whose treatment access counts as service."""

BlockKind = Literal[
    "legal_hold",
    "open_demand",
    "no_record_opened",
    "birth_date_unknown",
    "minor_participant",
    "jurisdiction_unknown",
]
RuleName = Literal["adult", "minor", "part2"]


@dataclass(frozen=True)
class Block:
    """One reason the record may not be destroyed yet, and what would lift it."""

    kind: BlockKind
    ref: str | None
    """The hold id, demand id, participant id or jurisdiction concerned, if any."""
    since: date | None
    reason: str


@dataclass(frozen=True)
class Retention:
    """A record's retention schedule as of ``as_of``."""

    ruleset: str
    """The label (``ID@version``) of the rule set applied."""
    rule: RuleName
    """Which term sets ``keep_until``."""
    citation: str
    """The citation of that term."""
    last_service: date | None
    keep_until: date | None
    """The last day the record must be kept (None: no service on record to count from)."""
    due_on: date | None
    """The first day it may be destroyed, blocks aside."""
    blocks: tuple[Block, ...]
    method: str
    method_citation: str
    """The destruction method's citation; a Part 2 record's adds 42 CFR 2.16(a)."""
    part2: bool
    as_of: date

    def destroyable(self, today: date) -> bool:
        """True if the record is due on ``today`` and nothing blocks its destruction."""
        return self.due_on is not None and today >= self.due_on and not self.blocks


def _years(n: int) -> str:
    return f"{n} year" if n == 1 else f"{n} years"


def add_years(day: date, years: int) -> date:
    """``day`` plus whole calendar years; 29 February lands on 1 March in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a common year
        return date(day.year + years, 3, 1)


def _day(moment: datetime) -> date:
    return moment.date()


def _key(fact: facts.FactBase) -> tuple[datetime, str]:
    return fact.occurred_at, str(fact.event_id)


def _is_service(fact: facts.FactBase) -> bool:
    if isinstance(fact, facts.RecordOpened):
        return True
    return (
        isinstance(fact, facts.RecordAccessed)
        and fact.purpose_of_use in TREATMENT_PURPOSES
        and fact.actor.role in CLINICAL_ROLES
    )


def _holds(known: list[facts.FactBase]) -> list[Block]:
    placed: dict[str, date] = {}
    for fact in known:  # in occurred_at order: a hold placed again after release holds again
        if isinstance(fact, facts.LegalHoldPlaced):
            placed.setdefault(fact.hold_id, _day(fact.occurred_at))
        elif isinstance(fact, facts.LegalHoldReleased):
            placed.pop(fact.hold_id, None)
    return [
        Block(
            "legal_hold",
            hold_id,
            since,
            f"legal hold {hold_id} (placed {since}) suspends destruction: record a "
            "LegalHoldReleased for it once counsel lifts the hold",
        )
        for hold_id, since in sorted(placed.items(), key=lambda item: (item[1], item[0]))
    ]


def _open_demands(known: list[facts.FactBase]) -> list[Block]:
    answered = {f.demand_id for f in known if isinstance(f, facts.DemandAnswered)}
    received: dict[str, date] = {}
    for fact in known:
        if isinstance(fact, facts.LegalDemandReceived) and fact.demand_id not in answered:
            received.setdefault(fact.demand_id, _day(fact.occurred_at))
    return [
        Block(
            "open_demand",
            demand_id,
            since,
            f"legal demand {demand_id} (received {since}) is open and holds the record as a "
            "legal hold would: record its DemandAnswered (complied, quashed, withdrawn...) once "
            "it is resolved",
        )
        for demand_id, since in sorted(received.items(), key=lambda item: (item[1], item[0]))
    ]


def _terms(
    ruleset: Ruleset, last_service: date | None, birth: date | None, part2: bool
) -> list[tuple[RuleName, date, str]]:
    """The terms the record is kept for, each with the day it ends and its citation."""
    if last_service is None:
        return []
    rules = ruleset.retention
    terms: list[tuple[RuleName, date, str]] = [
        ("adult", add_years(last_service, rules.years_after_last_service), rules.citation)
    ]
    if birth is not None:
        majority = add_years(birth, rules.age_of_majority)
        minor_end = add_years(majority, rules.minor_years_after_majority)
        terms.append(("minor", minor_end, rules.minor_citation))
    if part2 and rules.part2_years_after_last_service is not None:
        part2_end = add_years(last_service, rules.part2_years_after_last_service)
        terms.append(("part2", part2_end, rules.part2_citation or ""))
    return terms


def _unreliable(
    opened: list[facts.RecordOpened], birth: date | None, ruleset: Ruleset, stand_in: bool
) -> list[Block]:
    """What makes the schedule itself unreliable: unknown jurisdiction, birth date, minors."""
    if not opened:
        return [
            Block(
                "no_record_opened",
                None,
                None,
                "the record has no RecordOpened: its jurisdiction, the client's birth date and "
                "Part 2 status are unknown, so no schedule can be relied on; record the "
                "RecordOpened before the record is destroyed",
            )
        ]
    latest, rules = opened[-1], ruleset.retention
    blocks = []
    if birth is None:
        blocks.append(
            Block(
                "birth_date_unknown",
                None,
                _day(latest.occurred_at),
                "no client birth date is on record, so the minor rule (kept until "
                f"{_years(rules.minor_years_after_majority)} after the age of majority, "
                f"{rules.age_of_majority}) cannot be ruled out: the record is not destroyed "
                "until a RecordOpened states the client_birth_date",
            )
        )
    minors: dict[str, date] = {}
    for opening in opened:
        for person in opening.participants or ():
            if not person.adult:
                minors.setdefault(person.id, _day(opening.occurred_at))
    blocks += [
        Block(
            "minor_participant",
            participant,
            since,
            f"participant {participant} is recorded as a minor and the facts give no birth "
            "date for them, so the minor rule cannot be applied to their part of the record: "
            "counsel decides when it may be destroyed",
        )
        for participant, since in sorted(minors.items())
    ]
    if stand_in:
        blocks.append(
            Block(
                "jurisdiction_unknown",
                latest.jurisdiction,
                _day(latest.occurred_at),
                f"there is no rule set for {latest.jurisdiction}: the baseline "
                f"({ruleset.label}) stands in and state law may require a longer retention; "
                f"add a {latest.jurisdiction} rule file (or have counsel confirm the baseline) "
                "before the record is destroyed",
            )
        )
    return blocks


def retention_of(history: Iterable[facts.FactBase], book: Rulebook, *, today: date) -> Retention:
    """The record's retention schedule and blocks as of ``today`` (see the module docstring)."""
    known = sorted((f for f in history if _day(f.occurred_at) <= today), key=_key)
    opened = [f for f in known if isinstance(f, facts.RecordOpened)]
    ruleset, stand_in = book.for_jurisdiction(opened[-1].jurisdiction if opened else None)
    rules = ruleset.retention

    services = [_day(f.occurred_at) for f in known if _is_service(f)]
    last_service = max(services) if services else None
    births = [f.client_birth_date for f in opened if f.client_birth_date is not None]
    birth = max(births) if births else None
    part2 = any(f.part2_program for f in opened)

    terms = _terms(ruleset, last_service, birth, part2)
    keep_until: date | None = None
    rule: RuleName = "adult"
    citation = rules.citation
    if terms:
        rule, keep_until, citation = max(terms, key=lambda term: term[1])  # first of equals
    method_citation = rules.method_citation
    if part2:
        method_citation = f"{method_citation}; {rules.part2_method_citation}"
    return Retention(
        ruleset=ruleset.label,
        rule=rule,
        citation=citation,
        last_service=last_service,
        keep_until=keep_until,
        due_on=keep_until + timedelta(days=1) if keep_until is not None else None,
        blocks=(
            *_unreliable(opened, birth, ruleset, stand_in),
            *_holds(known),
            *_open_demands(known),
        ),
        method=rules.method,
        method_citation=method_citation,
        part2=part2,
        as_of=today,
    )
