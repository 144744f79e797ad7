"""The policy engine: pure functions from (record history, one fact) to a judgment.

Everything is judged as of the fact's own ``occurred_at`` from the facts the history holds, so a
late-recorded revocation changes the verdict on re-evaluation, and under the jurisdiction the
record had then. A disclosure is judged by what was done, not by its label: its legal basis says
who can plausibly receive under it and which instrument it needs (the rule file's ``bases``),
and every scope check is against the instrument actually relied on. With no usable reference,
the engine judges against each instrument on the record that could support the disclosure and
keeps the one that covers it best, and says so.

One excess is reported once: psychotherapy notes are judged by PN-1 (AU-2 and LG-3 look at the
other categories), categories beyond an order or demand are LG-3's and not also LG-4's, and a
disclosure that repeats a report's or warning's own excess leaves the MN-2 on the report or
warning (PRODUCT.md section 7).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NamedTuple
from uuid import UUID

from domain import facts
from domain.policy.rulesets import Cited, Hours, Rulebook, Ruleset
from domain.policy.state import Instrument, RecordState, opened_as_of, same_party
from domain.vocabulary import (
    AuthorizationKind,
    DataCategory,
    LegalBasisKind,
    RecipientKind,
    ReportKind,
)

__all__ = ["Finding", "Judgment", "judge", "judge_on_record"]

PN = DataCategory.PSYCHOTHERAPY_NOTES
SUD = {DataCategory.SUD_RECORDS, DataCategory.SUD_COUNSELING_NOTES}
SUBPOENAS = {"attorney_subpoena", "court_subpoena"}
PARENTS = {RecipientKind.PARENT, RecipientKind.PERSONAL_REPRESENTATIVE}
REPORT_RECIPIENTS = {RecipientKind.GOVERNMENT_AGENCY, RecipientKind.LAW_ENFORCEMENT}
PART2_CONSENTS = {
    AuthorizationKind.PART2_TPO,
    AuthorizationKind.PART2_SPECIFIC,
    AuthorizationKind.PART2_LEGAL_PROCEEDINGS,
}
AUTHORIZATION_BASES = {
    LegalBasisKind.CLIENT_AUTHORIZATION,
    LegalBasisKind.PSYCHOTHERAPY_NOTES_AUTHORIZATION,
    LegalBasisKind.PART2_CONSENT,
}
_SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
FAMILIES = ("authorization", "order", "demand", "report", "warning")


class _Party(NamedTuple):
    name: str


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
    instrument: str | None = None
    """The authorization, order, demand, report or warning the disclosure was judged against,
    in words ("hipaa general authorization auth-1"), when it relied on one."""
    relied_on: tuple[str, str] | None = None
    """The same as (family, id): ("report", "rep-1"). A disclosure relying on a report or warning
    is that report or warning, for an accounting that lists each disclosure once."""

    @property
    def rules(self) -> set[str]:
        """The ids of the rules that fired."""
        return {f.rule for f in self.findings}


@dataclass
class _Verdict:
    ruleset: Ruleset
    subject: facts.FactBase
    note: str
    findings: dict[str, Finding] = field(default_factory=dict)
    excess: set[DataCategory] = field(default_factory=set)

    def fire(self, rule: str, message: str, *evidence: facts.FactBase | None) -> None:
        """Raise ``rule``; a rule raised twice on one fact is one finding saying both things."""
        meta = self.ruleset.rules[rule]
        ids = [self.subject.event_id, *(e.event_id for e in evidence if e is not None)]
        before = self.findings.get(rule)
        if before is not None:
            message = f"{before.message.removesuffix(self.note)}; {message}"
            ids = [*before.evidence, *(i for i in ids if i not in before.evidence)]
        self.findings[rule] = Finding(
            rule, meta.severity, meta.citation, message + self.note, tuple(ids), self.ruleset.label
        )

    def score(self) -> tuple[int, int, int]:
        """How bad the findings are: counts of high, medium and low ones."""
        counts = [0, 0, 0]
        for finding in self.findings.values():
            counts[_SEVERITY_RANK[finding.severity]] += 1
        return counts[0], counts[1], counts[2]


def _names(categories: Iterable[DataCategory]) -> str:
    return ", ".join(sorted(c.value for c in categories))


def _named(
    recipient: facts.Recipient,
    named: Iterable[facts.Recipient | facts.OrderRecipient | facts.NotifiedParty],
) -> bool:
    return any(same_party(recipient, other) for other in named)


def _family(instrument: Instrument) -> tuple[str, str, str | None]:
    """(family, id, kind) of an instrument: ("demand", "dem-1", "attorney_subpoena")."""
    if isinstance(instrument, facts.AuthorizationGranted):
        return "authorization", instrument.authorization_id, instrument.kind.value
    if isinstance(instrument, facts.CourtOrderIssued):
        return "order", instrument.order_id, None
    if isinstance(instrument, facts.LegalDemandReceived):
        return "demand", instrument.demand_id, instrument.kind.value
    if isinstance(instrument, facts.MandatedReportFiled):
        return "report", instrument.report_id, instrument.kind.value
    return "warning", instrument.warning_id, None


def _label(instrument: Instrument) -> str:
    family, ident, kind = _family(instrument)
    return f"{kind.replace('_', ' ') + ' ' if kind and family != 'report' else ''}{family} {ident}"


def _admits(specs: Sequence[str], instrument: Instrument) -> bool:
    family, _, kind = _family(instrument)
    for spec in specs:
        wanted, _, wanted_kind = spec.partition(":")
        if wanted == family and (not wanted_kind or wanted_kind == kind):
            return True
    return False


def _could_cover(instrument: Instrument, d: facts.DisclosureMade) -> bool:
    if isinstance(instrument, facts.AuthorizationGranted):
        return _named(d.recipient, instrument.recipients)
    if isinstance(instrument, facts.CourtOrderIssued):
        return not instrument.recipients or _named(d.recipient, instrument.recipients)
    if isinstance(instrument, facts.MandatedReportFiled):
        # A report went to its agency: only a release to an authority can be a copy of it.
        return d.recipient.kind in REPORT_RECIPIENTS or same_party(
            d.recipient, _Party(instrument.agency)
        )
    return True  # a demand answered, or a warning (DW-1 judges who was warned)


def _names_recipient(instrument: Instrument | None, recipient: facts.Recipient) -> bool:
    if isinstance(instrument, (facts.AuthorizationGranted, facts.CourtOrderIssued)):
        return _named(recipient, instrument.recipients)
    if isinstance(instrument, facts.DutyToWarnExercised):
        return _named(recipient, instrument.notified)
    return False


def _date_check(
    outer_from: date | None, outer_until: date | None, d: facts.DisclosureMade
) -> str | None:
    """None if the disclosure's record dates lie inside the bounds; else "outside" or
    "unknown" (the bounds exist but the disclosure does not say its dates)."""
    verdict = None
    for bound, value, after_start in (
        (outer_from, d.records_from, True),
        (outer_until, d.records_until, False),
    ):
        if bound is None:
            continue
        if value is None:
            verdict = verdict or "unknown"
        elif (value < bound) if after_start else (value > bound):
            verdict = "outside"
    return verdict


def _dates(
    v: _Verdict,
    d: facts.DisclosureMade,
    instrument: facts.DateRanged,
    label: str,
    problems: list[str],
) -> None:
    check = _date_check(instrument.records_from, instrument.records_until, d)
    span = f"{instrument.records_from or 'the start'} to {instrument.records_until or 'now'}"
    if check == "outside":
        problems.append(f"the record dates are outside its range ({span})")
    elif check == "unknown":
        v.fire(
            "SC-1",
            f"{label} covers records from {span}; the disclosure does not say which record "
            "dates it released, so its scope cannot be verified",
            instrument,
        )


def _authorization_covers(d: facts.DisclosureMade, auth: facts.AuthorizationGranted) -> bool:
    """True if the authorization names the recipient, the purpose and every category."""
    return (
        _named(d.recipient, auth.recipients)
        and d.purpose_of_use in auth.purposes
        and set(d.categories) <= set(auth.categories)
        and _date_check(auth.records_from, auth.records_until, d) is None
    )


def _authorization_scope(
    v: _Verdict, d: facts.DisclosureMade, auth: facts.AuthorizationGranted, state: RecordState
) -> None:
    label = f"authorization {auth.authorization_id}"
    if not auth.in_writing:
        v.fire(
            "AU-3",
            f"{label} was not in writing: an oral authorization is not a valid one, so nothing "
            "authorized this release",
            auth,
        )
    oral_effective = v.ruleset.authorizations.oral_revocation_effective
    lapse = state.lapse(auth, oral_revocation_effective=oral_effective.value)
    if isinstance(lapse, facts.AuthorizationRevoked):
        how = "in writing" if lapse.in_writing else f"orally ({oral_effective.citation})"
        v.fire(
            "AU-1",
            f"{label} was revoked {how} on {lapse.occurred_at.date()}, before this",
            lapse,
            auth,
        )
    elif lapse == "expired":
        v.fire("AU-1", f"{label} had expired", auth)
    else:
        oral = [r for r in state.revocations_of(auth) if not r.in_writing]
        if oral:
            v.fire(
                "AU-4",
                f"the client revoked {label} orally on {oral[0].occurred_at.date()}; an oral "
                f"revocation does not end it ({oral_effective.citation}), but the client's wish "
                "is known: get it in writing or stop relying on it",
                oral[0],
                auth,
            )
    v.excess |= set(d.categories) - set(auth.categories)
    problems = []
    if not _named(d.recipient, auth.recipients):
        problems.append("the recipient is not one it names")
    if d.purpose_of_use not in auth.purposes:
        problems.append(f"purpose {d.purpose_of_use.value} is not one it allows")
    beyond = set(d.categories) - set(auth.categories) - {PN}
    if beyond:
        problems.append(f"categories {_names(beyond)} are beyond it")
    _dates(v, d, auth, label, problems)
    if problems:
        v.fire("AU-2", f"{label}: " + "; ".join(problems), auth)


def _order_reaches(order: facts.CourtOrderIssued, d: facts.DisclosureMade) -> bool:
    return not order.recipients or _named(d.recipient, order.recipients)


def _order_scope(v: _Verdict, d: facts.DisclosureMade, order: facts.CourtOrderIssued) -> None:
    label = f"court order {order.order_id}"
    v.excess |= set(d.categories) - set(order.categories)
    problems = []
    beyond = set(d.categories) - set(order.categories) - {PN}
    if beyond:
        problems.append(f"categories {_names(beyond)} are beyond it")
    if not _order_reaches(order, d):
        problems.append("the recipient is not one it names")
    _dates(v, d, order, label, problems)
    if problems:
        v.fire("LG-3", f"{label}: " + "; ".join(problems), order)


def _covering_order(
    d: facts.DisclosureMade, demand: facts.LegalDemandReceived, state: RecordState
) -> facts.CourtOrderIssued | None:
    """An order for the demand that reaches this recipient and every category released."""
    return next(
        (
            o
            for o in state.orders.values()
            if o.demand_id == demand.demand_id
            and _order_reaches(o, d)
            and set(d.categories) - {PN} <= set(o.categories)
        ),
        None,
    )


def _demand_rules(
    v: _Verdict, d: facts.DisclosureMade, demand: facts.LegalDemandReceived, state: RecordState
) -> None:
    label = f"{demand.kind.value} {demand.demand_id}"
    v.excess |= set(d.categories) - set(demand.categories)
    problems = []
    beyond = set(d.categories) - set(demand.categories) - {PN}
    if beyond:
        problems.append(f"it did not ask for {_names(beyond)}")
    _dates(v, d, demand, label, problems)
    if problems:
        v.fire("LG-3", f"{label}: " + "; ".join(problems), demand)
    if demand.kind.value not in SUBPOENAS or _covering_order(d, demand, state) is not None:
        return
    assurances = demand.assurances
    notice_lapsed = (
        assurances is not None
        and assurances.client_notified_at is not None
        and assurances.objection_deadline is not None
        and assurances.objection_deadline < d.occurred_at.date()
    )
    protected = assurances is not None and bool(assurances.protective_order)
    oral_effective = v.ruleset.authorizations.oral_revocation_effective.value
    authorized = any(
        _authorization_covers(d, a)
        for a in state.active_authorizations(oral_revocation_effective=oral_effective)
    )
    if not (notice_lapsed or protected or authorized):
        v.fire(
            "LG-1",
            f"{label} answered with no authorization covering this release, no notice whose "
            "objection period had ended, no protective order, and no court order reaching it",
            demand,
        )


def _privilege(
    v: _Verdict, d: facts.DisclosureMade, target: Instrument | None, state: RecordState
) -> None:
    if not isinstance(target, (facts.LegalDemandReceived, facts.CourtOrderIssued)):
        return
    demand_id = target.demand_id
    asserted = state.privilege_asserted(demand_id) if demand_id else None
    if demand_id is None or asserted is None:
        return
    # What lies beyond the instrument relied on is LG-3's; privilege is judged inside it.
    scope = set(d.categories) & set(target.categories)
    pierced: set[DataCategory] = set()
    for order in state.orders.values():
        if order.demand_id == demand_id and order.pierces_privilege and _order_reaches(order, d):
            pierced |= set(order.categories)
    if isinstance(target, facts.CourtOrderIssued) and target.pierces_privilege:
        pierced |= set(target.categories)
    waivers = [w for w in state.waivers if w.demand_id == demand_id]
    waived = {c for w in waivers if w.in_writing for c in w.categories}
    uncovered = scope - pierced - waived
    if uncovered:
        oral = (
            " (a waiver was given, but not in writing)"
            if any(not w.in_writing for w in waivers)
            else ""
        )
        v.fire(
            "LG-4",
            f"privilege ({v.ruleset.privilege.statute.value}) was asserted for {demand_id}; no "
            f"order pierces it and no written waiver covers {_names(uncovered)}{oral}",
            asserted,
        )


def _is_part2(d: facts.DisclosureMade | facts.MandatedReportFiled, state: RecordState) -> bool:
    opened = state.opened
    return bool(opened and opened.part2_program) or bool(set(d.categories) & SUD)


def _part2(
    v: _Verdict,
    d: facts.DisclosureMade,
    target: Instrument | None,
    state: RecordState,
    established: bool,
) -> None:
    if not _is_part2(d, state):
        return
    basis = d.legal_basis.kind
    if established and basis in v.ruleset.part2.exempt_bases.value:
        child_report = (
            isinstance(target, facts.MandatedReportFiled) and target.kind is ReportKind.CHILD_ABUSE
        )
        if basis is not LegalBasisKind.MANDATED_REPORT or child_report:
            return
    if isinstance(target, facts.AuthorizationGranted) and target.kind in PART2_CONSENTS:
        return
    order = target if isinstance(target, facts.CourtOrderIssued) else None
    if isinstance(target, facts.LegalDemandReceived):
        order = _covering_order(d, target, state)
    if order is not None and order.part2_findings:
        return
    relied = _label(target) if target is not None else f"a {basis.value} basis"
    if order is not None:
        relied = f"court order {order.order_id}, which does not make the 42 CFR 2.64 findings"
    v.fire(
        "LG-5",
        f"Part 2 records left on {relied}: they need a Part 2 consent or a Subpart E court "
        f"order ({v.ruleset.part2.exempt_bases.citation} lists the only other ways)",
        target,
    )


def _statutory_need(v: _Verdict, d: facts.DisclosureMade, target: Instrument | None) -> None:
    rules = v.ruleset
    if isinstance(target, facts.MandatedReportFiled) or (
        target is None and d.legal_basis.kind is LegalBasisKind.MANDATED_REPORT
    ):
        allowed = rules.mandated_report.allowed_categories
        if isinstance(target, facts.MandatedReportFiled):
            allowed = rules.mandated_report.for_kind(target.kind).allowed_categories or allowed
        what, own = "a mandated report", set(getattr(target, "categories", None) or [])
    elif isinstance(target, facts.DutyToWarnExercised) or (
        target is None and d.legal_basis.kind is LegalBasisKind.DUTY_TO_WARN
    ):
        allowed = rules.duty_to_warn.allowed_categories
        what, own = "a warning", set(getattr(target, "categories", None) or [])
        permitted = rules.duty_to_warn.permitted_recipients
        if d.recipient.kind not in permitted.value:
            v.fire(
                "DW-1",
                f"recipient kind {d.recipient.kind.value} is neither the target nor a person "
                f"able to prevent or lessen the threat ({permitted.citation}); the standard "
                f"here: {rules.duty_to_warn.standard.value}",
                target,
            )
    else:
        return
    beyond = set(d.categories) - set(allowed.value)
    v.excess |= beyond
    # The report or warning itself carries the MN-2 for what it already held.
    if beyond - own:
        v.fire("MN-2", f"{what} needs no {_names(beyond - own)} ({allowed.citation})", target)


def _lists_notes(target: Instrument | None, d: facts.DisclosureMade) -> bool:
    """True if the instrument relied on itself calls for the psychotherapy notes released."""
    if target is None or isinstance(target, (facts.MandatedReportFiled, facts.DutyToWarnExercised)):
        return True  # no instrument to list them (oversight), or MN-2 judges the report's need
    if isinstance(target, facts.CourtOrderIssued):
        return PN in target.categories and _order_reaches(target, d)
    if isinstance(target, facts.LegalDemandReceived):
        return PN in target.categories
    return False


def _psychotherapy_notes(
    v: _Verdict,
    d: facts.DisclosureMade,
    target: Instrument | None,
    state: RecordState,
    established: bool,
) -> None:
    if PN not in d.categories:
        return
    exempt = v.ruleset.psychotherapy_notes.exempt_bases.value
    if established and d.legal_basis.kind in exempt and _lists_notes(target, d):
        return
    oral_effective = v.ruleset.authorizations.oral_revocation_effective.value
    authorized = any(
        a.kind is AuthorizationKind.PSYCHOTHERAPY_NOTES
        and PN in a.categories
        and _named(d.recipient, a.recipients)
        and d.purpose_of_use in a.purposes
        for a in state.active_authorizations(oral_revocation_effective=oral_effective)
    )
    if authorized:
        v.excess.discard(PN)
        return
    v.excess.add(PN)
    v.fire(
        "PN-1",
        "psychotherapy notes left without an active written psychotherapy-notes authorization "
        "for this recipient and purpose, and outside any instrument that calls for them",
    )


def _minimum_necessary(
    v: _Verdict, d: facts.DisclosureMade, target: Instrument | None, established: bool
) -> None:
    basis = d.legal_basis.kind
    # 164.502(b)(2)(iii): made under an authorization, whatever the label says.
    on_authorization = isinstance(target, facts.AuthorizationGranted)
    if established and (
        basis in v.ruleset.minimum_necessary.exempt_bases.value or on_authorization
    ):
        return
    if d.minimum_necessary is None or d.minimum_necessary.mode.value == "exempt":
        why = "" if established else " (its stated basis does not hold, so no exemption does)"
        v.fire("MN-1", f"a {basis.value} disclosure needs a minimum-necessary determination{why}")


def _minor(
    v: _Verdict, d: facts.DisclosureMade, target: Instrument | None, state: RecordState
) -> None:
    opened, age = state.opened, state.age_at(d.occurred_at)
    if opened is None or not opened.minor_consented_to_treatment or age is None:
        return
    minors = v.ruleset.minors
    if age >= minors.age_of_majority.value or d.recipient.kind not in PARENTS:
        return
    if minors.minor_consent_age is not None and age < minors.minor_consent_age.value:
        return  # too young to consent alone under state law: the parent still represents them
    if isinstance(target, facts.AuthorizationGranted) and target.granted_by == "client":
        return  # the minor authorized it themselves
    consent = f" ({minors.minor_consent_age.citation})" if minors.minor_consent_age else ""
    v.fire(
        "MI-1",
        f"the client was a minor of {age} who consented to their own treatment{consent}; a "
        "parent is not their personal representative for these records",
        opened,
    )


def _joint_record(
    v: _Verdict, d: facts.DisclosureMade, target: Instrument | None, state: RecordState
) -> None:
    opened = state.opened
    if opened is None or opened.setting.value not in ("couple", "family"):
        return
    basis = d.legal_basis.kind
    to_client = basis is LegalBasisKind.TO_CLIENT
    on_authority = basis in AUTHORIZATION_BASES or isinstance(target, facts.AuthorizationGranted)
    if not opened.participants or not (to_client or on_authority):
        return
    adults = {p.id for p in opened.participants if p.adult}
    oral_effective = v.ruleset.authorizations.oral_revocation_effective.value
    signed = {
        a.participant_id
        for a in state.active_authorizations(oral_revocation_effective=oral_effective)
        if _named(d.recipient, a.recipients)
    } & adults
    # Handed to one partner, the joint record still carries the others' information.
    needed = (
        len(adults) - 1 if to_client and d.recipient.kind is RecipientKind.CLIENT else len(adults)
    )
    if len(signed) < needed:
        whom = "the other adult participants" if needed < len(adults) else "every adult participant"
        v.fire(
            "FA-1",
            f"{len(signed)} of {len(adults)} adult participants authorized this release of a "
            f"joint record; {whom} must",
            opened,
        )


def _judge_instrument(
    v: _Verdict, d: facts.DisclosureMade, target: Instrument, state: RecordState
) -> None:
    if isinstance(target, facts.AuthorizationGranted):
        _authorization_scope(v, d, target, state)
    elif isinstance(target, facts.CourtOrderIssued):
        _order_scope(v, d, target)
    elif isinstance(target, facts.LegalDemandReceived):
        _demand_rules(v, d, target, state)
    _privilege(v, d, target, state)


def _relied_on(v: _Verdict, d: facts.DisclosureMade, state: RecordState) -> Instrument | None:
    """The instrument the disclosure relies on: the one it names if the basis can rely on it,
    else the one on the record that supports it best. Fires RF-1 and BA-2."""
    basis, ref = d.legal_basis.kind, d.legal_basis.reference_id
    profile = v.ruleset.bases[basis]
    specs = profile.instruments.value
    # Ids are the clinical system's: one may name an authorization and an order alike, so the
    # family the basis can rely on wins.
    found = [] if ref is None else [state.find(kind, ref) for kind in FAMILIES]
    named = next(
        (i for i in found if isinstance(i, Instrument) and _admits(specs, i)),
        next((i for i in found if i is not None), None),
    )
    if ref is not None and named is None:
        when = "only after this disclosure" if state.recorded_later(ref) else "nowhere"
        v.fire("RF-1", f"{basis.value} names {ref}, which is on the record {when}")
    if isinstance(named, Instrument) and _admits(specs, named):
        return named
    if not specs:
        return None
    if ref is None:
        why = "names no instrument"
    elif isinstance(named, Instrument):
        why = f"names {_label(named)}, which a {basis.value} basis cannot rely on"
    else:
        why = f"names {ref}, which is not on the record"
    candidates = [i for i in state.instruments() if _admits(specs, i) and _could_cover(i, d)]
    if not candidates:
        v.fire(
            "BA-2",
            f"a {basis.value} disclosure needs {' or '.join(specs)} "
            f"({profile.instruments.citation}); it {why}, and nothing on the record supports it",
            named if isinstance(named, Instrument) else None,
        )
        return None

    def trial(instrument: Instrument) -> tuple[tuple[int, int, int], float, str]:
        sandbox = _Verdict(ruleset=v.ruleset, subject=v.subject, note="")
        _judge_instrument(sandbox, d, instrument, state)
        _part2(sandbox, d, instrument, state, established=True)
        _psychotherapy_notes(sandbox, d, instrument, state, established=True)
        return sandbox.score(), -instrument.occurred_at.timestamp(), str(instrument.event_id)

    best = min(candidates, key=trial)
    v.note += (
        f" (judged against {_label(best)}: the disclosure {why}, and of "
        f"{len(candidates)} on the record that could support it this one covers it best)"
    )
    return best


def _disclosure(
    v: _Verdict, d: facts.DisclosureMade, state: RecordState
) -> tuple[bool, Instrument | None]:
    rules = v.ruleset
    profile = rules.bases[d.legal_basis.kind]
    target = _relied_on(v, d, state)
    established = target is not None or not profile.instruments.value
    if not profile.admits(d.recipient.kind) and not _names_recipient(target, d.recipient):
        v.fire(
            "BA-1",
            f"a recipient of kind {d.recipient.kind.value} cannot receive under "
            f"{d.legal_basis.kind.value} ({profile.recipients.citation})",
        )
        established = False
    if target is not None:
        _judge_instrument(v, d, target, state)
    _part2(v, d, target, state, established)
    _statutory_need(v, d, target)
    _psychotherapy_notes(v, d, target, state, established)
    _minimum_necessary(v, d, target, established)
    _minor(v, d, target, state)
    _joint_record(v, d, target, state)
    impermissible = any(rules.rules[f].impermissible for f in v.findings)
    if impermissible or not established:
        accountable = True
    elif isinstance(target, facts.AuthorizationGranted):
        accountable = False  # 164.528(a)(1)(iv), whatever the label
    else:
        accountable = d.legal_basis.kind not in rules.accounting.exempt_bases.value
    return accountable, target


def _deadline(v: _Verdict, limit: Cited[Hours]) -> tuple[float, str]:
    if limit.value == "immediately":
        bound = v.ruleset.mandated_report.immediately_hours
        return bound.value, (
            f"'immediately', applied as {bound.value} h ({limit.citation}; {bound.citation})"
        )
    return float(limit.value), f"{limit.value} h ({limit.citation})"


def _report(v: _Verdict, report: facts.MandatedReportFiled, state: RecordState) -> None:
    rules = v.ruleset.mandated_report
    own = rules.for_kind(report.kind)
    allowed = own.allowed_categories or rules.allowed_categories
    beyond = set(report.categories) - set(allowed.value)
    v.excess |= beyond
    if beyond:
        what = report.kind.value.replace("_", " ")
        v.fire("MN-2", f"a {what} report needs no {_names(beyond)} ({allowed.citation})")
    problems = []
    for label, at, limit in (
        ("oral", report.oral_at, own.oral_within_hours),
        ("written", report.written_at, own.written_within_hours),
    ):
        if limit is None:
            continue
        hours, how = _deadline(v, limit)
        due = report.suspected_at + timedelta(hours=hours)
        if at is None:
            if report.occurred_at > due:
                problems.append(
                    f"no {label} report time is recorded, and the {label} report was due "
                    f"within {how} of the suspicion, before this report was filed"
                )
        elif at > due:
            late = (at - report.suspected_at).total_seconds() / 3600
            problems.append(f"{label} report {late:.0f} h after suspicion; the limit is {how}")
    if problems:
        v.fire("MR-1", "; ".join(problems))
    if _is_part2(report, state) and report.kind is not ReportKind.CHILD_ABUSE:
        v.fire(
            "LG-5",
            f"a {report.kind.value.replace('_', ' ')} report from Part 2 records: only the "
            f"initial report of child abuse needs no consent or order "
            f"({v.ruleset.part2.exempt_bases.citation})",
        )


def _warning(v: _Verdict, warning: facts.DutyToWarnExercised) -> None:
    rules = v.ruleset.duty_to_warn
    beyond = set(warning.categories or []) - set(rules.allowed_categories.value)
    v.excess |= beyond
    if beyond:
        v.fire("MN-2", f"a warning needs no {_names(beyond)} ({rules.allowed_categories.citation})")
    must = rules.must_notify
    if must is None or not warning.victim_identified:
        return
    missing = set(must.value) - {p.kind for p in warning.notified}
    if missing:
        v.fire(
            "DW-2",
            f"the warning reached no {', '.join(sorted(k.value for k in missing))}; "
            f"{must.citation}",
        )


def judge(
    history: Iterable[facts.FactBase], fact: facts.FactBase, ruleset: Ruleset, *, fallback: str = ""
) -> Judgment:
    """Judge one fact against the record's history as it stood at the fact's ``occurred_at``.

    ``fallback`` names a jurisdiction that has no rule set (the baseline then stands in, and
    every finding says so). Reports and warnings are disclosures too: they are judged and are
    accountable (45 CFR 164.528(a): 164.512(b), (c) and (j) are not exempt).
    """
    note = f" (no rule set for {fallback}: {ruleset.label} applied)" if fallback else ""
    verdict = _Verdict(ruleset=ruleset, subject=fact, note=note)
    accountable: bool | None = None
    instrument: Instrument | None = None
    if isinstance(fact, facts.DisclosureMade):
        state = RecordState(history, fact.occurred_at, exclude=fact.event_id)
        accountable, instrument = _disclosure(verdict, fact, state)
    elif isinstance(fact, facts.RecordAccessed):
        if fact.break_glass and not fact.justification:
            verdict.fire("AC-2", "break-glass access without a justification")
    elif isinstance(fact, facts.MandatedReportFiled):
        _report(verdict, fact, RecordState(history, fact.occurred_at, exclude=fact.event_id))
        accountable = True
    elif isinstance(fact, facts.DutyToWarnExercised):
        _warning(verdict, fact)
        accountable = True
    findings = tuple(sorted(verdict.findings.values(), key=lambda f: (f.rule, f.message)))
    excess = tuple(sorted(verdict.excess, key=lambda c: c.value))
    if instrument is None:
        return Judgment(findings, excess, accountable, ruleset.label)
    family, ident, _ = _family(instrument)
    return Judgment(
        findings, excess, accountable, ruleset.label, _label(instrument), (family, ident)
    )


def judge_on_record(
    rulebook: Rulebook, history: Sequence[facts.FactBase], fact: facts.FactBase
) -> Judgment:
    """Judge a fact under the rule set of the jurisdiction its record had at the fact's
    ``occurred_at`` (a later RecordOpened does not re-judge the past).

    A record with no known jurisdiction is judged by the federal baseline, and its findings say
    so.
    """
    opened = opened_as_of((*history, fact), fact.occurred_at)
    jurisdiction = opened.jurisdiction if opened else None
    ruleset, fell_back = rulebook.for_jurisdiction(jurisdiction)
    fallback = ""
    if fell_back:
        fallback = str(jurisdiction)
    elif jurisdiction is None:
        fallback = "a record with no jurisdiction yet"
    return judge(history, fact, ruleset, fallback=fallback)
