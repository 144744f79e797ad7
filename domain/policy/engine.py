"""The policy engine: pure functions from (record history, one fact) to a judgment.

Everything is judged as of the fact's own ``occurred_at`` from the facts the history holds, so a
late-recorded revocation changes the verdict on re-evaluation. Psychotherapy notes are judged by
PN-1 alone: AU-2 and LG-3 look at the other categories, so that one excess is not counted twice
(PRODUCT.md section 7: a client release that adds psychotherapy notes is PN-1; a court release
that adds progress and psychotherapy notes is LG-3 and PN-1).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from domain import facts
from domain.policy.rulesets import Rulebook, Ruleset
from domain.policy.state import RecordState, covers_dates, same_party
from domain.vocabulary import DataCategory, LegalBasisKind, RecipientKind

__all__ = ["Finding", "Judgment", "judge", "judge_on_record"]

PN = DataCategory.PSYCHOTHERAPY_NOTES
SUD = {DataCategory.SUD_RECORDS, DataCategory.SUD_COUNSELING_NOTES}
SUBPOENAS = {"attorney_subpoena", "court_subpoena"}
PARENTS = {RecipientKind.PARENT, RecipientKind.PERSONAL_REPRESENTATIVE}
AUTHORIZATION_BASES = {
    LegalBasisKind.CLIENT_AUTHORIZATION,
    LegalBasisKind.PSYCHOTHERAPY_NOTES_AUTHORIZATION,
    LegalBasisKind.PART2_CONSENT,
}
REFERENCE_KIND = {
    **dict.fromkeys(AUTHORIZATION_BASES, "authorization"),
    LegalBasisKind.COURT_ORDER: "order",
    LegalBasisKind.SUBPOENA_WITH_ASSURANCES: "demand",
    LegalBasisKind.MANDATED_REPORT: "report",
    LegalBasisKind.DUTY_TO_WARN: "warning",
}
"""Bases that must name what they rely on, and the kind of thing they name."""


@dataclass(frozen=True)
class Finding:
    """One rule a fact breaks, with the evidence and the rule set that says so."""

    rule: str
    severity: str
    citation: str
    message: str
    evidence: tuple[UUID, ...]
    ruleset: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, as stored in receipts."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "citation": self.citation,
            "message": self.message,
            "evidence": [str(e) for e in self.evidence],
            "ruleset": self.ruleset,
        }


@dataclass(frozen=True)
class Judgment:
    """What the engine says about one fact."""

    findings: tuple[Finding, ...]
    excess_categories: tuple[DataCategory, ...]
    accountable: bool | None
    ruleset: str

    @property
    def rules(self) -> set[str]:
        """The ids of the rules that fired."""
        return {f.rule for f in self.findings}


@dataclass
class _Verdict:
    ruleset: Ruleset
    subject: facts.FactBase
    note: str
    findings: list[Finding] = field(default_factory=list)
    excess: set[DataCategory] = field(default_factory=set)

    def fire(self, rule: str, message: str, *evidence: facts.FactBase | None) -> None:
        meta = self.ruleset.rules[rule]
        ids = (self.subject.event_id, *(e.event_id for e in evidence if e is not None))
        self.findings.append(
            Finding(
                rule, meta.severity, meta.citation, message + self.note, ids, self.ruleset.label
            )
        )


def _names(categories: Iterable[DataCategory]) -> str:
    return ", ".join(sorted(c.value for c in categories))


def _recipient_named(
    recipient: facts.Recipient, named: Iterable[facts.Recipient | facts.OrderRecipient]
) -> bool:
    return any(same_party(recipient.name, other.name) for other in named)


def _authorization_scope(
    v: _Verdict, d: facts.DisclosureMade, auth: facts.AuthorizationGranted, state: RecordState
) -> None:
    lapse = state.lapse(auth)
    if isinstance(lapse, facts.AuthorizationRevoked):
        v.fire(
            "AU-1", f"authorization {auth.authorization_id} was revoked before this", lapse, auth
        )
    elif lapse == "expired":
        v.fire("AU-1", f"authorization {auth.authorization_id} had expired", auth)
    v.excess |= set(d.categories) - set(auth.categories)
    problems = []
    if not _recipient_named(d.recipient, auth.recipients):
        problems.append("the recipient is not one it names")
    if d.purpose_of_use not in auth.purposes:
        problems.append(f"purpose {d.purpose_of_use.value} is not one it allows")
    beyond = set(d.categories) - set(auth.categories) - {PN}
    if beyond:
        problems.append(f"categories {_names(beyond)} are beyond it")
    if not covers_dates(auth.records_from, auth.records_until, d.records_from, d.records_until):
        problems.append("the record dates are not within its range")
    if problems:
        v.fire("AU-2", f"authorization {auth.authorization_id}: " + "; ".join(problems), auth)


def _order_scope(v: _Verdict, d: facts.DisclosureMade, order: facts.CourtOrderIssued) -> None:
    v.excess |= set(d.categories) - set(order.categories)
    problems = []
    beyond = set(d.categories) - set(order.categories) - {PN}
    if beyond:
        problems.append(f"categories {_names(beyond)} are beyond it")
    if order.recipients and not _recipient_named(d.recipient, order.recipients):
        problems.append("the recipient is not one it names")
    if not covers_dates(order.records_from, order.records_until, d.records_from, d.records_until):
        problems.append("the record dates are not within its range")
    if problems:
        v.fire("LG-3", f"court order {order.order_id}: " + "; ".join(problems), order)


def _demand_rules(
    v: _Verdict, d: facts.DisclosureMade, demand: facts.LegalDemandReceived, state: RecordState
) -> None:
    v.excess |= set(d.categories) - set(demand.categories)
    order = state.order_for(demand.demand_id)
    if demand.kind.value in SUBPOENAS and order is None:
        assurances = demand.assurances
        notice_lapsed = (
            assurances is not None
            and assurances.client_notified_at is not None
            and assurances.objection_deadline is not None
            and assurances.objection_deadline < d.occurred_at.date()
        )
        protected = assurances is not None and bool(assurances.protective_order)
        authorized = any(
            _recipient_named(d.recipient, a.recipients) for a in state.active_authorizations()
        )
        if not (notice_lapsed or protected or authorized):
            v.fire(
                "LG-1",
                f"{demand.kind.value} {demand.demand_id} answered with no authorization, no "
                "notice whose objection period had ended, and no protective order",
                demand,
            )
        part2 = bool(state.opened and state.opened.part2_program) or bool(set(d.categories) & SUD)
        if part2:
            v.fire(
                "LG-5",
                f"Part 2 records released on {demand.demand_id} without a court order",
                demand,
            )


def _privilege(
    v: _Verdict, d: facts.DisclosureMade, target: facts.FactBase | None, state: RecordState
) -> None:
    demand_id = None
    if isinstance(target, (facts.LegalDemandReceived, facts.CourtOrderIssued)):
        demand_id = target.demand_id
    if demand_id is None:
        return
    asserted = state.privilege_asserted(demand_id)
    if asserted is None:
        return
    pierced = state.piercing_order(demand_id) or (
        target if isinstance(target, facts.CourtOrderIssued) and target.pierces_privilege else None
    )
    if pierced is None and state.waiver(demand_id, set(d.categories)) is None:
        v.fire(
            "LG-4",
            f"privilege was asserted for {demand_id}; no order pierced it and no waiver covers "
            "what was released",
            asserted,
        )


def _statutory_need(v: _Verdict, d: facts.DisclosureMade, target: facts.FactBase | None) -> None:
    rules = v.ruleset
    if d.legal_basis.kind is LegalBasisKind.MANDATED_REPORT:
        allowed = rules.mandated_report.allowed_categories
        if isinstance(target, facts.MandatedReportFiled):
            allowed = rules.mandated_report.for_kind(target.kind).allowed_categories or allowed
        what = "a mandated report"
    else:
        allowed = rules.duty_to_warn.allowed_categories
        what = "a warning"
        if d.recipient.kind not in rules.duty_to_warn.permitted_recipients.value:
            v.fire(
                "DW-1",
                f"recipient kind {d.recipient.kind.value} is neither the target nor "
                "able to prevent the harm under this jurisdiction's standard",
                target,
            )
    beyond = set(d.categories) - set(allowed.value)
    v.excess |= beyond
    if beyond:
        v.fire("MN-2", f"{what} needs no {_names(beyond)} ({allowed.citation})", target)


def _target(v: _Verdict, d: facts.DisclosureMade, state: RecordState) -> facts.FactBase | None:
    basis, ref = d.legal_basis.kind, d.legal_basis.reference_id
    kind = REFERENCE_KIND.get(basis)
    if ref is None:
        if kind is not None:
            v.fire("RF-1", f"{basis.value} must name the {kind} it relies on")
        return None
    target = state.find(kind, ref) if kind else state.find_any(ref)
    if target is None:
        when = "only after this disclosure" if state.recorded_later(ref) else "nowhere"
        v.fire("RF-1", f"{basis.value} names {ref}, which is on the record {when}")
    return target


def _psychotherapy_notes(v: _Verdict, d: facts.DisclosureMade, state: RecordState) -> None:
    if PN not in d.categories:
        return
    if d.legal_basis.kind in v.ruleset.psychotherapy_notes.exempt_bases.value:
        return
    authorized = any(
        a.kind.value == "psychotherapy_notes"
        and _recipient_named(d.recipient, a.recipients)
        and d.purpose_of_use in a.purposes
        for a in state.active_authorizations()
    )
    if authorized:
        v.excess.discard(PN)
        return
    v.excess.add(PN)
    v.fire(
        "PN-1",
        "psychotherapy notes left without an active psychotherapy-notes authorization "
        "for this recipient and purpose",
    )


def _minimum_necessary(v: _Verdict, d: facts.DisclosureMade) -> None:
    basis = d.legal_basis.kind
    if basis in v.ruleset.minimum_necessary.exempt_bases.value:
        return
    if d.minimum_necessary is None or d.minimum_necessary.mode.value == "exempt":
        v.fire("MN-1", f"a {basis.value} disclosure needs a minimum-necessary determination")


def _minor(
    v: _Verdict, d: facts.DisclosureMade, target: facts.FactBase | None, state: RecordState
) -> None:
    opened, age = state.opened, state.age_at(d.occurred_at)
    if opened is None or not opened.minor_consented_to_treatment or age is None:
        return
    if age >= v.ruleset.minors.age_of_majority.value or d.recipient.kind not in PARENTS:
        return
    if isinstance(target, facts.AuthorizationGranted) and target.granted_by == "client":
        return  # the minor authorized it themselves
    v.fire(
        "MI-1",
        "the client was a minor who consented to their own treatment; a parent is not their "
        "personal representative for these records",
        opened,
    )


def _joint_record(v: _Verdict, d: facts.DisclosureMade, state: RecordState) -> None:
    opened = state.opened
    if opened is None or opened.setting.value not in ("couple", "family"):
        return
    if not opened.participants or d.legal_basis.kind not in AUTHORIZATION_BASES:
        return
    adults = {p.id for p in opened.participants if p.adult}
    signed = {
        a.participant_id
        for a in state.active_authorizations()
        if _recipient_named(d.recipient, a.recipients)
    }
    missing = adults - signed
    if missing:
        v.fire(
            "FA-1",
            f"{len(adults) - len(missing)} of {len(adults)} adult participants authorized "
            "this release of a joint record",
            opened,
        )


def _disclosure(v: _Verdict, d: facts.DisclosureMade, state: RecordState) -> bool:
    target = _target(v, d, state)
    if isinstance(target, facts.AuthorizationGranted):
        _authorization_scope(v, d, target, state)
    elif isinstance(target, facts.CourtOrderIssued):
        _order_scope(v, d, target)
    elif isinstance(target, facts.LegalDemandReceived):
        _demand_rules(v, d, target, state)
    _privilege(v, d, target, state)
    if d.legal_basis.kind in (LegalBasisKind.MANDATED_REPORT, LegalBasisKind.DUTY_TO_WARN):
        _statutory_need(v, d, target)
    _psychotherapy_notes(v, d, state)
    _minimum_necessary(v, d)
    _minor(v, d, target, state)
    _joint_record(v, d, state)
    rules = v.ruleset
    impermissible = any(rules.rules[f.rule].impermissible for f in v.findings)
    return impermissible or d.legal_basis.kind not in rules.accounting.exempt_bases.value


def _report(v: _Verdict, report: facts.MandatedReportFiled) -> None:
    rules = v.ruleset.mandated_report.for_kind(report.kind)
    for label, at, limit in (
        ("oral", report.oral_at, rules.oral_within_hours),
        ("written", report.written_at, rules.written_within_hours),
    ):
        if at is None or limit is None:
            continue
        hours = (at - report.suspected_at).total_seconds() / 3600
        if hours > limit.value:
            v.fire(
                "MR-1",
                f"{label} report {hours:.0f} h after suspicion; the limit is "
                f"{limit.value} h ({limit.citation})",
            )


def judge(
    history: Iterable[facts.FactBase], fact: facts.FactBase, ruleset: Ruleset, *, fallback: str = ""
) -> Judgment:
    """Judge one fact against the record's history as it stood at the fact's ``occurred_at``.

    ``fallback`` names a jurisdiction that has no rule set (the baseline then stands in, and
    every finding says so).
    """
    note = f" (no rule set for {fallback}: {ruleset.label} applied)" if fallback else ""
    verdict = _Verdict(ruleset=ruleset, subject=fact, note=note)
    accountable: bool | None = None
    if isinstance(fact, facts.DisclosureMade):
        state = RecordState(history, fact.occurred_at, exclude=fact.event_id)
        accountable = _disclosure(verdict, fact, state)
    elif isinstance(fact, facts.RecordAccessed):
        if fact.break_glass and not fact.justification:
            verdict.fire("AC-2", "break-glass access without a justification")
    elif isinstance(fact, facts.MandatedReportFiled):
        _report(verdict, fact)
    findings = tuple(sorted(verdict.findings, key=lambda f: (f.rule, f.message)))
    excess = tuple(sorted(verdict.excess, key=lambda c: c.value))
    return Judgment(findings, excess, accountable, ruleset.label)


def judge_on_record(
    rulebook: Rulebook, history: Sequence[facts.FactBase], fact: facts.FactBase
) -> Judgment:
    """Judge a fact under the rule set of its record's jurisdiction (from its RecordOpened).

    A record with no known jurisdiction is judged by the federal baseline, and its findings say
    so.
    """
    opened = max(
        (f for f in (*history, fact) if isinstance(f, facts.RecordOpened)),
        key=lambda f: (f.occurred_at, str(f.event_id)),
        default=None,
    )
    jurisdiction = opened.jurisdiction if opened else None
    ruleset, fell_back = rulebook.for_jurisdiction(jurisdiction)
    fallback = ""
    if fell_back:
        fallback = str(jurisdiction)
    elif jurisdiction is None:
        fallback = "a record with no jurisdiction yet"
    return judge(history, fact, ruleset, fallback=fallback)
