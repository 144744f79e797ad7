"""Demo data: the scenarios of PRODUCT.md section 7, posted through the ingest code path.

Event ids are derived from the scenario, so loading the demo twice stores everything once.
Names, courts and agencies are invented. Bodies are minimal, as a clinical system would send
them: no optional block is added only to make a disclosure look compliant.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from pydantic import TypeAdapter

from domain import facts

__all__ = ["DEMO_TENANT", "demo_submissions", "scenario_events"]

DEMO_TENANT = "demo-practice"
_FACT = TypeAdapter(facts.Fact)
_T0 = datetime.fromisoformat("2026-02-02T09:00:00-05:00")

_RIVERA = {"id": "clin-17", "name": "Dr. A. Rivera", "role": "treating_clinician"}
_CUSTODIAN = {"id": "hi-03", "name": "J. Okafor", "role": "records_custodian"}
_FRONT = {"id": "fd-02", "name": "S. Patel", "role": "front_desk"}


class _Scenario:
    """Builds one record's events with stable ids and increasing times."""

    def __init__(self, record_ref: str, title: str) -> None:
        self.record_ref = record_ref
        self.title = title
        self.events: list[dict[str, Any]] = []

    def add(
        self, type_: str, at: timedelta, actor: dict[str, str] = _RIVERA, **fields: Any
    ) -> None:
        self.events.append(
            {
                "event_id": str(uuid5(NAMESPACE_URL, f"demo/{self.record_ref}/{len(self.events)}")),
                "type": type_,
                "occurred_at": (_T0 + at).isoformat(),
                "actor": actor,
                "source": {"system": "ehr-main"},
                **fields,
            }
        )


def _days(n: float) -> timedelta:
    return timedelta(days=n)


def _opened(s: _Scenario, jurisdiction: str, **fields: Any) -> None:
    s.add("RecordOpened", _days(0), jurisdiction=jurisdiction, setting="individual", **fields)


def _privilege() -> _Scenario:
    s = _Scenario("jr-2041", "Privilege under subpoena, then a custody order (Jaffee v. Redmond)")
    _opened(s, "US-MA")
    s.add(
        "RecordAccessed",
        _days(7),
        categories=["progress_notes"],
        action="create",
        purpose_of_use="TREAT",
    )
    s.add(
        "DisclosureMade",
        _days(20),
        disclosure_id="dis-jr-1",
        recipient={"name": "Dr. L. Chen, psychiatrist", "kind": "health_provider"},
        categories=["diagnosis", "medications"],
        method="secure_portal",
        legal_basis={"kind": "treatment"},
        purpose_of_use="TREAT",
    )
    s.add(
        "LegalDemandReceived",
        _days(40),
        actor=_CUSTODIAN,
        demand_id="dem-jr-1",
        kind="attorney_subpoena",
        issuer="Hale & Burke LLP",
        case_number="PFC-26-0113",
        categories=["progress_notes", "psychotherapy_notes"],
        return_date="2026-03-30",
    )
    s.add(
        "PrivilegeAsserted",
        _days(42),
        demand_id="dem-jr-1",
        holder="therapist_on_behalf",
        statute="M.G.L. c.233 s.20B",
    )
    s.add(
        "DemandAnswered",
        _days(43),
        actor=_CUSTODIAN,
        demand_id="dem-jr-1",
        outcome="refused_privilege",
    )
    s.add(
        "CourtOrderIssued",
        _days(70),
        actor=_CUSTODIAN,
        order_id="ord-jr-1",
        demand_id="dem-jr-1",
        court="Suffolk Probate and Family Court",
        judge="Hon. R. Alvarez",
        pierces_privilege=True,
        ground="best interests of the child (c.233 s.20B(e))",
        categories=["appointments", "diagnosis"],
        recipients=[{"name": "Suffolk Probate and Family Court", "kind": "court"}],
    )
    s.add(
        "DisclosureMade",
        _days(75),
        actor=_CUSTODIAN,
        disclosure_id="dis-jr-2",
        recipient={
            "name": "Suffolk Probate and Family Court",
            "kind": "court",
            "address": "24 New Chardon St, Boston MA",
        },
        categories=["appointments", "diagnosis"],
        method="court_filing",
        legal_basis={"kind": "court_order", "reference_id": "ord-jr-1"},
        purpose_of_use="HLEGAL",
    )
    s.add(
        "DisclosureMade",
        _days(80),
        actor=_CUSTODIAN,
        disclosure_id="dis-jr-3",
        recipient={"name": "Suffolk Probate and Family Court", "kind": "court"},
        categories=["appointments", "diagnosis", "progress_notes", "psychotherapy_notes"],
        method="court_filing",
        legal_basis={"kind": "court_order", "reference_id": "ord-jr-1"},
        purpose_of_use="HLEGAL",
    )
    return s


def _client_release() -> _Scenario:
    s = _Scenario("cr-1187", "Client release to their own attorney")
    _opened(s, "US-MA")
    s.add(
        "AuthorizationGranted",
        _days(10),
        actor=_CUSTODIAN,
        authorization_id="auth-cr-1",
        kind="hipaa_general",
        granted_by="client",
        recipients=[{"name": "Morgan & Lee LLP", "kind": "attorney"}],
        purposes=["HLEGAL"],
        categories=["progress_notes"],
        expires_at="2026-12-31T23:59:59-05:00",
        in_writing=True,
    )
    s.add(
        "DisclosureMade",
        _days(12),
        actor=_CUSTODIAN,
        disclosure_id="dis-cr-1",
        recipient={"name": "Morgan & Lee LLP", "kind": "attorney"},
        categories=["progress_notes"],
        method="secure_portal",
        legal_basis={"kind": "client_authorization", "reference_id": "auth-cr-1"},
        purpose_of_use="HLEGAL",
    )
    s.add(
        "DisclosureMade",
        _days(15),
        actor=_CUSTODIAN,
        disclosure_id="dis-cr-2",
        recipient={"name": "Morgan & Lee LLP", "kind": "attorney"},
        categories=["progress_notes", "psychotherapy_notes"],
        method="secure_portal",
        legal_basis={"kind": "client_authorization", "reference_id": "auth-cr-1"},
        purpose_of_use="HLEGAL",
    )
    return s


def _mandated_report() -> _Scenario:
    s = _Scenario("mr-3310", "Mandated child-abuse report (M.G.L. c.119 s.51A)")
    _opened(s, "US-MA")
    suspected = _days(30)
    for n, (written_after, categories) in enumerate(
        [
            (timedelta(hours=40), ["demographics", "risk_assessment"]),
            (timedelta(hours=60), ["demographics", "risk_assessment"]),
            (timedelta(hours=20), ["demographics", "risk_assessment", "psychotherapy_notes"]),
        ],
        start=1,
    ):
        at = suspected + _days(10 * (n - 1))
        s.add(
            "MandatedReportFiled",
            at + written_after,
            report_id=f"rep-mr-{n}",
            kind="child_abuse",
            agency="Department of Children and Families",
            statute="M.G.L. c.119 s.51A",
            suspected_at=(_T0 + at).isoformat(),
            oral_at=(_T0 + at + timedelta(minutes=45)).isoformat(),
            written_at=(_T0 + at + written_after).isoformat(),
            categories=categories,
        )
        s.add(
            "DisclosureMade",
            at + written_after,
            disclosure_id=f"dis-mr-{n}",
            recipient={
                "name": "Department of Children and Families",
                "kind": "government_agency",
                "address": "600 Washington St, Boston MA",
            },
            categories=categories,
            method="secure_portal",
            legal_basis={"kind": "mandated_report", "reference_id": f"rep-mr-{n}"},
            purpose_of_use="PUBHLTH",
        )
    return s


def _duty_to_warn() -> _Scenario:
    s = _Scenario("dw-0912", "Duty to warn (Tarasoff; Cal. Civ. Code 43.92)")
    _opened(s, "US-CA")
    s.add(
        "DutyToWarnExercised",
        _days(50),
        warning_id="warn-dw-1",
        victim_identified=True,
        notified=[
            {"name": "K. Moreau", "kind": "victim"},
            {"name": "Oakland Police Department", "kind": "law_enforcement"},
        ],
        statute="Cal. Civ. Code 43.92",
        categories=["risk_assessment"],
    )
    for n, (name, kind) in enumerate(
        [
            ("K. Moreau", "potential_victim"),
            ("Oakland Police Department", "law_enforcement"),
            ("Bayview Logistics (client's employer)", "employer"),
        ],
        start=1,
    ):
        s.add(
            "DisclosureMade",
            _days(50) + timedelta(minutes=10 * n),
            disclosure_id=f"dis-dw-{n}",
            recipient={"name": name, "kind": kind},
            categories=["risk_assessment"],
            method="phone",
            legal_basis={"kind": "duty_to_warn", "reference_id": "warn-dw-1"},
            purpose_of_use="THREAT",
        )
    return s


def _revoked() -> _Scenario:
    s = _Scenario("cv-5520", "Consent revoked, then a disclosure under it")
    _opened(s, "US-MA")
    s.add(
        "AuthorizationGranted",
        _days(5),
        actor=_CUSTODIAN,
        authorization_id="auth-cv-1",
        kind="hipaa_general",
        granted_by="client",
        recipients=[{"name": "Harbor Life Insurance", "kind": "other"}],
        purposes=["COVAUTH"],
        categories=["diagnosis", "treatment_plan"],
        in_writing=True,
    )
    s.add(
        "DisclosureMade",
        _days(8),
        actor=_CUSTODIAN,
        disclosure_id="dis-cv-1",
        recipient={"name": "Harbor Life Insurance", "kind": "other"},
        categories=["diagnosis"],
        method="mail",
        legal_basis={"kind": "client_authorization", "reference_id": "auth-cv-1"},
        purpose_of_use="COVAUTH",
    )
    s.add(
        "AuthorizationRevoked",
        _days(30),
        actor=_FRONT,
        authorization_id="auth-cv-1",
        in_writing=True,
    )
    s.add(
        "DisclosureMade",
        _days(45),
        actor=_CUSTODIAN,
        disclosure_id="dis-cv-2",
        recipient={"name": "Harbor Life Insurance", "kind": "other"},
        categories=["diagnosis", "treatment_plan"],
        method="mail",
        legal_basis={"kind": "client_authorization", "reference_id": "auth-cv-1"},
        purpose_of_use="COVAUTH",
    )
    return s


def _minor() -> _Scenario:
    s = _Scenario("mi-7781", "A parent asks for a 16-year-old's records (minor consented)")
    _opened(s, "US-CA", client_birth_date="2009-11-02", minor_consented_to_treatment=True)
    s.add(
        "AuthorizationGranted",
        _days(60),
        actor=_FRONT,
        authorization_id="auth-mi-1",
        kind="hipaa_general",
        granted_by="personal_representative",
        recipients=[{"name": "R. Novak (parent)", "kind": "parent"}],
        purposes=["FAMRQT"],
        categories=["progress_notes", "diagnosis"],
        in_writing=True,
    )
    s.add(
        "DisclosureMade",
        _days(61),
        actor=_CUSTODIAN,
        disclosure_id="dis-mi-1",
        recipient={"name": "R. Novak (parent)", "kind": "parent"},
        categories=["progress_notes", "diagnosis"],
        method="in_person",
        legal_basis={"kind": "client_authorization", "reference_id": "auth-mi-1"},
        purpose_of_use="FAMRQT",
    )
    return s


def _couple() -> _Scenario:
    s = _Scenario("fa-4402", "Couple's joint record released on one partner's authorization")
    s.add(
        "RecordOpened",
        _days(0),
        jurisdiction="US-MA",
        setting="couple",
        participants=[{"id": "p-a", "adult": True}, {"id": "p-b", "adult": True}],
    )
    s.add(
        "AuthorizationGranted",
        _days(90),
        actor=_CUSTODIAN,
        authorization_id="auth-fa-1",
        kind="hipaa_general",
        granted_by="client",
        participant_id="p-a",
        recipients=[{"name": "Whitcomb Family Law", "kind": "attorney"}],
        purposes=["HLEGAL"],
        categories=["progress_notes"],
        in_writing=True,
    )
    s.add(
        "DisclosureMade",
        _days(92),
        actor=_CUSTODIAN,
        disclosure_id="dis-fa-1",
        recipient={"name": "Whitcomb Family Law", "kind": "attorney"},
        categories=["progress_notes"],
        method="mail",
        legal_basis={"kind": "client_authorization", "reference_id": "auth-fa-1"},
        purpose_of_use="HLEGAL",
    )
    return s


def _break_glass() -> _Scenario:
    s = _Scenario("bg-6630", "Emergency access with no justification, never reviewed")
    _opened(s, "US-MA")
    s.add(
        "RecordAccessed",
        _days(3),
        actor=_FRONT,
        categories=["diagnosis", "medications"],
        action="view",
        purpose_of_use="BTG",
        break_glass=True,
    )
    s.add(
        "RecordAccessed",
        _days(4),
        categories=["progress_notes"],
        action="update",
        purpose_of_use="TREAT",
    )
    return s


def scenario_events() -> list[_Scenario]:
    """Every demo scenario, each a record with its events in order."""
    return [
        _privilege(),
        _client_release(),
        _mandated_report(),
        _duty_to_warn(),
        _revoked(),
        _minor(),
        _couple(),
        _break_glass(),
    ]


def demo_submissions() -> Iterator[tuple[str, facts.FactBase]]:
    """(record_ref, validated fact) for every demo event, validated like an HTTP body."""
    for scenario in scenario_events():
        for raw in scenario.events:
            yield scenario.record_ref, _FACT.validate_python(raw)
