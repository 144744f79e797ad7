"""A record's legal state as it stood at one instant, rebuilt from its facts.

Facts are taken by ``occurred_at``, not by the order they were recorded in, so a revocation
recorded late still counts from the moment it happened. Ties are broken by event id, so the
state never depends on the order of the history given.
"""

import functools
import unicodedata
from collections.abc import Iterable
from datetime import date, datetime
from typing import Protocol
from uuid import UUID

from domain import facts
from domain.vocabulary import DataCategory

__all__ = [
    "LEGAL_FACTS",
    "Instrument",
    "RecordState",
    "covers_dates",
    "opened_as_of",
    "party_key",
    "same_party",
]

LEGAL_FACTS: tuple[type[facts.FactBase], ...] = (
    facts.RecordOpened,
    facts.AuthorizationGranted,
    facts.AuthorizationRevoked,
    facts.LegalDemandReceived,
    facts.PrivilegeAsserted,
    facts.PrivilegeWaived,
    facts.CourtOrderIssued,
    facts.MandatedReportFiled,
    facts.DutyToWarnExercised,
)
"""The facts other facts are judged against; accesses and disclosures are judged, not used."""

Instrument = (
    facts.AuthorizationGranted
    | facts.CourtOrderIssued
    | facts.LegalDemandReceived
    | facts.MandatedReportFiled
    | facts.DutyToWarnExercised
)
"""What a disclosure can rely on."""


def _key(fact: facts.FactBase) -> tuple[datetime, str]:
    return fact.occurred_at, str(fact.event_id)


def opened_as_of(history: Iterable[facts.FactBase], at: datetime) -> facts.RecordOpened | None:
    """The record's RecordOpened in force at ``at``: the latest at or before it, else the first.

    A later RecordOpened (the client moved) applies from its own ``occurred_at`` on; it does not
    re-judge the past. A fact dated before any RecordOpened takes the first one.
    """
    opened = sorted((f for f in history if isinstance(f, facts.RecordOpened)), key=_key)
    before = [f for f in opened if f.occurred_at <= at]
    if before:
        return before[-1]
    return opened[0] if opened else None


LEGAL_FORMS = frozenset(
    {"llp", "llc", "lllp", "pllc", "inc", "incorporated", "pc", "pa", "plc", "ltd", "limited",
     "corp", "corporation", "co", "lp", "psc", "sc", "apc", "gmbh"}
)  # fmt: skip
"""Legal-form suffixes that do not tell two organisations apart ("Morgan & Lee LLP")."""


@functools.lru_cache(maxsize=4096)  # the same few names are compared over and over
def party_key(name: str) -> str:
    """A name reduced to what identifies the party: case, punctuation, "&"/"and" and a trailing
    legal-form suffix do not count ("Morgan & Lee LLP" and "morgan and lee, L.L.P." match)."""
    text = unicodedata.normalize("NFKC", name).casefold().replace("&", " and ")
    # Dots and apostrophes join what they separate ("L.L.P." is "llp", "O'Brien" is "obrien");
    # every other non-alphanumeric character separates words.
    text = "".join("" if ch in ".'\u2019" else ch if ch.isalnum() else " " for ch in text)
    words = text.split()
    while len(words) > 1 and words[-1] in LEGAL_FORMS:
        words.pop()
    if len(words) > 1 and words[0] == "the":
        words.pop(0)
    return " ".join(words)


class _Party(Protocol):
    @property
    def name(self) -> str: ...


def same_party(left: _Party, right: _Party) -> bool:
    """Two recipients are one party if their identifiers match (when both give one), or else if
    their names match once normalised (``party_key``)."""
    ours, theirs = getattr(left, "identifier", None), getattr(right, "identifier", None)
    if isinstance(ours, str) and isinstance(theirs, str):
        return ours.casefold() == theirs.casefold()
    return party_key(left.name) == party_key(right.name)


def covers_dates(
    outer_from: date | None, outer_until: date | None, from_: date | None, until: date | None
) -> bool:
    """True if [from_, until] lies inside [outer_from, outer_until]; open bounds cover all."""
    if outer_from is not None and (from_ is None or from_ < outer_from):
        return False
    return not (outer_until is not None and (until is None or until > outer_until))


class RecordState:
    """Authorizations, demands, orders, privilege, reports and warnings as of ``at``."""

    def __init__(self, history: Iterable[facts.FactBase], at: datetime, exclude: UUID) -> None:
        # Only legal facts matter here; dropping accesses and disclosures before sorting keeps a
        # rebuild over long histories fast.
        ordered = sorted(
            (f for f in history if isinstance(f, LEGAL_FACTS) and f.event_id != exclude),
            key=_key,
        )
        self.at = at
        self._all = ordered
        known = [f for f in ordered if f.occurred_at <= at]
        self.opened = opened_as_of(ordered, at)
        self.authorizations = {
            f.authorization_id: f for f in known if isinstance(f, facts.AuthorizationGranted)
        }
        self._revocations: dict[str, list[facts.AuthorizationRevoked]] = {}
        for f in known:
            if isinstance(f, facts.AuthorizationRevoked):
                self._revocations.setdefault(f.authorization_id, []).append(f)
        self.demands = {f.demand_id: f for f in known if isinstance(f, facts.LegalDemandReceived)}
        self.orders = {f.order_id: f for f in known if isinstance(f, facts.CourtOrderIssued)}
        self.reports = {f.report_id: f for f in known if isinstance(f, facts.MandatedReportFiled)}
        self.warnings = {f.warning_id: f for f in known if isinstance(f, facts.DutyToWarnExercised)}
        self.assertions = [f for f in known if isinstance(f, facts.PrivilegeAsserted)]
        self.waivers = [f for f in known if isinstance(f, facts.PrivilegeWaived)]

    def instruments(self) -> list[Instrument]:
        """Every authorization, order, demand, report and warning on the record at ``at``."""
        return [
            *self.authorizations.values(),
            *self.orders.values(),
            *self.demands.values(),
            *self.reports.values(),
            *self.warnings.values(),
        ]

    def find(self, kind: str, ident: str) -> facts.FactBase | None:
        """The authorization, order, demand, report or warning with this id, as of ``at``."""
        tables: dict[str, dict[str, facts.FactBase]] = {
            "authorization": dict(self.authorizations),
            "order": dict(self.orders),
            "demand": dict(self.demands),
            "report": dict(self.reports),
            "warning": dict(self.warnings),
        }
        return tables[kind].get(ident)

    def find_any(self, ident: str) -> facts.FactBase | None:
        """Whatever on the record carries this id, as of ``at``."""
        for kind in ("authorization", "order", "demand", "report", "warning"):
            found = self.find(kind, ident)
            if found is not None:
                return found
        return None

    def recorded_later(self, ident: str) -> bool:
        """True if something with this id exists, but only from after ``at``."""
        return any(
            ident
            in (
                getattr(f, "authorization_id", None) if isinstance(f, facts.AuthorizationGranted)
                else getattr(f, "order_id", None) if isinstance(f, facts.CourtOrderIssued)
                else getattr(f, "demand_id", None) if isinstance(f, facts.LegalDemandReceived)
                else getattr(f, "report_id", None) if isinstance(f, facts.MandatedReportFiled)
                else getattr(f, "warning_id", None) if isinstance(f, facts.DutyToWarnExercised)
                else None,
            )
            for f in self._all
        )  # fmt: skip

    def revocations_of(self, auth: facts.AuthorizationGranted) -> list[facts.AuthorizationRevoked]:
        """Revocations of this grant up to ``at``, earliest first.

        A revocation dated before the grant revoked an earlier grant under the same id.
        """
        return [
            r
            for r in self._revocations.get(auth.authorization_id, [])
            if r.occurred_at >= auth.occurred_at
        ]

    def lapse(
        self, auth: facts.AuthorizationGranted, *, oral_revocation_effective: bool = False
    ) -> facts.AuthorizationRevoked | str | None:
        """Why an authorization no longer held at ``at``: its revocation, 'expired', or None.

        Only a written revocation ends it, unless the rule set says an oral one does too.
        """
        for revoked in self.revocations_of(auth):
            if revoked.in_writing or oral_revocation_effective:
                return revoked
        if auth.expires_at is not None and auth.expires_at <= self.at:
            return "expired"
        return None

    def active_authorizations(
        self, *, oral_revocation_effective: bool = False
    ) -> list[facts.AuthorizationGranted]:
        """Written authorizations granted, not revoked and not expired at ``at``.

        An oral authorization is not valid (45 CFR 164.508(b)(1), (c)(1)(vi)), so it never
        counts as one in force.
        """
        return [
            a
            for a in self.authorizations.values()
            if a.in_writing
            and self.lapse(a, oral_revocation_effective=oral_revocation_effective) is None
        ]

    def privilege_asserted(self, demand_id: str) -> facts.PrivilegeAsserted | None:
        """The assertion of privilege against a demand, if any."""
        return next((a for a in self.assertions if a.demand_id == demand_id), None)

    def piercing_order(self, demand_id: str) -> facts.CourtOrderIssued | None:
        """A court order for the demand's proceeding that pierces the privilege."""
        return next(
            (o for o in self.orders.values() if o.demand_id == demand_id and o.pierces_privilege),
            None,
        )

    def waiver(self, demand_id: str, categories: set[DataCategory]) -> facts.PrivilegeWaived | None:
        """A waiver for the demand's proceeding that covers every category disclosed."""
        return next(
            (
                w
                for w in self.waivers
                if w.demand_id == demand_id and categories <= set(w.categories)
            ),
            None,
        )

    def order_for(self, demand_id: str) -> facts.CourtOrderIssued | None:
        """Any court order issued for a demand."""
        return next((o for o in self.orders.values() if o.demand_id == demand_id), None)

    def age_at(self, moment: datetime) -> int | None:
        """The client's age in whole years at ``moment``, if the birth date is known."""
        if self.opened is None or self.opened.client_birth_date is None:
            return None
        born, day = self.opened.client_birth_date, moment.date()
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))
