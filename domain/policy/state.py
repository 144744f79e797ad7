"""A record's legal state as it stood at one instant, rebuilt from its facts.

Facts are taken by ``occurred_at``, not by the order they were recorded in, so a revocation
recorded late still counts from the moment it happened. Ties are broken by event id, so the
state never depends on the order of the history given.
"""

from collections.abc import Iterable
from datetime import date, datetime
from uuid import UUID

from domain import facts
from domain.vocabulary import DataCategory

__all__ = ["LEGAL_FACTS", "RecordState", "covers_dates", "same_party"]

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


def same_party(left: str, right: str) -> bool:
    """Names match ignoring case and surrounding or repeated spaces."""
    return " ".join(left.casefold().split()) == " ".join(right.casefold().split())


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
            key=lambda f: (f.occurred_at, str(f.event_id)),
        )
        self.at = at
        self._all = ordered
        known = [f for f in ordered if f.occurred_at <= at]
        opened = [f for f in ordered if isinstance(f, facts.RecordOpened)]
        self.opened: facts.RecordOpened | None = opened[-1] if opened else None
        self.authorizations = {
            f.authorization_id: f for f in known if isinstance(f, facts.AuthorizationGranted)
        }
        self.revocations = {
            f.authorization_id: f for f in known if isinstance(f, facts.AuthorizationRevoked)
        }
        self.demands = {f.demand_id: f for f in known if isinstance(f, facts.LegalDemandReceived)}
        self.orders = {f.order_id: f for f in known if isinstance(f, facts.CourtOrderIssued)}
        self.reports = {f.report_id: f for f in known if isinstance(f, facts.MandatedReportFiled)}
        self.warnings = {f.warning_id: f for f in known if isinstance(f, facts.DutyToWarnExercised)}
        self.assertions = [f for f in known if isinstance(f, facts.PrivilegeAsserted)]
        self.waivers = [f for f in known if isinstance(f, facts.PrivilegeWaived)]

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

    def lapse(self, auth: facts.AuthorizationGranted) -> facts.FactBase | str | None:
        """Why an authorization no longer held at ``at``: its revocation, 'expired', or None."""
        revoked = self.revocations.get(auth.authorization_id)
        # A revocation dated before this grant revoked an earlier grant under the same id.
        if revoked is not None and revoked.occurred_at >= auth.occurred_at:
            return revoked
        if auth.expires_at is not None and auth.expires_at <= self.at:
            return "expired"
        return None

    def active_authorizations(self) -> list[facts.AuthorizationGranted]:
        """Authorizations granted, not revoked and not expired at ``at``."""
        return [a for a in self.authorizations.values() if self.lapse(a) is None]

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
